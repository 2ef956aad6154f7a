"""Colorization metrics as pure functions: fidelity (PSNR, SSIM, ab-error AuC), vividness
(colorfulness), and distribution distance (Frechet distance between feature sets).

Images are float sRGB tensors in [0, 1], ``(B, 3, H, W)`` or ``(3, H, W)``; per-image metrics return
one value per image, shape ``(B,)`` (or a 0-d tensor for a single image).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from colorize.color import rgb_to_lab

SSIM_K1, SSIM_K2 = 0.01, 0.03  # Wang et al. 2004 stabilizing constants
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
AUC_MAX_THRESHOLD = 150  # Zhang et al. 2016: ab-error thresholds 0..150 (Lab units)


def _batched(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.dim() == 3:
        return x[None], True
    if x.dim() == 4:
        return x, False
    raise ValueError(f"expected an image (C, H, W) or a batch (B, C, H, W), got shape {tuple(x.shape)}")


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB over all channels and pixels; ``inf`` for identical images.

    Returns:
        (B,) for a batch, 0-d for a single image.
    """
    _check_pair(pred, target)
    (p, single), (t, _) = _batched(pred.double()), _batched(target.double())
    mse = (p - t).pow(2).flatten(1).mean(1)
    out = 10 * torch.log10(data_range**2 / mse)  # mse == 0 -> inf
    return out[0] if single else out


def gaussian_kernel(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalized 1-D gaussian (size,); the 2-D window is its outer product."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0, window: int = SSIM_WINDOW,
         sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004): 11x11 gaussian window (sigma 1.5), K1=0.01, K2=0.03,
    population statistics, 'valid' filtering (no padded borders), mean over channels and pixels.
    Matches scikit-image's ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``.
    Images smaller than the window use the largest odd window that fits.

    Returns:
        (B,) for a batch, 0-d for a single image.
    """
    _check_pair(pred, target)
    # float32: depthwise convolutions in float64 are ~10x slower on CPU; identical images still give 1.
    (p, single), (t, _) = _batched(pred.float()), _batched(target.float())
    size = min(window, *p.shape[-2:])
    size -= 1 - size % 2  # odd
    c = p.shape[1]
    stats = torch.cat([p, t, p * p, t * t, p * t], dim=1)  # (B, 5C, H, W), blurred in one pass
    g = gaussian_kernel(size, sigma).to(p.device, p.dtype)
    stats = F.conv2d(stats, g.view(1, 1, 1, size).expand(5 * c, 1, 1, size), groups=5 * c)  # separable:
    stats = F.conv2d(stats, g.view(1, 1, size, 1).expand(5 * c, 1, size, 1), groups=5 * c)  # rows, then columns
    mu_p, mu_t, e_pp, e_tt, e_pt = stats.split(c, dim=1)  # each (B, C, H - size + 1, W - size + 1)
    var_p, var_t, cov = e_pp - mu_p**2, e_tt - mu_t**2, e_pt - mu_p * mu_t
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    out = s.flatten(1).mean(1)
    return out[0] if single else out


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk (2003) colorfulness on the 0..255 scale (``rgb`` itself is in [0, 1]):
    rg = R - G, yb = (R + G) / 2 - B, CF = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2),
    population standard deviations. A gray image scores 0.

    Returns:
        (B,) for a batch, 0-d for a single image.
    """
    x, single = _batched(rgb.double() * 255.0)
    if x.shape[1] != 3:
        raise ValueError(f"colorfulness needs 3-channel RGB, got {x.shape[1]} channels")
    r, g, b = x.flatten(2).unbind(1)  # (B, H*W) each
    rg, yb = r - g, 0.5 * (r + g) - b
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    out = std + 0.3 * mean
    return out[0] if single else out


def delta_colorfulness(pred_cf: Sequence[float] | torch.Tensor, true_cf: Sequence[float] | torch.Tensor) -> float:
    """|mean colorfulness of the predictions - mean colorfulness of the truth| over a set of images."""
    p = torch.as_tensor(pred_cf, dtype=torch.float64)
    t = torch.as_tensor(true_cf, dtype=torch.float64)
    if p.numel() == 0 or t.numel() == 0:
        raise ValueError("delta_colorfulness needs at least one image on each side")
    return float((p.mean() - t.mean()).abs())


