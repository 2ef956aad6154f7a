"""Helpers the tests import (``from helpers import make_photo``): synthetic photos, a tiny classification
model, a real uvicorn server. Fixtures live in conftest.py; pytest puts this folder on ``sys.path``, so
the imports work from any working directory."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from PIL import Image


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
