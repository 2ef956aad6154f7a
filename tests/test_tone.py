"""Gray / toned / color classification (colorize.tone) on synthetic prints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colorize.color import lab_to_rgb
from colorize.tone import classify
from helpers import make_photo


def gray_scene(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """(H, W) L in [0, 100]: gradients, discs, a little grain: the lightness of a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    l = 50 + 30 * np.sin(x / width * 4) * np.cos(y / height * 3)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(5, 30)
        l[(x - cx) ** 2 + (y - cy) ** 2 < r**2] = rng.uniform(10, 95)
    return np.clip(l + rng.normal(0, 1.0, l.shape), 0, 100)


def print_of(l: np.ndarray, ab_of_l=lambda l: (0.0 * l, 0.0 * l), noise: float = 0.0, seed: int = 1) -> np.ndarray:
    """A uint8 print with lightness ``l`` and chroma ``ab_of_l(l)``, plus optional per-channel noise."""
    a, b = ab_of_l(l)
    lab = torch.from_numpy(np.stack([l, a, b]))
    rgb = lab_to_rgb(lab).permute(1, 2, 0).numpy() * 255
    rgb = rgb + np.random.default_rng(seed).normal(0, noise, rgb.shape)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def sepia(l):  # warm brown, stronger in the mid-tones, as toned prints are
    c = 18 * np.sin(np.pi * l / 100)
    return c * np.cos(np.radians(70)), c * np.sin(np.radians(70))


def cyanotype(l):  # Prussian blue
    c = 30 * np.sin(np.pi * l / 100) + 5
    return c * np.cos(np.radians(-100)), c * np.sin(np.radians(-100))


@pytest.mark.parametrize("noise", [0.0, 1.5])  # 1.5 levels per channel: JPEG / scanner noise
def test_gray(noise):
    assert classify(print_of(gray_scene(), noise=noise)).kind == "gray"


@pytest.mark.parametrize("tone", [sepia, cyanotype])
def test_toned(tone):
    report = classify(print_of(gray_scene(), tone, noise=1.0))
    assert report.kind == "toned", report
    assert report.tone_chroma > 5


def split_cast(l):  # a scan's faint casts: warm highlights, cool shadows, both well under TINT_CHROMA
    c = np.where(l > 50, 6.0, 6.0 * (l > 20))
    hue = np.radians(np.where(l > 50, 70, -100))
    return c * np.cos(hue), c * np.sin(hue)


def test_faint_casts_of_several_hues_are_gray():
    """No pixel has a color of its own: a black-and-white scan, not a color photo (which --keep-color would
    pass through uncolorized)."""
    report = classify(print_of(gray_scene(), split_cast, noise=1.0))
    assert report.colored < 0.01 and report.hue_spread > 30, report  # what used to make it "color"
    assert report.kind == "gray", report


def test_color():
    assert classify(np.asarray(make_photo(160, 120))).kind == "color"


def test_hand_tinted_print_counts_as_color():
    arr = print_of(gray_scene(), sepia)
    arr[30:70, 40:100] = (60, 140, 60)  # a tinted green patch on the toned print
    report = classify(arr)
    assert report.kind == "color" and 0.05 < report.colored < 0.3


def test_tensor_input_and_large_photo():
    arr = print_of(gray_scene(1200, 900), cyanotype)
    assert classify(torch.from_numpy(arr).permute(2, 0, 1).float() / 255).kind == "toned"
