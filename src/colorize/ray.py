"""The archive job on Ray: the same inputs, outputs and record as the local engine, run as a Ray Data
pipeline on one machine or a cluster.

The driver lists the inputs and holds the record (as ``colorize IN -o OUT`` does: photo files and
photos inside tar shards alike, :func:`colorize.batch.plan_outputs`); Ray Data streams one small row
per photo (where to read it, where to write it, its hints) in blocks of a few photos through an actor
pool. Each actor loads the model once, checked as the local engine checks it (the driver never loads it: a
model that cannot be used stops the job with the local engine's message, before any photo is read), and runs
the local engine's step, :func:`colorize.batch.colorize_one`, on its photos: read and decode (a shard
member by seeking to its bytes), colorize, write atomically (temp file, then rename); it returns one small
row per photo: its outcome. The driver records a photo as done only when its row comes back, so the
record never holds a file whose output is not in place.

Faults: an actor whose process dies is restarted and its block retried (Ray Data's default). A
ledger actor counts, per photo, the workers that died while colorizing it; at ``MAX_WORKER_DEATHS``
the photo is reported as failed instead of tried again, so an input that kills its worker is
reported, not retried forever. A block asks the ledger once; only a block that lost a worker before is
retried photo by photo (:class:`_Ledger`). (Ray 2.60 bounds actor task retries only through ``map_batches``'s
deprecated ``**ray_remote_args``; the ledger needs no Ray option and counts per photo, not per block.)
Bad files (corrupt, truncated, not an image) never fail a block: they come back as error rows naming
the file and the reason, like the local engine's.

While the job runs, what Ray itself prints (its C++ logs, the errors it forwards to the driver, its
loggers) goes to a log file, not the terminal: the user sees our progress bar and our summary. The
log is kept, and named, only when the job failed or a worker died on a photo, and Ray wrote to it.

``ray`` is imported only inside functions: this module (and :class:`ColorizeBatch`) imports without it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
from contextlib import contextmanager, redirect_stderr
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence, TextIO

import numpy as np

if TYPE_CHECKING:
    from colorize.batch import BatchResult, ColorizerSpec, Outcome, Source

INSTALL_HINT = "the ray engine needs Ray: pip install 'colorize[ray]' (or pip install 'ray[data]==2.60.0')"
MAX_WORKER_DEATHS = 3  # workers that may die while colorizing one photo before it is reported as failed
WORKER_DIED = "its Ray worker died"  # how such a photo's failure begins, after its name
ROWS_PER_BLOCK = 4  # photos per block: the unit of retry (a lost worker redoes few) and of the job's tail (one
# actor finishing its last block while the others idle); 4 and 8 measured alike on 2 cores


class RayEngineError(RuntimeError):
    """The Ray job could not run (no Ray, no cluster, the pipeline failed); ``str(e)`` says why."""


class UnusableModel(ValueError):
    """The actors could not build the colorizer (a bad weight file, an option the model cannot serve); ``str(e)``
    is the local engine's message. The job stopped before any photo was read."""


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


class _Ledger:
    """Per photo, the attempts at it whose worker died: one Ray actor for the whole job, called by the
    colorizing actors. Holds only the photos being colorized (and those whose workers died), never the
    whole job.

    A block asks once (:meth:`begin`): when none of its photos ever lost a worker, they are all marked
    started and the block runs with no more calls until :meth:`finish`, so the actors do not wait on the
    ledger photo by photo (on a busy machine each such round trip waits for the ledger's process to be
    scheduled). A block that lost a worker before is retried photo by photo (:meth:`start`,
    :meth:`finish`), so a photo that kills its worker is counted alone and the photos that merely shared
    its block are not blamed: the one death of a whole-block attempt counts once for each of them."""

    def __init__(self):
        self.running: dict[int, int] = {}  # photo id -> attempts started and not finished

    def begin(self, photos: list[int]) -> list[int]:
        """A block's earlier attempts that never finished, per photo; when there are none, its photos are
        all marked started (else none is: the caller goes photo by photo)."""
        died = [self.running.get(photo, 0) for photo in photos]
        if not any(died):
            self.running.update((photo, 1) for photo in photos)
        return died

    def start(self, photo: int) -> int:
        """Photo ``photo`` is starting; returns how many earlier attempts at it never finished."""
        died = self.running.get(photo, 0)
        self.running[photo] = died + 1
        return died

    def finish(self, *photos: int) -> None:
        for photo in photos:
            self.running.pop(photo, None)


