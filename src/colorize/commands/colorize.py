"""``colorize PATH...``: colorize photos, files, folders (recursive) and tar shards, into an output folder.

Argument parsing and printing over :mod:`colorize.batch` (plan the outputs, colorize the files) or, with
``--engine ray``, :func:`colorize.ray.colorize_pairs`: the same inputs, outputs and report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from colorize import __version__, shipped
from colorize.batch import (DEFAULT_OUTPUT, DEFAULT_QUALITY, LOCAL_WORKERS, MODEL_ERRORS, colorize_files,
                            conflicts, output_file, plan_outputs, usable_colorizer)
from colorize.cli import SUBCOMMANDS
from colorize.commands.options import add_model_options, bounded, colorizer_spec, torch_installed

PROGRESS_SECONDS = 10.0  # without a terminal: one progress line this often
SHOWN_CONFLICTS = 20  # outputs that cannot be written as planned, named before the count of the rest


def main(argv: list[str]) -> int:
    return run(parser().parse_args(argv))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="colorize",
        description="Colorize black-and-white photos. Files, folders (recursive) and tar shards (as packed by "
                    "`colorize shards`: each photo goes to OUT/<its key>.<ext>) are accepted.",
        epilog="subcommands:\n" + "\n".join(f"  {k:<8} {v}" for k, v in SUBCOMMANDS.items())
        + "\n\nrun `colorize SUBCOMMAND --help` for each one's options",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, folders, or .tar shards (paths, globs, {000..009} ranges)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output folder (default: ./colorized); for a single file, may be a file name")
    add_model_options(p)
    p.add_argument("--format", choices=["same", "jpg", "png", "webp", "tif", "bmp"], default="same",
                   help="output format (same: as the input's, PNG for formats that cannot be written; an output file "
                        "named with -o is in the format of its extension). 16-bit gray scans come out as 16-bit RGB "
                        "in png and tif, in 8 bits in jpg, webp and bmp")
    p.add_argument("--quality", type=_quality, default=DEFAULT_QUALITY, metavar="Q",
                   help=f"JPEG, WebP and AVIF quality, 1-100 (default {DEFAULT_QUALITY})")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--in-place-ok", action="store_true",
                   help="allow writing into the input folder (never over an input file: with another --format, "
                        "e.g. photo.jpg -> photo.png)")
    p.add_argument("--record", action="store_true",
                   help="keep a record of finished files in OUT/.colorize-done*.sqlite; a rerun after a crash "
                        "skips them (even with --overwrite) unless the file changed or its output is gone; other "
                        "settings (model, size, format, ...) start a new record (docs/scaling.md)")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="process only part K of N (1 <= K <= N) of the files, split by a hash of their "
                        "relative path: run N of these on N machines or GPUs; implies --record")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process; ray: a Ray Data pipeline, on a local Ray or a cluster "
                        "(needs the ray extra; see docs/scaling.md)")
    p.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: join this Ray cluster (auto, HOST:PORT or ray://HOST:PORT) "
                        "instead of starting a local Ray")
    p.add_argument("--workers", type=_workers, metavar="N",
                   help=f"photos colorized at a time: on the local engine (default {LOCAL_WORKERS}; 1: one after "
                        "another) each gets its share of the cores unless --threads says how many; with --engine ray, "
                        "its actors, each loading the model once (default: one per --threads CPUs)")
    g = p.add_argument_group("guiding the colors")
    g.add_argument("--hint", action="append", default=[], metavar="X,Y,COLOR[,RADIUS]",
                   help="a color hint (repeatable): a point in the photo's pixels, a color (#2a6fdb, red, "
                        "rgb(..)) and optionally a radius in pixels (default: bounded by the photo's edges only)")
    g.add_argument("--hints", metavar="FILE",
                   help='hints from a JSON file: [{"x": 120, "y": 80, "color": "#2a6fdb", "radius": 40}, ...], '
                        'or {"photo.jpg": [...], ...} for several photos (by file name, or by the end of '
                        'the path, 2019/photo.jpg, where two share a name)')
    g.add_argument("--confidence", action="store_true",
                   help="also write NAME.confidence.png beside each output (255 = the model is sure)")
    in_color = g.add_mutually_exclusive_group()  # both act on the photos already in color: one or the other
    in_color.add_argument("--keep-color", action="store_true",
                          help="write photos that are already in color unchanged instead of recolorizing them")
    in_color.add_argument("--tint-as-hints", action="store_true",
                          help="use a hand-tinted (partly colored) photo's own colors as hints (not with "
                               "--keep-color, which writes such photos unchanged)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--version", action="version", version=f"colorize {__version__}")
    return p


_quality = bounded(int, 1, 100, what="quality")
_workers = bounded(int, 1, what="workers")


def _shard(spec: str) -> tuple[int, int]:
    from colorize.archive import parse_shard

    try:
        return parse_shard(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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


def _hints_for(args: argparse.Namespace, sources: list):
    """A function: input path -> its hints, from ``--hint`` and ``--hints`` (None without either). Hints given as a plain list
    need a single input photo; a ``{file name: [...]}`` file may name several (by name or path)."""
    hints_file = getattr(args, "hints", None)
    if not getattr(args, "hint", None) and not hints_file:
        return None
    from colorize.hints import load_hints, parse_hint

    given = [parse_hint(h) for h in getattr(args, "hint", None) or []]
    per_file: dict[str, list] = {}
    if hints_file:
        loaded = load_hints(hints_file)
        if isinstance(loaded, dict):
            per_file = loaded
        else:
            given += loaded
    if given and len(sources) != 1:
        raise ValueError(f"--hint and a list of --hints are for one photo, got {len(sources)}; give a JSON "
                         'object {"photo.jpg": [...]} to hint several')
    by_photo: dict = {}  # input (a Path or a ShardMember) -> its hints
    photos_named = _photo_finder(sources) if per_file else None
    for key, hints in per_file.items():  # each key picks exactly one photo
        named = photos_named(key)
        if not named:
            raise ValueError(f"{hints_file}: no input photo named {key}")
        if len(named) > 1:
            raise ValueError(f"{hints_file}: '{key}' names {len(named)} input photos "
                             f"({', '.join(map(str, named))}); key their hints by path")
        by_photo.setdefault(named[0], []).extend(hints)

    def hints_for(src) -> list:
        return given + by_photo.get(src, [])

    return hints_for


def _photo_finder(sources: list):
    """A function: a ``{file name: [...]}`` key -> the input photos it names: the same file (however the path is
    written, or SHARD:MEMBER as reports name it), or the photos whose path ends with it ("a.jpg", "2019/a.jpg"
    within the folder given, "album/2019/a.jpg"; Windows' backslashes too)."""
    paths = {s: s if isinstance(s, Path) else Path(s.shard, s.name) for s in sources}  # a shard's member in it
    by_name: dict[str, list] = {}
    for s, path in paths.items():
        by_name.setdefault(path.name, []).append(s)
    same_file = {path.absolute().resolve(): s for s, path in paths.items()} | {str(s): s for s in sources}

    def named(key: str) -> list:
        parts = Path(key.replace("\\", "/")).parts
        if not parts:
            return []
        found = [s for s in by_name.get(parts[-1], []) if paths[s].parts[-len(parts):] == parts]
        same = same_file.get(key) or same_file.get(Path(key).absolute().resolve())
        return found if same is None or same in found else [*found, same]

    return named


def _contents(path: str | None) -> str | None:
    """A file as the record keys it: its name and a digest of what it says, so an edited --hints file (same name,
    other colors) starts a new record instead of finding every photo done."""
    if path is None:
        return None
    import hashlib

    try:
        return f"{path} sha256:{hashlib.sha256(Path(path).read_bytes()).hexdigest()}"
    except OSError:  # read a moment ago by load_hints: gone since, the name alone
        return path


def run(args: argparse.Namespace) -> int:
    """Colorize every image; print a summary naming every input not done; exit 1 if any failed."""
    engine = getattr(args, "engine", "local")
    if engine == "ray":
        from colorize.ray import RayEngineError, require_ray

        try:
            require_ray()
        except RayEngineError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif getattr(args, "address", None):
        print("error: --address needs --engine ray", file=sys.stderr)
        return 2
    torch_options = [flag for flag, name in (("--hint", "hint"), ("--hints", "hints"), ("--confidence", "confidence"),
                                             ("--tint-as-hints", "tint_as_hints")) if getattr(args, name, None)]
    if torch_options and not torch_installed():
        from colorize.lite import TORCH_ONLY

        print(f"error: {', '.join(torch_options)}: {TORCH_ONLY}", file=sys.stderr)
        return 2
    from colorize import archive
    from colorize.data import IMAGE_EXTENSIONS
    from colorize.io import clean_stale_temporaries, format_of

    plan = plan_outputs(args.paths, args.output, args.format)
    pairs = plan.pairs
    problems = [f"{path}: {reason}" for path, reason in plan.problems]
    named = output_file(args.paths, args.output)
    if named is not None and args.format != "same" and format_of(named.suffix) != format_of(f".{args.format}"):
        print(f"error: -o {named} is a {named.suffix} file name but --format asks for {args.format}; drop one of them",
              file=sys.stderr)
        return 2
    out_dir = named.parent if named is not None else Path(args.output or DEFAULT_OUTPUT)
    if named is None and out_dir.exists() and not out_dir.is_dir():
        print(f"error: -o {out_dir} is a file, not a folder; give a folder for the outputs (or, for one photo, an "
              "output file name with an image extension)", file=sys.stderr)
        return 2
    if named is None and args.output and format_of(out_dir.suffix) and not out_dir.is_dir():
        print(f"error: -o {out_dir} is a file name, but the inputs are a folder or several photos; give a folder "
              "for them", file=sys.stderr)
        return 2
    inputs = [src for src, _ in pairs]  # a hints file names photos of the whole job, not of one shard of it
    shard = getattr(args, "shard", None)
    if shard:
        found = len(pairs)
        pairs = archive.select_shard(pairs, out_dir, shard)
        if found and not pairs:
            print(f"shard {shard[0]}/{shard[1]}: none of the {found} images")
            return 0
    refused = conflicts(pairs, named=named is not None, in_place_ok=args.in_place_ok)
    for problem in refused[:SHOWN_CONFLICTS]:
        print(f"error: {problem}", file=sys.stderr)
    if len(refused) > SHOWN_CONFLICTS:
        print(f"error: and {len(refused) - SHOWN_CONFLICTS} more like these", file=sys.stderr)
    if refused:
        return 2
    if not pairs:
        for msg in problems:
            print(f"error: {msg}", file=sys.stderr)
        print(f"no images found in {', '.join(args.paths)} (photos: {', '.join(e[1:] for e in IMAGE_EXTENSIONS)})"
              + (f"; {_videos_left(plan.videos)}" if plan.videos else ""), file=sys.stderr)
        return 2 if problems else 1
    try:
        hints_for = _hints_for(args, inputs)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = [t for folder in sorted({d.parent for _, d in pairs}) for t in clean_stale_temporaries(folder)]
    if stale:
        print(f"removed {len(stale)} temporary file(s) left by an interrupted run (e.g. {stale[0]})")
    record, recorded = None, 0
    if shard or getattr(args, "record", False):
        settings = {k: getattr(args, k) for k in ("size", "temperature", "saturation", "format")}
        settings["model"] = shipped.model_identity(args.model)  # its weights: new ones behind the name redo all
        # what else changes the files, named only away from its default (a record made without them still holds)
        settings.update({k: v for k, v, default in [("quality", args.quality, DEFAULT_QUALITY),
                                                    ("keep_color", args.keep_color, False),
                                                    ("tint_as_hints", args.tint_as_hints, False),
                                                    ("confidence", args.confidence, False),
                                                    ("hint", getattr(args, "hint", None) or [], []),
                                                    ("hints", _contents(getattr(args, "hints", None)), None)]
                         if v != default})
        try:
            record = archive.DoneRecord(archive.record_path(out_dir, shard), settings, shard=shard)
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
    options = dict(quality=args.quality, hints_for=hints_for, confidence=args.confidence,
                   keep_color=args.keep_color, tint_as_hints=args.tint_as_hints)
    ray_job = engine == "ray" and bool(todo)  # nothing to do: no Ray job, the model checked here as by the local engine
    try:
        spec = colorizer_spec(args, torch_options=torch_options,
                              network_options=[flag for flag in torch_options if flag == "--confidence"])
        if ray_job:
            from colorize.ray import colorize_pairs

            # the actors build `spec` (the local engine's choice, so the same files) and check it as the local engine
            # does; this process never loads the model (seconds of imports, spent again in every actor)
            result = colorize_pairs(todo, colorizer=spec, address=args.address, workers=args.workers,
                                    progress=lambda items: _progress(items, quiet=args.quiet),
                                    on_done=record.mark_done if record is not None else None, **options)
        elif engine == "ray":  # nothing to do; the actors may have a device this machine has not
            colorizer, workers = usable_colorizer(replace(spec, device="cpu"), confidence=args.confidence), 1
        else:
            workers = max(1, min(args.workers or LOCAL_WORKERS, len(todo)))
            colorizer = usable_colorizer(spec.shared_by(workers), confidence=args.confidence)
    except MODEL_ERRORS as e:  # RayEngineError too
        print(f"error: {e}", file=sys.stderr)
        if record is not None:
            record.close()
        return 2
    if not ray_job:
        result = colorize_files(colorizer, todo, record=record, workers=workers,
                                progress=lambda items: _progress(items, quiet=args.quiet), **options)
    notes = [f"{d}: same file as {first}; done once" for d, first in plan.duplicates] + result.notes
    if plan.videos:
        notes.append(_videos_left(plan.videos))
    return _report(args, result.done, skipped, list(problems) + result.failed, record, recorded, notes=notes,
                   stopped=result.stopped, left=result.left, destination=named or out_dir, kinds=result.kinds,
                   warned=result.warned, eight_bit=result.eight_bit)


def _videos_left(videos: list[Path], shown: int = 3) -> str:
    """What a run over folders says of the films in them, which it leaves to ``colorize video``."""
    names = ", ".join(str(v) for v in videos[:shown])
    names += f" and {len(videos) - shown} more" if len(videos) > shown else ""
    return (f"{len(videos)} video{'s' * (len(videos) != 1)} left out ({names}): "
            "`colorize video FILM -o OUT` colorizes a film")


def _eight_bit_message(why: str, count: int) -> str:
    """What the summary says, once a run, of the ``count`` 16-bit inputs written in 8 bits for reason ``why``
    (:func:`colorize.io.written_in_8bits`)."""
    inputs = f"{count} 16-bit input{'s' * (count != 1)}"
    if why == "profile":
        return (f"{inputs} written in 8 bits: an ICC profile other than sRGB is applied in 8 bits (convert the "
                "scans to sRGB or untagged gray to keep 16 bits)")
    return (f"{inputs} written in 8 bits, which JPEG, WebP and BMP hold at most; PNG and TIFF keep 16 bits: "
            "--format png or --format tif (or an output named .png or .tif)")


def _report(args: argparse.Namespace, done: int, skipped: int, failed: list[str], record, recorded: int, *,
            notes: list[str] = (), stopped: str = "", left: int = 0, destination: Path | None = None,
            kinds: dict[str, int] | None = None, warned: list[str] = (),
            eight_bit: dict[str, int] | None = None) -> int:
    """Close the record, print the summary (with the inputs by tone: gray, toned, color), each note,
    warning and failure, and once what of the 16-bit inputs was written in 8 bits; exit 130 after Ctrl-C, 1 if
    any failed."""
    import sqlite3

    from colorize.cli import format_warning
    from colorize.io import Notice

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
    for why, count in sorted((eight_bit or {}).items()):
        print(format_warning(_eight_bit_message(why, count), Notice, __file__, 0), end="", file=sys.stderr)
    for msg in failed:
        print(f"  failed: {msg}", file=sys.stderr)
    if stopped:
        advice = "Run again" if stopped == "interrupted" else "Run again once that is fixed"
        print(f"stopped: {stopped}; {left} image(s) not done. {advice}: finished outputs are kept and skipped.",
              file=sys.stderr)
    if stopped == "interrupted":
        return 130  # the shell's code for Ctrl-C
    return 1 if failed else 0
