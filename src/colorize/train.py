"""Training, read in order: ``TrainConfig`` -> ``setup`` -> ``fit`` (``train_epoch``, ``validate``,
``save_checkpoint``) with a pure ``get_lr``.

Checkpoints are written at the end of every epoch (``last.pt``) and when validation improves
(``best.pt``); ``resume=True`` continues from ``last.pt`` and gives the same result as an
uninterrupted run (shuffling and augmentation are seeded per epoch).

Under ``torchrun --nproc_per_node N`` the same code trains data-parallel (:mod:`colorize.distributed`):
``batch_size`` is per process, so a step sees ``batch_size x N`` photos, exactly the photos one
process with ``batch_size x N`` would see at that step; metrics are summed over all processes, and
rank 0 alone writes the run folder. Checkpoints hold the plain model and resume at any process count.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

import torch
import torch.nn as nn

from colorize import distributed
from colorize.checkpoint import decoding_of, load_checkpoint, save_checkpoint, save_weights
from colorize.aging import age_lightness
from colorize.color import denormalize_l, model_lab_to_rgb, normalize_l, rgb_to_model_lab
from colorize.data import (Augment, BadFileLog, PhotoDataset, collate, find_images, require_photos, source_name,
                           split_train_val)
from colorize.distributed import Dist, EpochSampler, pick_device  # noqa: F401 (pick_device: public here too)
from colorize.io import atomic_write, clean_stale_temporaries
from colorize.losses import LOSSES, SemanticLoss, color_loss
from colorize.models import create_model, list_models
from colorize.models._registry import check_options
from colorize.models.base import REBALANCE_MIX, rebalance_head
from colorize.shard_dataset import ShardDataset
from colorize.shards import is_shard_spec, resolve_shards

DEFAULT_DATA = "../shared/data/train"
AMP_MODES = ("auto", "bf16", "fp16", "off")
PROGRESS_SECONDS = 30.0  # without a terminal: one plain progress line this often


# TrainConfig's field types -> the values each takes (ints where floats are asked for: YAML writes 1 for 1.0)
_FIELD_KINDS = {"bool": (bool,), "int": (int,), "float": (int, float), "float | None": (int, float, type(None)),
                "str": (str,), "str | None": (str, type(None)), "dict": (dict,), "list[str]": (list, str),
                "tuple[float, float]": (list, tuple)}


@dataclass
class TrainConfig:
    """A training run. A YAML recipe under ``configs/`` is this dataclass written out."""

    model: str = "unet_lite0"  # registered model name (``colorize models``)
    model_kwargs: dict = field(default_factory=dict)  # options of that model's builder
    data: list[str] = field(default_factory=lambda: [DEFAULT_DATA])  # folders, files, globs; or tar shards
    val_data: list[str] = field(default_factory=list)  # held-out photos; empty: split from ``data``
    val_fraction: float = 0.02  # share of ``data`` held out when ``val_data`` is empty
    init_weights: str | None = None  # warm start: begin from this weight file or shipped model (by name; same
    # architecture) with a fresh optimizer and warmup; a prior correction folded into it for inference is undone first
    init_exclude: list[str] = field(default_factory=list)  # state keys with these prefixes are not taken from
    # init_weights and keep the new model's own (e.g. ["encoder."]: its ImageNet backbone, with freeze_levels 4)
    image: str | None = None  # train on this one photo (the write-ups' Alpha demo); overrides data
    size: int = 160  # square training crop, a multiple of the model's stride
    early_size: int = 0  # progressive resizing: train the first ``early_epochs`` epochs at this crop
    early_epochs: int = 0  # (smaller is cheaper: 128 px costs ~0.6x of 160), then at ``size``
    batch_size: int = 32  # per process: the global batch is batch_size x processes under torchrun
    epochs: int = 10
    epoch_images: int = 0  # images per epoch (all processes); 0 = the whole set (required for tar shards).
    # steps per epoch = epoch_images // (batch_size x processes)
    val_images: int = 0  # cap on validation photos; 0 = all
    optimizer: str = "adam"  # adam | adamw | rmsprop
    lr: float = 1e-3
    encoder_lr_scale: float = 0.1  # LR multiplier for a pretrained encoder's fine-tuned layers
    weight_decay: float = 0.0
    warmup_steps: int = 100  # linear warmup
    plateau_patience: int = 2  # epochs without improvement before the LR is reduced
    plateau_factor: float = 0.5
    min_lr_scale: float = 0.01  # floor of the plateau reductions; end point of the decay
    decay_epochs: int = 0  # cosine decay of the LR to lr x min_lr_scale over the last N epochs; 0 = none
    early_stop_patience: int = 6  # epochs without improvement before stopping; 0 = never
    loss: str = "auto"  # auto (by the model's output) | mse | smooth_l1 | bins
    reg_weight: float = 0.0  # bins models: weight of the smooth-L1 term on the mean ab
    semantic_weight: float = 0.0  # bins models: weight of the classifier-as-loss term (losses.SemanticLoss)
    semantic_net: list[str] = field(default_factory=lambda: ["tf_efficientnet_lite0"])  # its frozen classifier (never
    # the evaluation's judge); several: an ensemble, their terms averaged
    semantic_prior_correction: float = 0.6  # the decoding it judges: as the shipped weights are exported
    semantic_temperature: float = 0.5
    semantic_feature_weight: float = 0.0  # added to the term: its classifier's feature maps matched (a perceptual loss)
    augment: bool = True
    aging: float = 0.0  # share of training photos whose input lightness is aged like an old print (colorize.aging:
    # fading, blur, grain); the target colors and the losses keep the clean photo
    crop_scale: tuple[float, float] = Augment.crop_scale  # area share of the photo each random crop keeps (augment)
    source_balance: float = 1.0  # photo sets in subfolders (sources) drawn in proportion to size ** this:
    # 1 = every photo alike, 0.5 = square root (large sources count less), 0 = every source alike
    prior_images: int = 2000  # photos used to estimate the ab-bin prior for class rebalancing
    rebalance_mix: float | None = None  # class rebalancing's mix of the prior with uniform (Zhang et al.'s lambda):
    # 1 = no rebalancing; None = models.base.REBALANCE_MIX (0.5) for a fresh run, the file's own weights for a warm
    # start. A number on a warm start re-estimates the prior and moves the head to the new weights (rebalance_head)
    out_dir: str = "runs/default"
    seed: int = 0
    num_workers: int = 1  # DataLoader worker processes
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    device: str = "auto"  # auto | cpu | cuda | mps (under torchrun, cuda is the process's LOCAL_RANK GPU)
    amp: str = "auto"  # mixed precision: on CUDA, auto (bf16 if supported, else fp16) | bf16 | fp16 | off; on the
    # CPU, bf16 trains the U-Net's decoder in bfloat16 (faster with AMX; train.cpu_decoder_dtype), the rest float32
    shuffle_buffer: int = 1000  # tar shards: photos in each loader worker's shuffle buffer
    channels_last: bool = True
    samples: int = 8  # validation photos in the per-epoch sample grid
    max_minutes: float = 0.0  # stop cleanly (with checkpoints) after this long; 0 = no limit
    snapshot_every: int = 0  # also keep the weights of every N-th epoch and the last (epochNNN.safetensors): learning curves
    checkpoint_minutes: float = 5.0  # also write last.pt this often within an epoch (0: at epoch ends only);
    # --resume replays the epoch's batches up to it without training on them, so it ends as an uninterrupted run

    def __post_init__(self):
        for f in fields(self):  # a recipe's values have YAML's types: a misspelt number is a string
            kinds, value = _FIELD_KINDS.get(f.type), getattr(self, f.name)
            if kinds is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
                raise ValueError(f"{f.name} must be {f.type}, got {value!r}")
        if self.model not in list_models():
            raise ValueError(f"unknown model '{self.model}'; choose from: {', '.join(list_models())}")
        try:
            check_options(self.model, self.model_kwargs)
        except TypeError as e:  # e.g. --model over a recipe written for another model
            raise ValueError(f"model_kwargs: {e}") from None
        if self.optimizer not in ("adam", "adamw", "rmsprop"):
            raise ValueError(f"unknown optimizer '{self.optimizer}'; choose from: adam, adamw, rmsprop")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss '{self.loss}'; choose from: {', '.join(LOSSES)}")
        if self.size <= 0 or self.size % 8:
            raise ValueError(f"size must be a positive multiple of 8, got {self.size}")
        if self.batch_size <= 0 or self.epochs <= 0 or self.lr <= 0:
            raise ValueError("batch_size, epochs and lr must be positive")
        if not 0 <= self.decay_epochs <= self.epochs:
            raise ValueError(f"decay_epochs must be in [0, epochs={self.epochs}], got {self.decay_epochs}")
        if self.early_epochs and (self.early_size <= 0 or self.early_size % 8):
            raise ValueError(f"early_size must be a positive multiple of 8, got {self.early_size}")
        self.crop_scale = tuple(float(v) for v in self.crop_scale)
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be two area shares 0 < low <= high <= 1, got {list(self.crop_scale)}")
        if self.init_exclude and not self.init_weights:
            raise ValueError("init_exclude names tensors to keep from a warm start; it needs init_weights")
        if self.semantic_feature_weight < 0 or (self.semantic_feature_weight and self.semantic_weight <= 0):
            raise ValueError("semantic_feature_weight is part of the classifier-loss term: it needs semantic_weight > 0")
        if not 0 <= self.aging <= 1:
            raise ValueError(f"aging must be a share in [0, 1], got {self.aging}")
        if not 0 <= self.source_balance <= 1:
            raise ValueError(f"source_balance must be in [0, 1], got {self.source_balance}")
        if self.rebalance_mix is not None and not 0 < self.rebalance_mix <= 1:
            raise ValueError(f"rebalance_mix must be in (0, 1], got {self.rebalance_mix}")
        for name in ("epoch_images", "val_images", "num_workers", "threads", "max_minutes", "checkpoint_minutes",
                     "samples", "snapshot_every"):
            if getattr(self, name) < 0:  # 0: the default meaning each field's comment gives
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if isinstance(self.data, str):
            self.data = [self.data]
        if isinstance(self.val_data, str):
            self.val_data = [self.val_data]
        if isinstance(self.semantic_net, str):
            self.semantic_net = [self.semantic_net]
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp '{self.amp}'; choose from: {', '.join(AMP_MODES)}")
        shards = [is_shard_spec(d) for d in self.data]
        if any(shards) and not self.image:
            if not all(shards):
                raise ValueError(f"data mixes tar shards and image folders/files: {self.data}")
            if not self.val_data or any(is_shard_spec(d) for d in self.val_data):
                raise ValueError("training from tar shards needs val_data: image folders, files or globs")
            if self.epoch_images <= 0:
                raise ValueError("training from tar shards needs epoch_images > 0 (a stream has no length)")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "TrainConfig":
        """The recipe at ``path`` with the ``overrides`` that are not None."""
        return cls.from_recipe(cls.read_recipe(path), **overrides)

    @classmethod
    def from_recipe(cls, raw: dict, **overrides) -> "TrainConfig":
        """A recipe as :meth:`read_recipe` gives it, with the ``overrides`` that are not None; checked as a whole."""
        return cls(**{**raw, **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def read_recipe(cls, path: str | Path) -> dict:
        """A YAML recipe's fields, not yet checked together (an option may still complete them): ValueError for a
        file that is not YAML, not a mapping, or names fields TrainConfig does not have."""
        yaml = _yaml()

        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a readable YAML recipe ({' '.join(str(e).split())})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a recipe maps TrainConfig's fields to values, not a {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown config key(s) {sorted(unknown)}; known: {sorted(known)}")
        return raw

    def to_yaml(self, path: str | Path) -> None:
        yaml = _yaml()

        atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(asdict(self), sort_keys=False)))


def _yaml():
    """PyYAML, needed for recipes only (the ``train`` extra)."""
    try:
        import yaml
    except ImportError:
        raise ImportError("training recipes (YAML) need PyYAML: pip install 'colorize[train]'") from None
    return yaml


def get_lr(step: int, cfg: TrainConfig, plateau_scale: float = 1.0, steps_per_epoch: int = 0) -> float:
    """Learning rate at ``step``: linear warmup, then the base rate times the plateau reductions, and
    over the last ``cfg.decay_epochs`` epochs a cosine decay to ``lr x min_lr_scale`` (warmup-stable-decay:
    a run can be extended or resumed without touching the schedule of the epochs already done)."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    decay = 1.0
    if cfg.decay_epochs and steps_per_epoch:
        span = cfg.decay_epochs * steps_per_epoch
        t = min(1.0, max(0.0, (step - (cfg.epochs - cfg.decay_epochs) * steps_per_epoch) / span))
        decay = cfg.min_lr_scale + (1 - cfg.min_lr_scale) * 0.5 * (1 + math.cos(math.pi * t))
    return cfg.lr * warm * plateau_scale * decay


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device``; None (float32) off CUDA or when ``mode`` is off."""
    if mode == "off" or device.type != "cuda":
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later): oneDNN's bfloat16 matrix units."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, hence the guard
    return bool(probe and probe())


def cpu_decoder_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The dtype a U-Net's decoder trains in on the CPU under ``amp`` = ``mode``: bfloat16 for ``bf16``, else
    None (float32); None off the CPU, where ``amp_dtype`` applies instead.

    On 2 cores of an AMX CPU the decoder's dense convolutions in bfloat16 make stage-1 training ~1.13x
    faster (``benchmarks/train_speed.py --amp bf16``; the whole network in bfloat16 is slower, by its
    depthwise convolutions), but one run of the shipped stage-1 recipe ended 0.16 dB lower on bench than
    its float32 twin (model card, stage 13): ``auto`` keeps float32 on the CPU, and ``bf16`` is asked for.
    """
    return torch.bfloat16 if device.type == "cpu" and mode == "bf16" else None