def ab_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel Euclidean distance in the ab plane (Lab units) between two sRGB images: (B, H, W)."""
    _check_pair(pred, target)
    (p, single), (t, _) = _batched(pred.double()), _batched(target.double())
    d = (rgb_to_lab(p)[:, 1:] - rgb_to_lab(t)[:, 1:]).pow(2).sum(1).sqrt()
    return d[0] if single else d


def ab_error_auc(pred: torch.Tensor, target: torch.Tensor, *, max_threshold: int = AUC_MAX_THRESHOLD) -> torch.Tensor:
    """Zhang et al. (2016) raw accuracy: the share of pixels whose ab error is within a threshold,
    swept over the integer thresholds 0..``max_threshold`` (a cumulative curve), integrated with the
    trapezoid rule and divided by ``max_threshold``; 1 is perfect.

    Returns:
        (B,) for a batch, 0-d for a single image.
    """
    d = ab_error(pred, target)
    single = d.dim() == 2
    d = d[None] if single else d
    # d <= t  <=>  ceil(d) <= t for integer t, so one histogram of ceil(d) gives the whole curve.
    bins = d.flatten(1).ceil().clamp(max=max_threshold + 1).long()  # (B, N)
    counts = torch.zeros(bins.shape[0], max_threshold + 2, dtype=torch.float64, device=d.device)
    counts.scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float64))
    curve = counts.cumsum(1)[:, : max_threshold + 1] / bins.shape[1]  # (B, T + 1): share with d <= t
    auc = (curve[:, :-1] + curve[:, 1:]).sum(1) / (2 * max_threshold)
    return auc[0] if single else auc


def top1_agreement(pred_logits: torch.Tensor, true_logits: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the classifier's top-1 class on the colorized photo equals its top-1 on the true photo."""
    _check_pair(pred_logits, true_logits)
    return pred_logits.argmax(-1) == true_logits.argmax(-1)


def paired_difference(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict | None:
    """Mean of ``a - b`` over the same photos, with its ``confidence`` interval (a paired t interval, by
    ``scipy.stats.ttest_rel``): how sure a difference between two methods scored on one photo set is.
    Pairs where either value is not finite (PSNR of a perfect copy) are left out; None under 2 pairs.
    Returns mean, low, high and n."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired scores need the same photos: {x.shape} vs {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        return None
    d = x - y
    mean = float(d.mean())
    if np.all(d == d[0]):  # no spread: the interval is the point (t would divide by zero)
        return {"mean": mean, "low": mean, "high": mean, "n": int(len(d))}
    from scipy import stats

    ci = stats.ttest_rel(x, y).confidence_interval(confidence)
    return {"mean": mean, "low": float(ci.low), "high": float(ci.high), "n": int(len(d))}


def frechet_distance(feats_a: np.ndarray | torch.Tensor, feats_b: np.ndarray | torch.Tensor, *,
                     eps: float = 1e-6) -> float:
    """Frechet distance between gaussians fitted to two feature sets (N, D) and (M, D) (as FID):
    ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    With few samples (N * M <= D^2, e.g. 578 photos of 1280-d features) the trace of the square root is
    computed exactly as the nuclear norm of A B^T (A, B the centred features scaled by 1/sqrt(n - 1)):
    the non-zero eigenvalues of S_a S_b = A^T A B^T B are those of (A B^T)(A B^T)^T. Otherwise it is
    ``scipy.linalg.sqrtm(S_a S_b)``, with ``eps`` added to the diagonals if that product is singular
    (as pytorch-fid does).
    """
    a = np.asarray(feats_a.detach().cpu() if isinstance(feats_a, torch.Tensor) else feats_a, dtype=np.float64)
    b = np.asarray(feats_b.detach().cpu() if isinstance(feats_b, torch.Tensor) else feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected feature sets (N, D) and (M, D), got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("frechet_distance needs at least 2 samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    a_c = (a - mu_a) / np.sqrt(len(a) - 1)  # S_a = a_c^T a_c
    b_c = (b - mu_b) / np.sqrt(len(b) - 1)
    trace_a, trace_b = (a_c**2).sum(), (b_c**2).sum()
    if len(a) * len(b) <= a.shape[1] ** 2:
        trace_sqrt = np.linalg.svd(a_c @ b_c.T, compute_uv=False).sum()
    else:
        trace_sqrt = _trace_sqrtm(a_c.T @ a_c, b_c.T @ b_c, eps)
    diff = mu_a - mu_b
    return float(diff @ diff + trace_a + trace_b - 2 * trace_sqrt)


def _trace_sqrtm(cov_a: np.ndarray, cov_b: np.ndarray, eps: float) -> float:
    """Tr((S_a S_b)^(1/2)) by ``scipy.linalg.sqrtm``."""
    from scipy import linalg

    with warnings.catch_warnings():  # a singular product is handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(cov_a)) * eps
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    return float(np.trace(covmean.real))  # tiny imaginary parts are numerical noise
