"""Shared fixtures: tiny synthetic photos and a tiny trained-format model file. Nothing from ../shared."""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("COLORIZE_NO_PROGRESS", "1")


def make_photo(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    """A colorful synthetic 'photo': smooth gradients, a sky-like band, a few colored blobs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    img[..., 0] = 0.5 + 0.4 * np.sin(x / width * 3 + seed)
    img[..., 1] = 0.4 + 0.3 * np.cos(y / height * 4)
    img[..., 2] = np.where(y < height / 3, 0.9, 0.3)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, width / 4)
        mask = (x - cx) ** 2 + (y - cy) ** 2 < r**2
        img[mask] = rng.uniform(0, 1, 3)
    return Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8))


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


def tiny_bins_model():
    """A classification (bins) model in miniature: a 1x1 convolution from L to the bin logits, sure of one
    bin where the photo is white and spread over all the others where it is black."""
    import torch

    from colorize.models.base import AbBins, BinHead, ColorNet

    class TinyBins(ColorNet):
        output, stride = "bins", 1

        def __init__(self):
            super().__init__()
            self.bins = AbBins()
            self.head = BinHead(1, self.bins)
            with torch.no_grad():
                self.head.proj.weight.zero_()
                self.head.proj.bias.zero_()
                self.head.proj.weight[self.bins.num_bins // 3] = 20.0

        def forward(self, l_norm):
            return self.head(l_norm)

    return TinyBins().eval()


@contextmanager
def uvicorn_server(app, **config) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **{"log_level": "warning", **config}))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
