"""What every colorization model shares: the model contract and the two kinds of heads.

The contract, met by every :class:`ColorNet`, by :class:`colorize.onnx.OnnxModel` and by any other
module once wrapped in :class:`ModuleModel`:

- ``predict_ab(l_norm, *, temperature)``: normalized L ``(B, 1, H, W)`` (H, W multiples of ``stride``)
  -> normalized ab ``(B, 2, H, W)`` in [-1, 1]; ``temperature`` is the annealed-mean temperature of
  classification models (others ignore it).
- ``output``: what ``forward`` returns for the loss: ab (``"ab"``), RGB in [0, 1] (``"rgb"``) or logits
  over ab bins (``"bins"``).
- ``stride``, and the inference defaults recorded with the weights: ``default_temperature``,
  ``default_size`` (the working size; None: the pipeline's).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from colorize.color import AB_SCALE, ab_gamut_bins, denormalize_l, gray_from_l, normalize_ab, rgb_to_lab
from colorize.models._inference import fuse_conv_act, fuse_conv_bn

DEFAULT_TEMPERATURE = 0.38  # Zhang et al.'s annealed-mean temperature
REBALANCE_MIX = 0.5  # Zhang et al.'s class rebalancing: the color prior mixed with uniform at this lambda


class ColorNet(nn.Module):
    """Base class: subclasses set ``output`` and ``stride`` and implement ``forward``."""

    output: str = "ab"
    stride: int = 1
    default_temperature: float = DEFAULT_TEMPERATURE  # tuned for the weights when their file records it
    default_size: int | None = None  # working size recorded in the weight file, if any

    def optimize_for_inference(self) -> "ColorNet":
        """Rewrite the model for inference with the same outputs: BatchNorms folded into convolutions,
        the subclass's own folds (:meth:`fold_for_inference`), then each convolution fused with its
        activation. Afterwards it can no longer be trained. Returns ``self``."""
        fuse_conv_bn(self.eval())
        self.fold_for_inference()
        return fuse_conv_act(self)

    def fold_for_inference(self) -> None:
        """Subclasses: inference-only rewrites of plain convolutions, run before they are fused."""

    def predict_ab(self, l_norm: torch.Tensor, *, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
        """Normalized L (B, 1, H, W) -> normalized ab (B, 2, H, W) at the input's size."""
        return self.ab_from_output(self(l_norm), l_norm.shape[-2:], temperature=temperature)

    def ab_from_output(self, out: torch.Tensor, size: tuple[int, int], *,
                       temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
        """What ``forward`` returned -> normalized ab (B, 2, *size): decoded bins, or RGB's ab, upsampled."""
        if self.output == "rgb":
            ab = normalize_ab(rgb_to_lab(out.clamp(0, 1))[:, 1:])
        elif self.output == "bins":
            ab = self.bins.decode(out, temperature=temperature)
        else:
            ab = out
        if ab.shape[-2:] != tuple(size):
            ab = F.interpolate(ab, size=tuple(size), mode="bilinear", align_corners=False)
        return ab


def conv_bn_relu(cin: int, cout: int, *, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def gray_for_classifier(l_norm: torch.Tensor, mean: tuple, std: tuple, *, channels: int = 3) -> torch.Tensor:
    """Normalized L (B, 1, H, W) -> the gray photo as a classifier input (B, 3, H, W), normalized with the
    classifier's ``mean``/``std``. ``channels=1`` returns one of those (identical) channels; only for a
    per-channel-uniform mean and std (see :func:`fold_gray_stem`)."""
    gray = gray_from_l(denormalize_l(l_norm))
    if channels == 1:
        if len(set(mean)) != 1 or len(set(std)) != 1:
            raise ValueError(f"one gray channel needs the same mean and std for R, G, B, got {mean}, {std}")
        return (gray - mean[0]) / std[0]
    m = torch.tensor(mean, device=l_norm.device, dtype=l_norm.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=l_norm.device, dtype=l_norm.dtype).view(1, 3, 1, 1)
    return (gray - m) / s


@torch.no_grad()
def fold_gray_stem(conv: nn.Conv2d) -> None:
    """Inference: a classifier fed the same gray in R, G and B computes the same first convolution
    from one channel with its weights summed over the three. The output is unchanged (zero padding
    included), the input is a third the size. Call only when the three normalized channels are equal."""
    if conv.in_channels == 1:
        return
    if conv.in_channels != 3 or conv.groups != 1:
        raise ValueError(f"expected a 3-channel stem convolution, got {conv}")
    conv.weight = nn.Parameter(conv.weight.sum(dim=1, keepdim=True), requires_grad=False)
    conv.in_channels = 1


class AbBins(nn.Module):
    """Zhang et al.'s quantized ab space: in-gamut cells of a ``grid``-unit ab grid.

    Buffers (saved with the model, so a checkpoint decodes on its own):
        centers: (Q, 2) bin centers in Lab units.
        cell_to_bin: (G*G,) nearest in-gamut bin for every grid cell, used for soft-encoding.
        rebalance: (Q,) class-rebalancing weights (all ones until ``set_prior`` is called). Weight files
            written before the name changed call it ``weights``; they load as they are.
    """

    def __init__(self, grid: int = 10, ab_range: int = 110):
        super().__init__()
        self.grid, self.ab_range = grid, ab_range
        self.side = 2 * ab_range // grid + 1  # grid points per axis
        centers, cell_to_bin = ab_gamut_bins(grid=grid, ab_range=ab_range)
        self.register_buffer("centers", centers)
        self.register_buffer("cell_to_bin", cell_to_bin)
        self.register_buffer("rebalance", torch.ones(len(centers)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        old = prefix + "weights"  # the buffer's former name, in weight files and checkpoints made before
        if old in state_dict and prefix + "rebalance" not in state_dict:
            state_dict[prefix + "rebalance"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def num_bins(self) -> int:
        return self.centers.shape[0]

    def encode_sparse(self, ab_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized ab (B, 2, H, W) -> the soft target as (bin indices, weights), each (B, 4, H, W):
        bilinear weights on the 4 nearest grid points, each mapped to its in-gamut bin. Cheap, and
        smooth like Zhang et al.'s 5-nearest-neighbour Gaussian encoding."""
        g = ((ab_norm * AB_SCALE + self.ab_range) / self.grid).clamp(0, self.side - 1)  # grid coords
        i0 = g.floor().clamp(max=self.side - 2)
        frac = g - i0
        i0 = i0.long()
        fa, fb = frac[:, 0], frac[:, 1]
        ia, ib = i0[:, 0], i0[:, 1]
        idx, wts = [], []
        for da, wa in ((0, 1 - fa), (1, fa)):
            for db, wb in ((0, 1 - fb), (1, fb)):
                idx.append(self.cell_to_bin[(ia + da) * self.side + (ib + db)])
                wts.append(wa * wb)
        return torch.stack(idx, 1), torch.stack(wts, 1)

    def encode(self, ab_norm: torch.Tensor) -> torch.Tensor:
        """Normalized ab (B, 2, H, W) -> dense soft targets (B, Q, H, W) summing to 1 per pixel."""
        idx, wts = self.encode_sparse(ab_norm)
        target = torch.zeros(ab_norm.shape[0], self.num_bins, *ab_norm.shape[2:],
                             device=ab_norm.device, dtype=ab_norm.dtype)
        return target.scatter_add_(1, idx, wts)

    def decode(self, logits: torch.Tensor, *, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
        """Annealed mean: logits (B, Q, h, w) -> normalized ab (B, 2, h, w). T=1 is the mean, T->0 the mode."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        z = logits.permute(0, 2, 3, 1)  # (B, h, w, Q): a free view of channels_last logits (our convs' output)
        probs = torch.softmax(z if temperature == 1.0 else z / temperature, dim=-1)
        b, h, w, q = probs.shape
        # centers^T (2, Q) @ probs^T (Q, hw): a wide product BLAS does fast (probs @ centers, 2 columns
        # wide, is slower) and it lands as contiguous (B, 2, h, w), which upsamples faster
        centers = (self.centers / AB_SCALE).t().contiguous()
        return torch.matmul(centers, probs.reshape(b, h * w, q).transpose(1, 2)).view(b, 2, h, w)

    def spread(self, logits: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
        """How unsure the distribution is: the expected distance (Lab ab units) of its colors (at T=1) from
        the decoded color ``ab_norm``. Logits (B, Q, h, w) and normalized ab (B, 2, h, w) -> (B, 1, h, w).
        Unlike entropy, probability spread over neighbouring shades counts as little."""
        probs = torch.softmax(logits.float().permute(0, 2, 3, 1), dim=-1)  # (B, h, w, Q)
        mean = (ab_norm * AB_SCALE).permute(0, 2, 3, 1)  # (B, h, w, 2)
        dist = torch.cdist(mean.reshape(mean.shape[0], -1, 2), self.centers.float()[None].expand(mean.shape[0], -1, -1))
        return (dist * probs.reshape(dist.shape)).sum(-1).view(*mean.shape[:3])[:, None]

    @torch.no_grad()
    def set_prior(self, counts: torch.Tensor, *, sigma: float = 5.0, mix: float = REBALANCE_MIX) -> None:
        """Class rebalancing from empirical bin counts (Q,): the weights of :meth:`prior_weights`."""
        self.rebalance.copy_(self.prior_weights(counts, sigma=sigma, mix=mix))

    @torch.no_grad()
    def prior_weights(self, counts: torch.Tensor, *, sigma: float = 5.0, mix: float = REBALANCE_MIX) -> torch.Tensor:
        """Rebalancing weights (Q,) from empirical bin counts (Q,): Gaussian-smooth the prior (sigma in ab
        units), mix with uniform (lambda ``mix``; 1: all weights 1), invert, and normalize so E_prior[w] = 1."""
        prior = counts.double() / counts.sum()
        d2 = torch.cdist(self.centers.double(), self.centers.double()) ** 2
        kernel = torch.exp(-d2 / (2 * sigma**2))
        smooth = kernel @ prior
        smooth = smooth / smooth.sum()
        w = 1.0 / ((1 - mix) * smooth + mix / self.num_bins)
        w = w / (smooth * w).sum()
        return w.to(self.rebalance)


class BinHead(nn.Module):
    """1x1 conv to logits over the ab bins: (B, C, h, w) -> (B, Q, h, w)."""

    def __init__(self, cin: int, bins: AbBins):
        super().__init__()
        self.proj = nn.Conv2d(cin, bins.num_bins, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class RegressionHead(nn.Module):
    """3x3 conv to ``cout`` channels bounded by tanh (ab) or sigmoid (RGB)."""

    def __init__(self, cin: int, cout: int = 2, *, activation: str = "tanh"):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 3, padding=1)
        self.act = torch.tanh if activation == "tanh" else torch.sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.proj(x))


def _bin_head(model: nn.Module, what: str) -> BinHead:
    """A classification model's head, whose bias carries the rebalancing tilt; other models are refused."""
    head = getattr(model, "head", None)
    if getattr(model, "output", "") != "bins" or not isinstance(head, BinHead) or head.proj.bias is None:
        raise ValueError(f"{what} needs a classification (bins) model, got {type(model).__name__}")
    return head


@torch.no_grad()
def correct_prior(model: nn.Module, strength: float) -> nn.Module:
    """Undo part of class rebalancing at inference, in a classification model's weights.

    Training with rebalancing weights ``w`` makes the net predict ``p(q) x w_q`` (normalized) instead of
    the colors' probability ``p(q)``: vivid, but where it is unsure (clothes, cars) the mean leans to rare,
    saturated colors. Shifting the logits by ``-strength x log w`` (folded into the head's bias: free at
    run time) divides that tilt back out, fully at ``strength=1`` (Menon et al. 2021's logit adjustment).
    Returns the model; ``model.prior_correction`` accumulates the strengths applied.
    """
    _bin_head(model, "prior correction").proj.bias -= strength * model.bins.rebalance.log()
    model.prior_correction = getattr(model, "prior_correction", 0.0) + strength
    return model


def correct_prior_to(model: nn.Module, total: float) -> nn.Module:
    """:func:`correct_prior` by what brings ``model.prior_correction`` (what its file had folded in, if any) to
    ``total``: a shipped file decoded at another correction gets only the difference. Returns the model."""
    extra = total - getattr(model, "prior_correction", 0.0)
    return correct_prior(model, extra) if abs(extra) > 1e-9 else model


@torch.no_grad()
def rebalance_head(model: nn.Module, weights: torch.Tensor) -> nn.Module:
    """Give a classification model new class-rebalancing weights (Q,) without changing what it has learnt.

    A net trained with weights ``w`` predicts ``p(q) x w_q`` (normalized, see :func:`correct_prior`); shifting
    its logits by ``log(new / w)`` (folded into the head's bias) makes it predict ``p(q) x new_q``, the tilt a
    run with the new weights trains towards, so a warm start into such a run begins from the colors'
    probabilities the file had learnt. Returns the model.
    """
    head = _bin_head(model, "rebalancing")
    weights = weights.to(model.bins.rebalance)
    head.proj.bias += weights.log() - model.bins.rebalance.log()
    model.bins.rebalance.copy_(weights)
    return model


class ModuleModel(nn.Module):
    """Any module whose ``forward`` (or own ``predict_ab``) maps normalized L to normalized ab, given the
    model contract: its ``stride`` (default 32), ``model_name`` and recorded defaults when it has them."""

    output = "ab"

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.stride: int = int(getattr(module, "stride", 32))
        self.model_name: str = getattr(module, "model_name", type(module).__name__)
        self.default_temperature: float = getattr(module, "default_temperature", DEFAULT_TEMPERATURE)
        self.default_size: int | None = getattr(module, "default_size", None)

    def predict_ab(self, l_norm: torch.Tensor, *, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
        predict = getattr(self.module, "predict_ab", None)
        if predict is None:
            return self.module(l_norm)
        return predict(l_norm, temperature=temperature) if getattr(self.module, "output", "") == "bins" \
            else predict(l_norm)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.predict_ab(l_norm)


CONTRACT = ("predict_ab", "output", "stride", "default_temperature", "default_size")  # see the module doc


def as_model(module: nn.Module) -> nn.Module:
    """``module`` if it meets the model contract (every :class:`ColorNet`, ``OnnxModel``), else wrapped in
    :class:`ModuleModel`."""
    return module if all(hasattr(module, name) for name in CONTRACT) else ModuleModel(module)


def optimize_for_inference(model: nn.Module) -> nn.Module:
    """Inference rewrites that keep the outputs: a ColorNet's own (:meth:`ColorNet.optimize_for_inference`),
    BatchNorm folding for any other module. Returns the model, in eval mode."""
    if isinstance(model, ColorNet):
        return model.optimize_for_inference()
    return fuse_conv_act(fuse_conv_bn(model.eval()))
