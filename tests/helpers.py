"""Helpers the tests import (``from helpers import make_photo``): synthetic photos, a tiny classification
model, a real uvicorn server. Fixtures live in conftest.py; pytest puts this folder on ``sys.path``, so
the imports work from any working directory."""

from __future__ import annotations

import socket
import struct
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


def icc_profile(space: str = "GRAY", gamma: float = 1.0) -> bytes:
    """A minimal ICC v2 display profile, ``space`` "GRAY" or "RGB" (sRGB's primaries), whose tone curve is a pure
    ``gamma`` (1.0: linear light, far from sRGB's curve): a tagged photo's pixels mean other colors than sRGB's."""
    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)

    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))
    text = b"test gamma %.1f\0" % gamma
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"cprt", b"text" + bytes(4) + b"none\0")]
    if space == "GRAY":
        tags.append((b"kTRC", curve))
    else:  # sRGB's primaries, adapted to D50
        tags += [(b"rXYZ", xyz(0.4361, 0.2225, 0.0139)), (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
                 (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (struct.pack(">I", start + len(data)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntr"
              + f"{space:<4}".encode() + b"XYZ " + bytes(12) + b"acsp" + bytes(28) + s15(0.9642) + s15(1.0)
              + s15(0.8249) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + data


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


# An archive's XMP catalogue entry for a gray scan, as Lightroom or Bridge writes it: properties as attributes and as
# elements, a language alternative, a keyword bag, a struct; and what is not true of a colorized version (layout,
# gray color mode, the scan's identity, Camera Raw's gray conversion), which must not reach it.
ARCHIVE_XMP = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"
   xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
   xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" xmlns:stRef="http://ns.adobe.com/xap/1.0/sType/ResourceRef#"
   xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
   photoshop:Credit="Smith family archive" photoshop:ColorMode="1" tiff:Orientation="6"
   xmpMM:DocumentID="xmp.did:scan-1931" xmpMM:InstanceID="xmp.iid:scan-1931" crs:ConvertToGrayscale="True">
  <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Grandma at the seaside, 1931</rdf:li></rdf:Alt></dc:title>
  <dc:subject><rdf:Bag><rdf:li>family</rdf:li><rdf:li>Brighton</rdf:li></rdf:Bag></dc:subject>
  <xmpMM:DerivedFrom rdf:parseType="Resource"><stRef:documentID>xmp.did:print-0042</stRef:documentID></xmpMM:DerivedFrom>
  <crs:ToneCurve><rdf:Seq><rdf:li>0, 0</rdf:li><rdf:li>255, 255</rdf:li></rdf:Seq></crs:ToneCurve>
 </rdf:Description>
</rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>"""


def assert_archive_xmp_kept(packet: bytes) -> None:
    """``packet`` (an output's XMP) holds ARCHIVE_XMP's catalogue and none of what is not true of the output."""
    from defusedxml import ElementTree

    root = ElementTree.fromstring(packet)
    found = {el.tag.rpartition("}")[2]: el for el in root.iter()}
    names = {n.rpartition("}")[2]: v for el in root.iter() for n, v in el.attrib.items()}
    texts = [el.text for el in root.iter() if el.text and el.text.strip()]
    assert names["Credit"] == "Smith family archive"
    assert {"Grandma at the seaside, 1931", "family", "Brighton", "xmp.did:print-0042"} <= set(texts)
    assert "DerivedFrom" in found and "title" in found
    for gone in ("ColorMode", "Orientation", "DocumentID", "InstanceID", "ConvertToGrayscale", "ToneCurve"):
        assert gone not in names and gone not in found, gone
    assert_marked_colorized(packet)


def assert_marked_colorized(packet: bytes) -> None:
    """``packet`` (an output's XMP) says the photo was colorized by this program, in IPTC's terms."""
    from defusedxml import ElementTree

    from colorize import __version__

    names = {n: v for el in ElementTree.fromstring(packet).iter() for n, v in el.attrib.items()}
    assert names["{http://ns.adobe.com/xap/1.0/}CreatorTool"] == f"colorize {__version__}"
    assert names["{http://iptc.org/std/Iptc4xmpExt/2008-02-29/}DigitalSourceType"] == (
        "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia")


def _iim(record: int, dataset: int, value: bytes) -> bytes:
    return b"\x1c" + bytes([record, dataset]) + len(value).to_bytes(2, "big") + value


# The same entry as IPTC-IIM records (the older catalogue): UTF-8 declared, a version, title, keywords, by-line,
# caption, copyright; and what is not true of a colorized version: image type "1M" (monochrome), orientation, and a
# newsphoto record of the scan's pixel layout.
ARCHIVE_IPTC = b"".join([
    _iim(1, 90, b"\x1b%G"), _iim(2, 0, b"\x00\x04"), _iim(2, 5, b"Grandma at the seaside"), _iim(2, 25, b"family"),
    _iim(2, 25, b"Brighton"), _iim(2, 80, b"Ann Smith"), _iim(2, 120, "Grand-mère, 1931".encode()),
    _iim(2, 116, b"Smith family archive"), _iim(2, 130, b"1M"), _iim(2, 131, b"L"), _iim(3, 20, b"\x00\x01")])


def assert_archive_iptc_kept(img) -> None:
    """``img`` (an opened output) holds ARCHIVE_IPTC's catalogue and none of what is not true of it."""
    from PIL import IptcImagePlugin

    info = IptcImagePlugin.getiptcinfo(img)
    assert info is not None, "no IPTC"
    assert info[(2, 5)] == b"Grandma at the seaside" and info[(2, 25)] == [b"family", b"Brighton"]
    assert info[(2, 120)].decode() == "Grand-mère, 1931" and info[(1, 90)] == b"\x1b%G"
    assert info[(2, 116)] == b"Smith family archive" and info[(2, 80)] == b"Ann Smith"
    assert not {(2, 130), (2, 131), (3, 20)} & set(info)