def set_decoder_precision(model: nn.Module, mode: str, device: torch.device) -> torch.dtype | None:
    """Give a U-Net (a model with ``decoder_dtype``) the decoder dtype ``cpu_decoder_dtype`` picks; returns it
    (None: float32, or a model without the setting)."""
    if not hasattr(model, "decoder_dtype"):
        return None
    model.decoder_dtype = cpu_decoder_dtype(mode, device)
    return model.decoder_dtype


@dataclass
class Run:
    """Everything ``fit`` needs, built by ``setup``."""

    cfg: TrainConfig
    model: nn.Module  # the plain model: checkpoints, validation, samples
    optimizer: torch.optim.Optimizer
    train_set: PhotoDataset | ShardDataset
    val_set: PhotoDataset
    device: torch.device
    out_dir: Path
    epoch: int = 0
    step: int = 0
    best: float = math.inf
    bad_epochs: int = 0  # epochs since the last improvement (early stopping)
    plateau_bad: int = 0  # epochs since the last improvement or LR reduction
    plateau_scale: float = 1.0
    history: list = field(default_factory=list)
    dist: Dist = field(default_factory=Dist)
    wrapped: nn.Module | None = None  # what training steps call: DistributedDataParallel(model), or model
    amp: torch.dtype | None = None  # autocast dtype; None: float32
    scaler: torch.amp.GradScaler | None = None  # loss scaling, enabled for fp16 only
    epoch_step: int = 0  # batches of the current epoch already trained on (a mid-epoch checkpoint)
    epoch_loss: tuple[float, int] = (0.0, 0)  # their summed loss and photo count
    semantic: SemanticLoss | None = None  # the classifier-as-loss term, when the recipe weighs it
    decoding: dict[str, str] = field(default_factory=dict)  # inherited by a warm start: its files record it

    def __post_init__(self):
        if self.wrapped is None:
            self.wrapped = self.model
        if self.scaler is None:
            self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)


