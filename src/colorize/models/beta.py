"""Beta: the write-ups' generalizing encoder-decoder.

Stride-2 convolutions instead of pooling (64..512 channels, stride 8), 'same' padding, an upsampling
decoder and a tanh head. ``beta_rgb`` is the same net predicting RGB from gray directly: the approach
the write-ups found worse, kept so the difference can be measured.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from colorize.models._registry import register_model
from colorize.models.base import ColorNet, RegressionHead, conv_bn_relu


class Beta(ColorNet):
    stride = 8

    def __init__(self, width: int = 64, output: str = "ab"):
        super().__init__()
        if output not in ("ab", "rgb"):
            raise ValueError(f"unknown output '{output}'; choose from: ab, rgb")
        self.output = output
        w = width
        self.encoder = nn.Sequential(
            conv_bn_relu(1, w), conv_bn_relu(w, w, stride=2),  # (B, 64, H/2, W/2)
            conv_bn_relu(w, 2 * w), conv_bn_relu(2 * w, 2 * w, stride=2),  # (B, 128, H/4, W/4)
            conv_bn_relu(2 * w, 4 * w), conv_bn_relu(4 * w, 4 * w, stride=2),  # (B, 256, H/8, W/8)
            conv_bn_relu(4 * w, 8 * w), conv_bn_relu(8 * w, 4 * w),  # (B, 256, H/8, W/8) via 512
        )
        self.decoder = nn.Sequential(
            conv_bn_relu(4 * w, 2 * w), nn.Upsample(scale_factor=2, mode="nearest"),
            conv_bn_relu(2 * w, w), nn.Upsample(scale_factor=2, mode="nearest"),
            conv_bn_relu(w, w // 2), nn.Upsample(scale_factor=2, mode="nearest"),  # (B, 32, H, W)
        )
        self.head = RegressionHead(w // 2, 2 if output == "ab" else 3,
                                   activation="tanh" if output == "ab" else "sigmoid")

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(l_norm)))


@register_model
def beta(width: int = 64) -> Beta:
    """Encoder-decoder predicting normalized ab (~3.4M parameters at width 64)."""
    return Beta(width, output="ab")


@register_model
def beta_rgb(width: int = 64) -> Beta:
    """Beta predicting RGB in [0, 1] from gray (the write-ups' losing variant)."""
    return Beta(width, output="rgb")
