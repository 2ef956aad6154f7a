"""The web app (colorize.web) through FastAPI's TestClient: results, every refusal, the offline page."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import re
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image, ImageOps

from helpers import ARCHIVE_XMP, assert_archive_xmp_kept, make_photo, tiny_bins_model, uvicorn_server

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from colorize.io import load_image  # noqa: E402
from colorize.pipeline import Colorizer  # noqa: E402
from colorize.tone import classify  # noqa: E402
from colorize.web import content_disposition, create_app, download_name, load_image_bytes  # noqa: E402

MAX_UPLOAD_MB = 0.5
MAX_PIXELS = 200_000


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def chroma(img: Image.Image) -> float:
    """Mean spread between an image's RGB channels: ~0 for gray."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    return float((arr.max(axis=2) - arr.min(axis=2)).mean())


def gray_jpeg(width: int = 96, height: int = 64, **options) -> bytes:
    return encode(make_photo(width, height).convert("L"), "JPEG", quality=90, **options)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that declares ``width`` x ``height`` gray pixels but carries almost no data: a
    decompression-bomb probe that must be refused from its header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def client(tiny_model_file):
    app = create_app(str(tiny_model_file), max_upload_mb=MAX_UPLOAD_MB, max_pixels=MAX_PIXELS, workers=1,
                     queue_size=4)
    with TestClient(app) as c:
        yield c


def post_file(client: TestClient, data: bytes, name: str = "photo.jpg", mime: str = "image/jpeg", **params):
    return client.post("/api/colorize", params=params, files={"file": (name, data, mime)})


# -- results -------------------------------------------------------------------------------------
def test_jpeg_in_jpeg_out(client):
    r = post_file(client, gray_jpeg(), name="old photo.jpg")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert 'filename="old_photo_color.jpg"' in r.headers["content-disposition"]
    out = Image.open(io.BytesIO(r.content))
    assert out.format == "JPEG" and out.size == (96, 64)
    assert chroma(out) > 10