def _outside(paths: list[Path], out_dir: str | Path) -> list[Path]:
    """``paths`` less those in the run folder: a run inside its data folder writes sample grids there. A run
    folder not made yet holds none (and the photos' paths are not resolved: a million photos took ~20 s)."""
    if not Path(out_dir).is_dir():
        return paths
    out = Path(out_dir).resolve()
    return [p for p in paths if not p.resolve().is_relative_to(out)]


def build_datasets(cfg: TrainConfig, dist: Dist) -> tuple[PhotoDataset | ShardDataset, PhotoDataset]:
    """The training set (photos, or a stream of tar shards split across ranks) and the validation photos."""
    augment = Augment(crop_scale=cfg.crop_scale) if cfg.augment and not cfg.image else None
    shards = not cfg.image and is_shard_spec(cfg.data[0])
    if cfg.image:
        train_paths = val_paths = [Path(cfg.image)]
    elif shards:
        train_paths, val_paths = [], find_images(cfg.val_data)
    else:
        paths = _outside(find_images(cfg.data), cfg.out_dir)
        require_photos(paths, cfg.data)
        if cfg.val_data:
            train_paths, val_paths = paths, _outside(find_images(cfg.val_data), cfg.out_dir)
        else:
            root = Path(cfg.data[0]) if len(cfg.data) == 1 and Path(cfg.data[0]).is_dir() else None
            train_paths, val_paths = split_train_val(paths, cfg.val_fraction, root=root)
        if not val_paths and not cfg.val_data:
            val_paths = train_paths[: max(1, cfg.samples)]
    if cfg.val_images:
        val_paths = val_paths[: cfg.val_images]
    if cfg.image:
        require_photos(train_paths, [cfg.image])
    if cfg.val_data:
        require_photos(val_paths, cfg.val_data, role="validation")
    if not shards:
        train_set = PhotoDataset(train_paths, cfg.size, augment=augment)
    else:
        train_set = ShardDataset(resolve_shards(cfg.data), cfg.size, augment=augment, rank=dist.rank,
                                 world_size=dist.world_size, seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer,
                                 repeat=True)
    return train_set, PhotoDataset(val_paths, cfg.size)


