"""U-Net on a pretrained backbone's multi-scale features: the shipped default (``unet_lite0``).

The gray photo goes through an ImageNet backbone (``features_only``); a light decoder upsamples the
deepest features, concatenating each shallower level, down to the backbone's finest level (stride 2
for EfficientNet). The head predicts logits over the in-gamut ab bins (Zhang et al.'s
classification, decoded by annealed mean) or ab directly (regression).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from colorize.models._base import (AbBins, BinHead, ColorNet, RegressionHead, conv_bn_relu, fold_gray_stem,
                                   gray_for_classifier)
from colorize.models._registry import register_model
from colorize.models.backbones import backbone_cfg, create_backbone


class UpBlock(nn.Module):
    """Upsample to the skip's size, concatenate, two 3x3 convs."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(conv_bn_relu(cin + cskip, cout), conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


class UNet(ColorNet):
    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        *,
        backbone_weights: bool | str = False,
        decoder_channels: tuple[int, ...] = (128, 64, 48, 32),
        head: str = "bins",
        freeze_levels: int = 5,
        out_indices: tuple[int, ...] | None = None,
    ):
        """
        Args:
            backbone: a name from ``backbones.BACKBONES``.
            backbone_weights: ImageNet weights for the encoder (True: packaged or hub; or a file path).
            decoder_channels: output channels of each up-block, deepest first.
            head: "bins" (classification over ab bins) or "ab" (regression).
            freeze_levels: how many encoder feature levels (from the input side) stay frozen; the
                deeper ones are fine-tuned. A number >= the level count freezes the whole encoder.
            out_indices: which backbone feature levels to use (default: all).
        """
        super().__init__()
        if head not in ("bins", "ab"):
            raise ValueError(f"unknown head '{head}'; choose from: bins, ab")
        self.cfg = backbone_cfg(backbone)
        self.encoder = create_backbone(backbone, pretrained=backbone_weights, features_only=True,
                                       out_indices=out_indices)
        channels = self.encoder.feature_info.channels()  # shallow -> deep
        self.stride = max(self.encoder.feature_info.reduction())
        if len(decoder_channels) != len(channels) - 1:
            raise ValueError(f"decoder_channels needs {len(channels) - 1} entries for {backbone}, "
                             f"got {len(decoder_channels)}")
        ups, cin = [], channels[-1]
        for cskip, cout in zip(reversed(channels[:-1]), decoder_channels):
            ups.append(UpBlock(cin, cskip, cout))
            cin = cout
        self.decoder = nn.ModuleList(ups)
        self.output = head
        if head == "bins":
            self.bins = AbBins()
            self.head = BinHead(cin, self.bins)
        else:
            self.head = RegressionHead(cin, 2)
        self._frozen = self._freeze(freeze_levels)
        self.gray_channels = 3  # 1 after optimize_for_inference folds the stem

    def _freeze(self, levels: int) -> list[nn.Module]:
        """Freeze the encoder from the input to the end of feature level ``levels - 1``; returns the frozen
        BatchNorm layers (kept in eval mode so they keep their ImageNet statistics)."""
        info = self.encoder.feature_info
        modules = [(n.replace(".", "_"), m) for n, m in self.encoder.named_modules() if n]
        if levels <= 0:
            return []
        if levels >= len(info.channels()):
            cut = len(modules)
        else:
            key = info.module_name(levels - 1).replace(".", "_")
            cut = 1 + max(i for i, (n, _) in enumerate(modules) if n == key or n.startswith(key + "_"))
        for _, m in modules[:cut]:
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)
        return [m for _, m in modules[:cut] if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True) -> "UNet":
        super().train(mode)
        for m in self._frozen:  # frozen BatchNorms keep their ImageNet statistics
            m.eval()
        return self

    def fold_for_inference(self) -> None:
        stem = getattr(self.encoder, "conv_stem", None)
        if isinstance(stem, nn.Conv2d) and len(set(self.cfg.mean)) == 1 and len(set(self.cfg.std)) == 1:
            fold_gray_stem(stem)  # the encoder reads one gray channel instead of three equal ones
            self.gray_channels = 1

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        gray = gray_for_classifier(l_norm, self.cfg.mean, self.cfg.std, channels=self.gray_channels)
        feats = self.encoder(gray)
        x = feats[-1]
        for up, skip in zip(self.decoder, reversed(feats[:-1])):
            x = up(x, skip)
        return self.head(x)  # (B, Q, H/2, W/2) bin logits or (B, 2, H/2, W/2) ab


@register_model
def unet_lite0(*, backbone_weights: bool | str = False, head: str = "bins", freeze_levels: int = 2,
               decoder_channels: tuple[int, ...] = (128, 64, 48)) -> UNet:
    """EfficientNet-Lite0 U-Net over strides 4..32, classification over ab bins at 1/4 resolution
    (edge-aware upsampling guided by L brings it to full size): the shipped default."""
    return UNet("tf_efficientnet_lite0", backbone_weights=backbone_weights, head=head,
                freeze_levels=freeze_levels, decoder_channels=tuple(decoder_channels), out_indices=(1, 2, 3, 4))


@register_model
def unet_lite0_reg(*, backbone_weights: bool | str = False, freeze_levels: int = 2) -> UNet:
    """The same U-Net with a regression head (smooth-L1 on ab), for comparison."""
    return UNet("tf_efficientnet_lite0", backbone_weights=backbone_weights, head="ab",
                freeze_levels=freeze_levels, decoder_channels=(128, 64, 48), out_indices=(1, 2, 3, 4))


@register_model
def unet_vgg16(*, backbone_weights: bool | str = False, head: str = "bins", freeze_levels: int = 6) -> UNet:
    """The write-ups' VGG16 transfer-learning variant, as a U-Net over VGG16's five pooling levels."""
    return UNet("vgg16", backbone_weights=backbone_weights, head=head, freeze_levels=freeze_levels,
                decoder_channels=(256, 128, 64, 48, 32))


@register_model
def unet_vgg19(*, backbone_weights: bool | str = False, head: str = "bins", freeze_levels: int = 6) -> UNet:
    """VGG19 variant of :func:`unet_vgg16`."""
    return UNet("vgg19", backbone_weights=backbone_weights, head=head, freeze_levels=freeze_levels,
                decoder_channels=(256, 128, 64, 48, 32))