class _ArchiveWorker:
    """The archive job's actor: :func:`colorize.batch.colorize_one` on each photo of a block (read and
    decode, colorize, write atomically), the local engine's step; returns small rows only.

    It builds the colorizer with the local engine's check (:func:`colorize.batch.usable_colorizer`); one that
    cannot be used is not an actor failure (Ray would retry it) but a column of its rows, ``unusable``: the
    message, with which the driver stops the job."""

    def __init__(self, *, colorizer: "ColorizerSpec", ledger, quality: int, confidence: bool, keep_color: bool,
                 tint_as_hints: bool):
        from colorize.batch import MODEL_ERRORS, usable_colorizer

        self.colorizer, self.unusable = None, ""  # unusable: why the colorizer cannot be built
        try:
            self.colorizer = usable_colorizer(colorizer, confidence=confidence)
        except MODEL_ERRORS as e:
            self.unusable = str(e)
        self.ledger = ledger
        self.options = dict(quality=quality, confidence=confidence, keep_color=keep_color,
                            tint_as_hints=tint_as_hints)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from colorize.batch import Outcome

        ids = [int(photo) for photo in batch["id"]]
        outcomes = [Outcome()] * len(ids) if self.unusable else self._colorize_block(batch, ids)
        return {"id": np.array(ids, dtype=np.int64), "unusable": np.array([self.unusable] * len(ids), dtype=object),
                **{name: np.array(values, dtype=object) for name, values in [
                    ("error", [o.error for o in outcomes]), ("kind", [o.kind for o in outcomes]),
                    ("warning", [o.warning for o in outcomes]), ("notes", ["\n".join(o.notes) for o in outcomes]),
                    ("eight_bit", [o.eight_bit for o in outcomes])]}}

    def _colorize_block(self, batch: dict[str, np.ndarray], ids: list[int]) -> list["Outcome"]:
        """The block's photos: in one go when none of them ever lost a worker, else photo by photo."""
        import ray

        if not any(ray.get(self.ledger.begin.remote(ids))):
            outcomes = [self._colorize(batch, k) for k in range(len(ids))]
            self.ledger.finish.remote(*ids)
            return outcomes
        return [self._colorize_counted(batch, k, photo) for k, photo in enumerate(ids)]

    def _colorize_counted(self, batch: dict[str, np.ndarray], k: int, photo: int) -> "Outcome":
        """Row ``k`` of a retried block, photo ``photo``, counted alone: colorized unless its workers keep
        dying on it."""
        import ray

        from colorize.batch import Outcome

        died = ray.get(self.ledger.start.remote(photo))
        if died >= MAX_WORKER_DEATHS:
            outcome = Outcome(error=f"{_source(batch, k)}: {WORKER_DIED} {died} times while colorizing it; not tried "
                                    "again (a rerun with --record retries only such files)")
        else:
            outcome = self._colorize(batch, k)
        self.ledger.finish.remote(photo)
        return outcome

    def _colorize(self, batch: dict[str, np.ndarray], k: int) -> "Outcome":
        """Row ``k`` of the block: the local engine's step."""
        from colorize.batch import Outcome, colorize_one

        src, dst = _source(batch, k), Path(str(batch["dst"][k]))
        try:
            return colorize_one(self.colorizer, src, dst, hints=_hints_of(str(batch["hints"][k])), **self.options)
        except Exception as e:  # a decoder bug: report the file, never fail (and retry) the block
            return Outcome(error=f"{src}: cannot colorize ({type(e).__name__}: {e})")


def _row(photo: int, src: "Source", dst: Path, hints: list) -> dict:
    """The row that tells an actor where photo ``photo`` is and where it goes: absolute paths (Ray workers
    do not share the driver's working directory), and for a photo in a tar shard, where its bytes are."""
    member = not isinstance(src, Path)
    return {"id": photo, "src": os.path.abspath(src.shard if member else src), "member": src.name if member else "",
            "offset": src.offset if member else 0, "size": src.size if member else 0, "dst": os.path.abspath(dst),
            "hints": _hints_text(hints)}


def _hints_text(hints: list) -> str:
    """Hints as a row holds them: JSON, "" for none (:mod:`colorize.hints` imports torch: a job without
    hints, on the light engine, never does)."""
    if not hints:
        return ""
    from colorize.hints import hints_to_json

    return json.dumps(hints_to_json(hints))


def _hints_of(text: str) -> list | None:
    """The hints :func:`_hints_text` wrote (None for none)."""
    if not text:
        return None
    from colorize.hints import hints_from_json

    return hints_from_json(json.loads(text))


def _source(batch: dict[str, np.ndarray], k: int) -> "Source":
    """Row ``k``'s input, as :func:`_row` described it."""
    from colorize.shards import ShardMember

    path, member = Path(str(batch["src"][k])), str(batch["member"][k])
    return ShardMember(path, member, int(batch["offset"][k]), int(batch["size"][k])) if member else path


