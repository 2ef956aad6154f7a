"""A weight average ("model soup", Wortsman et al. 2022) of weight files fine-tuned from the same start.

    python benchmarks/soup.py weights/unet_lite0.safetensors runs/a/epoch008.safetensors ... -o soup.safetensors

The first file sets the architecture; every other file must hold its tensors (a file with more, such as a
run with the ImageNet branch, gives only the shared ones). A prior correction folded into a file for
inference (``colorize export --prior-correction``) is taken out first, so the average is of raw weights: score
it as a training snapshot (``learning_curve.py ... --prior-correction 0.8``). Averages every float tensor,
BatchNorm statistics included; the class-rebalancing weights, shared by warm starts, come from the first file.
"""

from __future__ import annotations

import argparse

from colorize.checkpoint import save_weights
from colorize.train import load_raw_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="weight files (.safetensors), the first sets the architecture")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args()
    base = load_raw_model(args.weights[0])
    state = base.state_dict()
    others = [load_raw_model(w).state_dict() for w in args.weights[1:]]
    for path, other in zip(args.weights[1:], others):
        missing = [k for k in state if k not in other or other[k].shape != state[k].shape]
        if missing:
            raise SystemExit(f"{path}: not the same network as {args.weights[0]} (e.g. {missing[0]})")
    soup = {k: (sum([v, *(o[k] for o in others)]) / len(args.weights) if v.is_floating_point() and
                not k.endswith("rebalance") else v) for k, v in state.items()}
    base.load_state_dict(soup)
    save_weights(args.output, base)
    print(f"average of {len(args.weights)} files -> {args.output}")


if __name__ == "__main__":
    main()
