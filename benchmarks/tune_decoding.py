"""Choose a classification model's decoding on the out-of-collection bench: prior correction and
annealed-mean temperature, scored per source by ``colorize eval``'s metrics (PSNR, top-1 agreement of
the EfficientNet-Lite2 judge, delta-colorfulness), the gray baseline beside them.

Every setting is a copy of the model with the correction folded in and the temperature recorded, so
all settings and the gray baseline are scored in ONE pass of :func:`colorize.evaluate.evaluate` (each
photo read once, the judge run on all colorizations of it together).

    python benchmarks/tune_decoding.py runs/unet_lite0/best.safetensors ../shared/data/bench \\
        --prior-corrections 0 0.2 0.4 --temperatures 0.5 0.7 1.0 --limit 600

A setting "does no harm" when, on every source, its PSNR and top-1 agreement are at least the gray
baseline's. Prints a table per setting, writes the evaluation report folder and a JSON summary.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
from pathlib import Path

from colorize.evaluate import GRAY, evaluate
from colorize.shipped import resolve_model
from colorize.models.base import correct_prior_to, optimize_for_inference


def decoded(model, correction: float, temperature: float, name: str, size: int | None = None):
    """``model`` made inference-ready with a prior correction of ``correction`` in all (a shipped file that
    has some folded in already gets only the difference), a temperature and (optionally) a working size
    recorded, labelled ``name`` for the evaluation report (changes and returns ``model``)."""
    correct_prior_to(model, correction)
    optimize_for_inference(model)
    model.default_temperature = temperature
    if size:
        model.default_size = size
    model.model_name = name
    return model


def settings_models(spec: str, corrections: list[float], temperatures: list[float],
                    sizes: list[int] | None = None) -> list:
    """One inference-ready copy of the model per (prior correction, temperature, working size), labelled
    by it (the size only when several are tried)."""
    base = resolve_model(spec)
    out = []
    for beta, t, size in itertools.product(corrections, temperatures, sizes or [None]):
        name = f"pc{beta:g}_T{t:g}" + (f"_s{size}" if size else "")
        out.append(decoded(copy.deepcopy(base), beta, t, name, size))
    return out


def verdicts(protocol: dict) -> dict[str, dict]:
    """Per setting: overall gains over gray and whether it does no harm on every source."""
    res = {}
    sources = protocol.get("sources") or {"all": protocol}
    gray = protocol["methods"][GRAY]
    for name, s in protocol["methods"].items():
        if name == GRAY:
            continue
        harm = [src for src, r in sources.items()
                if r["methods"][name]["psnr"] < r["methods"][GRAY]["psnr"]
                or (r["methods"][name]["top1_agreement"] or 0) < (r["methods"][GRAY]["top1_agreement"] or 0)]
        res[name] = {"psnr_gain": s["psnr"] - gray["psnr"],
                     "top1_gain": (s["top1_agreement"] or 0) - (gray["top1_agreement"] or 0),
                     "delta_cf": s["delta_colorfulness"], "harms": harm}
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="weight file or shipped model name")
    p.add_argument("data", nargs="+", help="color photos, one subfolder per source (e.g. ../shared/data/bench)")
    p.add_argument("--limit", type=int, default=0, help="photos, spread evenly over the set (0: all)")
    p.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 0.7, 1.0])
    p.add_argument("--prior-corrections", type=float, nargs="+", default=[0.0, 0.2, 0.4],
                   help="shares of class rebalancing undone at inference (models.base.correct_prior)")
    p.add_argument("--working-sizes", type=int, nargs="+", default=None,
                   help="pipeline working sizes to try (default: the one recorded in the weight file)")
    p.add_argument("-o", "--output", default="benchmarks/results/tune_decoding")
    args = p.parse_args()

    models = settings_models(args.model, args.prior_corrections, args.temperatures, args.working_sizes)
    summary = evaluate(args.data, models, out_dir=args.output, limit=args.limit, grid_rows=0, progress=False)
    protocol = summary["protocols"]["crop256"]
    table = verdicts(protocol)
    gray = protocol["methods"][GRAY]
    print(f"\n{protocol['images']} photos; gray: PSNR {gray['psnr']:.2f}, top-1 {gray['top1_agreement']:.1%}, "
          f"delta-CF {gray['delta_colorfulness']:.1f}")
    print("| setting | PSNR - gray | top-1 - gray | delta-CF | sources below gray |\n|---|---|---|---|---|")
    for name, v in table.items():
        print(f"| {name} | {v['psnr_gain']:+.2f} | {v['top1_gain'] * 100:+.1f} | {v['delta_cf']:.1f} | "
              f"{', '.join(v['harms']) or 'none'} |")
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "tune.json").write_text(json.dumps({"model": args.model, "verdicts": table}, indent=1))


if __name__ == "__main__":
    main()
