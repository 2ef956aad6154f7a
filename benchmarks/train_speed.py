"""Training speed per model: images/s of a full optimizer step (Lab conversion, forward, loss,
backward, Adam) at batch 16 and 160 px, and the peak memory of the process doing it.

Each model runs in a fresh process so its peak RSS (ru_maxrss) is its own. Batches are random
photos already in memory: data loading and augmentation (done by worker processes in training) are
not included. Random weights; the frozen encoder levels are those of each model's defaults. A recipe
that weighs the classifier loss (stage 2, `configs/unet_lite0_semantic.yaml`) is timed with it: its
frozen classifier's forward passes and backward are part of that recipe's step.

    python benchmarks/train_speed.py                      # every registered model, 5 timed steps
    python benchmarks/train_speed.py --quick --steps 1    # smoke run: alpha and the default model

Writes benchmarks/results/train_speed.json and the "train_speed" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import (current_rss_mb, fmt_params, machine_info, machine_line, peak_rss_mb, publish, run_child)

QUICK_MODELS = ("alpha", "unet_lite0")


def child(name: str, *, steps: int, batch_size: int, size: int, kwargs: dict | None = None,
          semantic: dict | None = None, amp: str = "auto") -> dict[str, Any]:
    """In this (fresh) process: time ``steps`` training steps of ``name`` (built with ``kwargs``) after
    one warm-up step; with ``semantic`` (the recipe's classifier-loss settings) the step adds that term
    as training does; ``amp`` as training's setting of that name (on the CPU, bf16: the U-Net decoder in bfloat16)."""
    import torch

    from colorize.color import rgb_to_model_lab
    from colorize.losses import SemanticLoss, color_loss
    from colorize.models import create_model
    from colorize.train import set_decoder_precision

    torch.manual_seed(0)
    model = create_model(name, **(kwargs or {})).to(memory_format=torch.channels_last).train()
    decoder_dtype = set_decoder_precision(model, amp, torch.device("cpu"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-4)
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    judge = (SemanticLoss(semantic["net"], device=torch.device("cpu"), prior_correction=semantic["prior_correction"],
                          temperature=semantic["temperature"]) if semantic else None)
    rss_before = current_rss_mb() or peak_rss_mb()

    def step() -> None:
        x = images.float().div(255).contiguous(memory_format=torch.channels_last)
        l_norm, ab_norm = rgb_to_model_lab(x)
        out = model(l_norm)
        loss = color_loss(model, out, l_norm, ab_norm, reg_weight=5.0)
        if judge is not None:
            loss = loss + semantic["weight"] * judge(model, out.float(), l_norm, ab_norm)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocator and kernel selection
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t0
    return {"model": name, "trainable_params": sum(p.numel() for p in params),
            "params": sum(p.numel() for p in model.parameters()), "steps": steps, "batch_size": batch_size,
            "size": size, "decoder_dtype": str(decoder_dtype or torch.float32).removeprefix("torch."),
            "seconds_per_step": seconds / steps, "images_per_second": steps * batch_size / seconds,
            "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb()}


def time_recipe(path: Path, *, steps: int, threads: int | None, amp: str | None = None) -> dict[str, Any]:
    """The recipe's model at its batch size, at each crop size it trains at, in fresh processes; its
    effective rate is photos over seconds across the whole schedule (progressive resizing)."""
    from colorize.train import TrainConfig

    cfg = TrainConfig.from_yaml(path)
    kwargs = {k: v for k, v in cfg.model_kwargs.items() if k != "backbone_weights"}  # random weights: same speed
    semantic = ({"net": cfg.semantic_net, "weight": cfg.semantic_weight,
                 "prior_correction": cfg.semantic_prior_correction, "temperature": cfg.semantic_temperature}
                if cfg.semantic_weight > 0 else None)
    epochs = {cfg.size: cfg.epochs - cfg.early_epochs}
    if cfg.early_epochs:
        epochs[cfg.early_size] = epochs.get(cfg.early_size, 0) + cfg.early_epochs
    rows = []
    for size, n in epochs.items():
        print(f"{path.name}: {cfg.model} at {size} px", flush=True)
        args = ["--child", cfg.model, "--steps", str(steps), "--batch-size", str(cfg.batch_size), "--size", str(size),
                "--kwargs", json.dumps(kwargs), "--amp", amp or cfg.amp]
        args += ["--threads", str(threads)] if threads else []
        args += ["--semantic", json.dumps(semantic)] if semantic else []
        rows.append({**run_child(Path(__file__), args), "epochs": n})
    seconds = sum(r["epochs"] / r["images_per_second"] for r in rows)
    return {"recipe": path.name, "model_kwargs": kwargs, "semantic": semantic, "sizes": rows,
            "effective_images_per_second": sum(r["epochs"] for r in rows) / seconds}


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    quick = " (quick smoke run: not representative)" if s["quick"] else ""
    lines = [f"## Training speed{quick}", "", machine_line(result["machine"]),
             f"Batch {s['batch_size']}, {s['size']}x{s['size']} px, {s['steps']} timed steps after a warm-up; "
             "model step only (no data loading). Peak RSS of a fresh process per model.", "",
             "| model | params (trainable) | s / step | images / s | peak memory (MB) |", "|---|---|---|---|---|"]
    for r in result["models"]:
        lines.append(f"| {r['model']} | {fmt_params(r['params'])} ({fmt_params(r['trainable_params'])}) | "
                     f"{r['seconds_per_step']:.2f} | {r['images_per_second']:.1f} | {r['peak_rss_mb']:.0f} |")
    for key, title in (("recipe", "The shipped recipe, stage 1"), ("stage2", "Its stage 2")):
        r = result.get(key)
        if not r:
            continue
        loss = (f", plus the classifier loss ({r['semantic']['net']}, weight {r['semantic']['weight']:g})"
                if r.get("semantic") else "")
        lines += ["", f"{title} (`configs/{r['recipe']}`: {r['model_kwargs']}, batch "
                  f"{r['sizes'][0]['batch_size']}, the frozen encoder prefix fused as at inference{loss}):", "",
                  "| crop | epochs | decoder | s / step | images / s | peak memory (MB) |", "|---|---|---|---|---|---|"]
        for s_ in r["sizes"]:
            lines.append(f"| {s_['size']} px | {s_['epochs']} | {s_.get('decoder_dtype', 'float32')} | "
                         f"{s_['seconds_per_step']:.2f} | "
                         f"{s_['images_per_second']:.1f} | {s_['peak_rss_mb']:.0f} |")
        if len(r["sizes"]) > 1:
            lines += ["", f"Effective rate over the recipe's progressive-resizing schedule: "
                      f"**{r['effective_images_per_second']:.1f} images / s**."]
    for m in result["skipped"]:
        lines.append(f"\nSkipped {m['model']}: {m['reason']}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", help="registered models (default: all)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per model (default 5)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK_MODELS)}")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--amp", choices=("auto", "bf16", "off"),
                   help="as training's amp (on the CPU, bf16: the U-Net decoder in bfloat16); "
                        "default: each recipe's own, auto for the model list")
    p.add_argument("--recipe", default=str(Path(__file__).resolve().parents[1] / "configs" / "unet_lite0.yaml"),
                   help="also time this recipe's model at its batch size and crop sizes, and its effective rate "
                        "over the progressive-resizing schedule (default: the shipped recipe)")
    p.add_argument("--stage2-recipe", default=str(Path(__file__).resolve().parents[1] / "configs" /
                                                  "unet_lite0_semantic.yaml"),
                   help="also time this recipe (default: the shipped weights' stage 2, with its classifier loss; "
                        "'' to skip)")
    p.add_argument("--semantic", help=argparse.SUPPRESS)
    p.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, steps=args.steps, batch_size=args.batch_size, size=args.size,
                               kwargs=json.loads(args.kwargs),
                               semantic=json.loads(args.semantic) if args.semantic else None,
                               amp=args.amp or "auto")))
        return 0

    from colorize.models import list_models

    models = args.models or (list(QUICK_MODELS) if args.quick else list_models())
    result: dict[str, Any] = {"machine": machine_info(),
                              "settings": {"steps": args.steps, "batch_size": args.batch_size, "size": args.size,
                                           "amp": args.amp or "each recipe's own",
                                           "quick": args.quick},
                              "models": [], "skipped": []}
    settings = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--size", str(args.size)]
    if args.threads:
        settings += ["--threads", str(args.threads)]
    if args.amp:
        settings += ["--amp", args.amp]
    for name in models:
        print(name, flush=True)
        try:
            result["models"].append(run_child(Path(__file__), ["--child", name, *settings]))
        except RuntimeError as e:  # e.g. out of memory, or a model that cannot be built here
            result["skipped"].append({"model": name, "reason": str(e).strip().splitlines()[-1]})
    if args.recipe:
        result["recipe"] = time_recipe(Path(args.recipe), steps=args.steps, threads=args.threads, amp=args.amp)
    if args.stage2_recipe:
        result["stage2"] = time_recipe(Path(args.stage2_recipe), steps=args.steps, threads=args.threads, amp=args.amp)
    publish("train_speed", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
