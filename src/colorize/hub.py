"""The weights that ship with colorize, described as data, and how a model name or file is resolved."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

DEFAULT_MODEL = "unet_lite0"


@dataclass(frozen=True)
class ShippedWeights:
    """One trained model in ``weights/``."""

    file: str  # file name under the weights folder
    sha256: str | None  # checked on load when set
    train_size: int  # crop size it was trained at (its inference defaults live in the file's metadata)
    license: str
    card: str  # model card beside the weights


SHIPPED: dict[str, ShippedWeights] = {
    "unet_lite0": ShippedWeights("unet_lite0.safetensors",
                                 "4127b83dbc8386ac315cc7b2d14bc861629c28f2e19452ece79650c90a126b69", 160, "MIT (weights); backbone Apache-2.0",
                                 "unet_lite0.md"),
}


def package_dir(name: str) -> Path:
    """A data folder shipped inside the package (``weights``, ``configs``).

    In a checkout, ``src/colorize/<name>`` is a symlink to the repository's top-level folder, so the
    files live in one place; a wheel carries copies (package-data). Where symlinks are not checked out
    (git on Windows without them), the repository's folder is used directly.
    """
    inside = Path(__file__).resolve().parent / name
    return inside if inside.is_dir() else Path(__file__).resolve().parents[2] / name


def weights_dir() -> Path:
    """``$COLORIZE_WEIGHTS`` if set, else the shipped ``weights/`` (inside the installed package)."""
    env = os.environ.get("COLORIZE_WEIGHTS")
    if env:
        return Path(env)
    return package_dir("weights")


def recorded_defaults(model: str | Path | None = None) -> dict[str, float]:
    """The inference defaults recorded in a ``.safetensors`` weight file (``temperature``, ``working_size``),
    read from its header without building the model (which would import timm: ~1.5 s). A shipped name
    reads its file; anything else (a ``.pt`` checkpoint, an ``.onnx`` file) gives {}."""
    from colorize.checkpoint import read_metadata

    path = weight_file(model)
    if path.suffix != ".safetensors" or not path.is_file():
        return {}
    try:
        meta = read_metadata(path)
    except ValueError:  # not a safetensors file: resolve_model names the problem
        return {}
    return {k: float(meta[k]) for k in ("temperature", "working_size") if k in meta}


def weight_file(model: str | Path | None = None) -> Path:
    """The file behind a model spec: a shipped name's file in :func:`weights_dir`, else the spec as a path."""
    name = DEFAULT_MODEL if model is None else str(model)
    return weights_dir() / SHIPPED[name].file if name in SHIPPED else Path(name)


def resolve_model(model: str | Path | nn.Module | None = None, *, device: str = "cpu") -> nn.Module:
    """A model ready for inference from: None (the shipped default), a shipped model's name, a
    ``.safetensors`` / ``.pt`` file, an exported ``.onnx`` file (run by onnxruntime), or a module. Raises with the valid choices on a bad name."""
    from colorize.checkpoint import load_model

    if isinstance(model, nn.Module):
        return model.to(device).eval()
    if model is None:
        model = DEFAULT_MODEL
    path = Path(model)
    if path.suffix == ".onnx":
        from colorize.onnx import OnnxModel

        return OnnxModel(path)
    if path.suffix in (".safetensors", ".pt", ".pth") or path.is_file():
        return load_model(path, map_location=device)
    name = str(model)
    if name not in SHIPPED:
        from colorize.models import list_models

        hint = " (it has no trained weights yet; train it with `colorize train`)" if name in list_models() else ""
        raise ValueError(f"no trained weights for model '{name}'{hint}; choose from: {', '.join(SHIPPED)}, "
                         f"or give a .safetensors / .pt file")
    spec = SHIPPED[name]
    file = weights_dir() / spec.file
    if not file.is_file():
        raise FileNotFoundError(f"weights for '{name}' not found at {file}")
    if spec.sha256 is not None:
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        if digest != spec.sha256:
            raise ValueError(f"{file}: sha256 {digest} does not match the expected {spec.sha256}")
    return load_model(file, map_location=device)
