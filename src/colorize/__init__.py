"""colorize: automatic colorization of black-and-white photographs and film.

Public API (imported lazily, so ``colorize --help`` starts without torch)::

    from colorize import Colorizer, LiteColorizer, create_model, list_models, rgb_to_lab, lab_to_rgb

``LiteColorizer`` (the light engine) needs no torch; the rest do.
"""

__version__ = "0.1.0"
__all__ = ["Colorizer", "LiteColorizer", "create_model", "list_models", "rgb_to_lab", "lab_to_rgb", "__version__"]

_LAZY = {
    "Colorizer": "colorize.pipeline",
    "LiteColorizer": "colorize.lite",
    "create_model": "colorize.models",
    "list_models": "colorize.models",
    "rgb_to_lab": "colorize.color",
    "lab_to_rgb": "colorize.color",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'colorize' has no attribute '{name}'")