def test_png_in_png_out_as_raw_body(client):
    gray = make_photo(80, 56, seed=3).convert("LA")  # gray with alpha: composited onto white
    r = client.post("/api/colorize", content=encode(gray, "PNG"), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    out = Image.open(io.BytesIO(r.content))
    assert out.format == "PNG" and out.size == (80, 56)
    assert chroma(out) > 10


def test_webp_in_webp_out(client):
    r = post_file(client, encode(make_photo(80, 56).convert("L"), "WEBP", quality=90), name="scan.webp",
                  mime="image/webp")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/webp"
    assert 'filename="scan_color.webp"' in r.headers["content-disposition"]
    out = Image.open(io.BytesIO(r.content))
    assert out.format == "WEBP" and out.size == (80, 56)
    assert chroma(out) > 10


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF"])
def test_other_formats_come_back_as_png(client, fmt):
    r = post_file(client, encode(make_photo(72, 48).convert("L"), fmt), name=f"x.{fmt.lower()}", mime="image/x")
    assert r.status_code == 200, r.text
    out = Image.open(io.BytesIO(r.content))
    assert out.format == "PNG" and out.size == (72, 48)


@pytest.mark.parametrize("fmt", ["TIFF", "GIF"])
def test_a_multi_page_upload_says_only_its_first_page_was_colorized(client, fmt):
    pages = [make_photo(72, 48, seed=i).convert("L") for i in range(3)]
    buf = io.BytesIO()
    pages[0].save(buf, format=fmt, save_all=True, append_images=pages[1:])
    r = post_file(client, buf.getvalue(), name=f"letters.{fmt.lower()}", mime="image/x")
    assert r.status_code == 200, r.text
    assert r.headers["x-frames"] == "3"  # as the CLI notes "has 3 frames (pages); only the first is colorized"
    assert "X-Frames" in r.headers["access-control-expose-headers"]
    assert client.get(f"/api/photos/{r.headers['x-photo-id']}").json()["frames"] == 3
    assert post_file(client, gray_jpeg()).headers["x-frames"] == "1"


def test_exif_orientation_applied(client):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    r = post_file(client, gray_jpeg(96, 64, exif=exif))
    assert r.status_code == 200
    assert Image.open(io.BytesIO(r.content)).size == (64, 96)


def test_the_answer_keeps_what_the_clis_files_keep(client):
    """The page's answer, first and re-rendered with hints, keeps the upload's date, caption, GPS, XMP catalogue and
    print size, as the CLI's files do, and a cut-out stays transparent in PNG; the web app used to drop them all."""
    from PIL import ExifTags

    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = "grandma, 1931"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "1931:05:01 10:00:00"
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 30.0)
    r = post_file(client, gray_jpeg(96, 64, exif=exif, xmp=ARCHIVE_XMP, dpi=(600, 600)))
    rendered = client.post(f"/api/photos/{r.headers['x-photo-id']}/render", json={"hints": [{"x": 5, "y": 5,
                                                                                             "color": "red"}]})
    for answer in (r, rendered):
        assert answer.status_code == 200, answer.text
        with Image.open(io.BytesIO(answer.content)) as out:
            kept = out.getexif()
            assert out.size == (64, 96)  # turned upright by the XMP's orientation, which is not kept
            assert kept[ExifTags.Base.ImageDescription] == "grandma, 1931"
            assert kept.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "1931:05:01 10:00:00"
            assert kept.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] == (48.0, 51.0, 30.0)
            assert np.allclose(out.info["dpi"], (600, 600))
            assert_archive_xmp_kept(out.info["xmp"])
    cutout = make_photo(96, 64).convert("LA")
    cutout.putalpha(Image.fromarray(np.where(np.arange(96)[None, :] < 40, 255, 0).repeat(64, 0).astype(np.uint8)))
    r = post_file(client, encode(cutout, "PNG"), name="cutout.png", mime="image/png")
    with Image.open(io.BytesIO(r.content)) as out:
        assert out.mode == "RGBA" and np.array_equal(np.asarray(out.getchannel("A")), np.asarray(cutout.getchannel("A")))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_a_16bit_master_comes_back_in_16_bits_as_the_clis_file_does(client, fmt, tmp_path):
    """A 16-bit gray scan dropped on the page comes back as a 16-bit PNG, first and re-rendered with hints, the same
    pixels as `colorize scan.tif -o scan.png` writes; it used to come back in 8 bits."""
    import png

    ramp = (np.linspace(0, 65535, 96)[None, :] * np.linspace(0.3, 1, 64)[:, None]).astype(np.uint16)
    scan = tmp_path / f"scan.{fmt.lower()}"
    Image.fromarray(ramp).save(scan, format=fmt)
    r = post_file(client, scan.read_bytes(), name=scan.name, mime="image/x")
    rendered = client.post(f"/api/photos/{r.headers['x-photo-id']}/render", json={"hints": []})
    client.app.state.colorizer.colorize_file(scan, tmp_path / "cli.png")

    def pixels(reader: "png.Reader") -> np.ndarray:
        width, height, rows, info = reader.read()
        assert info["bitdepth"] == 16 and (width, height) == (96, 64)
        return np.vstack([np.asarray(row, np.uint16) for row in rows])

    cli = pixels(png.Reader(filename=str(tmp_path / "cli.png")))
    for answer in (r, rendered):
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png", answer.text
        assert np.array_equal(pixels(png.Reader(bytes=answer.content)), cli)


def test_a_phones_heic_photo_comes_back_as_jpeg(client):
    """A HEIC upload (a phone's photo of a print) is colorized where the heif extra is installed, and answered as
    JPEG, which every browser shows; it used to be refused as not an image."""
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(make_photo(96, 64).convert("L").convert("RGB")).save(buf, quality=90)
    r = post_file(client, buf.getvalue(), name="IMG_0001.HEIC", mime="image/heic")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg" and "IMG_0001_color.jpg" in r.headers["content-disposition"]
    assert Image.open(io.BytesIO(r.content)).size == (96, 64)


def test_request_options(client):
    gray = post_file(client, gray_jpeg(), saturation=0)
    assert gray.status_code == 200
    assert chroma(Image.open(io.BytesIO(gray.content))) < 3  # no chroma: the gray photo back
    small = post_file(client, gray_jpeg(), size=16, temperature=0.5)
    assert small.status_code == 200
    assert Image.open(io.BytesIO(small.content)).size == (96, 64)
    assert client.app.state.colorizer.saturation == 1.0  # per-request options never touch the shared one


def sepia(img: Image.Image, dark: str = "#3a2410", light: str = "#fff0d0") -> Image.Image:
    return ImageOps.colorize(img.convert("L"), black=dark, white=light)


def input_color(img: Image.Image) -> str:
    return classify(img).kind  # the X-Input-Color header's classifier: the one in colorize.tone


