"""Metrics on known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from colorize.color import gray_rgb_from_l, lab_to_rgb, rgb_to_l, rgb_to_lab
from colorize.metrics import (ab_error, ab_error_auc, colorfulness, delta_colorfulness, frechet_distance, psnr,
                              ssim, top1_agreement)


def _images(seed: int = 0, shape: tuple[int, ...] = (2, 3, 32, 40)) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_psnr_identical_is_inf_and_known_mse():
    x = _images().double()
    assert torch.isinf(psnr(x, x)).all()
    y = x + 0.1  # every pixel off by 0.1: MSE 0.01 -> 20 dB
    assert psnr(x, y).tolist() == pytest.approx([20.0, 20.0], abs=1e-9)
    assert psnr(x[0], y[0]).dim() == 0
    assert float(psnr(x[0] * 255, y[0] * 255, data_range=255)) == pytest.approx(20.0, abs=1e-9)


def test_ssim_identical_is_one_and_matches_skimage():
    x = _images()
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    skimage_metrics = pytest.importorskip("skimage.metrics")
    y = (x + 0.2 * _images(1) - 0.1).clamp(0, 1)
    ours = ssim(x, y)
    for i in range(2):
        ref = skimage_metrics.structural_similarity(
            x[i].permute(1, 2, 0).numpy(), y[i].permute(1, 2, 0).numpy(), channel_axis=2, data_range=1.0,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert float(ours[i]) == pytest.approx(ref, abs=1e-6)
    assert float(ssim(x[0], 1 - x[0])) < 0.0  # anti-correlated
    assert ssim(x[:, :, :7, :9], y[:, :, :7, :9]).shape == (2,)  # smaller than the window


def test_colorfulness_gray_and_hand_computed():
    gray = _images()[:, :1].expand(-1, 3, -1, -1)  # R = G = B
    assert colorfulness(gray).tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    # Two pixels, 0..255: (255, 0, 0) -> rg 255, yb 127.5; (0, 0, 255) -> rg 0, yb -255.
    img = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]])  # (3, 1, 2)
    std = math.sqrt(127.5**2 + 191.25**2)  # population stds of rg and yb
    mean = math.sqrt(127.5**2 + 63.75**2)
    assert float(colorfulness(img)) == pytest.approx(std + 0.3 * mean, rel=1e-9)


def test_delta_colorfulness():
    assert delta_colorfulness([10.0, 20.0], [30.0, 40.0, 50.0]) == pytest.approx(25.0)
    assert delta_colorfulness(torch.tensor([5.0]), torch.tensor([5.0])) == 0.0
    with pytest.raises(ValueError):
        delta_colorfulness([], [1.0])


def test_auc_perfect_is_one():
    x = _images()
    assert ab_error_auc(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)


def test_auc_gray_baseline_matches_numpy():
    """The gray baseline's AuC equals an independent computation: explicit thresholds, np.trapz."""
    truth = _images(3)
    gray = gray_rgb_from_l(rgb_to_l(truth))
    ours = ab_error_auc(truth, gray)
    lab = rgb_to_lab(truth.double()).numpy()
    lab_gray = rgb_to_lab(gray.double()).numpy()
    for i in range(len(truth)):
        d = np.sqrt(((lab[i, 1:] - lab_gray[i, 1:]) ** 2).sum(0)).ravel()
        thresholds = np.arange(0, 151)
        curve = np.array([(d <= t).mean() for t in thresholds])
        ref = np.trapezoid(curve, thresholds) / 150
        assert float(ours[i]) == pytest.approx(ref, abs=1e-9)
        assert 0.0 < ref < 1.0


def test_ab_error_is_ab_distance():
    lab = torch.tensor([50.0, 10.0, -20.0]).view(3, 1, 1).expand(3, 2, 2).clone()
    shifted = lab.clone()
    shifted[1:] += torch.tensor([3.0, 4.0]).view(2, 1, 1)  # 5 Lab units away in ab
    d = ab_error(lab_to_rgb(lab), lab_to_rgb(shifted))
    assert d.shape == (2, 2)
    assert d.mean().item() == pytest.approx(5.0, abs=0.05)


def test_top1_agreement():
    a = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    b = torch.tensor([[0.0, 2.0, 1.0], [0.0, 0.0, 1.0]])
    assert top1_agreement(a, b).tolist() == [True, False]


def test_frechet_identical_and_shifted_gaussians():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(500, 8))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.5, 0, 0, 0, 0, 3.0])
    # Same covariance, shifted mean: the distance is the squared mean shift.
    assert frechet_distance(feats, feats + shift) == pytest.approx(float(shift @ shift), abs=1e-6)
    assert frechet_distance(torch.from_numpy(feats), torch.from_numpy(2 * feats)) > 1.0


def _frechet_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Independent: Tr((S_a S_b)^(1/2)) = sum of sqrt(eig(S_a^(1/2) S_b S_a^(1/2))), all symmetric."""
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    trace_sqrt = np.sqrt(np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clip(min=0)).sum()
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


@pytest.mark.parametrize("n_a, n_b, dims", [(30, 25, 40), (200, 150, 12)])  # nuclear-norm and sqrtm paths
def test_frechet_matches_reference(n_a, n_b, dims):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(n_a, dims))
    b = rng.normal(size=(n_b, dims)) @ rng.normal(size=(dims, dims)) * 0.5 + 0.3
    fd = frechet_distance(a, b)
    assert math.isfinite(fd) and fd > 0
    assert fd == pytest.approx(_frechet_reference(a, b), rel=1e-6)


def test_paired_difference_interval():
    """A paired interval: a constant shift is known exactly; noise widens it around the true shift, and more
    photos narrow it; infinite pairs are left out; mismatched photo sets are refused."""
    from colorize.metrics import paired_difference

    rng = np.random.default_rng(0)
    base = rng.normal(25, 3, 400)  # photos differ a lot from each other: pairing must remove that
    exact = paired_difference(base + 0.5, base)
    assert exact["mean"] == pytest.approx(0.5) and exact["high"] - exact["low"] < 1e-9 and exact["n"] == 400
    noisy = paired_difference(base + 0.5 + rng.normal(0, 1, 400), base)
    assert noisy["low"] < 0.5 < noisy["high"] and 0.1 < noisy["high"] - noisy["low"] < 0.4  # 2 x 1.97 x 1/20
    small = paired_difference(base[:40] + 0.5 + rng.normal(0, 1, 40), base[:40])
    assert small["high"] - small["low"] > 2 * (noisy["high"] - noisy["low"])
    with_inf = paired_difference([np.inf, 1.0, 2.0, 4.0], [1.0, 0.0, 1.0, 2.0])
    assert with_inf["n"] == 3 and with_inf["mean"] == pytest.approx(4 / 3)
    assert paired_difference([1.0], [0.0]) is None
    with pytest.raises(ValueError, match="same photos"):
        paired_difference([1.0, 2.0], [1.0])
