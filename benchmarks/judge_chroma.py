"""What the bench judge rewards: the amount of color, or its hue?

    python benchmarks/judge_chroma.py [weights/unet_lite0.safetensors] --data ../shared/data/bench --limit 0

The top-1 agreement of ``colorize eval`` asks an EfficientNet-Lite2 ImageNet classifier (the judge) whether it
sees the same class in our colors as in the true photo. A model's colors are muted (about a quarter of the true
chroma on bench), so two things could cost agreement: too little color, or wrong hues. Here each bench photo is
scored, beside the gray photo, with its own true colors at a fraction of their chroma (``--scales``: the true
hues, less of them), and, given a model, with that model's colors and with the true hues at the model's amount of
color (the truth's ab scaled per photo so that its mean chroma is the model's, up or down). The gap between the last two is
what the model's hues cost at the amount of color it gives. Per source and overall, with 95% intervals against
gray; writes ``benchmarks/results/judge_chroma.json``.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from aged_bench import colorize_from, label  # benchmarks/: a model's colors joined to a lightness
from colorize import metrics
from colorize.color import lab_to_rgb_in_gamut, rgb_to_l, rgb_to_lab
from colorize.data import find_images
from colorize.evaluate import ImageNetClassifier, format_interval, gray_baseline, load_truth, score_photo, select
from colorize.pipeline import Colorizer


def with_chroma(lab: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """(1, 3, H, W) Lab with its ab scaled by ``scale`` -> sRGB in [0, 1], fitted into the gamut as the pipeline
    fits a model's colors."""
    return lab_to_rgb_in_gamut(lab[:, :1], lab[:, 1:] * scale)


def mean_chroma(lab: torch.Tensor) -> torch.Tensor:
    return lab[:, 1:].norm(dim=1).mean()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="a weight file or shipped model name, decoded as its file says")
    p.add_argument("--data", default="../shared/data/bench")
    p.add_argument("--limit", type=int, default=0, help="photos spread over the sources (0: all)")
    p.add_argument("--scales", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("-o", "--output", default="benchmarks/results/judge_chroma.json")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    root = Path(args.data)
    paths = select(sorted(find_images(root)), args.limit)
    judge = ImageNetClassifier()
    colorizer = Colorizer(args.model) if args.model else None
    name = label(args.model) if args.model else ""
    rows: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for i, path in enumerate(paths):
        truth = load_truth(path, "crop256")[None]
        lab = rgb_to_lab(truth)
        methods = {"gray": gray_baseline(truth)}
        methods.update({f"truth x {s:g}": with_chroma(lab, s) for s in args.scales})
        if colorizer is not None:
            l = rgb_to_l(truth)
            ours = colorize_from(colorizer, l, l)
            share = mean_chroma(rgb_to_lab(ours)) / mean_chroma(lab).clamp_min(1e-6)
            methods[name] = ours
            methods[f"truth at {name}'s chroma"] = with_chroma(lab, share)  # more than the truth's, if ours is
        scores = score_photo(torch.cat(list(methods.values())), truth[0], judge)
        parts = path.relative_to(root).parts
        source = parts[0] if len(parts) > 1 else "."
        for j, method in enumerate(methods):
            for group in ("all", source):
                r = rows[group][method]
                r["psnr"].append(float(scores["psnr"][j]))
                r["top1"].append(float(scores["top1_agree"][j]))
        if (i + 1) % 100 == 0:
            print(f"{i + 1}/{len(paths)}", flush=True)

    summary: dict = {"limit": args.limit, "model": args.model, "sources": {}}
    print("| source | method | PSNR (dB) | - gray [95%] | top-1 agreement | - gray [95%, points] |")
    print("|---|---|---|---|---|---|")
    for group, methods in rows.items():
        gray = methods["gray"]
        out = summary["sources"][group] = {"photos": len(gray["psnr"])}
        for method, r in methods.items():
            dp = None if method == "gray" else metrics.paired_difference(r["psnr"], gray["psnr"])
            dt = None if method == "gray" else metrics.paired_difference(r["top1"], gray["top1"])
            out[method] = {"psnr": np.mean(r["psnr"]), "top1": np.mean(r["top1"]),
                           "vs_gray_psnr": dp, "vs_gray_top1": dt}
            print(f"| {group} ({len(r['psnr'])}) | {method} | {np.mean(r['psnr']):.2f} | {format_interval(dp)} | "
                  f"{np.mean(r['top1']):.1%} | {format_interval(dt, '+.1f', 100)} |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(summary, indent=1, default=float))


if __name__ == "__main__":
    main()
