"""Tar shards in the WebDataset layout: pack a folder of photos into shards, stream them for training.

A shard is a plain tar file. Members sharing a key (the member name up to the first dot of its base
name: ``sub/p0.jpg`` has key ``sub/p0``) are one sample; a sample's first image member (jpg, jpeg,
png or webp) is its photo. Shards are read front to back as a stream (``tarfile`` mode ``r|*``):
nothing is unpacked or seeked, so local files and http(s) URLs read alike.
"""

from __future__ import annotations

import glob
import io
import random
import re
import tarfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import torch

from colorize.data import Augment, find_images, photo_transform
from colorize.io import AtomicFile, ImageError, load_image

SHARD_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
SHARD_NAME = "shard-{:06d}.tar"
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def is_shard_spec(spec: str) -> bool:
    """True for a data entry naming tar shards: a ``.tar`` path, glob or brace pattern, or a URL."""
    return is_url(spec) or spec.lower().endswith(SHARD_SUFFIXES)


def expand_braces(spec: str) -> list[str]:
    """``shard-{000..009}.tar`` -> ten names (zero padding kept); ``{a,b}`` lists; several braces multiply."""
    m = re.search(r"\{([^{}]*)\}", spec)
    if m is None:
        return [spec]
    body = m.group(1)
    span = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if span:
        lo, hi = span.groups()
        items = [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
    else:
        items = body.split(",")
    head, tail = spec[: m.start()], spec[m.end():]
    return [name for item in items for name in expand_braces(head + item + tail)]


def resolve_shards(specs: Sequence[str]) -> list[str]:
    """Data entries -> shard paths and URLs: braces expanded, local globs matched (sorted).

    Raises:
        FileNotFoundError: a local shard or pattern matches nothing.
    """
    found: dict[str, None] = {}
    for spec in specs:
        for name in expand_braces(spec):
            if is_url(name) or Path(name).is_file():
                found[name] = None
            elif any(c in name for c in "*?["):
                hits = sorted(glob.glob(name))
                if not hits:
                    raise FileNotFoundError(f"{name}: no shards match")
                found.update(dict.fromkeys(hits))
            else:
                raise FileNotFoundError(f"{name}: no such shard")
    return list(found)


def open_shard(url: str) -> BinaryIO:
    """A readable byte stream of a local shard or an http(s) URL."""
    if is_url(url):
        import urllib.request

        return urllib.request.urlopen(url, timeout=60)
    return open(url, "rb")


def split_key(name: str) -> tuple[str, str]:
    """``dir/abc.x.jpg`` -> (``dir/abc``, ``x.jpg``): WebDataset's rule, the key ends at the base name's first dot."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def iter_samples(stream: BinaryIO) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) for each run of consecutive tar members sharing a key."""
    key, files = None, {}
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if not member.isfile() or member.name.rpartition("/")[2].startswith("."):
                continue
            k, ext = split_key(member.name)
            if k != key and files:
                yield key, files
                files = {}
            key = k
            files[ext] = tar.extractfile(member).read()
    if files:
        yield key, files


def _photo(files: dict[str, bytes]) -> tuple[str, bytes] | None:
    for ext in SHARD_IMAGE_EXTENSIONS:
        if ext in files:
            return ext, files[ext]
    return None


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
        """The shards this rank's worker reads in pass ``pass_index``."""
        order = list(self.shards)
        random.Random(f"shards:{self.seed}:{self.epoch}:{pass_index}").shuffle(order)
        return order[self.rank:: self.world_size][worker::workers]

    def _raw(self, shards: list[str]) -> Iterator[tuple[str, str, bytes | None]]:
        """(name, image extension, bytes) per sample; bytes None for an unreadable shard (name says why)."""
        for url in shards:
            try:
                with open_shard(url) as stream:
                    for key, files in iter_samples(stream):
                        photo = _photo(files)
                        if photo is not None:
                            yield f"{url}:{key}.{photo[0]}", photo[0], photo[1]
            except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
                yield f"{url}: unreadable shard ({e})", "", None

    def _shuffled(self, items: Iterator, rng: random.Random) -> Iterator:
        buffer: list = []
        for item in items:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(item)
                continue
            i = rng.randrange(len(buffer))
            buffer[i], item = item, buffer[i]
            yield item
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[tuple[torch.Tensor, str]]:
        from torchvision.transforms.v2 import functional as TF

        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = random.Random(f"buffer:{self.seed}:{self.epoch}:{self.rank}:{worker}")
        pass_index, pending = 0, ""
        while True:
            shards = self.my_shards(pass_index, worker, workers)
            if not shards:
                return
            good = 0
            for name, _, data in self._shuffled(self._raw(shards), rng):
                if data is None:
                    pending = pending or name
                    continue
                try:
                    img = load_image(name, data=data)
                except ImageError as e:
                    pending = pending or str(e)
                    continue
                good += 1
                yield self.transform(TF.pil_to_tensor(img)).contiguous(), pending
                pending = ""
            if pending and not self.repeat:  # nothing left to carry the message
                warnings.warn(f"skipped unreadable image {pending}", stacklevel=2)
            if not self.repeat:
                return
            if good == 0:
                raise RuntimeError(f"no readable photos in shards {shards[:3]}... (last error: {pending})")
            pass_index += 1


@dataclass
class PackResult:
    """What :func:`write_shards` wrote."""

    shards: list[Path] = field(default_factory=list)
    images: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # "path: reason" of unreadable files


class _ShardWriter:
    """Writes ``shard-NNNNNN.tar`` files one after another, each to a temp file renamed into place
    when complete: a crash never leaves a half-written shard under a shard name."""

    def __init__(self, out_dir: Path, max_count: int, max_bytes: int, result: PackResult):
        self.out_dir, self.max_count, self.max_bytes, self.result = out_dir, max_count, max_bytes, result
        self.tar: tarfile.TarFile | None = None
        self.file: AtomicFile | None = None
        self.count = self.size = 0

    def add(self, name: str, data: bytes, mtime: float) -> None:
        if self.tar is not None and (self.count >= self.max_count or self.size + len(data) > self.max_bytes):
            self.close()
        if self.tar is None:
            self.file = AtomicFile(self.out_dir / SHARD_NAME.format(len(self.result.shards)))
            self.tar = tarfile.open(self.file.tmp, "w", format=tarfile.PAX_FORMAT)
            self.count = self.size = 0
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), int(mtime), 0o644
        self.tar.addfile(info, io.BytesIO(data))
        self.count += 1
        self.size += len(data) + 1024  # + header and padding, roughly
        self.result.images += 1
        self.result.bytes += len(data)

    def close(self) -> None:
        if self.tar is None:
            return
        self.tar.close()
        self.tar = None
        self.file.commit()
        self.result.shards.append(self.file.path)

    def abort(self) -> None:
        if self.tar is not None:
            self.tar.close()
            self.tar = None
            self.file.discard()