def test_input_color():
    photo = make_photo(96, 64, seed=1)
    assert input_color(photo) == "color"
    assert input_color(photo.convert("L").convert("RGB")) == "gray"
    assert input_color(Image.open(io.BytesIO(gray_jpeg())).convert("RGB")) == "gray"
    for dark, light in [("#3a2410", "#fff0d0"), ("#704214", "#ffffff"), ("#102030", "#e0f0ff")]:  # sepia, cyanotype
        toned = Image.open(io.BytesIO(encode(sepia(photo, dark, light), "JPEG", quality=70)))
        assert input_color(toned.convert("RGB")) == "toned", (dark, light)
    half = np.asarray(photo.convert("L").convert("RGB")).copy()
    half[:, :48] = np.asarray(photo)[:, :48]  # half of it in color is a color photo
    assert input_color(Image.fromarray(half)) == "color"


@pytest.mark.parametrize("source, expected", [(lambda: make_photo(96, 64), "color"),
                                              (lambda: make_photo(96, 64).convert("L"), "gray"),
                                              (lambda: sepia(make_photo(96, 64)), "toned")])
def test_response_says_whether_the_upload_had_color(client, source, expected):
    r = post_file(client, encode(source(), "PNG"), name="a.png", mime="image/png")
    assert r.status_code == 200, r.text
    assert r.headers["x-input-color"] == expected


def test_load_image_bytes_matches_load_image(tmp_path):
    img = make_photo(64, 48, seed=5).convert("RGBA")
    img.putalpha(128)
    path = tmp_path / "a.png"
    img.save(path)
    from_bytes = load_image_bytes(path.read_bytes(), "a.png")
    assert np.array_equal(np.asarray(from_bytes), np.asarray(load_image(path)))


def test_download_name_never_keeps_a_path():
    assert download_name("../../etc/passwd", ".png") == "passwd_color.png"
    assert download_name("C:\\photos\\Grand mère.JPG", ".jpg") == "Grand_m_re_color.jpg"
    assert download_name("", ".png") == "photo_color.png"


# -- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [("Großmutter 1931.jpg", "Großmutter 1931_color.jpg"),
                                            ("C:\\Fotos\\..\\祖母.jpg", "祖母_color.jpg")])
def test_download_keeps_the_photo_name_in_any_script(client, name, expected):
    from urllib.parse import unquote

    header = post_file(client, gray_jpeg(), name=name).headers["content-disposition"]
    plain, utf8 = re.fullmatch(r'inline; filename="([A-Za-z0-9._-]+)"; filename\*=UTF-8\'\'(\S+)', header).groups()
    assert plain == download_name(name, ".jpg")  # for clients that read only the ASCII name
    assert unquote(utf8) == expected  # what browsers save it as: no folder
    header = content_disposition('../a"b\r\nX: y.jpg', ".png")  # quotes and line breaks stay encoded
    assert "\r" not in header and '"b' not in header and unquote(header.rsplit("''", 1)[1]) == 'a"bX: y_color.png'


def too_big() -> bytes:
    return b"\xff" * (int(MAX_UPLOAD_MB * 2**20) + 1)


