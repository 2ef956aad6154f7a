"""Training's torch dataset over tar shards (:class:`ShardDataset`); the shards themselves (names, reading,
packing) are :mod:`colorize.shards`, which stays free of torch so that ``colorize SHARDS -o OUT`` runs on the
light install."""

from __future__ import annotations

import random
import warnings
from typing import Iterator, Sequence

import torch

from colorize.data import Augment, photo_transform
from colorize.io import ImageError, Notice, load_image
from colorize.shards import _read_shards, _webdataset


class ShardDataset(torch.utils.data.IterableDataset):
    """Photos streamed from tar shards, as ``(uint8 (3, size, size), error)`` pairs like
    :class:`colorize.data.PhotoDataset` (``error``: "name: reason" of a skipped bad sample, or "").

    Every pass visits the shards in an order shuffled by (seed, epoch, pass); rank ``rank`` of
    ``world_size`` takes every ``world_size``-th shard of it, and DataLoader worker ``w`` of ``K``
    every ``K``-th of those, so each sample is read once per pass across the whole job. Samples are
    shuffled in a buffer of ``shuffle_buffer``. ``repeat``: passes follow each other without end
    (training takes ``epoch_images`` from the stream); otherwise one pass.
    """

    def __init__(self, shards: Sequence[str], size: int, *, augment: Augment | None = None, rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle_buffer: int = 1000, repeat: bool = False):
        self.shards = list(shards)
        if len(self.shards) < world_size:
            raise ValueError(f"{len(self.shards)} shard(s) cannot feed {world_size} processes; "
                             "pack smaller shards (colorize shards --max-count)")
        self.size, self.augment = size, augment
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.shuffle_buffer, self.repeat = shuffle_buffer, repeat
        self.epoch = 0
        self.transform = photo_transform(size, augment)

    def set_size(self, size: int) -> None:
        """Change the crop size (progressive resizing); takes effect in loaders created afterwards."""
        if size != self.size:
            self.size, self.transform = size, photo_transform(size, self.augment)

    def set_epoch(self, epoch: int) -> None:
        """Seed the shard order and the shuffle buffer for this epoch (call before building a loader)."""
        self.epoch = epoch

    def plain(self) -> "ShardDataset":
        """One pass over the same shards, without augmentation (for statistics such as the ab prior)."""
        return ShardDataset(self.shards, self.size, rank=self.rank, world_size=self.world_size, seed=self.seed,
                            shuffle_buffer=self.shuffle_buffer)

    def my_shards(self, pass_index: int, worker: int = 0, workers: int = 1) -> list[str]:
        """The shards this rank's worker reads in pass ``pass_index`` (not webdataset's split_by_node,
        which reads the rank from the environment: ours is given)."""
        order = list(self.shards)
        random.Random(f"shards:{self.seed}:{self.epoch}:{pass_index}").shuffle(order)
        return order[self.rank:: self.world_size][worker::workers]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, str]]:
        from torchvision.transforms.v2 import functional as TF

        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = random.Random(f"buffer:{self.seed}:{self.epoch}:{self.rank}:{worker}")
        # a full buffer before the first photo leaves (webdataset's default starts after 100)
        shuffle = _webdataset().shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)
        pass_index, pending = 0, ""  # pending: the first bad sample since the last good photo
        fruitless: set[str] = set()  # shards read since this worker's last good photo, none of which gave one
        while True:
            shards = self.my_shards(pass_index, worker, workers)
            if not shards:
                return
            good = 0
            for photo in shuffle(_read_shards(shards)):
                if photo.data is None:
                    pending = pending or photo.error
                    continue
                try:
                    img = load_image(photo.name, data=photo.data)
                except ImageError as e:
                    pending = pending or str(e)
                    continue
                good += 1
                yield self.transform(TF.pil_to_tensor(img)).contiguous(), pending
                pending = ""
            if pending and not self.repeat:  # nothing left to carry the message
                warnings.warn(Notice(f"skipped unreadable image {pending}"), stacklevel=2)
            if not self.repeat:
                return
            # a pass of bad shards alone (one unreadable shard among good ones can be all of a rank's or a
            # worker's share) is passed over; the stream fails only once every shard was read without a photo
            fruitless = fruitless | set(shards) if good == 0 else set()
            if fruitless >= set(self.shards):
                raise ValueError(f"no readable photos in any of the {len(self.shards)} shard(s) "
                                 f"{self.shards[:3]}{'...' if len(self.shards) > 3 else ''} (last error: {pending})")
            pass_index += 1
