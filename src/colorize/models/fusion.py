"""Full: the write-ups' encoder + fusion layer + decoder.

A frozen ImageNet classifier sees the gray photo resized to its own input size; its 1000-class
probability vector is tiled over the encoder's grid (32x32 for a 256 input), concatenated with the
encoder features and mixed by a 1x1 conv to 256 channels before the upsampling decoder.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from colorize.models._registry import register_model
from colorize.models.base import ColorNet, RegressionHead, gray_for_classifier
from colorize.models.backbones import backbone_cfg, create_backbone


def _conv(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2), nn.ReLU(inplace=True))


class Fusion(ColorNet):
    output = "ab"
    stride = 8

    def __init__(self, classifier: str = "tf_efficientnet_lite0", *, classifier_weights: bool | str = False):
        super().__init__()
        self.cfg = backbone_cfg(classifier)
        self.classifier = create_backbone(classifier, pretrained=classifier_weights)
        self.classifier.requires_grad_(False)
        num_classes = self.classifier.num_classes
        self.encoder = nn.Sequential(
            _conv(1, 64, 2), _conv(64, 128), _conv(128, 128, 2),
            _conv(128, 256), _conv(256, 256, 2),
            _conv(256, 512), _conv(512, 512), _conv(512, 256),  # (B, 256, H/8, W/8)
        )
        self.fusion = _conv(256 + num_classes, 256, kernel=1)
        self.decoder = nn.Sequential(
            _conv(256, 128), nn.Upsample(scale_factor=2),
            _conv(128, 64), nn.Upsample(scale_factor=2),
            _conv(64, 32), _conv(32, 16),
        )
        self.head = RegressionHead(16, 2)
        self.up = nn.Upsample(scale_factor=2)

    def train(self, mode: bool = True) -> "Fusion":
        super().train(mode)
        self.classifier.eval()  # frozen, BatchNorm statistics included
        return self

    def embed(self, l_norm: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, 1000) class probabilities of the gray photo."""
        size = self.cfg.input_size
        x = F.interpolate(l_norm, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            return torch.softmax(self.classifier(gray_for_classifier(x, self.cfg.mean, self.cfg.std)), dim=1)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(l_norm)  # (B, 256, H/8, W/8)
        emb = self.embed(l_norm)[:, :, None, None].expand(-1, -1, *feats.shape[-2:])  # tiled (B, 1000, h, w)
        x = self.fusion(torch.cat([feats, emb], dim=1))  # (B, 256, h, w)
        return self.up(self.head(self.decoder(x)))  # (B, 2, H, W)


@register_model
def fusion(*, classifier_weights: bool | str = False) -> Fusion:
    """Full model with the offline EfficientNet-Lite0 classifier."""
    return Fusion("tf_efficientnet_lite0", classifier_weights=classifier_weights)


@register_model
def fusion_irv2(*, classifier_weights: bool | str = False) -> Fusion:
    """Full model as written: Inception-ResNet-v2 classifier (hub weights or a local file)."""
    return Fusion("inception_resnet_v2", classifier_weights=classifier_weights)