def setup(cfg: TrainConfig, *, resume: bool = False) -> Run:
    """Build data, model and optimizer (joining the process group under ``torchrun``); on ``resume``
    restore them from ``out_dir/last.pt``."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist, device = distributed.init(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick the fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
    out_dir = Path(cfg.out_dir)
    last = out_dir / "last.pt"
    if not resume and distributed.broadcast_object(dist.is_main and last.is_file()):
        raise ValueError(f"{out_dir} holds a run already ({last}): --resume continues it; another --out starts a new "
                         "one (this one would overwrite its checkpoints)")
    torch.manual_seed(cfg.seed)
    train_set, val_set = build_datasets(cfg, dist)
    if dist.is_main and not cfg.image and not cfg.val_data and set(val_set.paths) <= set(train_set.paths):
        print(f"note: the {len(val_set)} validation photo(s) are training photos ({cfg.val_fraction:.0%} of "
              f"{len(train_set)} held out none); give --val-data to validate on others", file=sys.stderr)

    model = create_model(cfg.model, **cfg.model_kwargs)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    encoder = getattr(model, "encoder", None) if cfg.model_kwargs.get("backbone_weights") else None
    enc_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    params = [
        {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in enc_ids], "lr_scale": 1.0},
        {"params": [p for p in model.parameters() if p.requires_grad and id(p) in enc_ids],
         "lr_scale": cfg.encoder_lr_scale},
    ]
    params = [g for g in params if g["params"]]
    if cfg.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    run = Run(cfg, model, optimizer, train_set, val_set, device, out_dir, dist=dist, amp=amp_dtype(cfg.amp, device))
    if set_decoder_precision(model, cfg.amp, device) is not None:
        slow = "" if cpu_has_amx() else " (this CPU has no AMX: expect it slower than float32)"
        _print(run, f"decoder in bfloat16 on the CPU (amp: {cfg.amp}){slow}")
    if cfg.semantic_weight > 0:
        if getattr(model, "output", "") != "bins":
            raise ValueError(f"semantic_weight needs a classification (bins) model, not '{cfg.model}'")
        run.semantic = SemanticLoss(cfg.semantic_net, device=device, prior_correction=cfg.semantic_prior_correction,
                                    temperature=cfg.semantic_temperature, channels_last=cfg.channels_last,
                                    feature_weight=cfg.semantic_feature_weight)

    ckpt = None
    if resume:
        if dist.is_main and last.is_file():
            ckpt = load_checkpoint(last, "cpu" if dist.enabled else device)
        ckpt = distributed.broadcast_object(ckpt)  # other nodes need not see the run folder
    if ckpt is not None:
        _restore(model, optimizer, ckpt, last)
        for k in ("epoch", "step", "best", "bad_epochs", "plateau_bad", "plateau_scale", "history"):
            setattr(run, k, ckpt[k])
        run.epoch_step, run.epoch_loss = ckpt.get("epoch_step", 0), tuple(ckpt.get("epoch_loss", (0.0, 0)))
        if run.scaler.is_enabled() and "scaler" in ckpt:
            run.scaler.load_state_dict(ckpt["scaler"])
        _print(run, f"resumed from {last} at epoch {run.epoch}, step {run.step}"
               + (f" (batch {run.epoch_step} of epoch {run.epoch + 1})" if run.epoch_step else ""))
    elif resume:
        _print(run, f"no checkpoint at {last}; starting fresh")
    if ckpt is not None:
        run.decoding = ckpt.get("decoding") or {}
    if ckpt is None and cfg.init_weights:
        kept, run.decoding = warm_start(model, cfg.init_weights, exclude=cfg.init_exclude)
        own = f"; {kept} tensors under {', '.join(cfg.init_exclude)} kept from the model's own init" if kept else ""
        _print(run, f"warm start from {cfg.init_weights} (fresh optimizer, {cfg.warmup_steps} warmup steps{own})")
        if cfg.rebalance_mix is not None and getattr(model, "output", "") == "bins":
            estimate_prior(model, train_set, cfg, dist=dist, warm=True)
    elif ckpt is None and getattr(model, "output", "") == "bins":
        estimate_prior(model, train_set, cfg, dist=dist)
    run.wrapped = distributed.wrap(model, dist, device)  # DDP starts from rank 0's weights and buffers
    return run


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, ckpt: dict, path: Path) -> None:
    """Load a run's checkpoint into the model and optimizer this run built; ValueError naming ``path`` when the
    run was of another model, other options or another optimizer (a resume given another recipe)."""
    from colorize.checkpoint import model_spec

    theirs, ours = (ckpt["model"], ckpt.get("model_kwargs", {})), model_spec(model)
    hint = f"resume with the run's own recipe: --recipe {path.parent / 'config.yaml'}"
    if theirs != ours:
        raise ValueError(f"{path}: a run of {theirs[0]} {theirs[1]}, not of {ours[0]} {ours[1]}; {hint}")
    kind = type(optimizer).__name__.lower()  # Adam, AdamW, RMSprop: one state layout each
    their_kind = ckpt.get("config", {}).get("optimizer", kind)
    if their_kind != kind:
        raise ValueError(f"{path}: a run with the {their_kind} optimizer, not {kind}; {hint}")
    try:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: does not fit this run ({str(e).splitlines()[0]}); {hint}") from None


def load_raw_model(path: str | Path) -> nn.Module:
    """A shipped model (by name: its checked file, wherever the package is installed) or a weight or checkpoint
    file's model as training left it: a prior correction folded into its head for inference (``colorize export
    --prior-correction``) is taken back out."""
    from colorize.models.base import correct_prior
    from colorize.shipped import resolve_model

    if Path(path).suffix.lower() == ".onnx":
        raise ValueError(f"{path}: an ONNX export holds no trainable weights; give its .safetensors or .pt file")
    model = resolve_model(str(path))
    model.tuned_decoding = decoding_of(model, unfolded=True)  # what the file decodes with: a warm start's run keeps it
    strength = getattr(model, "prior_correction", 0.0)
    if strength:
        correct_prior(model, -strength)
    return model


def warm_start(model: nn.Module, path: str | Path, *, exclude: list[str] | tuple[str, ...] = ()
               ) -> tuple[int, dict[str, str]]:
    """Load a shipped or exported weight file into ``model`` to continue training it: the architecture and
    options must match; its class-rebalancing weights come with it (no new prior), and a prior correction
    folded into its head for inference (``colorize export --prior-correction``) is taken back out. Tensors
    whose names start with a prefix in ``exclude`` keep ``model``'s own values (and may be missing from the file: a
    module the new model adds, e.g. ``imagenet_context.``). Returns how many did, and the decoding the file was tuned
    for, which the run's files record as theirs (:func:`colorize.checkpoint.decoding_of`, unfolded)."""
    src = load_raw_model(path)
    own = model.state_dict()
    excluded = tuple(exclude)  # str.startswith(()) is False: no prefix excludes nothing

    def shared(keys) -> set[str]:
        return {k for k in keys if not k.startswith(excluded)}

    if type(src) is not type(model) or shared(src.state_dict()) != shared(own):
        raise ValueError(f"{path}: a {getattr(src, 'model_name', type(src).__name__)} with other options; "
                         f"it cannot start a {getattr(model, 'model_name', type(model).__name__)} run")
    state = {k: v for k, v in src.state_dict().items() if k in own}
    kept = [k for k in own if k.startswith(excluded)]
    if excluded and not kept:
        raise ValueError(f"init_exclude {list(exclude)} matches no tensor of {path} or of the new model")
    state.update({k: own[k] for k in kept})
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # same names, other shapes
        raise ValueError(f"{path}: its tensors do not fit this run's model ({str(e).splitlines()[0]})") from None
    return len(kept), src.tuned_decoding


