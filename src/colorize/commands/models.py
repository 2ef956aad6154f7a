"""``colorize models``: registered architectures and which have shipped weights."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="colorize models", description=__doc__).parse_args(argv)
    from colorize.commands.options import torch_installed
    from colorize.shipped import DEFAULT_MODEL, SHIPPED, recorded_defaults, weights_dir

    if not torch_installed():
        return _shipped_exports()
    from colorize.models import list_models

    for name in list_models():
        spec = SHIPPED.get(name)
        shipped = spec is not None and (weights_dir() / spec.file).is_file()
        tag = " (default)" if name == DEFAULT_MODEL else ""
        tuned = recorded_defaults(name) if shipped else {}
        tuned_text = "".join(f", {k.replace('_', ' ')} {v:g}" for k, v in tuned.items())
        print(f"{name:<16} {'trained weights: ' + spec.file + tuned_text if shipped else 'architecture only'}{tag}")
    return 0


def _shipped_exports() -> int:
    """The light install (no model code): the shipped models it runs, with the defaults their exports record."""
    from colorize.lite import TORCH_ONLY, ExportInfo, session
    from colorize.shipped import DEFAULT_MODEL, SHIPPED, shipped_file

    for name, spec in SHIPPED.items():
        tag = " (default)" if name == DEFAULT_MODEL else ""
        try:
            path = shipped_file(name, onnx=True)
            info = ExportInfo.of(session(path, 1), path)
        except (FileNotFoundError, ValueError) as e:
            print(f"{name:<16} not usable here: {e}{tag}")
            continue
        tuned = {"temperature": info.temperature, "working size": info.working_size}
        tuned_text = "".join(f", {k} {v:g}" for k, v in tuned.items() if v is not None)
        print(f"{name:<16} trained weights: {spec.onnx}{tuned_text}{tag}")
    print(f"other architectures: {TORCH_ONLY}; training them (colorize train): pip install 'colorize[train]'")
    return 0
