"""The ``colorize`` command: thin argument parsing over library functions.

``colorize PATH...`` colorizes files and folders; subcommands handle the rest. ``--help`` and
``--version`` answer without importing torch (heavy imports live inside the commands).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from colorize import __version__

SUBCOMMANDS = {
    "models": "list the registered models and the shipped weights",
    "train": "train a model from a recipe (configs/*.yaml) or options",
    "export": "export a model or checkpoint (safetensors, onnx)",
    "eval": "score models against the truth on color photos",
    "serve": "run the web app",
    "video": "colorize a video with temporally consistent colors",
    "shards": "pack a photo folder into tar shards for training",
}
OUTPUT_SUFFIX = "_color"
MAX_WORK_SIZE = 2048  # the web API's cap too (web.MAX_WORK_SIZE): compute grows with its square
DEFAULT_QUALITY = 95
WRITABLE = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")  # output formats; others become PNG
PROGRESS_SECONDS = 10.0  # without a terminal: one progress line this often


def _colorize_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="colorize",
        description="Colorize black-and-white photos. Files and folders (recursive) are accepted.",
        epilog="subcommands:\n" + "\n".join(f"  {k:<8} {v}" for k, v in SUBCOMMANDS.items())
        + "\n\nrun `colorize SUBCOMMAND --help` for each one's options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output folder (default: ./colorized); for a single file, may be a file name")
    p.add_argument("--model", help="shipped model name or a .safetensors/.pt file (default: unet_lite0)")
    p.add_argument("--size", type=_working_size, metavar="PX",
                   help=f"working size: the long side, in pixels, the network sees (at most {MAX_WORK_SIZE}); the "
                        "output keeps the photo's own size. Default: the one stored in the model's weight file")
    p.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="how boldly to color (classification models): lower keeps strong colors where the "
                        "model is sure and leaves more of the photo gray; higher spreads softer, more muted color "
                        "over more of it. Default: the value tuned for the model, stored in its weight file "
                        "(`colorize models` shows it)")
    p.add_argument("--saturation", type=float, default=1.0, help="chroma multiplier (default 1.0)")
    p.add_argument("--format", choices=["same", "jpg", "png", "webp", "tif", "bmp"], default="same",
                   help="output format (same: as the input's, PNG for formats that cannot be written)")
    p.add_argument("--quality", type=_quality, default=DEFAULT_QUALITY, metavar="Q",
                   help=f"JPEG and WebP quality, 1-100 (default {DEFAULT_QUALITY})")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--in-place-ok", action="store_true",
                   help="allow writing into the input folder (never over an input file)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                   help="inference engine: torch, or onnx (onnxruntime; the model is exported to ONNX once "
                        "and cached, or give --model FILE.onnx)")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--record", action="store_true",
                   help="keep a record of finished files in OUT/.colorize-done*.sqlite; a rerun after a crash "
                        "skips them (even with --overwrite)")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="process only part K of N (1 <= K <= N) of the files, split by a hash of their "
                        "relative path: run N of these on N machines or GPUs; implies --record")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process; ray: a Ray Data pipeline, on a local Ray or a cluster "
                        "(needs the ray extra; see docs/scaling.md)")
    p.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: join this Ray cluster (auto, HOST:PORT or ray://HOST:PORT) "
                        "instead of starting a local Ray")
    p.add_argument("--workers", type=int, metavar="N",
                   help="with --engine ray: colorizing actors, each loading the model once (default: one per CPU)")
    g = p.add_argument_group("guiding the colors (local engine)")
    g.add_argument("--hint", action="append", default=[], metavar="X,Y,COLOR[,RADIUS]",
                   help="a color hint (repeatable): a point in the photo's pixels, a color (#2a6fdb, red, "
                        "rgb(..)) and optionally a radius in pixels (default: bounded by the photo's edges only)")
    g.add_argument("--hints", metavar="FILE",
                   help='hints from a JSON file: [{"x": 120, "y": 80, "color": "#2a6fdb", "radius": 40}, ...], '
                        'or {"photo.jpg": [...], ...} for several photos')
    g.add_argument("--confidence", action="store_true",
                   help="also write NAME.confidence.png beside each output (255 = the model is sure)")
    g.add_argument("--keep-color", action="store_true",
                   help="write photos that are already in color unchanged instead of recolorizing them")
    g.add_argument("--tint-as-hints", action="store_true",
                   help="use a hand-tinted (partly colored) photo's own colors as hints")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--version", action="version", version=f"colorize {__version__}")
    return p


def _working_size(text: str) -> int:
    size = int(text)
    if not 16 <= size <= MAX_WORK_SIZE:
        raise argparse.ArgumentTypeError(
            f"{size} is outside 16..{MAX_WORK_SIZE}: it is the size the network works at, not the output's "
            "(which keeps the photo's size); larger costs time with the square and adds no detail")
    return size


def _quality(text: str) -> int:
    quality = int(text)
    if not 1 <= quality <= 100:
        raise argparse.ArgumentTypeError(f"quality must be 1..100, got {quality}")
    return quality


def _shard(spec: str) -> tuple[int, int]:
    from colorize.archive import parse_shard

    try:
        return parse_shard(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(f"colorize.commands.{argv[0]}").main(argv[1:])
    if not argv:
        _colorize_parser().print_help()
        return 2
    if not argv[0].startswith("-") and not Path(argv[0]).suffix and not Path(argv[0]).exists():
        import difflib

        close = difflib.get_close_matches(argv[0], SUBCOMMANDS, n=1, cutoff=0.6)
        if close:
            print(f"error: '{argv[0]}' is neither a subcommand nor a file or folder; "
                  f"did you mean `colorize {close[0]}`?", file=sys.stderr)
            return 2
    args = _colorize_parser().parse_args(argv)
    return colorize_paths(args)


@dataclass
class Plan:
    """What a run will do with its inputs: each one is accounted for by name."""

    pairs: list[tuple[Path, Path]] = field(default_factory=list)  # (input, output)
    problems: list[tuple[Path, str]] = field(default_factory=list)  # inputs that cannot be used, and why
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)  # (input, the same file met first)


def output_file(paths: list[str], output: str | None) -> Path | None:
    """The output file named by ``-o`` for a single input file (None: ``-o`` is a folder)."""
    from colorize.data import IMAGE_EXTENSIONS

    if not output or not Path(paths[0]).is_file() or len({Path(p).resolve() for p in paths}) != 1:
        return None  # the same file given twice is still one input
    out = Path(output)
    return out if out.suffix.lower() in IMAGE_EXTENSIONS and not out.is_dir() else None


def plan_outputs(paths: list[str], output: str | None, fmt: str) -> Plan:
    """Pair every input image with its output path, keeping folder structure relative to each root.

    A missing path, broken link or unsupported file becomes a problem (reported with the rest, the
    batch goes on); the same file reached twice is planned once.
    """
    from colorize.data import scan_folder

    out_root = Path(output) if output else Path("colorized")
    named = output_file(paths, output)
    plan = Plan()
    first: dict[Path, Path] = {}  # resolved input -> the path it was first met by
    for raw in paths:
        root = Path(raw)
        if root.is_dir():
            files, problems = scan_folder(root)
            plan.problems += problems
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
            key = f.resolve()
            if key in first:
                plan.duplicates.append((f, first[key]))
                continue
            first[key] = f
            if named is not None:
                plan.pairs.append((f, named))
                continue
            rel = f.relative_to(root) if root.is_dir() else Path(f.name)
            if root.is_dir() and len(paths) > 1:
                rel = Path(root.name) / rel
            suffix = f.suffix if fmt == "same" else f".{fmt}"
            if suffix.lower() not in WRITABLE:
                suffix = ".png"
            plan.pairs.append((f, out_root / rel.with_suffix(suffix)))
    return plan


def _progress(items: list, *, quiet: bool):
    """A progress bar on a terminal; otherwise (logs, pipes) a plain line every PROGRESS_SECONDS."""
    if quiet or not items or os.environ.get("COLORIZE_NO_PROGRESS") == "1":
        return items
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(items, unit="img", dynamic_ncols=True)
    return _plain_progress(items)


def _plain_progress(items: list):
    start = last = time.monotonic()
    for i, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS or i == len(items):
            print(f"progress: {i}/{len(items)} images ({100 * i // len(items)}%), {now - start:.0f} s",
                  file=sys.stderr, flush=True)
            last = now


def _hints_for(args: argparse.Namespace, sources: list[Path]):
    """A function: input path -> its hints, from ``--hint`` and ``--hints``. Hints given as a plain list
    need a single input photo; a ``{file name: [...]}`` file may name several (by name or path)."""
    from colorize.hints import load_hints, parse_hint

    given = [parse_hint(h) for h in getattr(args, "hint", None) or []]
    per_file: dict[str, list] = {}
    hints_file = getattr(args, "hints", None)
    if hints_file:
        loaded = load_hints(hints_file)
        if isinstance(loaded, dict):
            per_file = loaded
        else:
            given += loaded
    if given and len(sources) != 1:
        raise ValueError(f"--hint and a list of --hints are for one photo, got {len(sources)}; give a JSON "
                         'object {"photo.jpg": [...]} to hint several')
    if per_file:
        known = {str(s) for s in sources} | {s.name for s in sources}
        unknown = sorted(set(per_file) - known)
        if unknown:
            raise ValueError(f"{hints_file}: no input photo named {', '.join(unknown)}")

    def hints_for(src: Path) -> list:
        return given + per_file.get(str(src), per_file.get(src.name, []))

    return hints_for


def colorize_paths(args: argparse.Namespace) -> int:
    """Colorize every image; print a summary naming every input not done; exit 1 if any failed."""
    import errno
    import sqlite3
    import warnings

    engine = getattr(args, "engine", "local")
    if engine == "ray":
        from colorize.ray import RayEngineError, require_ray

        try:
            require_ray()
        except RayEngineError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.runtime != "torch":
            print("error: --engine ray runs --runtime torch only", file=sys.stderr)
            return 2
        guided = [flag for flag, name in (("--hint", "hint"), ("--hints", "hints"), ("--confidence", "confidence"),
                                          ("--keep-color", "keep_color"), ("--tint-as-hints", "tint_as_hints"))
                  if getattr(args, name, None)]
        if guided:
            print(f"error: {', '.join(guided)}: the local engine only (drop --engine ray); the ray engine "
                  "colorizes as predicted", file=sys.stderr)
            return 2
    elif getattr(args, "address", None) or getattr(args, "workers", None):
        print("error: --address and --workers need --engine ray", file=sys.stderr)
        return 2
    from colorize import archive
    from colorize.io import ImageError, ImageNote, clean_stale_temporaries

    plan = plan_outputs(args.paths, args.output, args.format)
    pairs = plan.pairs
    problems = [f"{path}: {reason}" for path, reason in plan.problems]
    named = output_file(args.paths, args.output)
    out_dir = named.parent if named is not None else Path(args.output or "colorized")
    shard = getattr(args, "shard", None)
    if shard:
        found = len(pairs)
        pairs = archive.select_shard(pairs, out_dir, shard)
        if found and not pairs:
            print(f"shard {shard[0]}/{shard[1]}: none of the {found} images")
            return 0
    inputs = {p.resolve() for p, _ in pairs}
    writers: dict[Path, Path] = {}  # output -> the input that writes it
    for src, dst in pairs:
        if writers.setdefault(dst.resolve(), src) != src:
            print(f"error: {writers[dst.resolve()]} and {src} would both be written to {dst}; "
                  "rename one of them", file=sys.stderr)
            return 2
        if dst.resolve() in inputs:
            print(f"error: output {dst} would overwrite an input; choose another -o", file=sys.stderr)
            return 2
        # an output file named explicitly is the user's intent; a folder of outputs beside the inputs is not
        if named is None and not args.in_place_ok and dst.resolve().parent == src.resolve().parent:
            print(f"error: output {dst} would be written next to its input; choose another -o "
                  "or pass --in-place-ok", file=sys.stderr)
            return 2
    if not pairs:
        for msg in problems:
            print(f"error: {msg}", file=sys.stderr)
        print("no images found", file=sys.stderr)
        return 2 if problems else 1
    try:
        hints_for = _hints_for(args, [src for src, _ in pairs])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = [t for folder in sorted({d.parent for _, d in pairs}) for t in clean_stale_temporaries(folder)]
    if stale:
        print(f"removed {len(stale)} temporary file(s) left by an interrupted run (e.g. {stale[0]})")
    record, recorded = None, 0
    if shard or getattr(args, "record", False):
        settings = {k: getattr(args, k) for k in ("model", "size", "temperature", "saturation", "format")}
        try:
            record = archive.DoneRecord(archive.record_path(out_dir, shard), settings)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if record.reset:
            print(f"settings changed since {record.path} was made; starting a new record")
        planned = len(pairs)
        pairs = record.pending(pairs, out_dir)
        recorded = planned - len(pairs)
    todo = [(s, d) for s, d in pairs if args.overwrite or not d.exists()]
    skipped = len(pairs) - len(todo)
    if engine == "ray":
        from colorize.ray import colorize_pairs

        try:
            result = colorize_pairs(todo, model=args.model, size=args.size, temperature=args.temperature,
                                    saturation=args.saturation, device=args.device, threads=args.threads,
                                    address=args.address, workers=args.workers, progress=not args.quiet,
                                    on_done=record.mark_done if record is not None else None)
        except (RayEngineError, ValueError) as e:
            if record is not None:
                record.close()
            print(f"error: {e}", file=sys.stderr)
            return 2
        warned = [f"{msg}; colorized from its lightness (the local engine's --keep-color writes such photos "
                  "unchanged)" for msg in result.in_color]
        return _report(args, result.done, skipped, list(problems) + result.failed, record, recorded,
                       notes=[f"{d}: same file as {first}; done once" for d, first in plan.duplicates],
                       destination=named or out_dir, kinds=result.kinds, warned=warned)

    from colorize.distributed import pick_device
    from colorize.pipeline import Colorizer

    try:
        colorizer = Colorizer(args.model, size=args.size, temperature=args.temperature, saturation=args.saturation,
                              threads=args.threads, device=str(pick_device(getattr(args, "device", "cpu"))),
                              runtime=args.runtime)
    except (ValueError, FileNotFoundError, ImportError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        if record is not None:
            record.close()
        return 2
    if getattr(args, "confidence", False) and not colorizer.has_confidence:
        print(f"error: --confidence needs a classification (bins) model; {colorizer.model_name} predicts "
              "colors directly (the onnx runtime too)", file=sys.stderr)
        if record is not None:
            record.close()
        return 2
    failed: list[str] = list(problems)
    notes = [f"{d}: same file as {first}; done once" for d, first in plan.duplicates]
    warned: list[str] = []  # photos already in color: what was done with them
    kinds: dict[str, int] = {}  # inputs by tone: gray, toned, color
    stopped = ""
    done = 0
    quality = getattr(args, "quality", DEFAULT_QUALITY)
    left = 0  # images not started when a full disk stops the run
    keep_color, tint_as_hints = getattr(args, "keep_color", False), getattr(args, "tint_as_hints", False)
    for i, (src, dst) in enumerate(_progress(todo, quiet=args.quiet)):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ImageNote)
                result = colorizer.colorize_file(src, dst, quality=quality, hints=hints_for(src),
                                                 confidence=getattr(args, "confidence", False),
                                                 keep_color=keep_color, tint_as_hints=tint_as_hints)
            notes += [str(w.message) for w in caught if issubclass(w.category, ImageNote)]
            tone = result.tone
            kinds[tone.kind] = kinds.get(tone.kind, 0) + 1
            if tone.kind == "color":
                action = ("passed through unchanged (--keep-color)" if result.passed_through else
                          f"colorized from its lightness with {result.hints} hints from its tint" if tint_as_hints
                          else "colorized from its lightness; --keep-color writes such photos unchanged, "
                               "--tint-as-hints uses their colors as hints")
                warned.append(f"{src}: {tone.describe()}; {action}")
            done += 1
            if record is not None:
                record.mark_done(src)
        except ImageError as e:
            failed.append(str(e))
        except ValueError as e:  # a hint outside this photo
            failed.append(f"{src}: {e}")
        except sqlite3.Error as e:  # the record: "database or disk is full", a disk error
            failed.append(f"{record.path}: cannot record {src} as done ({e})")
            stopped = f"the record {record.path} cannot be written ({e})"
            left = len(todo) - i - 1
            break
        except OSError as e:  # output side: disk full, permissions
            failed.append(f"{src}: cannot write {dst} ({e.strerror or e})")
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
                stopped = f"cannot write to {dst.parent} ({e.strerror or e})"
                left = len(todo) - i - 1
                break
        except KeyboardInterrupt:  # Ctrl-C: the photo being written was not renamed into place
            stopped, left = "interrupted", len(todo) - i
            break
    return _report(args, done, skipped, failed, record, recorded, notes=notes, stopped=stopped, left=left,
                   destination=named or out_dir, kinds=kinds, warned=warned)


def _report(args: argparse.Namespace, done: int, skipped: int, failed: list[str], record, recorded: int, *,
            notes: list[str] = (), stopped: str = "", left: int = 0, destination: Path | None = None,
            kinds: dict[str, int] | None = None, warned: list[str] = ()) -> int:
    """Close the record, print the summary (with the inputs by tone: gray, toned, color), each note,
    warning and failure; exit 130 after Ctrl-C, 1 if any failed."""
    import sqlite3

    if record is not None:
        try:
            record.close()
        except sqlite3.Error:
            pass
    print(f"done: {done}, skipped (exists, use --overwrite): {skipped}, failed: {len(failed)}"
          + (f", done before (record): {recorded}" if record is not None else "")
          + (f"  -> {destination}" if done and destination else ""))
    if kinds:
        print("inputs: " + ", ".join(f"{kinds[k]} {k}" for k in ("gray", "toned", "color") if k in kinds))
    for msg in notes:
        print(f"  note: {msg}")
    for msg in warned:
        print(f"  warning: {msg}", file=sys.stderr)
    for msg in failed:
        print(f"  failed: {msg}", file=sys.stderr)
    if stopped:
        advice = "Run again" if stopped == "interrupted" else "Free some space and run again"
        print(f"stopped: {stopped}; {left} image(s) not done. {advice}: finished outputs are kept and skipped.",
              file=sys.stderr)
    if stopped == "interrupted":
        return 130  # the shell's code for Ctrl-C
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
