"""``colorize eval``: colorize the gray versions of color photos and score them against the truth.

The gray baseline (ab = 0) is always scored beside the models, and each model is compared with it photo
by photo: the mean difference in PSNR and top-1 agreement with a 95% interval (an interval that holds 0
is a difference these photos cannot tell from none). Writes per_image.csv, summary.json, report.md and
side-by-side grids (gray | each model | truth) to the report folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from colorize.commands.options import bounded, threads_count, working_size

GRAY_TRUTH = 3.0  # mean colorfulness (Hasler & Suesstrunk) under which the "truth" holds no color to score against:
# a gray photo scores 0, a sepia print a few points, ordinary color photos 20 and more


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="colorize eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+", metavar="DATA", help="folders, files or globs of COLOR photos (the truth)")
    p.add_argument("--model", action="append", default=[], metavar="MODEL",
                   help="shipped model name, .safetensors/.pt file, or .onnx file; repeat to compare "
                        "(default: the shipped default model, if its weights are present)")
    p.add_argument("-o", "--output", default="eval_report", metavar="REPORT_DIR",
                   help="report folder (default: ./eval_report)")
    p.add_argument("--protocol", choices=["crop256", "original", "both"], default="crop256",
                   help="crop256: short side to 256 + centre crop; original: as is (default: crop256)")
    p.add_argument("--limit", type=bounded(int, 0, what="--limit"), default=0, metavar="N",
                   help="score at most N photos, spread evenly over the set (default: all)")
    p.add_argument("--size", type=working_size, default=None, metavar="PX",
                   help="working size of the pipeline, as colorize --size (default: per model)")
    p.add_argument("--no-semantic", action="store_true",
                   help="skip the ImageNet-classifier metrics (top-1 agreement, Frechet distance)")
    p.add_argument("--grid-rows", type=bounded(int, 0, what="photos per grid"), default=8,
                   help="photos per side-by-side grid (default 8; 0: no grid)")
    p.add_argument("--threads", type=threads_count, default=None, help="CPU threads for torch")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    import torch

    from colorize.evaluate import PROTOCOLS, evaluate
    from colorize.shipped import DEFAULT_MODEL, SHIPPED, weights_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    specs: list[str] = list(args.model)
    if not specs:
        if (weights_dir() / SHIPPED[DEFAULT_MODEL].file).is_file():
            specs = [DEFAULT_MODEL]
        else:
            print(f"note: no weights for the default model '{DEFAULT_MODEL}' yet; scoring the gray baseline only",
                  file=sys.stderr)
    try:
        summary = evaluate(args.data, specs, out_dir=args.output,
                           protocols=PROTOCOLS if args.protocol == "both" else (args.protocol,),
                           limit=args.limit, semantic=not args.no_semantic, size=args.size,
                           grid_rows=args.grid_rows, progress=not args.quiet)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((Path(args.output) / "report.md").read_text(), end="")
    print(f"report: {args.output} (per_image.csv, summary.json, report.md, grid_*.png); "
          f"{summary['images']} photos")
    if any(res["truth_colorfulness"] < GRAY_TRUTH for res in summary["protocols"].values()):
        print(f"warning: the photos in {', '.join(args.data)} have (almost) no color: colorize eval scores a model "
              "against color originals, so these scores say nothing; to colorize black-and-white photos, run "
              "`colorize PATH`", file=sys.stderr)
    return 0

