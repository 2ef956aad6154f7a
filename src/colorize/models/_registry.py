"""The one way to build a model: ``@register_model`` variants, ``create_model(name)``, ``list_models()``."""

from __future__ import annotations

import inspect
from typing import Callable

import torch.nn as nn

_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model-building function under its own name."""
    name = fn.__name__
    if name in _model_entrypoints:
        raise ValueError(f"model '{name}' is registered twice")
    _model_entrypoints[name] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _import_all()
    return sorted(_model_entrypoints)


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    _import_all()
    if name not in _model_entrypoints:
        raise ValueError(f"unknown model '{name}'; choose from: {', '.join(sorted(_model_entrypoints))}")
    return _model_entrypoints[name]


def check_options(name: str, kwargs: dict) -> Callable[..., nn.Module]:
    """The builder of model ``name``; TypeError naming the options it does not take and those it does."""
    fn = model_entrypoint(name)
    params = inspect.signature(fn).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in kwargs if k not in params]
    if unknown and not accepts_any:
        raise TypeError(f"model '{name}' got unknown option(s) {unknown}; it accepts: {', '.join(params)}")
    return fn


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. Unknown keyword arguments fail with the accepted ones.

    The built model remembers ``name`` and ``kwargs`` (``model.model_name``, ``model.model_kwargs``) so
    checkpoints and weight files can rebuild it with nothing else.
    """
    model = check_options(name, kwargs)(**kwargs)
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


def _import_all() -> None:
    # Importing the package registers every architecture file.
    from colorize import models  # noqa: F401
