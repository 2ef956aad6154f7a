"""Colorizing many files: plan where each input's output goes, then run a :class:`Colorizer` over them.

:func:`plan_outputs` is the one place that lists a job's inputs, photo files and the photos inside
tar shards alike, and pairs each with its output path (folder structure kept, problems and duplicates
accounted for by name); :func:`colorize_one` colorizes one input and says what happened to it;
:func:`colorize_files` runs it over the pairs, stopping cleanly on a full disk or Ctrl-C (the ray
engine, :mod:`colorize.ray`, runs :func:`colorize_one` in its actors). The ``colorize PATH...``
command (:mod:`colorize.commands.colorize`) is argument parsing and printing around these.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Union

if TYPE_CHECKING:
    from colorize.archive import DoneRecord
    from colorize.lite import LiteColorizer
    from colorize.pipeline import Colorizer
    from colorize.shards import ShardMember
    from colorize.tone import ToneReport

Source = Union[Path, "ShardMember"]  # an input photo: a file, or a photo inside a tar shard

OUTPUT_SUFFIX = "_color"
DEFAULT_OUTPUT = "colorized"  # the output folder when none is given
DEFAULT_QUALITY = 95
LOCAL_WORKERS = 2  # the local engine's photos at a time (:func:`colorize_files`)
WRITABLE = (".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff")  # output formats; others: PNG


@dataclass
class Plan:
    """What a run will do with its inputs: each one is accounted for by name."""

    pairs: list[tuple[Source, Path]] = field(default_factory=list)  # (input, output)
    problems: list[tuple[Path | str, str]] = field(default_factory=list)  # inputs that cannot be used, and why
    videos: list[Path] = field(default_factory=list)  # films met in the folders: left to `colorize video`
    duplicates: list[tuple[Source, Source]] = field(default_factory=list)  # (input, the same photo met first)


def output_file(paths: list[str], output: str | None) -> Path | None:
    """The output file named by ``output`` for a single input file (None: ``output`` is a folder)."""
    from colorize.data import IMAGE_EXTENSIONS
    from colorize.shards import is_shard_spec

    if not output or not Path(paths[0]).is_file() or len({Path(p).resolve() for p in paths}) != 1:
        return None  # the same file given twice is still one input
    if is_shard_spec(paths[0]):  # a shard holds many photos: -o is their folder
        return None
    out = Path(output)
    return out if out.suffix.lower() in IMAGE_EXTENSIONS and not out.is_dir() else None


def plan_outputs(paths: list[str], output: str | None, fmt: str) -> Plan:
    """Pair every input image with its output path, keeping folder structure relative to each root.

    A photo inside tar shards (``.tar`` paths, globs or ``{000..009}`` ranges, in the layout of
    ``colorize shards``) goes to ``OUT/<its key>.<its extension>``, whichever shard holds it: the
    shards of a packed folder give back that folder's tree (keys are unique across them).

    A missing path, broken link, unsupported file or unreadable shard becomes a problem (reported with
    the rest, the batch goes on); the same photo reached twice is planned once.

    Args:
        paths: files, folders (recursive), glob patterns or tar shards.
        output: the output folder (None: ``colorized``), or for a single input file an output file name.
        fmt: ``"same"`` (the input's format; where it cannot be written, PNG, or JPEG for a phone's HEIC, named
            ``IMG_0001.heic.jpg`` where ``IMG_0001.jpg`` is another input's output) or an extension without dot.
    """
    from colorize.data import HEIF_EXTENSIONS, scan_folder, unsupported_format
    from colorize.shards import is_shard_spec

    out_root = Path(output) if output else Path(DEFAULT_OUTPUT)
    named = output_file(paths, output)
    folder_names = _folder_names(paths)
    plan = Plan()
    first: dict[object, Source] = {}  # the input's identity (resolved path; shard and member) -> as first met
    converted: list[int] = []  # pairs whose output is in another format than their input's, which it cannot be in
    for raw in paths:
        root = Path(raw)
        is_folder = root.is_dir()
        if is_shard_spec(raw) and not is_folder:
            for member in _shard_photos(raw, plan):
                key = (member.shard.resolve(), member.name)
                if key in first:
                    plan.duplicates.append((member, first[key]))
                    continue
                first[key] = member
                plan.pairs.append((member, out_root / f"{member.key}{member.suffix if fmt == 'same' else '.' + fmt}"))
            continue
        if is_folder:
            files, problems, videos = scan_folder(root)
            plan.problems += problems
            plan.videos += videos
            if out_root.resolve() != root.resolve() and out_root.resolve().is_relative_to(root.resolve()):
                files = [f for f in files if not f.resolve().is_relative_to(out_root.resolve())]  # earlier outputs
        elif root.is_file():
            files = [root]
        elif any(c in raw for c in "*?["):  # a pattern the shell did not expand
            files = sorted(Path(f) for f in glob.glob(raw, recursive=True) if Path(f).is_file())
            if not files:
                plan.problems.append((root, "no file matches this pattern"))
        else:
            plan.problems.append((root, "broken symlink" if root.is_symlink() else "no such file or folder"))
            continue
        for f in files:
            if not is_folder and (why := unsupported_format(f)):  # named, or matched by a pattern (a folder's reported)
                plan.problems.append((f, why))
                continue
            key = f.resolve()
            if key in first:
                plan.duplicates.append((f, first[key]))
                continue
            first[key] = f
            if named is not None:
                plan.pairs.append((f, named))
                continue
            rel = f.relative_to(root) if is_folder else Path(f.name)
            if is_folder and len(paths) > 1:
                rel = folder_names[raw] / rel
            suffix = f.suffix if fmt == "same" else f".{fmt}"
            if suffix.lower() not in WRITABLE:
                suffix = ".jpg" if suffix.lower() in HEIF_EXTENSIONS else ".png"  # a phone's photo: JPEG, lossy as it
                converted.append(len(plan.pairs))
            plan.pairs.append((f, out_root / rel.with_suffix(suffix)))
    # IMG_0001.heic beside IMG_0001.jpg (a phone's export), scan.gif beside scan.png: the converted one keeps its
    # own extension in its output's name (IMG_0001.heic.jpg) rather than both being refused as one output
    taken = Counter(dst for _, dst in plan.pairs)
    for i in converted:
        src, dst = plan.pairs[i]
        if taken[dst] > 1:
            plan.pairs[i] = (src, dst.with_name(src.name + dst.suffix))
    return plan


def _folder_names(paths: list[str]) -> dict[str, Path]:
    """Where each folder among several inputs goes under the output: its name, or where folders share a name
    (``2019/scans 2020/scans``), their paths from the folder their parents have in common (``2019/scans``)."""
    folders = [raw for raw in paths if Path(raw).is_dir()]
    # a folder's name as given; "." and ".." have none of their own (".." would put outputs outside the output)
    name = {raw: Path(raw).name if Path(raw).name not in ("", "..") else Path(raw).resolve().name for raw in folders}
    alike: dict[str, set[Path]] = {}  # a name -> the folders of that name
    for raw in folders:
        alike.setdefault(name[raw], set()).add(Path(raw).resolve())
    names = {}
    for raw in folders:
        names[raw] = Path(name[raw])
        same = alike[name[raw]]
        if len(same) > 1:
            try:
                base = os.path.commonpath([str(folder.parent) for folder in same])
            except ValueError:  # on different drives
                continue
            names[raw] = Path(raw).resolve().relative_to(base)
    return names


def _shard_photos(spec: str, plan: Plan) -> list["ShardMember"]:
    """The photos in the tar shards ``spec`` names; what cannot be read goes to ``plan.problems``."""
    from colorize.shards import is_url, list_photos, resolve_shards

    if is_url(spec):
        plan.problems.append((spec, "colorize reads tar shards from files (a local or shared filesystem); "
                                    "download them first"))
        return []
    try:
        shards = resolve_shards([spec])
    except FileNotFoundError as e:  # "NAME: no such shard"
        name, _, reason = str(e).rpartition(": ")
        plan.problems.append((name, reason))
        return []
    except ImportError as e:  # brace ranges and globs of shards are webdataset's (braceexpand)
        plan.problems.append((spec, str(e)))
        return []
    photos = []
    for shard in shards:
        found, problems = list_photos(shard)
        photos += found
        plan.problems += problems
    return photos


def conflicts(pairs: list[tuple[Source, Path]], *, named: bool, in_place_ok: bool) -> list[str]:
    """Why these pairs must not run, every reason at once (two inputs to one output, an output over an input, an
    output beside its input without ``in_place_ok``); empty when they may. ``named``: the output file was named by
    the user."""
    inputs = {p.resolve() for p, _ in pairs if isinstance(p, Path)}
    writers: dict[Path, Source] = {}  # output -> the input that writes it
    problems = []
    for src, dst in pairs:
        if writers.setdefault(dst.resolve(), src) != src:
            problems.append(f"{writers[dst.resolve()]} and {src} would both be written to {dst}; rename one of them")
        elif dst.resolve() in inputs:
            problems.append(f"output {dst} would overwrite an input; choose another -o"
                            + (" or, to write beside the inputs, another --format" if in_place_ok else ""))
        # an output file named explicitly is the user's intent; a folder of outputs beside the inputs is not
        # (a photo inside a shard has no folder of its own)
        elif (isinstance(src, Path) and not named and not in_place_ok
              and dst.resolve().parent == src.resolve().parent):
            problems.append(f"output {dst} would be written next to its input; choose another -o or pass "
                            "--in-place-ok")
    return problems


MODEL_ERRORS = (ValueError, FileNotFoundError, ImportError, RuntimeError, OSError)  # a model that cannot be used


@dataclass(frozen=True)
class ColorizerSpec:
    """Which colorizer a job runs, as data: :meth:`build` makes it in this process, and the ray engine's
    actors build the same one (so both engines write the same files). ``colorize.commands.options``
    decides it from the command's options (``--runtime auto`` included)."""

    light: bool = False  # the light engine (LiteColorizer: onnxruntime alone); False: the torch pipeline (Colorizer)
    model: str | None = None  # shipped model name or weight file (None: the default)
    size: int | None = None  # working size (None: the one recorded for the model)
    temperature: float | None = None  # None: the one tuned for the model
    saturation: float = 1.0
    threads: int | None = None  # CPU threads (None: the runtime's default)
    device: str = "cpu"  # torch pipeline only: auto, cpu, cuda, cuda:N, mps
    runtime: str = "torch"  # torch pipeline only: its network on torch, or on onnxruntime ("onnx")

    def __post_init__(self):
        if self.light and (self.device != "cpu" or self.runtime != "torch"):
            raise ValueError("the light engine has no device or runtime to set (they need torch)")

    def shared_by(self, workers: int) -> "ColorizerSpec":
        """This colorizer for ``workers`` photos at a time in one process (the local engine): unless its threads
        were given, each photo gets its share of the cores. Measured on 2 cores, two photos of one thread each
        beat two photos of two threads (the photos' serial steps overlap instead of their threads contending)."""
        if self.threads or workers <= 1:
            return self
        return replace(self, threads=max(1, (os.cpu_count() or 1) // workers))

    def build(self) -> "Colorizer | LiteColorizer":
        """The colorizer, its model loaded (one of :data:`MODEL_ERRORS` names what is wrong with it)."""
        if self.light:
            from colorize.lite import LiteColorizer

            return LiteColorizer(self.model, size=self.size, temperature=self.temperature, saturation=self.saturation,
                                 threads=self.threads)
        from colorize.pipeline import Colorizer
        from colorize.runtime import pick_device

        return Colorizer(self.model, size=self.size, temperature=self.temperature, saturation=self.saturation,
                         threads=self.threads, device=str(pick_device(self.device)), runtime=self.runtime)


def usable_colorizer(spec: ColorizerSpec, *, confidence: bool = False) -> "Colorizer | LiteColorizer":
    """``spec`` built, and able to do what the job asks: both engines' one check of the model (the ray engine's
    actors run it), so a bad weight file or a model that cannot serve an option is the same message on either.

    Args:
        confidence: the job writes confidence maps (a classification model is needed).
    Raises:
        one of :data:`MODEL_ERRORS`, naming what is wrong.
    """
    colorizer = spec.build()
    if confidence and not colorizer.has_confidence:
        from colorize.onnx import OnnxModel

        if isinstance(getattr(colorizer, "model", None), OnnxModel):
            given_onnx = str(spec.model or "").lower().endswith(".onnx")
            raise ValueError("--confidence needs the network run by torch from a weight file (an ONNX network gives "
                             "colors, not how sure it is of them): " +
                             ("give the model's .safetensors file instead" if given_onnx else "leave out --runtime onnx"))
        raise ValueError(f"--confidence needs a classification (bins) model; {colorizer.model_name} predicts "
                         "colors directly")
    return colorizer


@dataclass
class FileResult:
    """What a colorizer's ``colorize_file`` did with one file."""

    size: tuple[int, int]  # (width, height)
    tone: "ToneReport"  # gray, toned or color, with the statistics (both engines classify)
    passed_through: bool = False  # a color photo written unchanged (keep_color)
    tint_hints: int = 0  # hints taken from the photo's own tint (tint_as_hints), not counting those given
    eight_bit: str = ""  # a 16-bit input written in 8 bits: why (colorize.io.written_in_8bits: "format", "profile")


@dataclass
class Outcome:
    """What :func:`colorize_one` did with one input."""

    kind: str = ""  # done: its tone (gray, toned or color); "" when it failed or was not classified
    error: str = ""  # failed: "path: reason"
    warning: str = ""  # done, and it was already in color: what was done with it
    notes: list[str] = field(default_factory=list)  # used anyway, worth knowing (only its first frame, ...)
    write_error: OSError | None = None  # failed to write: why (a full disk stops the local engine)
    eight_bit: str = ""  # done, a 16-bit input written in 8 bits: why (FileResult.eight_bit)


def colorize_one(colorizer: "Colorizer | LiteColorizer", src: Source, dst: Path, *, quality: int = DEFAULT_QUALITY,
                 hints: list | None = None, confidence: bool = False, keep_color: bool = False,
                 tint_as_hints: bool = False) -> Outcome:
    """Colorize one input with the colorizer's ``colorize_file`` (:meth:`Colorizer.colorize_file` or
    :meth:`LiteColorizer.colorize_file`): the local and the ray engine's step for each photo.

    A bad input, a hint outside the photo, a photo too large for the memory or an output that cannot be
    written comes back as an :class:`Outcome` naming the file and the reason, not as an exception.
    """
    from colorize.io import ImageError, collect_notes

    try:
        with collect_notes() as notes:
            done = colorizer.colorize_file(src, dst, quality=quality, hints=hints, confidence=confidence,
                                           keep_color=keep_color, tint_as_hints=tint_as_hints)
    except ImageError as e:
        return Outcome(error=str(e))
    except ValueError as e:  # a hint outside this photo
        return Outcome(error=f"{src}: {e}")
    except OSError as e:  # output side: disk full, permissions
        return Outcome(error=f"{src}: cannot write {dst} ({e.strerror or e})", write_error=e)
    except MemoryError:  # a photo too large for this machine's memory (its arrays are freed as this unwinds)
        return Outcome(error=f"{src}: not enough memory to colorize it; try fewer --workers, or scale it down")
    tone = done.tone
    outcome = Outcome(kind=tone.kind, notes=notes, eight_bit=done.eight_bit)
    if tone.kind == "color":
        from colorize.commands.options import torch_installed

        action = ("passed through unchanged (--keep-color)" if done.passed_through else
                  f"colorized from its lightness with {done.tint_hints} hint{'s' * (done.tint_hints != 1)} from "
                  "its tint" if tint_as_hints
                  else "colorized from its lightness; --keep-color writes such photos unchanged"
                       + (", --tint-as-hints uses their colors as hints" if torch_installed() else ""))
        outcome.warning = f"{src}: {tone.describe()}; {action}"
    return outcome


@dataclass
class BatchResult:
    """What a job did, input by input (both engines)."""

    done: int = 0
    failed: list[str] = field(default_factory=list)  # "path: reason"
    notes: list[str] = field(default_factory=list)  # used anyway, worth knowing (only the first frame, ...)
    warned: list[str] = field(default_factory=list)  # photos already in color: what was done with them
    kinds: dict[str, int] = field(default_factory=dict)  # inputs by tone: gray, toned, color
    eight_bit: dict[str, int] = field(default_factory=dict)  # 16-bit inputs written in 8 bits, by why (Outcome)
    stopped: str = ""  # why the run stopped early ("interrupted", a full disk), if it did
    left: int = 0  # inputs not started when it stopped

    def add(self, outcome: Outcome) -> None:
        """Count one input's :class:`Outcome`."""
        self.notes += outcome.notes
        if outcome.error:
            self.failed.append(outcome.error)
            return
        self.done += 1
        if outcome.kind:
            self.kinds[outcome.kind] = self.kinds.get(outcome.kind, 0) + 1
        if outcome.warning:
            self.warned.append(outcome.warning)
        if outcome.eight_bit:
            self.eight_bit[outcome.eight_bit] = self.eight_bit.get(outcome.eight_bit, 0) + 1


def colorize_files(colorizer: "Colorizer | LiteColorizer", pairs: list[tuple[Source, Path]], *, quality: int = DEFAULT_QUALITY,
                   hints_for: Callable[[Source], list] | None = None, confidence: bool = False,
                   keep_color: bool = False, tint_as_hints: bool = False, record: "DoneRecord | None" = None,
                   progress: Callable[[list], Iterable] | None = None, workers: int = LOCAL_WORKERS) -> BatchResult:
    """Colorize every (input, output) pair with :func:`colorize_one`, in this process, ``workers`` photos at a
    time on a thread pool: reading, decoding, encoding and both colorizers' runtimes let go of the GIL, so one
    photo's serial steps overlap another's (the same output files as one at a time). Each photo's outcome is
    taken on this thread as it finishes, as the ray engine takes them: counted, marked done in the record
    (written from here alone) and shown by the progress display.

    A bad input is a failure and the batch goes on; a full disk, an output folder that cannot be written, an
    unwritable record or Ctrl-C stops it (``stopped``, ``left``): photos not started are not started, those in
    flight finish (counted and recorded like the rest), finished outputs are kept, and none is ever left half
    written.

    Args:
        hints_for: input -> its color hints (None: no hints).
        confidence, keep_color, tint_as_hints, quality: as for :meth:`Colorizer.colorize_file`.
        record: marks each finished input done (``archive.DoneRecord``), so a rerun skips it.
        progress: wraps the list of pairs in a progress display (None: none), advanced a photo at a time.
        workers: photos colorized at a time (1: one after another).
    """
    import errno
    import sqlite3
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    from colorize.io import notes_by_thread

    result = BatchResult()
    recording = record is not None  # False once the record cannot be written

    def start(src: Source, dst: Path) -> Outcome:
        return colorize_one(colorizer, src, dst, quality=quality, hints=hints_for(src) if hints_for else None,
                            confidence=confidence, keep_color=keep_color, tint_as_hints=tint_as_hints)

    def take(src: Source, dst: Path, outcome: Outcome) -> str:
        """Count one finished input and mark it done in the record; why the run has to stop, if it has to."""
        nonlocal recording
        result.add(outcome)
        e = outcome.write_error
        # what every photo after it would meet too: a full disk, a read-only or not writable folder
        if e is not None and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM):
            return f"cannot write to {dst.parent} ({e.strerror or e})"
        if recording and not outcome.error:
            try:
                record.mark_done(src)
            except sqlite3.Error as e:  # the record: "database or disk is full", a disk error
                recording = False
                result.failed.append(f"{record.path}: cannot record {src} as done ({e})")
                return f"the record {record.path} cannot be written ({e})"
        return ""

    waiting = iter(pairs)
    running: dict[Future, tuple[Source, Path]] = {}  # submitted and not yet taken, in input order
    taken = 0
    shown = iter((progress or iter)(pairs))  # one step per photo taken
    with notes_by_thread(), ThreadPoolExecutor(max(1, workers), thread_name_prefix="colorize") as pool:
        try:
            next(shown, None)
            while not result.stopped:
                # a photo a worker, none queued: a worker starts its next photo only after this thread took
                # (and recorded) the ones finished, so a crash leaves at most those in flight unrecorded
                for src, dst in waiting:
                    running[pool.submit(start, src, dst)] = (src, dst)
                    if len(running) >= workers:
                        break
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in [f for f in running if f in finished]:
                    src, dst = running.pop(future)
                    outcome = future.result()
                    taken += 1
                    result.stopped = take(src, dst, outcome)
                    next(shown, None)
                    if result.stopped:
                        break
        except KeyboardInterrupt:  # Ctrl-C: those in flight finish, atomically written as ever
            result.stopped = "interrupted"
        finally:
            for future in running:
                future.cancel()  # submitted, not yet started: stays not done
            for future, (src, dst) in running.items():  # in flight when it stopped: counted when it finishes
                if not future.cancelled() and future.exception() is None:
                    taken += 1
                    why = take(src, dst, future.result())
                    result.stopped = result.stopped or why
    if result.stopped:
        result.left = len(pairs) - taken
    return result
