"""Alpha: the write-ups' tiny net that learns to color ONE image.

Strided 3x3 convs down (8-16-32 channels, stride 8 in all), nearest upsampling back, tanh ab.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from colorize.models._registry import register_model
from colorize.models.base import ColorNet, RegressionHead


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True))


class Alpha(ColorNet):
    output = "ab"
    stride = 8

    def __init__(self, width: int = 8):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            _conv(1, w, 2), _conv(w, w),  # (B, 8, H/2, W/2)
            _conv(w, 2 * w), _conv(2 * w, 2 * w, 2),  # (B, 16, H/4, W/4)
            _conv(2 * w, 4 * w), _conv(4 * w, 4 * w, 2),  # (B, 32, H/8, W/8)
        )
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2), _conv(4 * w, 4 * w),
            nn.Upsample(scale_factor=2), _conv(4 * w, 2 * w),
            nn.Upsample(scale_factor=2),
        )
        self.head = RegressionHead(2 * w, 2)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(l_norm)))  # (B, 2, H, W) normalized ab


@register_model
def alpha(width: int = 8) -> Alpha:
    """The one-image net of the write-ups (~10k parameters)."""
    return Alpha(width)
