"""The archive job on Ray: the same files, outputs and record as the local engine, run as a Ray Data
pipeline on one machine or a cluster.

The driver lists the inputs and holds the record (as ``colorize IN -o OUT`` does); Ray Data streams
the (input, output) pairs in blocks of a few photos through an actor pool. Each actor loads the
model once, reads and decodes its photos, colorizes them with :class:`ColorizeBatch` and writes each
output atomically (temp file, then rename), returning one small row per photo: its paths and an
error message or none. The driver records a photo as done only when its row comes back, so the
record never holds a file whose output is not in place.

Faults: an actor whose process dies is restarted and its block retried (at most
``MAX_TASK_RETRIES`` times); a block that still fails is dropped and its photos are reported as
failed, so an input that kills its worker is reported, not retried forever. Bad files (corrupt,
truncated, not an image) never fail a block: they come back as error rows naming the file and the
reason, like the local engine's.

``ray`` is imported only inside functions: this module (and :class:`ColorizeBatch`) imports without it.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

INSTALL_HINT = "the ray engine needs Ray: pip install 'colorize[ray]' (or pip install 'ray[data]==2.60.0')"
MAX_TASK_RETRIES = 3  # restarts of a dead actor's block before its photos are reported as failed
ROWS_PER_BLOCK = 8  # photos per block: a block is the unit of retry, so a lost worker redoes few


class RayEngineError(RuntimeError):
    """The Ray job could not run (no Ray, no cluster, the pipeline failed); ``str(e)`` says why."""


def require_ray():
    """Import Ray, or raise :class:`RayEngineError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the ``data`` extra: pyarrow, pandas)
    except ImportError as e:
        raise RayEngineError(f"{INSTALL_HINT} ({e})") from None
    return ray


class ColorizeBatch:
    """Colorize a batch of photos in ``ray.data.Dataset.map_batches``; the model is loaded once per actor.

    Reads column ``column`` (uint8 RGB ``(H, W, 3)`` or gray ``(H, W)`` images, e.g. from
    ``ray.data.read_images(..., mode="RGB")``) and replaces it with the colorized photos, uint8
    ``(H, W, 3)`` of the same size. Other columns pass through.

    >>> ds = ray.data.read_images("scans/", mode="RGB", include_paths=True)
    >>> ds = ds.map_batches(ColorizeBatch, fn_constructor_kwargs={"size": 256}, concurrency=2, batch_size=8)

    See ``examples/ray_pipeline.py``.
    """

    def __init__(self, model: str | Path | None = None, *, size: int | None = None, temperature: float | None = None,
                 saturation: float = 1.0, device: str = "cpu", threads: int | None = 1, column: str = "image"):
        """
        Args:
            model: shipped model name or weight file (None: the default), as for :class:`colorize.Colorizer`.
            size, temperature, saturation, device: as for :class:`colorize.Colorizer`.
            threads: torch threads per actor (match the actor's ``num_cpus``).
            column: the batch column holding the images.
        """
        from colorize.pipeline import Colorizer

        self.colorizer = Colorizer(model, size=size, temperature=temperature, saturation=saturation, device=device,
                                   threads=threads)
        self.column = column

    def colorize(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """uint8 (H, W, 3) or (H, W) arrays -> colorized uint8 (H, W, 3) arrays, one by one (any sizes)."""
        return [self.colorizer(np.asarray(img)) for img in images]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(batch)
        out[self.column] = _column(self.colorize(batch[self.column]))
        return out


def _column(arrays: list[np.ndarray]) -> np.ndarray:
    """A batch column: (B, H, W, C) when the shapes agree, else an object array of (H, W, C) arrays."""
    if arrays and all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays)
    col = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):  # one by one: numpy would try to broadcast a list of arrays
        col[i] = a
    return col


class _ArchiveWorker(ColorizeBatch):
    """The archive job's actor: read + decode, colorize, write atomically; returns small rows only."""

    def __init__(self, *, quality: int = 95, **kwargs):
        super().__init__(**kwargs)
        self.quality = quality

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image, ImageOps

        from colorize.io import ImageError, load_image, save_image, to_rgb
        from colorize.tone import classify

        errors, tones, described = [], [], []
        for src, dst in zip(batch["src"], batch["dst"]):
            src, dst = str(src), str(dst)
            tones.append("")
            described.append("")
            try:
                # exactly what Colorizer.colorize_file does, so the outputs are the local engine's bytes
                img = load_image(src)
                tone = classify(img)  # gray, toned or color: reported as the local engine does
                rgb = to_rgb(ImageOps.exif_transpose(img))
                out = self.colorize([np.array(rgb)])[0]
            except ImageError as e:
                errors.append(str(e))
                continue
            except Exception as e:  # a decoder bug: report the file, never fail (and retry) the block
                errors.append(f"{src}: cannot colorize ({type(e).__name__}: {e})")
                continue
            try:
                save_image(Image.fromarray(out), dst, quality=self.quality)
            except (OSError, ValueError) as e:  # output side: disk full, permissions
                errors.append(f"{src}: cannot write {dst} ({e})")
                continue
            errors.append("")
            tones[-1], described[-1] = tone.kind, tone.describe()
        return {"src": batch["src"], "error": np.array(errors, dtype=object),
                "tone": np.array(tones, dtype=object), "tone_text": np.array(described, dtype=object)}


@dataclass
class RayResult:
    """What :func:`colorize_pairs` did."""

    done: int = 0
    failed: list[str] = field(default_factory=list)  # "path: reason", as the local engine reports them
    kinds: dict[str, int] = field(default_factory=dict)  # inputs done, by tone: gray, toned, color
    in_color: list[str] = field(default_factory=list)  # "path: how it is in color", for inputs already in color


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``), or start a
    local Ray on loopback with ``num_cpus`` CPUs. Reuses a connection this process already has.

    Returns:
        whether this call connected (and so the caller should :func:`ray.shutdown` when done).
    Raises:
        RayEngineError: no Ray installed, or the cluster cannot be reached.
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline machines: no usage report
    kwargs = dict(logging_level=logging.ERROR, log_to_driver=False)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:  # a private single-machine Ray: nothing listens beyond loopback
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     _node_ip_address="127.0.0.1", **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RayEngineError(f"cannot start or reach {where} ({e})") from None
    return True


def colorize_pairs(pairs: Sequence[tuple[Path, Path]], *, model: str | None = None, size: int | None = None,
                   temperature: float | None = None, saturation: float = 1.0, device: str = "cpu",
                   threads: int | None = None, quality: int = 95, address: str | None = None,
                   workers: int | None = None, on_done: Callable[[Path], None] | None = None,
                   progress: bool = True) -> RayResult:
    """Colorize every (input, output) pair on Ray; the outputs are :meth:`Colorizer.colorize_file`'s.

    Args:
        pairs: inputs and their outputs; every Ray node must see them under these paths (shared storage).
        model, size, temperature, saturation, device: as for :class:`colorize.Colorizer`.
        threads: torch threads (and Ray CPUs) per actor; default 1.
        address: a running cluster to join; None starts a local Ray (and stops it at the end).
        workers: colorizing actors; default: one per ``threads`` CPUs of the cluster.
        on_done: called in this process with each input whose output is in place (e.g. to record it).
        progress: show one progress bar.
    Raises:
        RayEngineError: Ray is missing, the cluster is unreachable, or the pipeline failed as a whole.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    threads = max(1, threads or 1)
    result = RayResult()
    if not pairs:
        return result
    _check_model(model)  # here, not as an actor's traceback
    started = connect(address, num_cpus=None if address else (workers or os.cpu_count() or 1) * threads)
    ray = require_ray()
    try:
        import ray.data
        from tqdm import tqdm

        logging.getLogger("ray.data").setLevel(logging.ERROR)  # no "execution finished" lines: ours is the report
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours is the one bar
        ctx.print_on_execution_start = False
        ctx.max_errored_blocks = -1  # a block whose worker died MAX_TASK_RETRIES+1 times: report, go on
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
        gpu = str(device).startswith("cuda")
        # absolute paths: Ray workers do not share the driver's working directory
        by_src = {os.path.abspath(s): Path(s) for s, _ in pairs}
        rows = [{"src": os.path.abspath(s), "dst": os.path.abspath(d)} for s, d in pairs]
        per_block = max(1, min(ROWS_PER_BLOCK, math.ceil(len(rows) / (4 * workers))))
        blocks = math.ceil(len(rows) / per_block)
        workers = min(workers, blocks)
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        with warnings.catch_warnings():  # max_task_retries has no named parameter in Ray 2.60
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*ray_remote_args")
            ds = ds.map_batches(
                _ArchiveWorker,
                fn_constructor_kwargs=dict(model=None if model is None else str(model), size=size,
                                           temperature=temperature, saturation=saturation,
                                           device="cuda" if gpu else device, threads=threads, quality=quality),
                batch_size=per_block, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=threads, num_gpus=1 if gpu else 0, max_task_retries=MAX_TASK_RETRIES)
        seen: set[str] = set()
        with tqdm(total=len(rows), unit="img", disable=not progress, dynamic_ncols=True) as bar:
            for row in ds.iter_rows():
                src = str(row["src"])
                seen.add(src)
                if row["error"]:
                    result.failed.append(str(row["error"]))
                else:
                    result.done += 1
                    kind = str(row.get("tone") or "")
                    if kind:
                        result.kinds[kind] = result.kinds.get(kind, 0) + 1
                    if kind == "color":
                        result.in_color.append(f"{by_src[src]}: {row.get('tone_text')}")
                    if on_done is not None:
                        on_done(by_src[src])
                bar.update(1)
        lost = [s for s in by_src if s not in seen]
        result.failed += [f"{by_src[s]}: its Ray worker died {MAX_TASK_RETRIES + 1} times on the block holding it "
                          "(a rerun with --record retries only such files)" for s in lost]
    except RayEngineError:
        raise
    except Exception as e:  # the pipeline as a whole (e.g. the model cannot load in the actors)
        raise RayEngineError(f"the Ray job failed: {_first_line(e)}") from None
    finally:
        if started:
            ray.shutdown()
    return result


def _check_model(model: str | Path | None) -> None:
    """Raise ValueError unless ``model`` is a shipped name or an existing file (the actors load it)."""
    from colorize.hub import SHIPPED, weight_file

    if model is None or str(model) in SHIPPED or weight_file(model).is_file():
        return
    raise ValueError(f"no model '{model}': choose from: {', '.join(SHIPPED)}, or give a .safetensors / .pt file")


def _first_line(e: BaseException) -> str:
    """A Ray error's own message without the remote traceback it carries."""
    cause = getattr(e, "cause", None) or e
    lines = [ln for ln in str(cause).splitlines() if ln.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"
