import numpy as np
import torch
from skimage.color import lab2rgb, rgb2lab

from colorize.color import (ab_gamut_bins, denormalize_ab, denormalize_l, fit_to_gamut, in_gamut, lab_to_rgb,
                            model_lab_to_rgb, normalize_ab, normalize_l, rgb_to_l, rgb_to_lab, rgb_to_model_lab)

EXTREMES = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1],
                         [0.5, 0.5, 0.5], [0.01, 0.02, 0.03]], dtype=torch.float64)


def _random_rgb(n=4096, seed=0):
    g = torch.Generator().manual_seed(seed)
    px = torch.cat([torch.rand(n, 3, generator=g, dtype=torch.float64), EXTREMES])
    return px.T[:, :, None]  # (3, N, 1)


def test_rgb_to_lab_matches_skimage():
    rgb = _random_rgb()
    ours = rgb_to_lab(rgb)[:, :, 0].T.numpy()
    ref = rgb2lab(rgb[:, :, 0].T.numpy()[None])[0]
    assert np.abs(ours - ref).max() < 1e-3


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    g = torch.Generator().manual_seed(1)
    lab = torch.rand(3, 4096, 1, generator=g, dtype=torch.float64)
    lab = lab * torch.tensor([100.0, 256, 256], dtype=torch.float64).view(3, 1, 1) - torch.tensor(
        [0.0, 128, 128], dtype=torch.float64).view(3, 1, 1)
    ours = lab_to_rgb(lab)[:, :, 0].T.numpy()
    with _no_check():  # skimage warns about out-of-gamut values
        ref = lab2rgb(lab[:, :, 0].T.numpy()[None])[0]
    assert np.abs(ours - ref).max() < 1e-3


class _no_check:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def test_extremes_known_values():
    lab = rgb_to_lab(EXTREMES.T[:, :, None])[:, :, 0].T
    assert lab[0].abs().max() < 1e-6  # black
    assert abs(lab[1, 0] - 100) < 1e-3 and lab[1, 1:].abs().max() < 1e-2  # white (as skimage: ~5e-3 chroma)
    assert lab[2, 1] > 75 and lab[4, 2] < -100  # red is +a, blue is -b


def test_roundtrip_float32_batched_and_l_only():
    rgb = torch.rand(2, 3, 17, 9)
    lab = rgb_to_lab(rgb)
    assert lab.shape == rgb.shape
    assert (lab_to_rgb(lab) - rgb).abs().max() < 1e-4
    assert (rgb_to_l(rgb) - lab[:, :1]).abs().max() < 1e-4


def test_differentiable_without_nans_at_black():
    rgb = torch.zeros(1, 3, 4, 4, requires_grad=True)
    lab = rgb_to_lab(rgb)
    lab.sum().backward()
    assert torch.isfinite(rgb.grad).all()
    lab2 = torch.zeros(1, 3, 2, 2, requires_grad=True)
    lab_to_rgb(lab2).sum().backward()
    assert torch.isfinite(lab2.grad).all()


def test_normalizations_are_paired_inverses():
    x = torch.rand(5) * 100
    assert torch.allclose(denormalize_l(normalize_l(x)), x)
    assert torch.allclose(denormalize_ab(normalize_ab(x - 50)), x - 50)
    assert normalize_l(torch.tensor(0.0)) == -1 and normalize_l(torch.tensor(100.0)) == 1
    rgb = torch.rand(1, 3, 8, 8)
    l, ab = rgb_to_model_lab(rgb)
    assert (model_lab_to_rgb(l, ab) - rgb).abs().max() < 1e-4


def test_fit_to_gamut_keeps_l_and_hue_and_fits():
    l = torch.full((1, 1, 4, 4), 50.0)
    ab = torch.zeros(1, 2, 4, 4)
    ab[:, 0] = 120.0  # far outside sRGB at L=50
    ab[:, 1, :2] = -30.0
    ab[:, :, 3] = torch.tensor([5.0, 5.0])[:, None]  # already in gamut: untouched
    fitted = fit_to_gamut(l, ab)
    assert in_gamut(torch.cat([l, fitted], 1), tol=2e-3).all()
    assert torch.equal(fitted[:, :, 3], ab[:, :, 3])
    ratio = fitted[:, 1, :2] / fitted[:, 0, :2]  # hue direction preserved
    assert torch.allclose(ratio, ab[:, 1, :2] / ab[:, 0, :2], atol=1e-4)
    assert fitted[:, 0, 0].abs().max() < 120


def test_in_gamut_conversion_equals_fitting_then_converting_for_a_batch():
    from colorize.color import lab_to_linear_rgb, lab_to_linear_rgb_in_gamut

    torch.manual_seed(0)
    l = torch.rand(2, 1, 5, 7) * 100
    ab = (torch.rand(2, 2, 5, 7) * 2 - 1) * 120  # many out-of-gamut pixels, in both images
    ab[1, :, :2] = 0  # neutral rows: already in gamut
    want = lab_to_linear_rgb(torch.cat([l, fit_to_gamut(l, ab)], 1))
    got = lab_to_linear_rgb_in_gamut(l, ab)
    assert got.shape == (2, 3, 5, 7)
    assert (got - want).abs().max() < 1e-5
    assert got.min() > -2e-3 and got.max() < 1 + 2e-3
    assert torch.equal(got[1, :, :2], lab_to_linear_rgb(torch.cat([l, ab], 1))[1, :, :2])


def test_gamut_bins():
    centers, cell_to_bin = ab_gamut_bins()
    assert 200 < len(centers) < 313
    # every in-gamut center maps to itself
    axis = torch.arange(-110, 111, 10)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2).float()
    own = (grid[:, None] == centers[None]).all(-1).any(1)
    assert torch.equal(centers[cell_to_bin[own]], grid[own])


def test_linear_to_srgb_uint8_matches_the_float_path():
    from colorize.color import linear_to_srgb, linear_to_srgb_uint8

    torch.manual_seed(0)
    lin = torch.cat([torch.rand(1, 3, 64, 64) * 1.2 - 0.1,  # includes out-of-range values to clip
                     torch.linspace(0, 1, 3 * 64 * 64).view(1, 3, 64, 64)], dim=2)
    want = (linear_to_srgb(lin.double()).clamp(0, 1) * 255).round()
    before = lin.clone()
    got = linear_to_srgb_uint8(lin)
    assert got.dtype == torch.uint8 and got.shape == lin.shape
    diff = (got.double() - want).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01  # one level at most, rarely
    assert got[lin <= 0].eq(0).all() and got[lin >= 1].eq(255).all()
    assert torch.equal(lin, before)  # the input is left alone
