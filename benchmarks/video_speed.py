"""Video benchmark: frames/s of ``colorize video`` at 480p and 1080p, and flicker with the temporal
consistency on vs off (per-frame colorization).

Each resolution gets a synthetic clip (a camera pan over a procedural photo, a cut, then a zoom), or
use ``--video`` for real footage. Flicker is the mean Lab ab change between consecutive output frames
after following the optical flow of the gray input frames (lower is steadier), measured on the
encoded output files.

    python benchmarks/video_speed.py                         # shipped default model, 480p + 1080p
    python benchmarks/video_speed.py --untrained alpha --frames 8 --heights 120   # a few-second smoke run

Writes benchmarks/results/video.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "video.json"
FPS = 24


def procedural_photo(width: int, height: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8: smooth color gradients, a bright band, colored discs and fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([0.5 + 0.4 * np.sin(x / width * 5 + seed), 0.4 + 0.3 * np.cos(y / height * 6),
                    np.where(y < height / 3, 0.85, 0.3)], axis=-1)
    for _ in range(40):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.01, 0.08) * width
        img[(x - cx) ** 2 + (y - cy) ** 2 < r**2] = rng.uniform(0, 1, 3)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)  # film-grain-like texture
    return (img.clip(0, 1) * 255).astype(np.uint8)


def synthetic_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """A gray H.264 clip: a pan over one photo for the first half, a cut, then a zoom into another."""
    import av
    import cv2

    pan = procedural_photo(width * 3 // 2, height * 3 // 2, seed=1)
    zoom = procedural_photo(width, height, seed=2)
    half = frames // 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i in range(frames):
            if i < half:
                dx = int((width // 2) * i / max(1, half - 1))
                rgb = pan[height // 8: height // 8 + height, dx: dx + width]
            else:
                s = 1.0 + 0.3 * (i - half) / max(1, frames - half - 1)
                m = cv2.getRotationMatrix2D((width / 2, height / 2), 0, s)
                rgb = cv2.warpAffine(zoom, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            gray = np.repeat(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(gray, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def bench_one(src: Path, workdir: Path, colorizer, *, batch_size: int) -> dict[str, Any]:
    """Colorize ``src`` three ways: temporal consistency as shipped (the network on keyframes, every second frame),
    temporal with the network on every frame, and every frame on its own; speed and flicker of each."""
    from colorize.temporal import TemporalConfig
    from colorize.video import colorize_video, video_flicker

    row: dict[str, Any] = {"input": str(src)}
    for tag, temporal, interval in (("temporal", True, TemporalConfig.keyframe_interval), ("every_frame", True, 1),
                                    ("per_frame", False, 1)):
        out = workdir / f"{src.stem}_{tag}.mp4"
        summary = colorize_video(src, out, colorizer, temporal=temporal, batch_size=batch_size, report=True,
                                 config=TemporalConfig(keyframe_interval=interval))
        measured = video_flicker(out, gray=src)
        row.update({"frames": summary["frames"], "width": summary["width"], "height": summary["height"],
                    f"fps_{tag}": summary["frames_per_second"], f"flicker_{tag}": measured["flicker"],
                    f"chroma_{tag}": measured["chroma"], f"predicted_{tag}": summary["predicted_frames"],
                    "cuts": summary["cuts"]})
        if tag == "every_frame":
            row["flicker_in_run"] = summary["flicker"]
            row["flicker_in_run_per_frame"] = summary["flicker_per_frame"]
    row["flicker_ratio"] = row["flicker_temporal"] / row["flicker_per_frame"] if row["flicker_per_frame"] else None
    row["chroma_ratio"] = row["chroma_temporal"] / row["chroma_per_frame"] if row["chroma_per_frame"] else None
    return row


def markdown(rows: list[dict[str, Any]], model: str, size: int) -> str:
    """The results as a markdown table."""
    lines = [f"model `{model}`, working size {size}; flicker in Lab ab units (lower is steadier); temporal: as "
             "shipped (the network on keyframes), every frame: temporal with the network on every frame "
             "(`--keyframe-interval 1`), per-frame: no temporal consistency (`--no-temporal`)", "",
             "| video | frames | frames/s temporal | every frame | per-frame | flicker temporal | every frame "
             "| per-frame | ratio | chroma ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['width']}x{r['height']} | {r['frames']} | {r['fps_temporal']:.2f} | "
                     f"{r['fps_every_frame']:.2f} | {r['fps_per_frame']:.2f} | {r['flicker_temporal']:.2f} | "
                     f"{r['flicker_every_frame']:.2f} | {r['flicker_per_frame']:.2f} | "
                     f"{r['flicker_ratio']:.2f} | {r['chroma_ratio']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="shipped model name or weight file (default: the shipped default)")
    p.add_argument("--untrained", metavar="ARCH", help="an untrained registered model instead (speed only)")
    p.add_argument("--size", type=int, help="working size (default: the model's)")
    p.add_argument("--heights", type=int, nargs="+", default=[480, 1080], help="synthetic clip heights (16:9)")
    p.add_argument("--frames", type=int, default=48, help="frames per synthetic clip")
    p.add_argument("--video", nargs="+", help="real videos to use instead of synthetic clips")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1,
                   help="the network's threads, as `colorize video` picks them (default 1: the pipeline's three "
                        "threads share the cores)")
    p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                   help="the network's engine, as `colorize video --runtime` picks it (default auto)")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = p.parse_args()

    from colorize.commands.options import network_runtime
    from colorize.pipeline import Colorizer

    model = args.model
    runtime = "torch" if args.untrained else network_runtime(args.runtime, args.model)  # a module: torch
    if args.untrained:
        from colorize.models import create_model

        model = create_model(args.untrained)
    colorizer = Colorizer(model, size=args.size, threads=args.threads, runtime=runtime)
    import torch

    colorizer.colorize_tensor(torch.rand(3, 64, 64))  # warm-up: first calls allocate and pick kernels
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.video:
            sources = [Path(v) for v in args.video]
        else:
            sources = [synthetic_clip(workdir / f"gray_{h}p.mp4", (h * 16 // 9) // 2 * 2, h, args.frames)
                       for h in args.heights]
        for src in sources:
            rows.append(bench_one(src, workdir, colorizer, batch_size=args.batch_size))
            if not args.video:
                rows[-1]["input"] = f"synthetic {rows[-1]['height']}p"
    result = {"model": colorizer.model_name, "working_size": colorizer.size, "runtime": runtime,
              "threads": args.threads,
              "machine": platform.processor() or platform.machine(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(rows, colorizer.model_name, colorizer.size))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