def _print(run: Run, *args) -> None:
    if run.dist.is_main:
        print(*args, flush=True)


@torch.no_grad()
def count_ab_bins(model: nn.Module, dataset: PhotoDataset | ShardDataset, cfg: TrainConfig, *,
                  dist: Dist = Dist()) -> tuple[torch.Tensor, int]:
    """This rank's share of the ab-bin counts over (up to ``prior_images``) training photos: a seeded
    subset of a photo set, split across ranks, or the first photos of a stream.

    Returns:
        (Q,) float64 counts and the number of photos counted.
    """
    if isinstance(dataset, ShardDataset):
        plain, quota = dataset.plain(), cfg.prior_images // dist.world_size
    else:
        g = torch.Generator().manual_seed(cfg.seed)
        n = min(cfg.prior_images, len(dataset.paths))
        idx = torch.randperm(len(dataset.paths), generator=g)[:n].tolist()[dist.rank:: dist.world_size]
        plain, quota = PhotoDataset([dataset.paths[i] for i in idx], cfg.size), len(idx)
    loader = torch.utils.data.DataLoader(plain, batch_size=64, num_workers=cfg.num_workers, collate_fn=collate,
                                         worker_init_fn=_quiet_worker)
    counts = torch.zeros(model.bins.num_bins, dtype=torch.float64)
    seen = 0
    for images, _ in _started(loader):
        _check_stop()
        images = images[: quota - seen]
        _, ab = rgb_to_model_lab(images.float().div(255))
        counts += model.bins.encode(ab.float()).sum(dim=(0, 2, 3)).double().cpu()
        seen += len(images)
        if seen >= quota:
            break
    return counts, seen


def estimate_prior(model: nn.Module, dataset: PhotoDataset | ShardDataset, cfg: TrainConfig, *,
                   dist: Dist = Dist(), warm: bool = False) -> None:
    """Empirical ab-bin frequencies of (up to ``prior_images``) training photos -> rebalancing weights (mixed
    with uniform by ``cfg.rebalance_mix``). Every rank counts its share and the counts are summed, so all ranks
    get the same weights. ``warm``: the model has learnt other weights; its head moves to the new ones."""
    device = model.bins.rebalance.device
    counts, seen = count_ab_bins(model, dataset, cfg, dist=dist)
    *counts_list, seen = distributed.all_sum([*counts.tolist(), seen], device)
    counts = torch.tensor(counts_list, dtype=torch.float64)
    mix = REBALANCE_MIX if cfg.rebalance_mix is None else cfg.rebalance_mix
    new = model.bins.prior_weights(counts.to(device), mix=mix)
    if warm:
        rebalance_head(model, new)
    else:
        model.bins.rebalance.copy_(new)
    if dist.is_main:
        print(f"ab prior from {int(seen)} photos: {int((counts > 0).sum())}/{model.bins.num_bins} bins used; "
              f"rebalancing mix {mix:g} (weights {new.min():.2f}-{new.max():.2f})")


