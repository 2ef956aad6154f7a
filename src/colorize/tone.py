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
2. fewer than :data:`MIN_COLORED` of the pixels are off the base tone by more than :data:`TINT_CHROMA`
   (no color of its own): toned if the hues spread less than :data:`MAX_TONE_SPREAD` degrees, else gray
   (faint casts of several hues: a scan's warm highlights and cool shadows, chroma noise);
3. color: anything else (including hand-tinted prints: gray or toned, with colored areas).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
from PIL import Image

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


def off_tone(ab: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Distance (ab units) of colors ``ab`` (2, ...) from the tone ray through ``base`` (2,): from neutral
    outward along ``base``'s hue (neutral itself when ``base`` is within :data:`GRAY_CHROMA` of it)."""
    norm = float(np.linalg.norm(base))
    if norm < GRAY_CHROMA:
        return np.linalg.norm(ab, axis=0)
    u = (base / norm).reshape(2, *[1] * (ab.ndim - 1))
    along = np.clip((ab * u).sum(axis=0, keepdims=True), 0, None)
    return np.linalg.norm(ab - along * u, axis=0)


def small_rgb(image: "Image.Image | np.ndarray | Any", size: int = ANALYSIS_SIZE) -> np.ndarray:
    """A photo reduced to at most ``size`` px on the long side (box filter), as (1, 3, h, w) float32 in
    [0, 1]. Images and arrays are reduced by Pillow before any float copy is made, so a 24-megapixel scan
    costs a thumbnail; a (3, H, W) float tensor in [0, 1] is brought to 8 bits first."""
    if not isinstance(image, (Image.Image, np.ndarray)):  # a torch tensor
        image = (image.detach().float().clamp(0, 1).permute(1, 2, 0) * 255 + 0.5).byte().cpu().numpy()
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image if image.ndim == 2 else image[..., :3])
    if image.mode.startswith("I;16"):  # a 16-bit gray master: reduced first (Pillow's 8-bit convert clips it)
        from colorize.io import to_rgb

        scale = size / max(image.size)  # BOX without reducing_gap: Pillow's reduce() takes no 16-bit modes
        if scale < 1:
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.BOX)
        image = to_rgb(image)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    scale = size / max(image.size)
    if scale < 1:  # reduced as Image.thumbnail does, without its full-size copy (it works in place)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BOX, reducing_gap=2.0)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), np.float32).transpose(2, 0, 1)[None] / 255.0)


def _torch_lab(rgb: np.ndarray) -> np.ndarray:
    import torch

    from colorize.color import rgb_to_lab

    return rgb_to_lab(torch.from_numpy(rgb).double()).numpy()


def classify(image: "Image.Image | np.ndarray | Any", *,
             to_lab: Callable[[np.ndarray], np.ndarray] | None = None) -> ToneReport:
    """Gray, toned or color, by chroma statistics (see the module docstring).

    Args:
        image: a PIL image, (H, W, 3) uint8 array, or (3, H, W) float tensor in [0, 1].
        to_lab: (1, 3, h, w) sRGB in [0, 1] -> CIE Lab, same shape: :func:`colorize.color.rgb_to_lab` (torch)
            unless the light engine passes its export of it.
    """
    ab = (to_lab or _torch_lab)(small_rgb(image))[0, 1:].reshape(2, -1).astype(np.float64)  # (2, N)
    chroma = np.linalg.norm(ab, axis=0)
    base = np.median(ab, axis=1)
    colored = float((off_tone(ab, base) > TINT_CHROMA).mean())
    chromatic_mask = chroma > GRAY_CHROMA
    chromatic = float(chromatic_mask.mean())
    spread = 0.0
    if chromatic_mask.any():
        unit = ab[:, chromatic_mask] / chroma[chromatic_mask]
        weights = chroma[chromatic_mask]
        resultant = float(np.linalg.norm((unit * weights).sum(axis=1)) / weights.sum())
        spread = math.degrees(math.sqrt(max(0.0, -2.0 * math.log(max(resultant, 1e-12)))))  # circular std
    tone_chroma = float(np.linalg.norm(base))
    tone_hue = math.degrees(math.atan2(float(base[1]), float(base[0]))) if tone_chroma > 0 else 0.0
    if chromatic < MIN_COLORED:
        kind = "gray"
    elif colored < MIN_COLORED:  # no pixel has a color of its own: one hue is a toning, several are casts
        kind = "toned" if spread < MAX_TONE_SPREAD else "gray"
    else:
        kind = "color"
    return ToneReport(kind, colored, chromatic, tone_chroma, tone_hue, spread)
