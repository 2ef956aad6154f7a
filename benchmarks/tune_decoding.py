"""Choose the inference knobs of a classification model on held-out photos: annealed-mean temperature,
prior correction, working size and guided upsampling, scored by PSNR, AuC and delta-colorfulness (crop256 protocol).

    python benchmarks/tune_decoding.py runs/unet_lite0/best.safetensors ../shared/data/val --limit 200
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
from pathlib import Path

import torch

from colorize import metrics
from colorize.data import find_images
from colorize.evaluate import gray_baseline, load_truth, select
from colorize.models._base import correct_prior
from colorize.pipeline import Colorizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("data", nargs="+")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.25, 0.38, 0.5, 0.7, 1.0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256])
    p.add_argument("--guided", choices=["on", "off", "both"], default="on")
    p.add_argument("--prior-corrections", type=float, nargs="+", default=[0.0],
                   help="shares of class rebalancing undone at inference (models._base.correct_prior)")
    p.add_argument("-o", "--output", default="benchmarks/results/tune_decoding.json")
    args = p.parse_args()

    truths = [load_truth(f, "crop256") for f in select(find_images(args.data), args.limit)]
    base = Colorizer(args.model)
    truth_cf = metrics.colorfulness(torch.stack(truths)).tolist()
    gray = torch.stack([gray_baseline(t) for t in truths])
    rows = [{"setting": "gray", **_scores(gray, truths, truth_cf)}]
    guided = {"on": [True], "off": [False], "both": [True, False]}[args.guided]
    models = {beta: correct_prior(copy.deepcopy(base.model), beta) if beta else base.model
              for beta in args.prior_corrections}  # one corrected copy per strength
    for beta, t, size, g in itertools.product(args.prior_corrections, args.temperatures, args.sizes, guided):
        c = Colorizer(models[beta], temperature=t, size=size, guided=g)
        preds = torch.stack([c.colorize_tensor(x) for x in truths])
        rows.append({"setting": f"prior-correction={beta} T={t} size={size} guided={g}",
                     **_scores(preds, truths, truth_cf)})
        print(rows[-1], flush=True)
    print("\n| setting | PSNR | AuC | CF | delta-CF |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['psnr']:.2f} | {r['auc']:.3f} | {r['cf']:.1f} | {r['delta_cf']:.1f} |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"model": args.model, "photos": len(truths), "rows": rows}, indent=1))


def _scores(preds: torch.Tensor, truths: list[torch.Tensor], truth_cf: list[float]) -> dict[str, float]:
    target = torch.stack(truths)
    cf = metrics.colorfulness(preds)
    return {"psnr": metrics.psnr(preds, target).mean().item(), "auc": metrics.ab_error_auc(preds, target).mean().item(),
            "cf": cf.mean().item(), "delta_cf": metrics.delta_colorfulness(cf, truth_cf)}


if __name__ == "__main__":
    main()
