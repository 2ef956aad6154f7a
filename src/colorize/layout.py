"""How the pipeline lays out its work, torch-free so both engines share it: the working size the network
sees, the strips full-resolution work is done in, and the scales of the network's input and output."""

from __future__ import annotations

import math
import numbers

# Model-side scales: L in [0, 100] -> [-1, 1]; ab / 128 -> roughly [-1, 1].
L_CENTER = 50.0
L_SCALE = 50.0
AB_SCALE = 128.0

# the step graphs exported from colorize.steps that the light engine runs
GRAPHS = ("lab", "lightness", "gray_lightness", "coefficients", "compose", "gray16_lightness", "compose16")
# full-resolution work is done a quarter megapixel at a time: flat memory for any size, and a strip's temporaries
# (1 MB a channel) stay in the CPU's caches: on a 6000x4000 scan both engines are faster than with 1-megapixel
# strips (torch 1.4-1.8 s -> 1.2-1.4 s, 1 core) and peak lower (torch 1230 -> 1110 MB, light 820 -> 550 MB)
STRIP_PIXELS = 1 << 18
# past ~30 every predicted color is already at the edge of the sRGB gamut; past ~1000 float32's precision fades the
# colors back to gray, and past ~1e15 the chroma overflows: the setting's range stops well before
MAX_SATURATION = 100.0


def _number(value: object) -> bool:
    """An int or float (numpy's too), not a bool (``True`` is Python's 1) nor a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_color_options(temperature: float | None, saturation: float, threads: int | None = None,
                        size: int | None = None) -> None:
    """Both engines' check of their settings: ValueError naming a bad one (NaN and infinity included, which would
    otherwise fail deep in the network's decoding), TypeError for one that is no number (a string, a bool); the
    working ``size`` is checked against the model's stride by the engines."""
    for name, value, whole in (("temperature", temperature, False), ("saturation", saturation, False),
                               ("threads", threads, True), ("size", size, True)):
        if value is None and name != "saturation":
            continue
        if not _number(value) or (whole and not isinstance(value, numbers.Integral)):
            kind = "a whole number" if whole else "a number"
            raise TypeError(f"{name} must be {kind}, got {value!r}")
    if temperature is not None and not (0 < temperature < math.inf):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 <= saturation <= MAX_SATURATION:
        raise ValueError(f"saturation must be in 0..{MAX_SATURATION:g}, got {saturation}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 (or None: the runtime's default), got {threads}")


def working_shape(height: int, width: int, size: int, stride: int) -> tuple[int, int]:
    """Scale so the long side is ~``size`` (never upscaling past the original), round to the stride. ValueError
    for a photo without pixels (both engines ask this first)."""
    if height < 1 or width < 1:
        raise ValueError(f"the image has no pixels: {width}x{height}")
    scale = min(1.0, size / max(height, width))
    h = max(stride, round(height * scale / stride) * stride)
    w = max(stride, round(width * scale / stride) * stride)
    return h, w


def strips(height: int, width: int) -> range:
    """The first rows of the strips a (height, width) photo is processed in; ``.step`` is their height."""
    return range(0, height, max(1, STRIP_PIXELS // width))
