"""Reference architectures from the literature, built only to time them (random weights, never trained).

``ECCV16``: Zhang, Isola & Efros, "Colorful Image Colorization" (ECCV 2016), laid out as the PyTorch
port in richzhang/colorization (``colorizers/eccv16.py``): eight VGG-style conv blocks
64-128-256-512-512(dilation 2)-512(dilation 2)-512-256, a 313-bin 1x1 head at 1/4 resolution,
softmax, a 1x1 conv to ab, and x4 bilinear upsampling.

The write-ups' Full model with Inception-ResNet-v2 is ``colorize.models.create_model("fusion_irv2")``.
:class:`NativeSize` runs any model at its native square input inside the one pipeline.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from colorize.color import AB_SCALE
from colorize.models.base import ColorNet

ECCV16_BINS = 313  # ab bins of Zhang et al. (the in-gamut cells that ImageNet's pixels fall in)
ECCV16_AB_SCALE = 110.0  # the port's output scale (Lab units)


def _block(cin: int, cout: int, *, convs: int, last_stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """``convs`` 3x3 conv + ReLU layers (the last one strided), then BatchNorm, as in each eccv16 block."""
    layers: list[nn.Module] = []
    for i in range(convs):
        stride = last_stride if i == convs - 1 else 1
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride=stride, padding=dilation, dilation=dilation),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.BatchNorm2d(cout))


class ECCV16(ColorNet):
    """Zhang et al.'s colorization net, normalized L (B, 1, H, W) -> normalized ab (B, 2, H, W); H, W
    multiples of 8."""

    output = "ab"
    stride = 8

    def __init__(self):
        super().__init__()
        self.model1 = _block(1, 64, convs=2, last_stride=2)  # (B, 64, H/2, W/2)
        self.model2 = _block(64, 128, convs=2, last_stride=2)  # (B, 128, H/4, W/4)
        self.model3 = _block(128, 256, convs=3, last_stride=2)  # (B, 256, H/8, W/8)
        self.model4 = _block(256, 512, convs=3)
        self.model5 = _block(512, 512, convs=3, dilation=2)
        self.model6 = _block(512, 512, convs=3, dilation=2)
        self.model7 = _block(512, 512, convs=3)
        self.model8 = nn.Sequential(  # no BatchNorm; up to (B, 313, H/4, W/4) bin logits
            nn.ConvTranspose2d(512, 256, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, ECCV16_BINS, 1),
        )
        self.model_out = nn.Conv2d(ECCV16_BINS, 2, 1, bias=False)  # expectation over the bins' ab

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        x = l_norm / 2  # our L normalization (L - 50) / 50 -> theirs (L - 50) / 100
        for block in (self.model1, self.model2, self.model3, self.model4, self.model5, self.model6, self.model7):
            x = block(x)
        ab = self.model_out(torch.softmax(self.model8(x), dim=1))  # (B, 2, H/4, W/4) in their units
        ab = F.interpolate(ab, scale_factor=4, mode="bilinear", align_corners=False)
        return ab * (ECCV16_AB_SCALE / AB_SCALE)  # -> normalized ab


class NativeSize(nn.Module):
    """Run ``model`` at its native square input: resize the working-size L to ``size`` x ``size``,
    predict, resize the ab back. The pipeline around it (L extraction, edge-aware upsampling, Lab to
    RGB) is the one every model shares."""

    output = "ab"

    def __init__(self, model: nn.Module, *, size: int = 256, name: str | None = None):
        super().__init__()
        self.model, self.size = model, size
        self.stride = int(getattr(model, "stride", 8))
        self.model_name = name or getattr(model, "model_name", type(model).__name__)

    def predict_ab(self, l_norm: torch.Tensor, **kwargs) -> torch.Tensor:
        x = F.interpolate(l_norm, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        ab = self.model.predict_ab(x, **kwargs) if hasattr(self.model, "predict_ab") else self.model(x)
        return F.interpolate(ab, size=l_norm.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.predict_ab(l_norm)