@contextmanager
def _ray_output_to(log: Path) -> Iterator[TextIO]:
    """Route what this process prints while Ray runs to ``log``: Ray's C++ logs (file descriptor 2), the
    errors it forwards to the driver (``sys.stdout``), its loggers (``sys.stderr``). Yields a stream
    on the real stderr, for our one progress bar."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(1), os.dup(2)
    streams = sys.stdout, sys.stderr
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    with open(log, "a", buffering=1) as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        sys.stdout = sys.stderr = sink
        try:
            yield terminal
        finally:
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()


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
    if address and address != "auto" and "://" not in address:
        _check_reachable(address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline machines: no usage report
    kwargs = dict(logging_level=logging.ERROR, log_to_driver=False)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:  # a private single-machine Ray: nothing listens beyond loopback; its workers as nice as the local
            # engine (Ray's default, 15, yields to every other busy process: beside two CPU-bound programs, 24
            # photos took 240 s, at 0 22 s, the local engine 11)
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     _node_ip_address="127.0.0.1", _system_config={"worker_niceness": 0}, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise RayEngineError(f"cannot start or reach {where} ({e})") from None
    return True


def _check_reachable(address: str, *, seconds: float = 10.0) -> None:
    """Raise :class:`RayEngineError` unless something answers at ``HOST:PORT`` (a cluster's GCS): Ray itself
    retries a wrong address for minutes, silently, its messages in the log."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except ValueError:
        raise RayEngineError(f"--address must be auto, HOST:PORT or ray://HOST:PORT, got '{address}'") from None
    except OSError as e:
        raise RayEngineError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}); is its head "
                             "running (ray start --head, ray up) and its port open?") from None


def _local_cpus(workers: int | None, threads: int) -> int:
    """The CPUs of a private local Ray: ``workers`` actors of ``threads`` CPUs each, or (no ``workers``) this
    machine's cores, and at least one actor's. (Cores times ``threads`` would size the default pool at one
    actor per core, each with ``threads`` threads: ``threads`` times the actors, and model loads, the cores
    can run.)"""
    return workers * threads if workers else max(os.cpu_count() or 1, threads)


def colorize_pairs(pairs: Sequence[tuple["Source", Path]], *, colorizer: "ColorizerSpec | None" = None,
                   quality: int = 95, hints_for: Callable[["Source"], list] | None = None, confidence: bool = False,
                   keep_color: bool = False, tint_as_hints: bool = False, address: str | None = None,
                   workers: int | None = None, on_done: Callable[["Source"], None] | None = None,
                   progress: Callable[[list], Iterable] | None = None) -> "BatchResult":
    """Colorize every (input, output) pair on Ray, each with :func:`colorize.batch.colorize_one` as the
    local engine does: the same outputs, byte for byte, and the same report.

    Args:
        pairs: inputs (files, or photos in tar shards) and their outputs; every Ray node must see them
            under these paths (shared storage).
        colorizer: what each actor builds and runs (None: the default model on torch), as the local engine
            would, checked as the local engine checks it (:func:`colorize.batch.usable_colorizer`: this
            process never loads the model); its ``threads`` (default 1) are each actor's threads and Ray CPUs,
            its device ``cuda`` gives each actor a GPU.
        quality, hints_for, confidence, keep_color, tint_as_hints: as for :func:`colorize.batch.colorize_files`.
        address: a running cluster to join; None starts a local Ray (and stops it at the end).
        workers: colorizing actors; default: one per ``threads`` CPUs of the cluster.
        on_done: called in this process with each input whose output is in place (e.g. to record it).
        progress: wraps the list of photos in a progress display (None: none), advanced a photo at a time, as for
            :func:`colorize.batch.colorize_files`; it writes to ``sys.stderr``, which is the terminal for it while
            Ray's own output goes to the log.
    Raises:
        UnusableModel: the actors could not build the colorizer (no photo was read).
        RayEngineError: Ray is missing, the cluster is unreachable, or the pipeline failed as a whole
            (the message names the log of Ray's own messages).
    """
    from colorize.batch import BatchResult, ColorizerSpec, Outcome

    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    result = BatchResult()
    if not pairs:
        return result
    require_ray()
    spec = colorizer or ColorizerSpec()
    given = spec.model  # a weight file goes to the actors as an absolute path, and is named as given
    model = os.path.abspath(given) if given and os.path.exists(given) else given
    spec = replace(spec, model=model, threads=max(1, spec.threads or 1))
    rows = [_row(i, src, dst, hints_for(src) if hints_for else []) for i, (src, dst) in enumerate(pairs)]
    actor = dict(colorizer=spec, quality=quality, confidence=confidence, keep_color=keep_color,
                 tint_as_hints=tint_as_hints)
    fd, name = tempfile.mkstemp(prefix="colorize-ray-", suffix=".log")
    os.close(fd)
    log, keep_log, seen = Path(name), True, set()  # the log is kept unless the job ends well
    try:
        with _ray_output_to(log) as terminal:
            started = connect(address, num_cpus=None if address else _local_cpus(workers, spec.threads))
            shown: Iterator = iter(())

            def show() -> None:  # one step of the progress display, on the terminal
                with redirect_stderr(terminal):
                    next(shown, None)

            try:
                with redirect_stderr(terminal):  # the display may look at sys.stderr (a terminal, or a log?) now
                    shown = iter((progress or iter)(pairs))
                show()
                for row in _outcome_rows(rows, actor, workers=workers):
                    if row["unusable"]:
                        raise UnusableModel(str(row["unusable"]).replace(str(model), str(given)))
                    photo = int(row["id"])
                    seen.add(photo)
                    src = pairs[photo][0]
                    result.add(Outcome(kind=str(row["kind"]), error=_as_given(str(row["error"]), rows[photo], src),
                                       warning=_as_given(str(row["warning"]), rows[photo], src),
                                       notes=[_as_given(n, rows[photo], src)
                                              for n in str(row["notes"]).split("\n") if n],
                                       eight_bit=str(row["eight_bit"])))
                    if not row["error"] and on_done is not None:
                        on_done(src)
                    show()
            except KeyboardInterrupt:  # Ctrl-C: what came back is recorded; outputs are whole or absent
                result.stopped, result.left = "interrupted", len(rows) - len(seen)
            finally:
                with redirect_stderr(terminal):  # a display stopped short closes on the terminal, not later
                    getattr(shown, "close", lambda: None)()
                if started:
                    import ray

                    ray.shutdown()
        lost = [] if result.stopped else [pairs[i][0] for i in range(len(rows)) if i not in seen]
        result.failed += [f"{src}: its block of photos failed in Ray as a whole (a rerun with --record retries only "
                          "such files)" for src in lost]
        keep_log = bool(lost) or any(WORKER_DIED in msg for msg in result.failed)
        if keep_log and _written(log):
            result.notes.append(f"Ray's own messages (workers that died, blocks that failed): {log}")
    except UnusableModel:
        keep_log = False  # ours is the message
        raise
    except RayEngineError as e:
        raise RayEngineError(f"{e}{_named(log)}") from None
    except Exception as e:  # the pipeline as a whole
        raise RayEngineError(f"the Ray job failed: {_first_line(e)}{_named(log)}") from None
    finally:
        if not keep_log or not _written(log):  # an empty log is neither kept nor named (a cluster never reached)
            log.unlink(missing_ok=True)
    return result


