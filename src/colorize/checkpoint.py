"""Self-describing checkpoints and weight files, written atomically (:func:`colorize.io.atomic_write`).

A training checkpoint (``.pt``) holds weights, model name and kwargs, the run config, step, epoch,
best metric and everything needed to resume; it is read with ``torch.load(weights_only=True)``.
A shipped weight file (``.safetensors``) holds the weights and, in its metadata, the model name and
kwargs, so :func:`load_model` rebuilds the model from the file alone.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from colorize.io import atomic_write
from colorize.models import create_model

# Options that only matter when a model is first built for training (its encoder's ImageNet
# weights); a saved model carries all its weights, so they are dropped when rebuilding.
_BUILD_ONLY = ("backbone_weights", "classifier_weights")


def model_spec(model: nn.Module) -> tuple[str, dict]:
    name = getattr(model, "model_name", None)
    if name is None:
        raise ValueError("model was not built by create_model(); its name is unknown")
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.model_kwargs.items()
              if k not in _BUILD_ONLY}
    return name, kwargs


def save_checkpoint(path: str | Path, model: nn.Module, **state: Any) -> None:
    """Save weights + model spec + any extra state (optimizer, config, step, ...) atomically."""
    name, kwargs = model_spec(model)
    payload = {"model": name, "model_kwargs": kwargs, "state_dict": model.state_dict(), **state}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def save_weights(path: str | Path, model: nn.Module, *, metadata: dict[str, str] | None = None) -> None:
    """Ship a model as safetensors with its name and kwargs in the metadata."""
    from safetensors.torch import save_file

    name, kwargs = model_spec(model)
    meta = {"model": name, "model_kwargs": json.dumps(kwargs), **(metadata or {})}
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a ``.safetensors`` file, from its header only (no tensors are read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # not a safetensors file at all
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def _state_mismatch(model: nn.Module, state: dict, name: str) -> str:
    """A short account of why ``state`` does not fit ``model`` (torch's own message lists every key)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    parts = [f"{len(v)} {what} (e.g. {', '.join(v[:2])})" for what, v in
             (("missing", missing), ("unexpected", unexpected), ("of the wrong shape", shapes)) if v]
    return f"its weights do not fit model '{name}': " + "; ".join(parts or ["load_state_dict refused them"])


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from a ``.safetensors`` weight file or a ``.pt`` training checkpoint; eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        meta = read_metadata(path)
        if "model" not in meta:
            raise ValueError(f"{path}: no 'model' in the safetensors metadata; not a colorize weight file")
        try:
            kwargs = json.loads(meta.get("model_kwargs", "{}"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: the metadata's model_kwargs is not valid JSON ({e})") from None
        try:
            state = load_file(str(path))
        except Exception as e:  # truncated or corrupt tensor data
            raise ValueError(f"{path}: cannot read the weights ({type(e).__name__}: {e})") from None
        name = meta["model"]
    else:
        try:
            ckpt = load_checkpoint(path, map_location)
        except pickle.UnpicklingError:  # torch's message advises weights_only=False: never here
            raise ValueError(f"{path}: not a colorize checkpoint (not a PyTorch file, or one holding Python objects "
                             "beyond tensors and plain data, which are never unpickled)") from None
        except Exception as e:  # a truncated or corrupt archive, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ValueError(f"{path}: not a readable colorize checkpoint ({type(e).__name__}: {first})") from None
        if not isinstance(ckpt, dict) or "model" not in ckpt or "state_dict" not in ckpt:
            raise ValueError(f"{path}: not a colorize checkpoint (needs 'model' and 'state_dict')")
        name, kwargs, state = ckpt["model"], ckpt.get("model_kwargs", {}), ckpt["state_dict"]
    if not isinstance(kwargs, dict):
        raise ValueError(f"{path}: model_kwargs must be a mapping, got {type(kwargs).__name__}")
    kwargs = {k: v for k, v in kwargs.items() if k not in _BUILD_ONLY}
    try:
        model = create_model(name, **kwargs)
    except (TypeError, ValueError) as e:  # unknown model name or options
        raise ValueError(f"{path}: cannot build the model it describes ({e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: its state_dict is a {type(state).__name__}, not a mapping of tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise ValueError(f"{path}: {_state_mismatch(model, state, name)}") from None
    recorded = meta if path.suffix == ".safetensors" else ckpt.get("decoding")
    try:
        _apply_decoding(model, recorded)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: its recorded decoding cannot be used ({e})") from None
    return model.to(map_location).eval()


# The decoding a model's weights were tuned for, recorded beside them (a weight file's metadata, a checkpoint's
# "decoding"): the annealed-mean temperature and working size (defaults at run time) and the prior correction, either
# folded into the weights already (``colorize export``) or, in a run warm-started from tuned weights, to fold on load
# (the run trains without it and inherits its source's decoding: its files decode as the source does).
def _apply_decoding(model: nn.Module, recorded: dict | None) -> None:
    """Give a just-built model the decoding ``recorded`` for its weights."""
    if not isinstance(recorded, dict):
        return
    if "temperature" in recorded:
        model.default_temperature = float(recorded["temperature"])
    if "working_size" in recorded:
        model.default_size = int(recorded["working_size"])
    if "prior_correction" in recorded:  # already folded into the weights; kept to describe them
        model.prior_correction = float(recorded["prior_correction"])
    elif float(recorded.get("unfolded_prior_correction", 0)):
        from colorize.models.base import correct_prior

        correct_prior(model, float(recorded["unfolded_prior_correction"]))


def decoding_of(model: nn.Module, *, unfolded: bool = False) -> dict[str, str]:
    """The decoding a loaded model carries (recorded in its file: :func:`load_model`), as the metadata that records
    it again: a warm start's run passes its source's on (``unfolded``: its weights lack the prior correction, which
    its files then record as to be folded on load)."""
    out = {}
    if "default_temperature" in vars(model):  # recorded, not the class's default
        out["temperature"] = f"{model.default_temperature:g}"
    if getattr(model, "default_size", None):
        out["working_size"] = str(int(model.default_size))
    if getattr(model, "prior_correction", 0.0):
        out["unfolded_prior_correction" if unfolded else "prior_correction"] = f"{model.prior_correction:g}"
    return out
