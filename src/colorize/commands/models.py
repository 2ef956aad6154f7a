"""``colorize models``: registered architectures and which have shipped weights."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="colorize models", description=__doc__).parse_args(argv)
    from colorize.models import list_models
    from colorize.shipped import DEFAULT_MODEL, SHIPPED, recorded_defaults, weights_dir

    for name in list_models():
        spec = SHIPPED.get(name)
        shipped = spec is not None and (weights_dir() / spec.file).is_file()
        tag = " (default)" if name == DEFAULT_MODEL else ""
        tuned = recorded_defaults(name) if shipped else {}
        tuned_text = "".join(f", {k.replace('_', ' ')} {v:g}" for k, v in tuned.items())
        print(f"{name:<16} {'trained weights: ' + spec.file + tuned_text if shipped else 'architecture only'}{tag}")
    return 0
