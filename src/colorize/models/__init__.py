"""Colorization models. Importing this package registers every architecture."""

from colorize.models import alpha, beta, fusion, unet  # noqa: F401  (registration side effect)
from colorize.models._registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
