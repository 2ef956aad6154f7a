"""Old-photo aging of a lightness channel: what a century does to a print, simulated on clean photos.

Genuine old photographs differ from a clean photo's lightness in ways a network trained on clean photos
never saw: faded, lifted blacks and dull whites (a tone curve), soft focus and lens blur, film grain, and
uneven fading across the print. :func:`age_lightness` draws such damage at random per photo, in torch (on
the batch's device, cheap). Training uses it on the network's *input* only (the
target colors stay the clean photo's: the network learns to see through the damage); ``benchmarks/
aged_bench.py`` uses it to ask how well colors hold on aged inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Aging:
    """Ranges of each kind of damage, drawn uniformly per photo; each kind applied with its probability."""

    tone_p: float = 0.8
    gamma: tuple[float, float] = (0.7, 1.5)  # drawn log-uniformly
    black: tuple[float, float] = (0.0, 0.15)  # lifted blacks, share of full scale
    white: tuple[float, float] = (0.8, 1.0)  # dulled whites
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.3, 1.2)  # px at the photo's own scale
    grain_p: float = 0.6
    grain_sigma: tuple[float, float] = (1.0, 6.0)  # L units, before the grain is clumped (blurred by 0.6 px)
    fade_p: float = 0.3
    fade: tuple[float, float] = (0.0, 0.1)  # amplitude of a smooth, uneven fade, share of full scale


def _uniform(lo_hi: tuple[float, float], n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    lo, hi = lo_hi
    return (lo + (hi - lo) * torch.rand(n, generator=generator)).to(device).view(n, 1, 1, 1)


def _chosen(p: float, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator) < p).to(device).view(n, 1, 1, 1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each photo of (B, 1, H, W) by its own sigma (B, 1, 1, 1) px (separable, reflect padding)."""
    radius = max(1, int(torch.ceil(3 * sigma.max()).item()))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype).view(1, -1)
    k = torch.exp(-0.5 * (t / sigma.view(-1, 1).clamp_min(1e-3)) ** 2)
    k = k / k.sum(dim=1, keepdim=True)  # (B, K)
    b = x.shape[0]
    y = F.pad(x.reshape(1, b, *x.shape[-2:]), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(b, 1, 1, -1), groups=b)
    y = F.conv2d(y, k.view(b, 1, -1, 1), groups=b)
    return y.reshape_as(x)


def age_lightness(l: torch.Tensor, aging: Aging = Aging(), *, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 1, H, W) L in [0, 100] -> the same photos aged (a new tensor, L in [0, 100]).

    Random draws come from ``generator`` (on the CPU; None: torch's global one), so a seeded generator
    ages the same photos the same way on any device.
    """
    if l.dim() != 4 or l.shape[1] != 1:
        raise ValueError(f"expected (B, 1, H, W) lightness, got {tuple(l.shape)}")
    n, dev = l.shape[0], l.device
    x = l.float() / 100.0
    if n == 0:
        return x * 100.0
    # tone: a gamma curve, then the range squeezed between lifted blacks and dulled whites
    tone = _chosen(aging.tone_p, n, generator, dev)
    gamma = torch.exp(_uniform((math.log(aging.gamma[0]), math.log(aging.gamma[1])), n, generator, dev))
    black, white = _uniform(aging.black, n, generator, dev), _uniform(aging.white, n, generator, dev)
    toned = black + (white - black) * x.clamp(0, 1).pow(gamma)
    x = torch.where(tone, toned, x)
    # uneven fade: a smooth random field (a 3x3 grid of levels, upsampled), lightening parts of the print
    fade = _chosen(aging.fade_p, n, generator, dev) * _uniform(aging.fade, n, generator, dev)
    field = torch.rand(n, 1, 3, 3, generator=generator).to(dev)
    field = F.interpolate(field, size=x.shape[-2:], mode="bicubic", align_corners=True).clamp(0, 1)
    x = x + fade * field * (1 - x)
    # blur: soft focus, an old lens, a copy of a copy
    blur = _chosen(aging.blur_p, n, generator, dev)
    sigma = _uniform(aging.blur_sigma, n, generator, dev)
    if bool(blur.any()):
        x = torch.where(blur, _gaussian_blur(x, sigma), x)
    # grain: noise clumped by a slight blur, its strength drawn per photo
    grain = _chosen(aging.grain_p, n, generator, dev) * _uniform(aging.grain_sigma, n, generator, dev) / 100.0
    noise = torch.randn(x.shape, generator=generator).to(dev)
    noise = _gaussian_blur(noise, torch.full((n, 1, 1, 1), 0.6, device=dev))
    noise = noise / noise.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
    x = x + grain * noise
    return x.clamp(0, 1) * 100.0
