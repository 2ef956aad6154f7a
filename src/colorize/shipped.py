"""The weights that ship with colorize, described as data, and how a model spec (name, file, module) is
resolved to a model on a runtime (torch, or onnxruntime over a cached export)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the functions that need it: the light install has none
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
    onnx: str | None = None  # the same weights exported for the light engine (``make onnx``), beside them
    onnx_sha256: str | None = None


SHIPPED: dict[str, ShippedWeights] = {
    "unet_lite0": ShippedWeights("unet_lite0.safetensors",
                                 "a5120b03b2b6df71b3823cbccf04f68604820f9a89f2f6f8a6d3172f61d102e6", 160, "MIT (weights); backbone Apache-2.0",
                                 "unet_lite0.md", "unet_lite0.onnx",
                                 "4dc759d60b789ec89f2c3f588031c9b8c0b4ca22736ebe78809d8af05acaa622"),
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


def model_identity(model: str | Path | None = None) -> str:
    """The sha256 of the weights behind a model spec: what a record of finished files (``--record``) keys the model
    by, so new weights behind the same name (a release's) or path (a retrained file) start a new record instead of
    finding every photo done. A shipped name's digest is its registered one (checked on load), with the name; a
    file's is read, without its path (the spec alone when it cannot be read: loading it names the problem)."""
    import hashlib

    name = DEFAULT_MODEL if model is None else str(model)
    spec = SHIPPED.get(name)
    if spec is not None and spec.sha256:
        return f"{name} sha256:{spec.sha256}"
    try:  # a file by its contents alone: moved, or named by another path, it is the same model
        return f"sha256:{hashlib.sha256(weight_file(name).read_bytes()).hexdigest()}"
    except OSError:
        return name


RUNTIMES = ("torch", "onnx")


def resolve_model(model: "str | Path | nn.Module | None" = None, *, device: str = "cpu", runtime: str = "torch",
                  threads: int | None = None) -> "nn.Module":
    """A model meeting the model contract (:mod:`colorize.models.base`), with the inference defaults
    recorded in its file, ready for inference.

    Args:
        model: None (the shipped default), a shipped model's name, a ``.safetensors`` / ``.pt`` file, an
            exported ``.onnx`` file (run by onnxruntime), or a module.
        device: torch device of the model.
        runtime: ``"torch"``, or ``"onnx"``: the model exported to ONNX once (:func:`cached_onnx`) and run
            by onnxruntime. An ``.onnx`` file always runs on onnxruntime.
        threads: onnxruntime's intra-op threads (None: its default).
    Raises:
        ValueError naming the valid choices on a bad name or runtime.
    """
    import torch.nn as nn

    from colorize.checkpoint import load_model
    from colorize.models.base import as_model

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime '{runtime}'; choose from: {', '.join(RUNTIMES)}")
    if isinstance(model, nn.Module):
        return as_model(model.to(device).eval())
    if model is None:
        model = DEFAULT_MODEL
    path = Path(model)
    if runtime == "onnx" or path.suffix.lower() == ".onnx":
        from colorize.onnx import OnnxModel

        return OnnxModel(cached_onnx(model), threads=threads)
    if path.suffix in (".safetensors", ".pt", ".pth") or path.is_file():
        return load_model(path, map_location=device)
    return load_model(shipped_file(str(model)), map_location=device)


def shipped_file(name: str, *, onnx: bool = False) -> Path:
    """A shipped model's weight file (``onnx``: its ONNX export for the light engine), checked against its
    sha256. Raises with the valid choices on a bad name, :class:`FileNotFoundError` when the file is
    missing, ValueError when its hash differs."""
    if name not in SHIPPED:
        try:
            from colorize.models import list_models

            known = name in list_models()
        except ImportError:  # the light install: no model code
            known = False
        hint = " (it has no trained weights yet; train it with `colorize train`)" if known else ""
        raise ValueError(f"no trained weights for model '{name}'{hint}; choose from: {', '.join(SHIPPED)}, "
                         f"or give a .safetensors / .pt file")
    spec = SHIPPED[name]
    if onnx and spec.onnx is None:
        raise FileNotFoundError(f"'{name}' ships no ONNX export")
    file = weights_dir() / (spec.onnx if onnx else spec.file)
    if not file.is_file():
        raise FileNotFoundError(f"{'ONNX export' if onnx else 'weights'} for '{name}' not found at {file}")
    expected = spec.onnx_sha256 if onnx else spec.sha256
    if expected is not None:
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        if digest != expected:
            raise ValueError(f"{file}: sha256 {digest} does not match the expected {expected}")
    return file


def cache_dir() -> Path:
    """Where :func:`cached_onnx` keeps exported models: ``$XDG_CACHE_HOME/colorize/onnx`` (~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "colorize" / "onnx"


EXPORT_VERSION = 4  # part of cached exports' names: bump when colorize.onnx exports the same weights differently


def cached_onnx(spec: str | Path | None = None, *, folder: str | Path | None = None) -> Path:
    """The ``.onnx`` file for a model spec: the spec itself if it is one; a shipped model's own export
    (checked against its sha256); otherwise the model (a weight or checkpoint file) exported once and
    reused, keyed by the weight file's sha256. Exports take the temperature as an input.

    Args:
        spec: as :func:`resolve_model` takes it, or an ``.onnx`` file.
        folder: the cache folder (default: :func:`cache_dir`).
    """
    spec = DEFAULT_MODEL if spec is None else spec
    if Path(spec).suffix.lower() == ".onnx":
        if not Path(spec).is_file():
            raise FileNotFoundError(f"ONNX model not found: {spec}")
        return Path(spec)
    if str(spec) in SHIPPED and SHIPPED[str(spec)].onnx is not None:
        return shipped_file(str(spec), onnx=True)
    weights = weight_file(spec)
    if not weights.is_file():
        resolve_model(spec)  # raises the usual error naming the valid choices
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    out = Path(folder or cache_dir()) / f"{weights.stem}-{digest}-e{EXPORT_VERSION}.onnx"
    if not out.is_file():  # only an export needs torch: a cached one starts as fast as a shipped model's
        from colorize.models.base import optimize_for_inference
        from colorize.onnx import export_onnx

        # the weight file's header holds the tuned temperature, which the export records as its default
        export_onnx(optimize_for_inference(resolve_model(spec)), out)
    return out