def _shard_key(rel: Path, used: set[str]) -> str:
    """A WebDataset key for a relative path: dots in the base name become ``_`` (the key ends at the
    first dot); a clash gets a numeric suffix."""
    key = (rel.parent / rel.stem.replace(".", "_")).as_posix()
    base, i = key, 1
    while key in used:
        key, i = f"{base}_{i}", i + 1
    used.add(key)
    return key


def write_shards(folder: str | Path, out_dir: str | Path, *, max_count: int = 10_000, max_size_mb: float = 1000.0,
                 shuffle: bool = True, seed: int = 0) -> PackResult:
    """Pack every photo under ``folder`` (recursive) into ``out_dir/shard-000000.tar``, ...

    jpg, jpeg, png and webp files are stored byte for byte; other formats are decoded and stored
    as PNG (unreadable ones are skipped and listed). ``shuffle`` packs in a seeded random order, so
    consecutive samples of a stream are unrelated.

    Args:
        max_count: photos per shard at most.
        max_size_mb: shard size at most (a single bigger photo gets a shard of its own).
    Returns:
        a :class:`PackResult`.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    if max_count <= 0 or max_size_mb <= 0:
        raise ValueError(f"max_count and max_size_mb must be positive, got {max_count} and {max_size_mb}")
    files = find_images(folder)
    if not files:
        raise ValueError(f"{folder}: no images found")
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.glob("shard-*.tar")):
        raise FileExistsError(f"{out_dir} already holds shards; choose an empty folder")
    if shuffle:
        random.Random(seed).shuffle(files)
    result = PackResult()
    writer = _ShardWriter(out_dir, max_count, int(max_size_mb * 1e6), result)
    used: set[str] = set()
    try:
        for f in files:
            ext = f.suffix.lower().lstrip(".")
            if ext in SHARD_IMAGE_EXTENSIONS:
                data = f.read_bytes()
            else:
                try:
                    img = load_image(f)
                except ImageError as e:
                    result.skipped.append(str(e))
                    continue
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                ext, data = "png", buf.getvalue()
            writer.add(f"{_shard_key(f.relative_to(folder), used)}.{ext}", data, f.stat().st_mtime)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return result
