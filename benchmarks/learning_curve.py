"""Learning curve on the out-of-collection bench: PSNR and top-1 agreement against photos seen.

    python benchmarks/learning_curve.py runs/unet_lite0/epoch*.safetensors --data ../shared/data/bench \\
        --limit 400 --prior-correction 0.3 --temperature 0.6 [--offset 0]

Each snapshot (``snapshot_every`` in the recipe writes ``epochNNN.safetensors`` with ``photos_seen`` in its
metadata) is decoded the same way (the shipped decoding) and scored with ``colorize eval``'s metrics in one
pass beside the gray baseline. ``--offset`` adds the photos a warm start had already seen (lineage).
``--reference`` scores the weights a warm start began from (the shipped file, whose folded prior correction
is accounted for) in the same pass, and every snapshot is compared with it photo by photo: the mean
difference in PSNR and top-1 agreement with a 95% interval, so a change the photo count cannot tell from
noise is not read as one. Prints a markdown table for the model card and writes
``benchmarks/results/learning_curve.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors import safe_open

from colorize.evaluate import GRAY, evaluate, format_interval
from colorize.shipped import resolve_model
from tune_decoding import decoded  # benchmarks/: one way to decode a model for scoring


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("snapshots", nargs="+", help="epochNNN.safetensors files")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--limit", type=int, default=400)
    p.add_argument("--prior-correction", type=float, default=0.0)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--offset", type=int, default=0, help="photos seen before this run (warm start)")
    p.add_argument("--reference", help="the weights the run started from (e.g. weights/unet_lite0.safetensors): "
                                       "scored alongside, at --offset photos, and each snapshot compared with it")
    p.add_argument("--reference-seen", type=int, help="photos the reference had seen, when it is not the run's "
                                                     "starting point (another run at equal budget; default: --offset)")
    p.add_argument("-o", "--output", default="benchmarks/results/learning_curve.json")
    args = p.parse_args()

    models, seen = [], {}
    reference = None
    if args.reference:
        reference = "reference-" + Path(args.reference).stem
        models.append(decoded(resolve_model(args.reference), args.prior_correction, args.temperature, reference))
        seen[reference] = args.offset if args.reference_seen is None else args.reference_seen
    for f in args.snapshots:
        with safe_open(f, "pt") as sf:
            meta = sf.metadata() or {}
        # labelled by run folder and file: snapshots of two runs (a warm start beside its source) keep apart
        label = f"{Path(f).parent.name}-{Path(f).stem}"
        m = decoded(resolve_model(f), args.prior_correction, args.temperature, label)
        seen[m.model_name] = args.offset + int(meta.get("photos_seen", 0))
        models.append(m)
    out_dir = Path(args.output).with_suffix("")
    summary = evaluate(args.data, models, out_dir=out_dir, limit=args.limit, grid_rows=0, progress=False,
                       reference=reference)
    res = summary["protocols"]["crop256"]["methods"]
    rows = [{"snapshot": k, "photos_seen": seen[k], "psnr": v["psnr"], "top1": v["top1_agreement"],
             "delta_cf": v["delta_colorfulness"], "vs_gray": v.get("vs_gray"), "vs_reference": v.get("vs_reference")}
            for k, v in res.items() if k != GRAY]
    gray = res[GRAY]
    head = (f"| photos seen | bench PSNR (gray {gray['psnr']:.2f}) | "
            f"top-1 agreement (gray {gray['top1_agreement']:.1%}) | delta-CF |")
    if reference:
        head += " PSNR - reference [95%] | top-1 - reference [95%, points] |"
    print(head + "\n|---|---|---|---|" + ("---|---|" if reference else ""))
    for r in sorted(rows, key=lambda r: r["photos_seen"]):
        line = f"| {r['photos_seen']:,} | {r['psnr']:.2f} | {r['top1']:.1%} | {r['delta_cf']:.1f} |"
        if reference:
            vs = r.get("vs_reference")
            line += (f" {format_interval(vs['psnr'])} | {format_interval(vs.get('top1'), '+.2f', 100)} |" if vs
                     else " (reference) | |")
        print(line)
    Path(args.output).write_text(json.dumps({"limit": args.limit, "gray": gray, "rows": rows,
                                             "prior_correction": args.prior_correction,
                                             "temperature": args.temperature}, indent=1))


if __name__ == "__main__":
    main()
