import pytest
import torch

from colorize.aging import Aging, age_lightness
from colorize.color import normalize_l
from colorize.train import TrainConfig, aged_input

NONE = Aging(tone_p=0, blur_p=0, grain_p=0, fade_p=0)


def _photos(n: int = 4, size: int = 48) -> torch.Tensor:
    """Gray photos with edges and a full tonal range: a ramp with a checkerboard on it, L in [0, 100]."""
    ramp = torch.linspace(0, 100, size).view(1, 1, 1, size).expand(n, 1, size, size)
    checks = ((torch.arange(size) // 6).view(-1, 1) + (torch.arange(size) // 6).view(1, -1)) % 2
    return (ramp * 0.7 + 30 * checks).clamp(0, 100).contiguous()


def _sharpness(l: torch.Tensor) -> float:
    return float((l[..., 1:] - l[..., :-1]).abs().mean())


def test_each_kind_of_damage_does_what_it_says():
    l = _photos()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.allclose(age_lightness(l, NONE, generator=gen()), l, atol=1e-4)
    faded = age_lightness(l, Aging(tone_p=1, gamma=(1, 1), black=(0.1, 0.1), white=(0.9, 0.9), blur_p=0,
                                   grain_p=0, fade_p=0), generator=gen())
    assert faded.min() == pytest.approx(10, abs=0.01) and faded.max() == pytest.approx(90, abs=0.01)
    blurred = age_lightness(l, Aging(tone_p=0, blur_p=1, blur_sigma=(1.0, 1.0), grain_p=0, fade_p=0), generator=gen())
    assert _sharpness(blurred) < 0.8 * _sharpness(l)
    assert blurred.mean() == pytest.approx(l.mean(), abs=0.5)  # blur moves no light
    grainy = age_lightness(l, Aging(tone_p=0, blur_p=0, grain_p=1, grain_sigma=(4, 4), fade_p=0), generator=gen())
    noise = (grainy - l)[..., 8:-8, 8:-8]  # away from clipping at black and white
    assert 2 < float(noise.std()) < 6
    lifted = age_lightness(l, Aging(tone_p=0, blur_p=0, grain_p=0, fade_p=1, fade=(0.1, 0.1)), generator=gen())
    assert (lifted >= l - 1e-4).all() and lifted.mean() > l.mean()  # a fade only lightens


def test_aging_is_drawn_per_photo_from_the_generator_and_stays_in_range():
    l = _photos(8)
    a = age_lightness(l, generator=torch.Generator().manual_seed(3))
    b = age_lightness(l, generator=torch.Generator().manual_seed(3))
    c = age_lightness(l, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == l.shape and a.min() >= 0 and a.max() <= 100
    per_photo = (a - l).abs().flatten(1).mean(1)
    assert len(set(per_photo.round(decimals=3).tolist())) > 1  # each photo its own damage
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        age_lightness(l[:, 0])


def test_aged_input_ages_the_share_asked_and_is_reproducible():
    l_norm = normalize_l(_photos(64))
    assert aged_input(l_norm, 0.0, seed=1) is l_norm
    every = aged_input(l_norm, 1.0, seed=1)
    changed = (every != l_norm).flatten(1).any(1)
    assert changed.float().mean() > 0.9  # all were drawn; a few may get no damage of any kind
    half = aged_input(l_norm, 0.5, seed=1)
    assert torch.equal(half, aged_input(l_norm, 0.5, seed=1))
    assert 0.25 < (half != l_norm).flatten(1).any(1).float().mean() < 0.75


def test_recipe_refuses_an_aging_share_outside_0_1():
    with pytest.raises(ValueError, match="aging"):
        TrainConfig(model="alpha", aging=1.5)