_stop_requested = False
_stop_deferred = 0


def request_stop(signum: int | None = None, frame=None) -> None:
    """A signal handler (``colorize train`` installs it for SIGTERM and SIGINT): stop the run as Ctrl-C does,
    by raising KeyboardInterrupt; while loader workers start (:func:`_holding_stop`) it only sets a flag,
    raised once they are up."""
    global _stop_requested
    _stop_requested = True
    if not _stop_deferred:
        raise KeyboardInterrupt


def _check_stop() -> None:
    if _stop_requested:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _holding_stop(*, forking: bool = False):
    """Around a training step, a checkpoint's save, and starting a loader: in here a stop only sets the flag;
    it is raised on the way out. Python runs hooks around a fork and only prints and drops an exception raised
    in them, so a stop landing there would be lost (the run would go on) or print a traceback.

    ``forking`` (``iter(loader)`` forks its worker processes): the stop signals are also blocked until the
    workers are up. A new worker inherits the block and ignores them from its start (:func:`_quiet_worker`); a
    shutdown that signals the whole process group between the fork and that would kill it, and the loader's
    own check would then end the run with a traceback ("DataLoader worker is killed by signal")."""
    global _stop_deferred
    block = forking and hasattr(signal, "pthread_sigmask")  # POSIX
    _stop_deferred += 1
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if block else None
    try:
        yield
    finally:
        if block:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a stop that came meanwhile: delivered here, deferred
        _stop_deferred -= 1
    _check_stop()


def _started(loader: Iterable) -> Iterable:
    with _holding_stop(forking=True):
        return iter(loader)


