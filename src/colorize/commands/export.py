"""``colorize export``: turn a checkpoint or model file into shippable safetensors (or ONNX)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from colorize.commands.options import bounded, working_size

FORMATS = ("safetensors", "onnx")


def _temperature(text: str) -> float:
    """The rule both engines apply to --temperature (layout.check_color_options), at the command line."""
    from colorize.layout import check_color_options

    value = float(text)
    try:
        check_color_options(value, 1.0)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


_share = bounded(float, 0, 1, what="the prior correction")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="colorize export", description=__doc__)
    p.add_argument("model", help="a .pt checkpoint, .safetensors file or shipped model name")
    p.add_argument("-o", "--output", required=True, help="output file (.safetensors, or .onnx for the light engine)")
    p.add_argument("--format", choices=FORMATS,
                   help="default: by the output's extension (.onnx: onnx; else safetensors)")
    p.add_argument("--size", type=int, default=256, help="ONNX: example input size (dynamic axes kept)")
    p.add_argument("--temperature", type=_temperature, help="record the tuned annealed-mean temperature as this "
                   "model's default (the ONNX graph takes any other at run time)")
    p.add_argument("--working-size", type=working_size,
                   help="record the working size the pipeline should use by default")
    p.add_argument("--prior-correction", type=_share,
                   help="classification models: undo this share (0..1) of class rebalancing's pull toward rare, "
                        "saturated colors, folded into the weights (see models.base.correct_prior); in all: a "
                        "file that has one already gets the difference (default: the file's own, or the one a "
                        "warm-started run inherited)")
    args = p.parse_args(argv)
    suffix = Path(args.output).suffix.lower().lstrip(".")
    if args.format and suffix in FORMATS and suffix != args.format:
        p.error(f"--format {args.format} and an output named .{suffix} ({args.output}) disagree")
    args.format = args.format or ("onnx" if suffix == "onnx" else "safetensors")

    from colorize.checkpoint import decoding_of
    from colorize.shipped import resolve_model

    if Path(args.model).suffix.lower() == ".onnx":  # already an export: its graph holds no model to rebuild
        print(f"error: {args.model} is an ONNX export already; export its .safetensors or .pt file", file=sys.stderr)
        return 2
    try:
        model = resolve_model(args.model)
    except (ValueError, FileNotFoundError) as e:  # names the file and the reason
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.prior_correction is not None:
        from colorize.models.base import correct_prior_to

        try:
            correct_prior_to(model, args.prior_correction)
        except ValueError as e:  # a regression model: no bins to correct
            print(f"error: {args.model}: --prior-correction: {e}", file=sys.stderr)
            return 2
    if args.format == "safetensors":
        from colorize.checkpoint import save_weights

        recorded = decoding_of(model)  # the file's own decoding (or the one its run inherited) is kept
        if args.temperature:
            recorded["temperature"] = f"{args.temperature:g}"
        if args.working_size:
            recorded["working_size"] = str(args.working_size)
        save_weights(args.output, model, metadata=recorded)
    else:
        from colorize.models.base import optimize_for_inference
        from colorize.onnx import export_onnx

        if args.working_size:  # recorded in the graph's metadata, as in a weight file's
            model.default_size = args.working_size
        export_onnx(optimize_for_inference(model), args.output, size=args.size, temperature=args.temperature or None)
    print(f"wrote {args.output}")
    return 0
