"""``colorize models``: registered architectures and which have shipped weights."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="colorize models", description=__doc__).parse_args(argv)
    from colorize.commands.options import torch_installed
    from colorize.shipped import DEFAULT_MODEL, SHIPPED, recorded_defaults, weights_dir

    if not torch_installed():
        return _light(DEFAULT_MODEL)
    from colorize.models import list_models

    for name in list_models():
        spec = SHIPPED.get(name)
        shipped = spec is not None and (weights_dir() / spec.file).is_file()
        tag = " (default)" if name == DEFAULT_MODEL else ""
        tuned = recorded_defaults(name) if shipped else {}
        print(f"{name:<16} {'trained weights: ' + spec.file + _tuned(tuned) if shipped else 'architecture only'}{tag}")
    return 0


def _light(default: str) -> int:
    """The light install runs the shipped models' ONNX exports; their tuned defaults are recorded in them."""
    from colorize.lite import ExportInfo, network_file, session
    from colorize.shipped import SHIPPED

    for name, spec in SHIPPED.items():
        if spec.onnx is None:
            continue
        path = network_file(name)
        info = ExportInfo.of(session(path, 1), path)
        tuned = {k: v for k, v in (("temperature", info.temperature), ("working_size", info.working_size)) if v}
        print(f"{name:<16} trained weights: {spec.onnx}{_tuned(tuned)}{' (default)' if name == default else ''}")
    print("other architectures and weight files: pip install 'colorize[torch]' (this is the light install)")
    return 0


def _tuned(tuned: dict) -> str:
    return "".join(f", {k.replace('_', ' ')} {v:g}" for k, v in tuned.items())
