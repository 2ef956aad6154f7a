"""The ``colorize`` command: thin argument parsing over library functions.

``colorize PATH...`` colorizes files and folders; subcommands handle the rest. ``--help`` and
``--version`` answer without importing torch (heavy imports live inside the commands).
"""

from __future__ import annotations

import argparse
import sys
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
    p.add_argument("--size", type=int, help="working size (long side) the network sees; default per model")
    p.add_argument("--temperature", type=float, default=None, help="annealed-mean temperature (default 0.38)")
    p.add_argument("--saturation", type=float, default=1.0, help="chroma multiplier (default 1.0)")
    p.add_argument("--format", choices=["same", "jpg", "png"], default="same", help="output format")
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
    g = p.add_argument_group("guiding the colors")
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
    args = _colorize_parser().parse_args(argv)
    return colorize_paths(args)


def plan_outputs(paths: list[str], output: str | None, fmt: str) -> list[tuple[Path, Path]]:
    """Pair every input image with its output path, keeping folder structure relative to each root."""
    from colorize.data import IMAGE_EXTENSIONS, find_images

    out_root = Path(output) if output else Path("colorized")
    pairs: list[tuple[Path, Path]] = []
    single_file = len(paths) == 1 and Path(paths[0]).is_file()
    for raw in paths:
        root = Path(raw)
        if single_file and output and Path(output).suffix.lower() in IMAGE_EXTENSIONS:
            return [(root, Path(output))]
        files = find_images(root)
        if root.is_dir() and out_root.resolve() != root.resolve() and out_root.resolve().is_relative_to(root.resolve()):
            files = [f for f in files if not f.resolve().is_relative_to(out_root.resolve())]  # earlier outputs
        for f in files:
            rel = f.relative_to(root) if root.is_dir() else Path(f.name)
            if root.is_dir() and len(paths) > 1:
                rel = Path(root.name) / rel
            suffix = f.suffix if fmt == "same" else f".{fmt}"
            if suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"):
                suffix = ".png"
            pairs.append((f, out_root / rel.with_suffix(suffix)))
    return pairs


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
    """Colorize every image; print a summary; exit 1 if any failed."""
    from colorize import archive
    from colorize.data import IMAGE_EXTENSIONS, ImageError

    try:
        pairs = plan_outputs(args.paths, args.output, args.format)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = Path(args.output or "colorized")
    if out_dir.suffix.lower() in IMAGE_EXTENSIONS:
        out_dir = out_dir.parent
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
        if not args.in_place_ok and dst.resolve().parent == src.resolve().parent:
            print(f"error: output {dst} would be written next to its input; choose another -o "
                  "or pass --in-place-ok", file=sys.stderr)
            return 2
    if not pairs:
        print("no images found", file=sys.stderr)
        return 1
    try:
        hints_for = _hints_for(args, [src for src, _ in pairs])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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

    from tqdm import tqdm

    from colorize.distributed import pick_device
    from colorize.pipeline import Colorizer

    kwargs = {"temperature": args.temperature} if args.temperature is not None else {}
    try:
        device = str(pick_device(getattr(args, "device", "cpu")))
        model = args.model
        if args.runtime == "onnx":
            from colorize.models._base import DEFAULT_TEMPERATURE
            from colorize.onnx import OnnxModel, cached_onnx

            temperature = kwargs.pop("temperature", None)  # baked into the exported graph
            if temperature is None and not str(model).endswith(".onnx"):
                from colorize.hub import recorded_defaults, resolve_model

                # the weight file's header is enough: building the model costs the import of timm
                temperature = recorded_defaults(model).get("temperature")
                if temperature is None:
                    temperature = getattr(resolve_model(model), "default_temperature", DEFAULT_TEMPERATURE)
            model = OnnxModel(cached_onnx(model, temperature=temperature), threads=args.threads)
        colorizer = Colorizer(model, size=args.size, saturation=args.saturation, threads=args.threads,
                              device=device, **kwargs)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if getattr(args, "confidence", False) and getattr(colorizer.model, "output", "ab") != "bins":
        print(f"error: --confidence needs a classification (bins) model; {colorizer.model_name} predicts "
              "colors directly (the onnx runtime too)", file=sys.stderr)
        return 2
    failed: list[str] = []
    done = 0
    kinds: dict[str, int] = {}
    for src, dst in tqdm(todo, unit="img", disable=args.quiet or not todo, dynamic_ncols=True):
        try:
            result = colorizer.colorize_file(src, dst, hints=hints_for(src), confidence=getattr(args, "confidence", False),
                                             keep_color=getattr(args, "keep_color", False), tint_as_hints=getattr(args, "tint_as_hints", False))
            tone = getattr(result, "tone", None)
            if tone is not None:
                kinds[tone.kind] = kinds.get(tone.kind, 0) + 1
                if tone.kind == "color":
                    action = ("passed through unchanged (--keep-color)" if result.passed_through else
                              f"colorized from its lightness with {result.hints} hints from its tint"
                              if getattr(args, "tint_as_hints", False) else "colorized from its lightness; --keep-color writes "
                              "such photos unchanged, --tint-as-hints uses their colors as hints")
                    tqdm.write(f"warning: {src}: {tone.describe()}; {action}", file=sys.stderr)
            done += 1
            if record is not None:
                record.mark_done(src)
        except ImageError as e:
            failed.append(str(e))
        except ValueError as e:  # a hint outside this photo
            failed.append(f"{src}: {e}")
        except OSError as e:  # output side: disk full, permissions
            failed.append(f"{src}: cannot write {dst} ({e})")
    if record is not None:
        record.close()
    print(f"done: {done}, skipped (exists, use --overwrite): {skipped}, failed: {len(failed)}"
          + (f", done before (record): {recorded}" if record is not None else "")
          + (f"  -> {Path(args.output or 'colorized')}" if done else ""))
    if kinds:
        print("inputs: " + ", ".join(f"{kinds[k]} {k}" for k in ("gray", "toned", "color") if k in kinds))
    for msg in failed:
        print(f"  failed: {msg}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
