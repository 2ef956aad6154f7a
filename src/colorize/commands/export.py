"""``colorize export``: turn a checkpoint or model file into shippable safetensors (or ONNX)."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="colorize export", description=__doc__)
    p.add_argument("model", help="a .pt checkpoint, .safetensors file or shipped model name")
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--format", choices=["safetensors", "onnx"], default="safetensors")
    p.add_argument("--size", type=int, default=256, help="ONNX: example input size (dynamic axes kept)")
    p.add_argument("--temperature", type=float, help="record the tuned annealed-mean temperature as this "
                   "model's default (safetensors), or bake it into the graph (onnx)")
    p.add_argument("--working-size", type=int, help="record the working size the pipeline should use by default")
    args = p.parse_args(argv)

    from colorize.hub import resolve_model

    model = resolve_model(args.model)
    if args.format == "safetensors":
        from colorize.checkpoint import save_weights

        temperature = args.temperature or getattr(model, "default_temperature", None)  # keep recorded defaults
        working_size = args.working_size or getattr(model, "default_size", None)
        meta = {k: str(v) for k, v in (("temperature", temperature), ("working_size", working_size)) if v is not None}
        save_weights(args.output, model, metadata=meta)
    else:
        from colorize.models._base import DEFAULT_TEMPERATURE
        from colorize.onnx import export_onnx

        temperature = args.temperature or getattr(model, "default_temperature", DEFAULT_TEMPERATURE)
        export_onnx(model, args.output, size=args.size, temperature=temperature)
    print(f"wrote {args.output}")
    return 0
