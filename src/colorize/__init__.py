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

        try:
            return getattr(importlib.import_module(_LAZY[name]), name)
        except ModuleNotFoundError as e:  # the light install: say what installs it, and what serves without it
            if (e.name or "").split(".")[0] not in ("torch", "torchvision", "timm", "safetensors"):
                raise
            raise ModuleNotFoundError(f"colorize.{name} needs torch: pip install 'colorize[torch]'; the light install "
                                      "(onnxruntime only) colorizes with colorize.LiteColorizer", name=e.name) from None
    raise AttributeError(f"module 'colorize' has no attribute '{name}'")