@pytest.mark.parametrize("how", ["multipart", "raw", "chunked"])
def test_upload_too_large_413(client, how):
    data = too_big()
    if how == "multipart":
        r = post_file(client, data)
    elif how == "raw":
        r = client.post("/api/colorize", content=data)
    else:  # no Content-Length: the limit is enforced while reading
        r = client.post("/api/colorize", content=iter([data[: len(data) // 2], data[len(data) // 2:]]))
    assert r.status_code == 413
    assert r.json()["error"] == "upload_too_large" and "MB" in r.json()["detail"]


@pytest.mark.parametrize("data", [pytest.param(lambda: gray_jpeg(600, 400), id="over-limit"),
                                  pytest.param(lambda: png_header(100_000, 100_000), id="bomb-header"),
                                  pytest.param(lambda: png_header(1000, 1000), id="header-only")])
def test_too_many_pixels_413(client, data):
    r = post_file(client, data(), name="big.png")
    assert r.status_code == 413
    assert r.json()["error"] == "too_many_pixels"


@pytest.mark.parametrize("data", [b"hello, not an image", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"],
                         ids=["text", "eps"])
def test_not_an_image_415(client, data):
    r = post_file(client, data, name="notes.txt", mime="text/plain")
    assert r.status_code == 415
    assert r.json() == {"error": "not_an_image", "detail": "notes.txt: not an image file (unrecognized format)"}


def test_a_film_dropped_on_the_page_is_told_to_use_colorize_video(client):
    r = post_file(client, b"\x00\x00\x00\x18ftypmp42" + bytes(32), name="wedding.MOV", mime="video/quicktime")
    assert r.status_code == 415
    assert r.json() == {"error": "not_an_image",
                        "detail": "wedding.MOV: a video, not a photo: colorize it with `colorize video`"}


def test_empty_upload_is_called_empty(client):
    r = post_file(client, b"", name="IMG_0007.jpg")  # e.g. a synced folder's placeholder
    assert r.status_code == 415 and r.json()["detail"] == "IMG_0007.jpg: empty: 0 bytes were sent"
    r = client.post("/api/colorize")  # no body at all
    assert r.status_code == 415 and "empty" in r.json()["detail"]


def noisy(width: int = 96, height: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8))


@pytest.mark.parametrize("data", [pytest.param(lambda: encode(noisy(), "JPEG")[:1500], id="truncated-jpeg"),
                                  pytest.param(lambda: encode(noisy(), "PNG")[:2000], id="truncated-png"),
                                  pytest.param(lambda: encode(noisy(4, 4), "PNG"), id="too-small")])
def test_corrupt_or_unusable_422(client, data):
    r = post_file(client, data(), name="broken.png", mime="image/png")
    assert r.status_code == 422
    assert r.json()["error"] == "bad_image"
    assert r.json()["detail"].startswith("broken.png: ")


@pytest.mark.parametrize("params, code", [({"saturation": -1}, "bad_option"), ({"size": 4}, "bad_option"),
                                          ({"size": 100_000}, "bad_option"), ({"temperature": 0}, "bad_option")])
def test_bad_options_422(client, params, code):
    r = post_file(client, gray_jpeg(), **params)
    assert r.status_code == 422
    assert r.json()["error"] == code


def test_missing_file_field_422(client):
    r = client.post("/api/colorize", files={"image": ("a.jpg", gray_jpeg(), "image/jpeg")})
    assert r.status_code == 422
    assert r.json()["error"] == "missing_file"


class Gate(nn.Module):
    """Wraps a model so every forward waits until the test opens the gate."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.stride = inner, inner.stride
        self.entered, self.opened = threading.Event(), threading.Event()

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.opened.wait(20), "the test never opened the gate"
        return self.inner.predict_ab(l_norm)


def test_queue_full_503_then_recovers(tiny_model_file):
    from colorize.checkpoint import load_model

    gate = Gate(load_model(tiny_model_file))
    app = create_app(Colorizer(gate), workers=1, queue_size=0)
    data = gray_jpeg()
    with TestClient(app) as client, ThreadPoolExecutor(1) as background:
        try:
            first = background.submit(client.post, "/api/colorize", content=data)
            assert gate.entered.wait(20)
            assert client.get("/healthz").json()["in_flight"] == 1
            r = client.post("/api/colorize", content=data)
            assert r.status_code == 503
            assert r.json()["error"] == "busy"
            assert int(r.headers["Retry-After"]) >= 1
        finally:
            gate.opened.set()
        assert first.result(timeout=20).status_code == 200
        assert client.get("/healthz").json()["in_flight"] == 0
        assert client.post("/api/colorize", content=data).status_code == 200


# -- the rest of the API and the page ----------------------------------------------------------------
def test_models_and_healthz(client):
    info = client.get("/api/models").json()
    assert info["default"] == "alpha"
    assert [m["name"] for m in info["models"]] == ["alpha"]
    assert info["options"]["size"]["min"] == 8
    assert info["limits"] == {"max_upload_bytes": int(MAX_UPLOAD_MB * 2**20), "max_pixels": MAX_PIXELS}
    heif = importlib.util.find_spec("pillow_heif") is not None
    assert {"JPEG", "PNG", "TIFF"} <= set(info["formats"]) and ("HEIF" in info["formats"]) == heif
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "alpha" and health["capacity"] == 5


@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_head_answers_as_get_does(client, path):
    """Uptime monitors ask with HEAD: the page and /healthz answered 405."""
    head, get = client.head(path), client.get(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert "head" not in client.get("/openapi.json").json()["paths"].get(path, {})


def test_openapi_documents_the_upload(client):
    op = client.get("/openapi.json").json()["paths"]["/api/colorize"]["post"]
    assert "multipart/form-data" in op["requestBody"]["content"]
    assert {"403", "413", "415", "422", "503"} <= set(op["responses"])
    assert {"image/jpeg", "image/png", "image/webp"} <= set(op["responses"]["200"]["content"])
    assert "X-Input-Color" in op["responses"]["200"]["headers"]


OFF_MACHINE = re.compile(r"(?:https?:)?//(?!127\.0\.0\.1|localhost)[a-z0-9.-]+\.[a-z]{2,}", re.I)


def page_assets(html: str) -> list[str]:
    """What a page loads by itself: script src, stylesheet/icon href, CSS url() and @import."""
    tags = re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*>", html, re.I)
    urls = [u for tag in tags for u in re.findall(r'\b(?:src|href)\s*=\s*["\']([^"\']+)', tag, re.I)]
    return urls + re.findall(r"url\(\s*['\"]?([^'\")]+)", html) + re.findall(r"@import\s+['\"]([^'\"]+)", html)


@pytest.mark.parametrize("path, asset", [("/docs", "/docs-assets/swagger-ui-bundle.js"),
                                         ("/redoc", "/docs-assets/redoc.standalone.js")])
def test_docs_are_served_from_this_machine(client, path, asset):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assets = page_assets(r.text)
    assert asset in assets
    for url in assets:
        assert not OFF_MACHINE.match(url) and not url.startswith("http"), url
        if not url.startswith("data:"):
            res = client.get(url)
            assert res.status_code == 200 and len(res.content) > 1000, url
    assert not re.search(r"https?://", r.text)  # no CDN, fonts, favicon or validator from anywhere
    csp = r.headers["content-security-policy"]  # the browser itself refuses anything from elsewhere
    assert "default-src 'self'" in csp and "http" not in csp and "*" not in csp


@pytest.mark.parametrize("path", ["/", "/static/index.html"])
def test_page_sends_its_security_headers_by_either_path(client, path):
    r = client.get(path)
    assert r.status_code == 200 and 'id="drop"' in r.text
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/static/app.js", "/static/app.css", "/docs-assets/swagger-ui-bundle.js"])
def test_scripts_and_styles_are_checked_again_on_each_use(client, path):
    """An upgraded page must never run with a script the browser kept from before: no heuristic caching."""
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-cache" and r.headers["x-content-type-options"] == "nosniff"
    again = client.get(path, headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and not again.content  # unchanged: nothing sent again


def test_cross_origin_post_is_refused(client):
    health = client.get("/healthz").json()
    for origin in ["http://evil.example", "null", "http://testserver.evil.example"]:
        r = client.post("/api/colorize", content=gray_jpeg(), headers={"origin": origin, "content-type": "text/plain"})
        assert r.status_code == 403 and r.json()["error"] == "cross_origin", origin
    assert client.get("/healthz").json()["in_flight"] == health["in_flight"]
    same = client.post("/api/colorize", content=gray_jpeg(), headers={"origin": "http://testserver"})
    assert same.status_code == 200  # the page itself, and clients that send no Origin, are served


def test_page_is_offline(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    html = r.text
    assert 'type="file"' in html and "multiple" in html
    assets = [a for a in re.findall(r'(?:src|href)="([^"]+)"', html) if not a.startswith("data:")]
    assert {"/static/app.js", "/static/zip.js", "/static/app.css"} <= set(assets)
    texts = [html]
    for asset in assets:
        res = client.get(asset)
        assert res.status_code == 200, asset
        texts.append(res.text)
    for text in texts:
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I)
        assert "@import" not in text and "url(" not in text  # no fonts or images from anywhere


def test_client_that_disconnects_mid_upload_logs_one_line(tiny_model_file, caplog):
    app = create_app(str(tiny_model_file), workers=1, queue_size=0)
    caplog.set_level(logging.INFO)
    with uvicorn_server(app, log_config=None) as url:  # uvicorn's records reach caplog
        host, port = url.removeprefix("http://").split(":")
        for content_type in ["multipart/form-data; boundary=xyz", "image/jpeg"]:
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(f"POST /api/colorize HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
                             "Content-Length: 100000\r\n\r\n".encode()
                             + b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n"
                             + gray_jpeg()[:500])
                time.sleep(0.3)  # the server has started reading the body
        deadline = time.monotonic() + 10
        while sum("disconnected" in r.getMessage() for r in caplog.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert TestClient(app).get("/healthz").json()["in_flight"] == 0
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 2 and all(r.levelno == logging.INFO for r in lines), [r.getMessage() for r in lines]
    assert "/api/colorize" in lines[0].getMessage() and "127.0.0.1" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]  # no traceback


def test_serve_command_fails_cleanly_on_a_missing_model(tmp_path, capsys):
    from colorize.commands import serve

    assert serve.main(["--model", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_a_loopback_server_answers_only_requests_addressed_to_this_machine(tiny_model_file):
    """DNS rebinding: another site's page points its own name at 127.0.0.1, and its Origin matches its Host."""
    from colorize.web import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("LocalHost")
    assert not is_loopback("0.0.0.0") and not is_loopback("evil.example") and not is_loopback("localhost.evil.example")
    with TestClient(create_app(str(tiny_model_file), allowed_hosts=["photos.example.org"])) as c:
        for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "127.0.0.1", "app.localhost:8000",
                     "Photos.Example.org"):  # the last: a reverse proxy's public name, passed on in Host
            assert c.get("/healthz", headers={"host": host}).status_code == 200, host
        rebound = {"host": "evil.example:8000", "origin": "http://evil.example:8000"}
        for r in (c.get("/", headers=rebound), c.post("/api/colorize", content=gray_jpeg(), headers=rebound)):
            assert r.status_code == 403 and r.json()["error"] == "unknown_host", r.text
            assert "evil.example:8000" in r.json()["detail"] and "--allowed-host" in r.json()["detail"]
    with TestClient(create_app(str(tiny_model_file))) as c:  # listening elsewhere: any name reaches it
        assert c.get("/healthz", headers={"host": "photos.example.org"}).status_code == 200


@pytest.mark.parametrize("host, url", [("0.0.0.0", "http://127.0.0.1:8123/"), ("::", "http://[::1]:8123/"),
                                       ("127.0.0.1", "http://127.0.0.1:8123/"), ("::1", "http://[::1]:8123/"),
                                       ("192.168.1.20", "http://192.168.1.20:8123/")])
def test_serve_command_prints_an_address_a_browser_can_open(host, url, tiny_model_file, monkeypatch, capsys):
    import uvicorn

    from colorize.commands import serve

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    assert serve.main(["--host", host, "--port", "8123", "--model", str(tiny_model_file)]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"open {url}")


@pytest.mark.parametrize("argv, host, answered", [
    ([], "evil.example:8000", False), ([], "127.0.0.1:8000", True),
    (["--allowed-host", "photos.example.org"], "photos.example.org", True),
    (["--host", "0.0.0.0"], "192.168.1.20:8000", True)])
def test_serve_command_answers_only_its_own_names_on_loopback(argv, host, answered, tiny_model_file, monkeypatch):
    import uvicorn

    from colorize.commands import serve

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    assert serve.main([*argv, "--model", str(tiny_model_file)]) == 0
    with TestClient(apps[0]) as c:
        assert (c.get("/healthz", headers={"host": host}).status_code == 200) == answered


def test_serve_command_sets_the_prediction_cache_size(tiny_model_file, monkeypatch, capsys):
    import uvicorn

    from colorize.commands import serve
    from colorize.web import DEFAULT_CACHE_MB

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: apps.append(app))
    assert serve.main(["--cache-mb", "1.5", "--model", str(tiny_model_file)]) == 0
    assert serve.main(["--model", str(tiny_model_file)]) == 0
    assert [app.state.photos.max_bytes for app in apps] == [int(1.5 * 2**20), int(DEFAULT_CACHE_MB * 2**20)]
    with pytest.raises(SystemExit):
        serve.main(["--cache-mb", "-1"])
    assert "argument --cache-mb" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_command_refuses_a_port_that_is_none(port, capsys):
    from colorize.commands import serve

    with pytest.raises(SystemExit) as exit_:  # argparse's usage error, before any model is loaded
        serve.main(["--port", port])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port" in err and port in err and "Traceback" not in err


@pytest.mark.parametrize("option, value", [("--workers", "0"), ("--queue", "-1"), ("--max-upload-mb", "0"),
                                           ("--max-pixels", "0"), ("--max-pixels", "-5")])
def test_serve_command_refuses_limits_that_are_none(option, value, monkeypatch, capsys):
    """The server's limits are checked before the model loads, by the option's name: --max-pixels 0 was taken as
    the default without a word, and the others failed after loading the model, naming 'max_upload_mb' and such."""
    from colorize.commands import serve

    monkeypatch.setattr(serve, "build_colorizer", lambda args: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit) as exit_:
        serve.main([option, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and value in err


# -- hints, kept predictions, confidence ----------------------------------------------------------
def two_regions_png(width: int = 96, height: int = 64) -> bytes:
    arr = np.full((height, width), 40, np.uint8)
    arr[:, width // 2:] = 75
    return encode(Image.fromarray(arr), "PNG")


def hue_at(img: Image.Image, x: int, y: int) -> float:
    from colorize.color import rgb_to_lab

    lab = rgb_to_lab(torch.from_numpy(np.asarray(img.convert("RGB")) / 255.0).permute(2, 0, 1))
    return float(torch.rad2deg(torch.atan2(lab[2, y, x], lab[1, y, x])))


BLUE_HUE = -73.9  # CIE Lab hue of #2a6fdb, degrees


def test_hints_on_colorize_and_rerender_without_the_network(client, monkeypatch):
    hints = [{"x": 10, "y": 10, "color": "#2a6fdb"}]
    r = client.post("/api/colorize", params={"hints": json.dumps(hints)},
                    files={"file": ("p.png", two_regions_png(), "image/png")})
    assert r.status_code == 200, r.text
    assert abs(hue_at(Image.open(io.BytesIO(r.content)), 5, 30) - BLUE_HUE) < 10
    photo_id, tone = r.headers["x-photo-id"], r.headers["x-input-color"]
    assert tone == "gray"
    # as a multipart field, too
    r2 = client.post("/api/colorize", files={"file": ("p.png", two_regions_png(), "image/png")},
                     data={"hints": json.dumps(hints)})
    assert r2.status_code == 200 and r2.headers["x-photo-id"] == photo_id  # same bytes, same options
    assert r2.content == r.content

    colorizer = client.app.state.colorizer
    monkeypatch.setattr(type(colorizer), "predict", lambda *a, **k: pytest.fail("the network ran again"))
    red = client.post(f"/api/photos/{photo_id}/render", json={"hints": [{"x": 10, "y": 10, "color": "red", "radius": 30}]})
    assert red.status_code == 200, red.text
    assert red.headers["content-type"] == "image/png"
    assert abs(hue_at(Image.open(io.BytesIO(red.content)), 8, 12) - BLUE_HUE) > 40
    plain = client.post(f"/api/photos/{photo_id}/render", json={"hints": []})
    assert plain.status_code == 200 and plain.content != red.content
    info = client.get(f"/api/photos/{photo_id}").json()
    assert info["width"] == 96 and info["height"] == 64 and info["tone"]["kind"] == "gray"
    assert info["confidence"] is False  # the tiny test model is a regression model


def test_a_photo_sent_again_under_another_name_takes_the_new_name(client):
    png = two_regions_png(80, 48)
    first = post_file(client, png, name="scan_0041.png", mime="image/png")
    again = post_file(client, png, name="grandmother 1931.png", mime="image/png")
    photo_id = again.headers["x-photo-id"]
    assert photo_id == first.headers["x-photo-id"]  # the kept prediction serves both
    assert client.get(f"/api/photos/{photo_id}").json()["name"] == "grandmother 1931.png"
    rendered = client.post(f"/api/photos/{photo_id}/render", json={"hints": []})
    assert 'filename="grandmother_1931_color.png"' in rendered.headers["content-disposition"]


def test_bad_hints_and_unknown_photos(client):
    png = two_regions_png()
    for hints in ("not json", json.dumps({"x": 1}), json.dumps([{"x": 1, "y": 1, "color": "nocolor"}]),
                  json.dumps([{"x": 500, "y": 1, "color": "red"}])):
        r = client.post("/api/colorize", params={"hints": hints}, files={"file": ("p.png", png, "image/png")})
        assert r.status_code == 422 and r.json()["error"] == "bad_hints", (hints, r.text)
    assert client.post("/api/photos/0123/render", json={"hints": []}).status_code == 404
    assert client.get("/api/photos/0123").json()["error"] == "unknown_photo"
    photo_id = client.post("/api/colorize", files={"file": ("p.png", png, "image/png")}).headers["x-photo-id"]
    r = client.post(f"/api/photos/{photo_id}/render", json={"hints": [{"x": 1, "y": 1, "color": "nocolor"}]})
    assert r.status_code == 422 and r.json()["error"] == "bad_hints"
    # read as --hints and ?hints= read them: a misspelt "radus" was dropped (the hint filled its whole region)
    for hint, field in (({"radus": 5}, "radus"), ({"x": "1"}, "x"), ({"y": True}, "y")):
        r = client.post(f"/api/photos/{photo_id}/render", json={"hints": [{"x": 1, "y": 1, "color": "red", **hint}]})
        assert r.status_code == 422 and r.json()["error"] == "bad_hints" and f"hints.0.{field}" in r.json()["detail"]
    r = client.get(f"/api/photos/{photo_id}/confidence")
    assert r.status_code == 422 and r.json()["error"] == "no_confidence"


def test_a_huge_request_body_is_refused_before_it_is_read(client):
    """FastAPI parses a JSON body whole on the event loop: 200 MB of hints took a minute and 7 GB."""
    from colorize.web import MAX_BODY_BYTES

    photo_id = post_file(client, two_regions_png(), name="p.png", mime="image/png").headers["x-photo-id"]
    hint = b'{"x": 1, "y": 1, "color": "red"},'
    huge = b'{"hints": [' + hint * (MAX_BODY_BYTES // len(hint)) + b'{"x": 1, "y": 1, "color": "red"}]}'

    def chunks():  # no Content-Length: sent chunked, refused as it passes the limit
        for i in range(0, len(huge), 65536):
            yield huge[i:i + 65536]

    for kwargs in ({"content": huge}, {"content": chunks()}):
        r = client.post(f"/api/photos/{photo_id}/render", headers={"content-type": "application/json"}, **kwargs)
        assert r.status_code == 413 and r.json()["error"] == "body_too_large", r.text[:200]
    pins = {"hints": [{"x": 1, "y": 1, "color": "red"}] * 256}  # the most a page may send: far below the limit
    assert client.post(f"/api/photos/{photo_id}/render", json=pins).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_confidence_over_http():
    with TestClient(create_app(Colorizer(tiny_bins_model()), workers=1)) as c:
        arr = np.zeros((40, 90), np.uint8)
        arr[:, :45] = 255
        png = encode(Image.fromarray(arr), "PNG")
        r = c.post("/api/colorize", params={"output": "confidence"}, files={"file": ("p.png", png, "image/png")})
        assert r.status_code == 200, r.text
        conf = Image.open(io.BytesIO(r.content))
        assert conf.mode == "L" and conf.size == (90, 40)
        assert np.asarray(conf)[:, :40].min() > 240 and np.asarray(conf)[:, 50:].max() < 60
        # named as the CLI's --confidence names it, never as the colorized photo it would overwrite
        assert 'filename="p.confidence.png"' in r.headers["content-disposition"]
        photo = c.post("/api/colorize", files={"file": ("p.png", png, "image/png")})
        assert 'filename="p_color.png"' in photo.headers["content-disposition"]
        again = c.get(f"/api/photos/{r.headers['x-photo-id']}/confidence")
        assert again.status_code == 200 and again.content == r.content
        assert 'filename="p.confidence.png"' in again.headers["content-disposition"]
        assert c.get("/api/models").json()["confidence"] is True


def test_kept_photos_are_bounded(tiny_model_file):
    from colorize.web import PhotoCache

    with TestClient(create_app(str(tiny_model_file), workers=1, cache_mb=0.05)) as c:
        ids = [c.post("/api/colorize", files={"file": ("p.png", encode(make_photo(96, 64, seed=i), "PNG"), "image/png")})
               .headers["x-photo-id"] for i in range(4)]
        cache: PhotoCache = c.app.state.photos
        assert len(cache) < 4 and cache.get(ids[-1]) is not None
        assert c.get(f"/api/photos/{ids[0]}").status_code == 404


def test_color_upload_is_reported_and_its_tint_offered(client):
    r = post_file(client, encode(make_photo(96, 64), "PNG"), name="c.png", mime="image/png")
    assert r.headers["x-input-color"] == "color"
    info = client.get(f"/api/photos/{r.headers['x-photo-id']}").json()
    assert info["tone"]["kind"] == "color" and isinstance(info["tint_hints"], list)


@pytest.mark.parametrize("error", [OSError(13, "Permission denied", "w.safetensors"),
                                   ImportError("w.onnx needs onnxruntime: pip install onnxruntime")])
@pytest.mark.parametrize("command", ["serve", "video"])
def test_serve_and_video_report_any_unusable_model_in_one_line(command, error, tmp_path, monkeypatch, capsys):
    """Every error a model load names (batch.MODEL_ERRORS, as `colorize PATH` catches) is one line, no traceback."""
    import importlib

    module = importlib.import_module(f"colorize.commands.{command}")

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(module, "build_colorizer", fail)
    argv = ["--model", "w.safetensors"] if command == "serve" else \
        [str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4"), "--model", "w.safetensors", "--runtime", "torch"]
    assert module.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(error) in err
    assert not (tmp_path / "out.mp4").exists()