def _quiet_worker(worker_id: int = 0) -> None:
    """In a data-loading worker: leave stopping to the main process. A shutdown or ``pkill`` signals the
    whole process group; the main process stops the run cleanly and shuts its workers down (a worker whose
    parent dies exits by itself), so a worker neither dies mid-batch nor prints a traceback."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _seed_worker(rank: int, worker_id: int) -> None:
    """Decorrelate augmentation across ranks (workers are seeded alike from the shared loader generator)."""
    _quiet_worker(worker_id)
    if rank:
        torch.manual_seed((torch.initial_seed() + rank * 1_000_003) % 2**63)


def _loader(run: Run, epoch: int) -> tuple[Iterable, int]:
    """This rank's batches of the epoch and their number."""
    cfg, dist = run.cfg, run.dist
    g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    common = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers, collate_fn=collate, generator=g,
                  pin_memory=run.device.type == "cuda", persistent_workers=False,
                  worker_init_fn=functools.partial(_seed_worker, dist.rank))
    if isinstance(run.train_set, ShardDataset):
        run.train_set.set_epoch(epoch)
        steps = max(1, cfg.epoch_images // dist.world_size // cfg.batch_size)
        return itertools.islice(torch.utils.data.DataLoader(run.train_set, **common), steps), steps
    n = cfg.epoch_images or len(run.train_set)
    weights = None
    if cfg.source_balance != 1.0 and not cfg.image:
        weights = source_weights(run.train_set.paths, cfg.data, cfg.source_balance)
    sampler = EpochSampler(len(run.train_set), n, g, rank=dist.rank, world_size=dist.world_size, weights=weights)
    loader = torch.utils.data.DataLoader(run.train_set, sampler=sampler, drop_last=len(sampler) >= cfg.batch_size,
                                         **common)
    return loader, len(loader)


def source_weights(paths: list[Path], data: list[str], balance: float) -> torch.Tensor:
    """Per-photo sampling weights that draw each source (subfolder of a data root) in proportion to
    its size ** ``balance``: 1 leaves photos equal, 0.5 gives large sources the square root of their share."""
    roots = [Path(d) for d in data if Path(d).is_dir()]
    sources = [source_name(p, roots) for p in paths]
    counts: dict[str, int] = {}
    for s in sources:
        counts[s] = counts.get(s, 0) + 1
    return torch.tensor([counts[s] ** balance / counts[s] for s in sources], dtype=torch.float64)


def _autocast(run: Run):
    if run.amp is None:
        return contextlib.nullcontext()
    return torch.autocast(run.device.type, dtype=run.amp)


def to_lab(images: torch.Tensor, run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (B, 3, S, S) -> normalized L and ab on the run's device (color math on the device)."""
    x = images.to(run.device, non_blocking=True).float().div_(255)
    if run.cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return rgb_to_model_lab(x)


def aged_input(l_norm: torch.Tensor, share: float, seed: int) -> torch.Tensor:
    """The network's input: ``l_norm`` with about ``share`` of the photos aged (:func:`colorize.aging.age_lightness`),
    drawn from ``seed`` alone, so a resumed run ages each batch as the uninterrupted run did."""
    if share <= 0:
        return l_norm
    gen = torch.Generator().manual_seed(seed)
    chosen = (torch.rand(l_norm.shape[0], generator=gen) < share).to(l_norm.device).view(-1, 1, 1, 1)
    aged = normalize_l(age_lightness(denormalize_l(l_norm), generator=gen)).to(l_norm.dtype)
    return torch.where(chosen, aged, l_norm)


def crop_size(cfg: TrainConfig, epoch: int) -> int:
    """The training crop of ``epoch`` (0-based): progressive resizing."""
    return cfg.early_size if cfg.early_epochs and epoch < cfg.early_epochs else cfg.size


def train_epoch(run: Run, bad: BadFileLog) -> float:
    """One epoch of optimizer steps; returns the mean training loss over all ranks' photos."""
    from tqdm import tqdm

    cfg, model = run.cfg, run.model
    run.train_set.set_size(crop_size(cfg, run.epoch))
    torch.manual_seed(cfg.seed * 1000 + run.epoch + run.dist.rank * 1_000_003)  # augmentation in this process
    run.wrapped.train()
    with _holding_stop(forking=True):
        loader, steps = _loader(run, run.epoch)  # tar shards: an islice, which has started its loader
        batches = iter(loader)
    skip = run.epoch_step  # batches trained on before a mid-epoch checkpoint: replayed, not trained
    (total, count), t0 = (run.epoch_loss if skip else (0.0, 0)), time.perf_counter()
    saved, sem_total = time.monotonic(), 0.0
    show = os.environ.get("COLORIZE_NO_PROGRESS") != "1" and run.dist.is_main
    bar = tqdm(batches, total=steps, desc=f"epoch {run.epoch + 1}/{cfg.epochs}", unit="batch", dynamic_ncols=True,
               disable=not show or not sys.stderr.isatty())  # logs and pipes: plain lines below instead
    plain_every, said = (PROGRESS_SECONDS if show and not sys.stderr.isatty() else math.inf), time.monotonic()
    for i, (images, errors) in enumerate(bar):
        _check_stop()
        bad.add(errors)
        if i < skip:  # loading them keeps the data order and every augmentation draw as they were
            continue
        with _holding_stop():  # a stop (Ctrl-C, kill) lands between steps: what it saves is a consistent state
            for group in run.optimizer.param_groups:
                group["lr"] = get_lr(run.step, cfg, run.plateau_scale, steps) * group["lr_scale"]
            l_norm, ab_norm = to_lab(images, run)
            l_in = aged_input(l_norm, cfg.aging, cfg.seed * 1_000_003 + run.step * 7919 + run.dist.rank)
            with _autocast(run):
                out = run.wrapped(l_in)
            loss = color_loss(model, out.float(), l_norm, ab_norm, kind=cfg.loss, reg_weight=cfg.reg_weight)
            if run.semantic is not None:
                semantic = run.semantic(model, out.float(), l_norm, ab_norm)
                sem_total += semantic.item() * len(images)
                loss = loss + cfg.semantic_weight * semantic
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.step += 1
            # summed over all ranks at each step (one more tiny all-reduce beside DDP's), so that epoch_loss in a
            # mid-epoch checkpoint, which rank 0 alone writes, is the whole job's and a resume reports the same loss
            step_total, step_count = distributed.all_sum([loss.item() * len(images), len(images)], run.device)
            total, count = total + step_total, count + int(step_count)
            bar.set_postfix(loss=f"{total / count:.4f}", img_s=f"{count / (time.perf_counter() - t0):.1f}")
            run.epoch_step, run.epoch_loss = i + 1, (total, count)
        if time.monotonic() - said >= plain_every:
            semantic = f" (semantic {sem_total / count:.4f})" if run.semantic is not None else ""
            print(f"epoch {run.epoch + 1}/{cfg.epochs}: {i + 1}/{steps} batches, loss {total / count:.4f}{semantic}, "
                  f"{count / (time.perf_counter() - t0):.1f} img/s", file=sys.stderr, flush=True)
            said = time.monotonic()
        if run.dist.is_main and cfg.checkpoint_minutes and time.monotonic() - saved >= 60 * cfg.checkpoint_minutes:
            _checkpoint(run, run.out_dir / "last.pt")  # a kill loses minutes, not an epoch
            saved = time.monotonic()
    return total / max(count, 1)  # epoch_step stays at the end until fit moves on


@torch.no_grad()
def validate(run: Run, bad: BadFileLog | None = None) -> dict[str, float]:
    """Validation loss and PSNR (RGB, decoded at the default temperature) over the held-out photos,
    each rank scoring every ``world_size``-th photo; unreadable ones are warned about in ``bad``."""
    cfg, model, dist = run.cfg, run.model, run.dist
    model.eval()
    part = run.val_set
    if dist.enabled:
        part = torch.utils.data.Subset(run.val_set, range(dist.rank, len(run.val_set), dist.world_size))
    loader = torch.utils.data.DataLoader(part, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                                         collate_fn=collate, worker_init_fn=_quiet_worker)
    loss_sum, psnr_sum, n = 0.0, 0.0, 0
    for images, errors in _started(loader):
        _check_stop()
        if bad is not None:
            bad.add(errors)
        l_norm, ab_norm = to_lab(images, run)
        with _autocast(run):
            out = model(l_norm).float()
        ab = model.ab_from_output(out, l_norm.shape[-2:])  # the network runs once per batch
        loss = color_loss(model, out, l_norm, ab_norm, kind=cfg.loss, reg_weight=cfg.reg_weight)
        loss_sum += loss.item() * len(images)
        pred = model_lab_to_rgb(l_norm, ab)
        mse = (pred - model_lab_to_rgb(l_norm, ab_norm)).pow(2).flatten(1).mean(1).clamp(min=1e-10)
        psnr_sum += (10 * torch.log10(1 / mse)).sum().item()
        n += len(images)
    loss_sum, psnr_sum, n = distributed.all_sum([loss_sum, psnr_sum, n], run.device)
    return {"val_loss": loss_sum / n, "val_psnr": psnr_sum / n}


@torch.no_grad()
def save_samples(run: Run, path: Path) -> None:
    """A PNG grid, one row per validation photo: gray | predicted | truth."""
    from PIL import Image

    model = run.model
    model.eval()
    k = min(run.cfg.samples, len(run.val_set))
    if k == 0:
        return
    images = torch.stack([run.val_set[i][0] for i in range(k)])
    l_norm, ab_norm = to_lab(images, run)
    gray = model_lab_to_rgb(l_norm, torch.zeros_like(ab_norm))
    pred = model_lab_to_rgb(l_norm, model.predict_ab(l_norm))
    truth = model_lab_to_rgb(l_norm, ab_norm)
    rows = torch.cat([gray, pred, truth], dim=3)  # (k, 3, S, 3S)
    grid = torch.cat(list(rows), dim=1)  # (3, kS, 3S)
    arr = (grid.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).byte().cpu().numpy()
    atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))


