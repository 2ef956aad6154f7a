"""Inputs that already have color: is a photo gray, toned (sepia, cyanotype, selenium: one hue) or color?

Measured on the photo's chroma in CIE Lab at <= 256 px (the long side), by these statistics:

- ``colored``: the share of pixels more than :data:`TINT_CHROMA` ab units off the photo's *tone*: the
  ray in the ab plane from neutral through its median ab (for a neutral median, neutral itself). Toning
  moves every pixel along one hue, by an amount that varies with lightness, so a toned print has few
  pixels off that ray; a color photo (or a hand-tinted one) has many.
- ``tone_chroma``: the chroma of that base tone, |median ab|.
- ``hue_spread``: the circular spread (degrees) of the hues of pixels with chroma over
  :data:`GRAY_CHROMA`, weighted by chroma.

The rules, in order (thresholds below; JPEG noise and scanner casts stay under them):

1. gray: fewer than :data:`MIN_COLORED` of the pixels have chroma over :data:`GRAY_CHROMA`;
2. toned: fewer than :data:`MIN_COLORED` of the pixels are off the base tone by more than
   :data:`TINT_CHROMA`, and the hues spread less than :data:`MAX_TONE_SPREAD` degrees;
3. color: anything else (including hand-tinted prints: gray or toned, with colored areas).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from colorize.color import rgb_to_lab

GRAY_CHROMA = 4.0  # ab units: below this a pixel looks neutral (JPEG and scanner noise stay under it)
TINT_CHROMA = 10.0  # ab units off the photo's tone: the pixel has a color of its own
MIN_COLORED = 0.01  # share of pixels: fewer than this colored pixels do not make the photo colored
MAX_TONE_SPREAD = 30.0  # degrees: a toned photo's hues spread less than this
ANALYSIS_SIZE = 256  # long side (px) the statistics are measured at


@dataclass(frozen=True)
class ToneReport:
    """What a photo's colors are, and the numbers that decided it."""

    kind: str  # "gray", "toned" or "color"
    colored: float  # share of pixels off the tone by > TINT_CHROMA
    chromatic: float  # share of pixels with chroma > GRAY_CHROMA
    tone_chroma: float  # |median ab|: the base tone's chroma (0 for a neutral print)
    tone_hue: float  # degrees, the base tone's hue (CIE Lab: ~60-80 sepia, ~-90..-110 cyanotype)
    hue_spread: float  # degrees: circular spread of the chromatic pixels' hues

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def describe(self) -> str:
        if self.kind == "gray":
            return "gray"
        if self.kind == "toned":
            return f"toned (one hue, {self.tone_hue:.0f} deg; colorized from its lightness)"
        return f"already in color ({100 * self.colored:.0f}% of it colored, hues spread {self.hue_spread:.0f} deg)"


def off_tone(ab: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Distance (ab units) of colors ``ab`` (2, ...) from the tone ray through ``base`` (2,): from neutral
    outward along ``base``'s hue (neutral itself when ``base`` is within :data:`GRAY_CHROMA` of it)."""
    norm = float(base.norm())
    if norm < GRAY_CHROMA:
        return ab.norm(dim=0)
    u = (base / norm).view(2, *[1] * (ab.dim() - 1))
    along = (ab * u).sum(dim=0, keepdim=True).clamp(min=0)
    return (ab - along * u).norm(dim=0)


def small_rgb(image: Image.Image | np.ndarray | torch.Tensor, size: int = ANALYSIS_SIZE) -> torch.Tensor:
    """A photo reduced to at most ``size`` px on the long side (box filter), as (1, 3, h, w) float in
    [0, 1]. PIL images and uint8 arrays are reduced by Pillow before any float copy is made, so a
    24-megapixel scan costs a thumbnail."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image if image.ndim == 2 else image[..., :3])
    if isinstance(image, Image.Image):
        thumb = image.convert("RGB")
        thumb.thumbnail((size, size), Image.Resampling.BOX)
        return torch.from_numpy(np.array(thumb, np.float32)).permute(2, 0, 1)[None] / 255.0
    x = image.float()[None] if image.dim() == 3 else image.float()
    scale = size / max(x.shape[-2:])
    return F.interpolate(x, scale_factor=scale, mode="area") if scale < 1 else x


def classify(image: Image.Image | np.ndarray | torch.Tensor) -> ToneReport:
    """Gray, toned or color, by chroma statistics (see the module docstring).

    Args:
        image: a PIL image, (H, W, 3) uint8 array, or (3, H, W) float tensor in [0, 1].
    """
    ab = rgb_to_lab(small_rgb(image).double())[0, 1:].reshape(2, -1)  # (2, N)
    chroma = ab.norm(dim=0)
    base = ab.median(dim=1).values
    colored = float((off_tone(ab, base) > TINT_CHROMA).double().mean())
    chromatic_mask = chroma > GRAY_CHROMA
    chromatic = float(chromatic_mask.double().mean())
    spread = 0.0
    if chromatic_mask.any():
        unit = ab[:, chromatic_mask] / chroma[chromatic_mask]
        weights = chroma[chromatic_mask]
        resultant = float((unit * weights).sum(dim=1).norm() / weights.sum())
        spread = math.degrees(math.sqrt(max(0.0, -2.0 * math.log(max(resultant, 1e-12)))))  # circular std
    tone_chroma = float(base.norm())
    tone_hue = math.degrees(math.atan2(float(base[1]), float(base[0]))) if tone_chroma > 0 else 0.0
    if chromatic < MIN_COLORED:
        kind = "gray"
    elif colored < MIN_COLORED and spread < MAX_TONE_SPREAD:
        kind = "toned"
    else:
        kind = "color"
    return ToneReport(kind, colored, chromatic, tone_chroma, tone_hue, spread)
