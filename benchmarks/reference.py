"""Our default model against two reference architectures, side by side in one process on the same
photos: Zhang et al.'s ECCV16 net and the write-ups' Full model with Inception-ResNet-v2
(``fusion_irv2``). The references have random weights: only their speed is measured.

Every model goes through the same pipeline (L extraction, network, edge-aware upsampling, Lab to RGB)
with its network at its native input: ours at the working size (long side 256, aspect kept), the
references at 256x256 (see ``reference_models.NativeSize``), all with BatchNorms folded as the
pipeline folds them. The models take turns, a few calls each, so background load affects them alike.
Expectation: the default model is >= 10x faster than both.

    python benchmarks/reference.py                    # 256x256 and 1024x768, 10 repeats
    python benchmarks/reference.py --quick --repeats 1   # smoke run: 256x256 only

Writes benchmarks/results/reference.json and the "reference" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from _common import (fmt_params, machine_info, machine_line, percentiles, publish, synthetic_photo)
from latency import build_model
from reference_models import ECCV16, NativeSize

SIZES: dict[str, tuple[int, int]] = {"256x256": (256, 256), "1024x768": (1024, 768)}
NATIVE = 256  # the references' square input
TARGET_RATIO = 10.0


def build_models() -> dict[str, Any]:
    """name -> (module for the pipeline, weights note); ours first."""
    import torch

    from colorize.shipped import DEFAULT_MODEL
    from colorize.models import create_model
    from colorize.models.base import optimize_for_inference

    torch.manual_seed(0)  # every network gets the pipeline's inference rewrites (BatchNorms folded, ...)
    ours, note = build_model(DEFAULT_MODEL)
    ours = optimize_for_inference(ours)
    eccv16 = optimize_for_inference(ECCV16())
    full = optimize_for_inference(create_model("fusion_irv2"))
    return {
        f"{DEFAULT_MODEL} (ours)": (ours, note),
        "Zhang et al. ECCV16": (NativeSize(eccv16, size=NATIVE, name="eccv16"), "random weights"),
        "Full model, Inception-ResNet-v2": (NativeSize(full, size=NATIVE, name="fusion_irv2"), "random weights"),
    }


def run(models: dict[str, Any], sizes: dict[str, tuple[int, int]], *, repeats: int, burst: int) -> dict[str, Any]:
    """Pipeline and network-only latency of every model, taking turns on each repeat. A turn runs
    ``burst`` calls back to back and times all but the first, which pays for the caches the other
    models just evicted: what a folder of photos sees, one model after another photo."""
    import torch
    from PIL import Image
    from torch.utils.flop_counter import FlopCounterMode

    from colorize.models._inference import plain_operators
    from colorize.pipeline import Colorizer

    colorizers = {name: Colorizer(module) for name, (module, _) in models.items()}
    results: dict[str, Any] = {name: {"weights": note, "params": sum(p.numel() for p in module.parameters()),
                                      "pipeline": {}, "network": {}}
                               for name, (module, note) in models.items()}
    for key, (w, h) in sizes.items():
        pixels = synthetic_photo(w, h)
        photo = Image.fromarray(pixels)
        rgb = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
        smalls = {name: c.prepare(rgb).l_small for name, c in colorizers.items()}  # each model's working-size L
        pipe: dict[str, list[float]] = {name: [] for name in colorizers}
        net: dict[str, list[float]] = {name: [] for name in colorizers}
        for name, c in colorizers.items():  # warm-up, and the network's FLOPs at the first size
            c(photo)
            if "gflops" not in results[name]:
                with FlopCounterMode(display=False) as counter, plain_operators():  # ops it can count
                    c.predict(smalls[name])
                results[name]["gflops"] = counter.get_total_flops() / 1e9
        for _ in range(repeats):
            for name, c in colorizers.items():  # a turn: `burst` photos in a row, the first untimed
                for i in range(burst):
                    t0 = time.perf_counter()
                    c(photo)
                    if i:
                        pipe[name].append(time.perf_counter() - t0)
                for i in range(burst):
                    t0 = time.perf_counter()
                    c.predict(smalls[name])
                    if i:
                        net[name].append(time.perf_counter() - t0)
        for name in colorizers:
            results[name]["pipeline"][key] = percentiles(pipe[name])
            results[name]["network"][key] = percentiles(net[name])
            results[name]["network"][key]["input"] = list(smalls[name].shape[-2:])
    return results


def markdown(result: dict[str, Any]) -> str:
    sizes = result["settings"]["sizes"]
    quick = " (quick smoke run: not representative)" if result["settings"]["quick"] else ""
    lines = [f"## Against reference architectures{quick}", "", machine_line(result["machine"]),
             f"Same process, same photos, models taking turns; {result['settings']['repeats']} turns of "
             f"{result['settings'].get('burst', 1)} calls (the first untimed), p50 in ms. Every network has its "
             "BatchNorms folded, as the pipeline does for the models it loads. "
             "References have random weights (speed only); networks at their native input (ours: long side 256; "
             f"references: {NATIVE}x{NATIVE}). GFLOPs of the network at the first size. 'x slower' is the "
             "reference's p50 over ours.", "",
             "| model | params | GFLOPs | " + " | ".join(f"network {s} | pipeline {s}" for s in sizes)
             + " | x slower (network / pipeline) |", "|---|---|---|" + "---|---|" * len(sizes) + "---|"]
    for name, r in result["models"].items():
        cells = []
        for s in sizes:
            cells += [f"{r['network'][s]['p50_ms']:.0f}", f"{r['pipeline'][s]['p50_ms']:.0f}"]
        ratios = result["ratios"].get(name)  # none for ours
        ratio = "-" if ratios is None else ", ".join(
            f"{ratios[s]['network']:.1f}x / {ratios[s]['pipeline']:.1f}x" for s in sizes)
        lines.append(f"| {name} | {fmt_params(r['params'])} | {r['gflops']:.1f} | " + " | ".join(cells)
                     + f" | {ratio} |")
    ours = result["models"][result["ours"]]
    shared = ", ".join(f"{max(0.0, ours['pipeline'][s]['p50_ms'] - ours['network'][s]['p50_ms']):.0f} ms at {s}"
                       for s in sizes)
    lines += ["", "The architectures are compared by their networks. End to end, every model also pays for the same "
              "full-resolution work around its network (decoding L, edge-aware upsampling, Lab to RGB; for ours "
              f"{shared}), which no choice of network removes and which bounds the end-to-end ratio at large photos."]
    lines.append("")
    for kind in ("network", "pipeline"):
        worst = min(v[kind] for ratios in result["ratios"].values() for v in ratios.values())
        verdict = "met" if worst >= TARGET_RATIO else "NOT met"
        lines.append(f"Target ours >= {TARGET_RATIO:.0f}x faster than both, {kind}"
                     f"{' only' if kind == 'network' else ' (end to end)'}: {verdict} (smallest ratio {worst:.1f}x).")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=10, help="timed turns per model and size (default 10)")
    p.add_argument("--burst", type=int, default=3, help="calls per turn, the first untimed (default 3)")
    p.add_argument("--quick", action="store_true", help="256x256 only")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = p.parse_args()
    if args.burst < 2:
        p.error("--burst must be >= 2 (the first call of a turn is not timed)")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = {"256x256": SIZES["256x256"]} if args.quick else dict(SIZES)
    models = build_models()
    ours = next(iter(models))
    results = run(models, sizes, repeats=args.repeats, burst=args.burst)
    ratios = {name: {s: {kind: results[name][kind][s]["p50_ms"] / results[ours][kind][s]["p50_ms"]
                         for kind in ("pipeline", "network")} for s in sizes}
              for name in results if name != ours}
    settings = {"repeats": args.repeats, "burst": args.burst, "sizes": list(sizes), "quick": args.quick,
                "native": NATIVE}
    result = {"machine": machine_info(), "settings": settings,
              "ours": ours, "models": results, "ratios": ratios}
    publish("reference", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