def _checkpoint(run: Run, path: Path) -> None:
    scaler = {"scaler": run.scaler.state_dict()} if run.scaler.is_enabled() else {}
    save_checkpoint(path, run.model, optimizer=run.optimizer.state_dict(), config=asdict(run.cfg),
                    decoding=run.decoding, epoch=run.epoch, step=run.step, best=run.best, bad_epochs=run.bad_epochs,
                    plateau_bad=run.plateau_bad, plateau_scale=run.plateau_scale, history=run.history,
                    epoch_step=run.epoch_step, epoch_loss=list(run.epoch_loss), **scaler)


def fit(run: Run) -> dict:
    """Train until ``epochs``, early stopping or ``max_minutes``; returns the last metrics (the same
    on every rank; rank 0 alone writes the run folder)."""
    cfg, main = run.cfg, run.dist.is_main
    writer = None
    if main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        for folder in (run.out_dir, run.out_dir / "samples"):
            clean_stale_temporaries(folder)  # left by a killed run
        cfg.to_yaml(run.out_dir / "config.yaml")
        writer = _tensorboard(run.out_dir / "tb")
    bad = BadFileLog()
    start = time.perf_counter()
    metrics: dict = run.history[-1] if run.history else {}
    while run.epoch < cfg.epochs:
        t0 = time.perf_counter()
        try:
            train_loss = train_epoch(run, bad)
            val = validate(run, bad)
        except KeyboardInterrupt:  # Ctrl-C or kill: keep the batches trained so far (--resume goes on from them)
            if main and _stop_requested:  # request_stop's: between steps (a bare KeyboardInterrupt may be mid-step)
                with _holding_stop():  # a second Ctrl-C does not cut the save short
                    _checkpoint(run, run.out_dir / "last.pt")
            raise
        metrics = {"epoch": run.epoch + 1, "step": run.step, "train_loss": train_loss, **val,
                   "lr": run.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        improved = metrics["val_loss"] < run.best - 1e-6
        if improved:
            run.best, run.bad_epochs, run.plateau_bad = metrics["val_loss"], 0, 0
        else:
            run.bad_epochs += 1
            run.plateau_bad += 1
            if run.plateau_bad >= cfg.plateau_patience:  # reduce LR on plateau
                run.plateau_scale = max(cfg.min_lr_scale, run.plateau_scale * cfg.plateau_factor)
                run.plateau_bad = 0
        run.epoch += 1
        run.epoch_step, run.epoch_loss = 0, (0.0, 0)
        run.history.append(metrics)
        _print(run, " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()),
               "*" if improved else "")
        if main:
            if writer is not None:
                for k, v in metrics.items():
                    writer.add_scalar(k, v, run.step)
                writer.flush()
            save_samples(run, run.out_dir / "samples" / f"epoch{run.epoch:03d}.png")
            # every weight file says how far into the run it is (the learning curve's x axis)
            meta = {"epoch": str(run.epoch), "photos_seen": str(run.epoch * steps_photos(run)), **run.decoding}
            if improved:
                _checkpoint(run, run.out_dir / "best.pt")
                save_weights(run.out_dir / "best.safetensors", run.model,
                             metadata={**meta, "val_loss": f"{run.best:.6f}"})
            _checkpoint(run, run.out_dir / "last.pt")
            if cfg.snapshot_every and (run.epoch % cfg.snapshot_every == 0 or run.epoch == cfg.epochs):
                save_weights(run.out_dir / f"epoch{run.epoch:03d}.safetensors", run.model, metadata=meta)
        if cfg.early_stop_patience and run.bad_epochs >= cfg.early_stop_patience:
            _print(run, f"early stop: no improvement for {run.bad_epochs} epochs")
            break
        timed_out = bool(cfg.max_minutes) and (time.perf_counter() - start) / 60 >= cfg.max_minutes
        if cfg.max_minutes and distributed.any_rank(timed_out, run.device):
            _print(run, f"time limit of {cfg.max_minutes} min reached; resume with --resume")
            break
    skipped = len(set().union(*distributed.all_gather_object(bad.seen)))  # a file two ranks drew counts once
    if skipped:
        _print(run, f"{skipped} unreadable image(s) skipped")
    if writer is not None:
        writer.close()
    distributed.barrier()  # the checkpoints are complete when fit returns on any rank
    return metrics


def steps_photos(run: Run) -> int:
    """Photos per epoch, all processes together."""
    cfg = run.cfg
    return (cfg.epoch_images or len(run.train_set)) // (cfg.batch_size * run.dist.world_size) \
        * cfg.batch_size * run.dist.world_size


def _tensorboard(path: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("tensorboard is not installed; no TensorBoard logs (pip install 'colorize[train]')")
        return None
    return SummaryWriter(str(path))


def train(cfg: TrainConfig, *, resume: bool = False) -> dict:
    """setup + fit (then, under ``torchrun``, leave the process group)."""
    global _stop_requested
    _stop_requested = False
    run = setup(cfg, resume=resume)
    metrics = fit(run)
    if run.dist.enabled:  # after a success only: a rank that failed must not wait on its peers
        del run  # DDP holds the process group: free it first, so no Gloo/NCCL thread outlives the interpreter
        gc.collect()
        distributed.cleanup()
    return metrics
