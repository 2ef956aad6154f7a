"""``colorize export``: turn a checkpoint or model file into shippable safetensors (or ONNX)."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="colorize export", description=__doc__)
    p.add_argument("model", help="a .pt checkpoint, .safetensors file or shipped model name")
    p.add_argument("-o", "--output", required=True, help="output file")
    p.add_argument("--format", choices=["safetensors", "onnx"], default="safetensors")
    p.add_argument("--size", type=int, default=256, help="ONNX: example input size (dynamic axes kept)")
    args = p.parse_args(argv)

    from colorize.hub import resolve_model

    model = resolve_model(args.model)
    if args.format == "safetensors":
        from colorize.checkpoint import save_weights

        save_weights(args.output, model)
    else:
        from colorize.onnx import export_onnx

        export_onnx(model, args.output, size=args.size)
    print(f"wrote {args.output}")
    return 0
