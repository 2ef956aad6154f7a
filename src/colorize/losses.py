"""Training losses: regression on ab (or RGB), Zhang et al.'s rebalanced classification over ab bins, and a
frozen classifier as a loss (the write-ups' next step)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from colorize.color import AB_SCALE, model_lab_to_rgb
from colorize.models.base import AbBins, ColorNet

LOSSES = ("auto", "mse", "smooth_l1", "bins")
LOSSES_FOR_OUTPUT = {"ab": ("auto", "mse", "smooth_l1"), "rgb": ("auto", "mse"), "bins": ("auto", "bins")}


def regression_loss(pred: torch.Tensor, target: torch.Tensor, *, kind: str = "smooth_l1") -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=0.05)  # beta in normalized-ab units (~6 Lab units)
    raise ValueError(f"unknown regression loss '{kind}'; choose from: mse, smooth_l1")


def downsample_ab(ab_norm: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average the target ab to the logits' resolution."""
    if ab_norm.shape[-2:] == tuple(size):
        return ab_norm
    return F.adaptive_avg_pool2d(ab_norm, size)


def classification_loss(logits: torch.Tensor, ab_norm: torch.Tensor, bins: AbBins, *,
                        rebalance: bool = True, reg_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy against soft-encoded ab, each pixel weighted by its bins' rarity; plus, with
    ``reg_weight``, that times smooth-L1 between the distribution's mean ab (T = 1) and the truth.

    One log-softmax over the bins serves both terms, in (pixels, Q) layout (a free view of the
    channels_last logits our convolutions produce). The soft target has 4 non-zero bins per pixel, so
    the CE gathers those 4 log-probabilities instead of building a dense (B, Q, h, w) target.
    """
    target = downsample_ab(ab_norm, logits.shape[-2:])
    idx, wts = bins.encode_sparse(target)  # (B, 4, h, w) each
    q = logits.shape[1]
    logp = F.log_softmax(logits.permute(0, 2, 3, 1).reshape(-1, q), dim=1)  # (N, Q)
    idx, wts = idx.permute(0, 2, 3, 1).reshape(-1, 4), wts.permute(0, 2, 3, 1).reshape(-1, 4)
    nll = -(wts * logp.gather(1, idx)).sum(1)  # (N,)
    if rebalance:
        nll = nll * (wts * bins.rebalance[idx]).sum(1)
    loss = nll.mean()
    if reg_weight > 0:
        mean_ab = logp.exp() @ (bins.centers / AB_SCALE)  # (N, 2): the annealed mean at T = 1
        loss = loss + reg_weight * regression_loss(mean_ab, target.permute(0, 2, 3, 1).reshape(-1, 2))
    return loss


def color_loss(model: ColorNet, out: torch.Tensor, l_norm: torch.Tensor, ab_norm: torch.Tensor, *,
               kind: str = "auto", reg_weight: float = 0.0) -> torch.Tensor:
    """The loss for a model's raw output, chosen by the model's output kind unless ``kind`` says otherwise.

    ``bins`` models: rebalanced cross-entropy plus ``reg_weight`` x smooth-L1 between the distribution's
    mean ab and the truth (keeps the mean calibrated, which curbs blotches). ``rgb`` models: MSE on RGB.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss '{kind}'; choose from: {', '.join(LOSSES)}")
    fits = LOSSES_FOR_OUTPUT.get(model.output, LOSSES)
    if kind not in fits:
        raise ValueError(f"loss '{kind}' does not fit a model with '{model.output}' output; "
                         f"choose from: {', '.join(fits)}")
    if model.output == "bins":
        return classification_loss(out, ab_norm, model.bins, reg_weight=reg_weight)
    if model.output == "rgb":
        return F.mse_loss(out, model_lab_to_rgb(l_norm, ab_norm))
    return regression_loss(out, downsample_ab(ab_norm, out.shape[-2:]), kind="mse" if kind == "mse" else "smooth_l1")


class SemanticLoss:
    """Classifier as a loss: a frozen ImageNet classifier should see in the colorized photo what it sees in
    the true one (KL divergence between its class distributions on the two).

    The colors it judges are decoded as the shipped model decodes them (prior correction, then the annealed
    mean at ``temperature``) and upsampled to the crop, so the term pulls on the colors users get: a wrong
    confident color that changes what the photo shows costs more than a muted one. The network must not
    be the evaluation's judge (``evaluate.CLASSIFIER``), or bench/'s agreement figure would grade its own loss.
    With ``feature_weight`` it also matches the classifier's feature maps at strides 8-32 on the two photos (a
    perceptual loss, Johnson et al. 2016: where the class distribution only says what the photo shows, the
    feature maps say it per region), each level's mean absolute difference relative to the truth's magnitude.
    """

    FEATURE_BLOCKS = (2, 4, 6)  # an EfficientNet's stage outputs at strides 8, 16 and 32

    def __init__(self, name: str | Sequence[str], *, device: torch.device, prior_correction: float,
                 temperature: float, channels_last: bool = True, feature_weight: float = 0.0):
        from colorize.evaluate import CLASSIFIER
        from colorize.models.backbones import backbone_cfg, create_backbone

        names = [name] if isinstance(name, str) else list(name)
        if not names:
            raise ValueError("semantic_net names no classifier")
        if CLASSIFIER in names:
            raise ValueError(f"semantic_net '{CLASSIFIER}' is the evaluation's judge; choose another classifier")
        if feature_weight > 0 and len(names) > 1:
            raise ValueError("semantic_feature_weight matches one classifier's feature maps: give one semantic_net")
        self.nets: list[nn.Module] = []
        self.norms: list[tuple[torch.Tensor, torch.Tensor]] = []
        for n in names:  # several: an ensemble, whose KL terms are averaged (colors no single network is fooled by)
            cfg = backbone_cfg(n)
            net = create_backbone(n, pretrained=True).to(device).eval().requires_grad_(False)
            self.nets.append(net.to(memory_format=torch.channels_last) if channels_last else net)
            self.norms.append((torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1),
                               torch.tensor(cfg.std, device=device).view(1, 3, 1, 1)))
        self.net = self.nets[0]
        self.prior_correction, self.temperature = prior_correction, temperature
        self.feature_weight = feature_weight
        self._features: list[torch.Tensor] = []
        if feature_weight > 0:
            blocks = getattr(self.net, "blocks", None)
            if blocks is None or len(blocks) <= max(self.FEATURE_BLOCKS):
                raise ValueError(f"semantic_feature_weight needs an EfficientNet classifier, not '{names[0]}'")
            for i in self.FEATURE_BLOCKS:
                blocks[i].register_forward_hook(lambda _m, _inp, out: self._features.append(out))

    def _logp(self, rgb: torch.Tensor, k: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Network ``k``'s log class probabilities, and (with ``feature_weight``) the stage outputs the hooks
        collected."""
        self._features = []
        mean, std = self.norms[k]
        logp = F.log_softmax(self.nets[k]((rgb - mean) / std), dim=1)
        return logp, self._features

    def __call__(self, model: ColorNet, logits: torch.Tensor, l_norm: torch.Tensor,
                 ab_norm: torch.Tensor) -> torch.Tensor:
        bins: AbBins = model.bins
        adjusted = logits - self.prior_correction * bins.rebalance.log().view(1, -1, 1, 1)
        ab = bins.decode(adjusted, temperature=self.temperature)
        if ab.shape[-2:] != l_norm.shape[-2:]:
            ab = F.interpolate(ab, size=l_norm.shape[-2:], mode="bilinear", align_corners=False)
        truth, colored = model_lab_to_rgb(l_norm, ab_norm), model_lab_to_rgb(l_norm, ab)
        loss = 0.0
        for k in range(len(self.nets)):
            with torch.no_grad():
                target, target_feats = self._logp(truth, k)
            logp, feats = self._logp(colored, k)
            loss = loss + F.kl_div(logp, target, log_target=True, reduction="batchmean") / len(self.nets)
        if self.feature_weight > 0:  # a perceptual loss: the classifier's feature maps, each relative to the truth's size
            match = sum((f - t).abs().mean() / t.abs().mean().clamp(min=1e-6) for f, t in zip(feats, target_feats))
            loss = loss + self.feature_weight * match / len(feats)
        return loss
