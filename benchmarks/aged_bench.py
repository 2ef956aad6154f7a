"""How well colors hold when the input looks like a genuine old photo: bench/ with its lightness aged.

    python benchmarks/aged_bench.py weights/unet_lite0.safetensors [other.safetensors ...] \\
        --data ../shared/data/bench --limit 400

Genuine old photos (``samples/historical_bw``) have no color truth, and bench/'s photos are clean. Here
each bench photo's lightness is aged as a century would (``colorize.aging``: tone curve, fading, blur,
grain; the same draws for every model, from ``--seed``), the model colors the aged photo, and its colors
are joined to the *clean* lightness and scored against the true photo beside the gray photo, as ``colorize
eval`` scores (PSNR on RGB, the EfficientNet-Lite2 judge's top-1 agreement, colorfulness). The clean rows
are the same photos un-aged, so the cost of aging is the difference. Each model is decoded as its weight
file says (prior correction, temperature, working size), or as ``--prior-correction`` and ``--temperature``
say (training snapshots record none). Writes ``benchmarks/results/aged_bench.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from colorize import metrics
from colorize.aging import age_lightness
from colorize.color import rgb_to_l
from colorize.data import find_images
from colorize.evaluate import ImageNetClassifier, format_interval, gray_baseline, load_truth, score_photo, select
from colorize.pipeline import Colorizer, Prepared
from colorize.shipped import resolve_model
from tune_decoding import decoded  # benchmarks/: one way to decode a model for scoring


def colorize_from(colorizer: Colorizer, l_clean: torch.Tensor, l_input: torch.Tensor) -> torch.Tensor:
    """Colors predicted from ``l_input`` (1, 1, H, W), joined to ``l_clean`` -> (1, 3, H, W) sRGB in [0, 1]."""
    prepared = Prepared(l_clean, l_clean)
    return colorizer.compose(prepared, colorizer.predict(l_input))


def label(spec: str) -> str:
    """A snapshot by its run folder and file (runs/x/epoch004.safetensors: x-epoch004), a shipped model by name."""
    path = Path(spec)
    return f"{path.parent.name}-{path.stem}" if path.suffix else spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+")
    p.add_argument("--data", default="../shared/data/bench")
    p.add_argument("--limit", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior-correction", type=float, help="in all (default: as each file records)")
    p.add_argument("--temperature", type=float, help="(default: as each file records)")
    p.add_argument("-o", "--output", default="benchmarks/results/aged_bench.json")
    args = p.parse_args()

    torch.set_num_threads(2)
    paths = select(sorted(find_images(args.data)), args.limit)
    judge = ImageNetClassifier()

    def load(spec: str) -> Colorizer:
        if args.prior_correction is None and args.temperature is None:
            return Colorizer(spec)
        model = resolve_model(spec)
        pc = getattr(model, "prior_correction", 0.0) if args.prior_correction is None else args.prior_correction
        t = model.default_temperature if args.temperature is None else args.temperature
        return Colorizer(decoded(model, pc, t, Path(spec).stem))

    colorizers = {m: load(m) for m in args.models}
    gen = torch.Generator().manual_seed(args.seed)
    rows: dict[str, dict[str, list]] = {}
    for i, path in enumerate(paths):
        truth = load_truth(path, "crop256")
        l_clean = rgb_to_l(truth[None])
        l_aged = age_lightness(l_clean, generator=gen)
        methods = {"gray": gray_baseline(truth)[None]}
        for m, c in colorizers.items():
            methods[f"{label(m)} clean"] = colorize_from(c, l_clean, l_clean)
            methods[f"{label(m)} aged"] = colorize_from(c, l_clean, l_aged)
        scores = score_photo(torch.cat(list(methods.values())), truth, judge)  # one pass of the judge a photo
        for j, name in enumerate(methods):
            r = rows.setdefault(name, {"psnr": [], "top1": [], "cf": [], "cf_truth": []})
            r["psnr"].append(float(scores["psnr"][j]))
            r["top1"].append(float(scores["top1_agree"][j]))
            r["cf"].append(float(scores["colorfulness"][j]))
            r["cf_truth"].append(float(scores["colorfulness_truth"]))
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(paths)}", flush=True)

    gray = rows["gray"]
    print(f"| method ({len(paths)} bench photos) | PSNR - gray [95%] | top-1 - gray [95%, points] | delta-CF |")
    print("|---|---|---|---|")
    print(f"| gray | {np.mean(gray['psnr']):.2f} dB | {np.mean(gray['top1']):.1%} | "
          f"{metrics.delta_colorfulness(gray['cf'], gray['cf_truth']):.1f} |")
    summary = {"limit": args.limit, "seed": args.seed, "methods": {}}
    for name, r in rows.items():
        if name == "gray":
            continue
        dp = metrics.paired_difference(r["psnr"], gray["psnr"])
        dt = metrics.paired_difference(r["top1"], gray["top1"])
        dcf = metrics.delta_colorfulness(r["cf"], r["cf_truth"])
        summary["methods"][name] = {"psnr": np.mean(r["psnr"]), "top1": np.mean(r["top1"]), "delta_cf": dcf,
                                    "vs_gray_psnr": dp, "vs_gray_top1": dt}
        print(f"| {name} | {format_interval(dp)} | {format_interval(dt, '+.1f', 100)} | {dcf:.1f} |")
    summary["gray"] = {"psnr": np.mean(gray["psnr"]), "top1": np.mean(gray["top1"])}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(summary, indent=1, default=float))


if __name__ == "__main__":
    main()
