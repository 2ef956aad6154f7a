"""Shared fixtures: tiny synthetic photos and tiny trained-format model files. Nothing from ../shared.
Helpers the tests import themselves are in helpers.py."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from helpers import make_photo

os.environ.setdefault("COLORIZE_NO_PROGRESS", "1")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny workloads on a shared CPU: one intra-op thread avoids oversubscription (and is restored)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def photo() -> Image.Image:
    return make_photo()


@pytest.fixture
def photo_dir(tmp_path):
    """A folder of 12 small color photos (some in a subfolder)."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    for i in range(12):
        make_photo(64 + 8 * (i % 3), 64, seed=i).save(d / ("sub" if i % 4 == 0 else "") / f"p{i}.jpg", quality=92)
    return d


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """A small untrained U-Net-free model saved as a colorize safetensors file (fast to load/run)."""
    import torch

    from colorize.checkpoint import save_weights
    from colorize.models import create_model

    torch.manual_seed(0)
    model = create_model("alpha")
    with torch.no_grad():  # make its output clearly non-gray so 'is it colorized' tests can tell
        model.head.proj.bias.copy_(torch.tensor([1.5, 2.0]))
    path = tmp_path_factory.mktemp("weights") / "alpha_tiny.safetensors"
    save_weights(path, model)
    return path


@pytest.fixture(scope="session")
def tiny_bins_model_file(tmp_path_factory):
    """An untrained classification (bins) model of the shipped architecture, as a weight file: for what
    needs a color distribution (confidence), where the tiny regression model cannot stand in."""
    import torch

    from colorize.checkpoint import save_weights
    from colorize.models import create_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "bins_tiny.safetensors"
    save_weights(path, create_model("unet_lite0"))
    return path