def _written(log: Path) -> bool:
    """Whether Ray wrote anything to ``log``."""
    try:
        return log.stat().st_size > 0
    except OSError:
        return False


def _named(log: Path) -> str:
    """How an error names Ray's log: "; Ray's own messages: LOG", or nothing where the log is empty."""
    return f"; Ray's own messages: {log}" if _written(log) else ""


def _outcome_rows(rows: list[dict], actor: dict, *, workers: int | None) -> Iterator[dict]:
    """Run the pipeline on the connected Ray: ``rows`` through a pool of :class:`_ArchiveWorker` built with
    ``actor``; yields each photo's outcome row as it comes back."""
    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no "execution finished" lines: ours is the report
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours is the one bar
    ctx.print_on_execution_start = False
    ctx.max_errored_blocks = -1  # a block that fails as a whole: its photos are reported, the rest go on
    spec = actor["colorizer"]
    threads = spec.threads
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
    gpu = spec.device.startswith("cuda")
    per_block = max(1, min(ROWS_PER_BLOCK, math.ceil(len(rows) / (4 * workers))))
    blocks = math.ceil(len(rows) / per_block)
    ledger = ray.remote(num_cpus=0)(_Ledger).remote()
    ds = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        _ArchiveWorker, fn_constructor_kwargs={**actor, "ledger": ledger,
                                               "colorizer": replace(spec, device="cuda") if gpu else spec},
        batch_size=per_block, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=min(workers, blocks)),
        num_cpus=threads, num_gpus=1 if gpu else 0)
    yield from ds.iter_rows()
    ray.kill(ledger)


def _as_given(text: str, row: dict, src: "Source") -> str:
    """``text`` naming an input by the absolute path its ``row`` gave Ray, naming it as given instead."""
    absolute = f"{row['src']}:{row['member']}" if row["member"] else row["src"]
    return str(src) + text[len(absolute):] if text.startswith(absolute) else text


def _first_line(e: BaseException) -> str:
    """A Ray error's own message without the remote traceback it carries."""
    cause = getattr(e, "cause", None) or e
    lines = [ln for ln in str(cause).splitlines() if ln.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}"
