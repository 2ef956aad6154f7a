"""``colorize video``: colorize a film with colors that hold still from frame to frame."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from colorize.batch import MODEL_ERRORS
from colorize.commands.options import add_model_options, build_colorizer, network_runtime
from colorize.temporal import TemporalConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="colorize video", description=__doc__)
    p.add_argument("input", metavar="IN", help="input video (any format FFmpeg reads)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output video; its extension picks the container (default: IN_color.mp4 beside IN); or a "
                        "folder (one that exists, or a name ending in /) to write IN's name with .mp4 in")
    add_model_options(p, runtime=False)
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                   help="the network's engine: torch, or onnx (onnxruntime, from the model's ONNX export; a weight "
                        "file is exported once and cached); the rest of the pipeline runs on torch. Default auto: "
                        "onnx for a shipped model or an .onnx file on the CPU (the same frames within float rounding, "
                        "less CPU a frame, and its idle threads leave the cores to the rest of the pipeline), else torch")
    p.add_argument("--no-temporal", action="store_true",
                   help="colorize every frame on its own (no color propagation along the motion)")
    p.add_argument("--keyframe-interval", type=int, default=TemporalConfig.keyframe_interval, metavar="N",
                   help="the network colors the first frame of each shot, then every N-th frame; the frames between "
                        "carry its last colors along the motion (default %(default)s; 1: the network on every frame)")
    p.add_argument("--report", action="store_true",
                   help="print speed, scene cuts and flicker (temporal vs per-frame)")
    p.add_argument("--report-json", metavar="FILE", help="also write the report as JSON (implies --report)")
    p.add_argument("--hints", metavar="FILE",
                   help='color hints: a JSON list of {"frame": 120, "x": 300, "y": 40, "color": "red", "radius": 60}; '
                        "frame numbers from 0; each hint holds for its frame's shot, carried along the motion")
    p.add_argument("--batch-size", type=int, default=8, help="frames per network call (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def _output(src: Path, output: str | None) -> Path:
    """Where the video goes: ``output`` as given, ``output/IN.mp4`` when it names a folder (one that exists, or a
    name ending in a slash), IN_color.mp4 beside IN without one."""
    from colorize.batch import OUTPUT_SUFFIX

    if output is None:
        return src.with_name(f"{src.stem}{OUTPUT_SUFFIX}.mp4")
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        return Path(output) / f"{src.stem}.mp4"
    return Path(output)


def damaged_note(damaged: list[int]) -> str:
    """What skipping damaged packets did, from the summary's ``damaged`` (the frames they came before)."""
    at = ", ".join(map(str, damaged[:5])) + (", ..." if len(damaged) > 5 else "")
    return (f"{len(damaged)} damaged video packet(s) could not be decoded and were skipped (before frame {at}); "
            "the frame before each stays on screen in its place")


def format_report(r: dict[str, Any]) -> str:
    """The human-readable report of :func:`colorize.video.colorize_video`'s summary."""

    def num(x: float | None, fmt: str = ".2f") -> str:
        return "n/a" if x is None else format(x, fmt)

    lines = [
        f"{r['input']} -> {r['output']}",
        f"  frames:  {r['frames']} ({r['width']}x{r['height']} @ {num(r['fps'], '.3g')} fps, "
        f"{num(r['duration'])} s), audio: {r['audio']}",
        f"  model:   {r['model']} at working size {r['working_size']}, temporal: {'on' if r['temporal'] else 'off'}",
        f"  speed:   {num(r['frames_per_second'], '.1f')} frames/s ({num(r['seconds'], '.1f')} s); the network "
        f"colored {r['predicted_frames']} of {r['frames']} frames",
        f"  cuts:    {', '.join(map(str, r['cuts'])) or 'none'}",
    ]
    if r.get("hints"):
        lines.append(f"  hints:   {r['hints']}, carried through {r['frames_with_hints']} frames of their shots")
    if r["flicker"] is not None or r["flicker_per_frame"] is not None:
        per_frame = num(r["flicker_per_frame"])
        if r["flicker_per_frame"] is None:  # the network skipped frames: no two consecutive raw predictions
            per_frame += " (measured with --keyframe-interval 1)"
        shown = f"temporal {num(r['flicker'])}, " if r["temporal"] else ""
        ratio = f", ratio {num(r['flicker_ratio'])}" if r["temporal"] and r["flicker_ratio"] is not None else ""
        lines.append(f"  flicker: {shown}per-frame {per_frame}{ratio} "
                     "(mean Lab ab change after following the motion; lower is steadier)")
        chroma = f"temporal {num(r['chroma'], '.1f')}, " if r["temporal"] else ""
        lines.append(f"  chroma:  {chroma}per-frame {num(r['chroma_per_frame'], '.1f')} (mean |ab|)")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    src = Path(args.input)
    dst = _output(src, args.output)
    report = args.report or bool(args.report_json)
    if dst.exists() and dst.resolve() == src.resolve():  # before "exists": --overwrite would not do either
        print(f"error: {dst}: the output would overwrite the input; name another with -o", file=sys.stderr)
        return 2
    if dst.exists() and not args.overwrite:
        print(f"error: {dst} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    if args.report_json and Path(args.report_json).is_dir():  # found now, not after the film
        print(f"error: --report-json {args.report_json} is a folder; name a file", file=sys.stderr)
        return 2
    for name in ("batch_size", "keyframe_interval"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2

    from colorize.io import clean_stale_temporaries
    from colorize.video import VideoError, colorize_video, load_video_hints

    stale = clean_stale_temporaries(dst.parent)
    if stale:
        print(f"removed {len(stale)} temporary file(s) left by an interrupted run (e.g. {stale[0]})")
    try:
        hints = load_video_hints(args.hints) if args.hints else None
        args.runtime = network_runtime(args.runtime, args.model, args.device)
        if args.threads is None:  # the pipeline's threads keep the cores busy: one each is faster (less CPU a frame)
            args.threads = 1     # than the network's own pool taking both cores from the others
        colorizer = build_colorizer(args, torch_options=["video"])  # the torch pipeline, its network on args.runtime
    except MODEL_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        result = colorize_video(src, dst, colorizer, temporal=not args.no_temporal, batch_size=args.batch_size,
                                report=report, progress=False if args.quiet else None, hints=hints,
                                torch_threads=args.threads,
                                config=TemporalConfig(keyframe_interval=args.keyframe_interval))
    except VideoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # output side: disk full, permissions, a folder in the way
        print(f"error: cannot write {dst} ({e})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; {dst} was not written", file=sys.stderr)
        return 130
    color = result["tones"].get("color", 0)
    if color:
        print(f"warning: {src}: already in color ({color} of the {sum(result['tones'].values())} frames looked at, one "
              "a second); colorized from its lightness, its own colors are not in the output", file=sys.stderr)
    if result["dropped"]:
        print(f"warning: {src}: not copied (only the picture and the sound are written): "
              f"{', '.join(result['dropped'])}", file=sys.stderr)
    if result["damaged"]:
        print(f"warning: {src}: {damaged_note(result['damaged'])}", file=sys.stderr)
    if report:
        print(format_report(result))
        if args.report_json:
            from colorize.io import atomic_write

            try:  # its folder made if need be
                atomic_write(args.report_json, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2) + "\n"))
            except OSError as e:
                print(f"error: cannot write the report {args.report_json} ({e}); {dst} was written", file=sys.stderr)
                return 1
    else:
        print(f"wrote {dst} ({result['frames']} frames, {result['frames_per_second']:.1f} frames/s)")
    return 0
