"""The web app behind ``colorize serve``: a thin FastAPI layer over the one inference pipeline.

The model is loaded once. Each photo's header is checked on the event loop (cheap); decoding,
colorizing and encoding run on a small thread pool, never on the event loop. At most
``workers + queue_size`` photos are in flight; more are refused with 503 and ``Retry-After``.

Uploads live in memory (a multipart file part over 1 MB spools to an anonymous temporary file that is
closed with the request); a client-given file name is only ever echoed, never used as a path.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import ipaddress
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from http import HTTPStatus
from pathlib import Path
from typing import Any, AsyncIterator, Callable, NamedTuple, Sequence, TypeVar
from urllib.parse import quote, urlsplit

import numpy as np
import torch.nn as nn
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from colorize import __version__
from colorize.io import NOT_A_PHOTO, VIDEO_EXTENSIONS, ImageError, decode, prepared_for, with_plugins, write_png16
from colorize.hints import Hint, as_hints, hints_from_json, hints_from_tint, hints_to_json
from colorize.pipeline import Colorizer, Prediction
from colorize.tone import ToneReport, classify

T = TypeVar("T")
logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_UPLOAD_MB = 25.0
DEFAULT_MAX_PIXELS = 16_000_000  # the pipeline peaks near 170 bytes/pixel: ~2.7 GB per worker at this size
MAX_WORK_SIZE = 2048  # cap on the per-request working size: compute grows with its square
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers allowed on top of the file itself
# no EPS/PDF-style plugins; HEIF (a phone's photos) where the heif extra is installed (colorize.io.with_plugins)
ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM", "HEIF")
# the upload's own format where a browser shows it, a phone's HEIF as JPEG; anything else (GIF's 256 colors, TIFF,
# BMP) as PNG
OUTPUT_FORMATS = {"JPEG": ("JPEG", "image/jpeg", ".jpg"), "MPO": ("JPEG", "image/jpeg", ".jpg"),
                  "PNG": ("PNG", "image/png", ".png"), "WEBP": ("WEBP", "image/webp", ".webp"),
                  "HEIF": ("JPEG", "image/jpeg", ".jpg")}
JPEG_QUALITY = 95  # also WebP's
DEFAULT_CACHE_MB = 512.0  # kept predictions (re-rendering with hints skips the network): ~4.5 bytes/pixel each
MAX_HINTS = 256
MAX_BODY_BYTES = 2**20  # any request body but an upload's (MAX_HINTS hints are ~20 KB of JSON)
UPLOAD_PATH = "/api/colorize"  # the one route that takes a photo: it reads and bounds its own body
INDEX_CSP = ("default-src 'self'; img-src 'self' blob: data:; connect-src 'self' blob:; object-src 'none'; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")  # nothing loads from elsewhere
# /docs and /redoc: FastAPI's pages with Swagger UI and Redoc served from the fastapi-offline package;
# their inline start-up script and Redoc's generated styles need 'unsafe-inline', Redoc's search a blob: worker
DOCS_ASSETS = "/docs-assets"
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
# "gray", "toned" or "color": what the upload was before colorizing, by colorize.tone.classify (thresholds there)
INPUT_COLOR_HEADER = "X-Input-Color"
# how many frames (pages) the upload had: only the first is colorized (a multi-page TIFF, an animated GIF)
FRAMES_HEADER = "X-Frames"
# photo.jpg downloads as photo_color.jpg, its confidence map as photo.confidence.png (as the CLI's --confidence)
COLOR_SUFFIX, CONFIDENCE_SUFFIX = "_color", ".confidence"


class HintIn(BaseModel):
    """A color hint, in the photo's pixels. Read as ``--hints`` reads it: no other fields (a misspelt
    "radus" is an error, not a hint without a radius), numbers as numbers."""

    model_config = ConfigDict(extra="forbid", strict=True)

    x: float
    y: float
    color: str  # "#2a6fdb", "red", "rgb(200, 30, 30)": anything Pillow's ImageColor reads
    radius: float | None = None  # pixels; none: the hint fills the region the photo's edges bound


class RenderRequest(BaseModel):
    """Body of ``POST /api/photos/{id}/render``: the same JSON the CLI's ``--hints`` reads, under ``hints``."""

    hints: list[HintIn] = []
    tint_as_hints: bool = False  # also use a hand-tinted photo's own colors as hints


class ErrorBody(BaseModel):
    """Every refusal's JSON body."""

    error: str  # short machine-readable code, e.g. "upload_too_large"
    detail: str  # what went wrong, for people


class ApiError(Exception):
    """A refused request, answered as ``{"error": code, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


class UploadRejected(ImageError):
    """An uploaded file that cannot be colorized, with the HTTP status that fits the reason."""

    CODES = {413: "too_many_pixels", 415: "not_an_image", 422: "bad_image"}

    def __init__(self, name: str, reason: str, status: int):
        super().__init__(name, reason)
        self.status, self.code = status, self.CODES[status]


# -- images from bytes ---------------------------------------------------------------------------
def _accepted_formats() -> list[str]:
    Image.init()
    with_plugins()
    return [f for f in ACCEPTED_FORMATS if f in Image.OPEN]


def open_upload(data: bytes, name: str, *, max_pixels: int) -> Image.Image:
    """Identify an upload from its header alone; nothing is decoded yet.

    Raises:
        UploadRejected: 415 not an image (empty, or a format not accepted); 413 more than ``max_pixels``
            pixels; 422 a header that cannot be read.
    """
    if not data:  # a request without a body, or a file that was never written (a cloud placeholder)
        raise UploadRejected(name, "empty: 0 bytes were sent", 415)
    try:
        img = Image.open(io.BytesIO(data), formats=_accepted_formats())
    except UnidentifiedImageError:
        if Path(name).suffix.lower() in VIDEO_EXTENSIONS:  # as the CLI tells a film from a bad photo
            raise UploadRejected(name, NOT_A_PHOTO, 415) from None
        raise UploadRejected(name, "not an image file (unrecognized format)", 415) from None
    except Image.DecompressionBombError as e:
        raise UploadRejected(name, f"too many pixels ({e})", 413) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UploadRejected(name, f"cannot read the image header ({e})", 422) from None
    if img.width * img.height > max_pixels:
        raise UploadRejected(name, f"{img.width}x{img.height} exceeds the {max_pixels:,}-pixel limit", 413)
    return img


def decode_upload(img: Image.Image, name: str, *, keep_16bit: bool = False) -> Image.Image:
    """Decode an opened upload to 8-bit RGB (16-bit gray kept as mode ``I;16`` with ``keep_16bit``) with EXIF
    orientation applied, its ``info`` what the colorized version keeps (metadata, transparency), as
    :func:`colorize.io.load_image` does for files (:func:`colorize.io.decode`).

    Raises:
        UploadRejected: 422 for truncated, corrupt or too small images.
    """
    try:
        return decode(img, name, keep_16bit=keep_16bit, metadata=True)
    except ImageError as e:
        raise UploadRejected(name, e.reason, 422) from None


def load_image_bytes(data: bytes, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An uploaded photo as 8-bit RGB, EXIF orientation applied. Raises :class:`UploadRejected`."""
    return decode_upload(open_upload(data, name, max_pixels=max_pixels), name)


def encode_image(img: Image.Image | np.ndarray, source_format: str | None, metadata: dict | None = None
                 ) -> tuple[bytes, str, str]:
    """Encode in the upload's format when it is JPEG, PNG or WebP, else as PNG, with what the CLI's files keep of
    the upload (``metadata``, :func:`colorize.io.prepared_for`: date, caption, GPS, XMP, dpi, transparency). A
    16-bit master's colors (an (H, W, 3) uint16 array; its upload was a PNG or TIFF) come back as a 16-bit PNG.

    Returns:
        (bytes, media type, extension)
    """
    fmt, media_type, ext = OUTPUT_FORMATS.get(source_format or "", OUTPUT_FORMATS["PNG"])
    if isinstance(img, np.ndarray):
        buf = io.BytesIO()
        write_png16(buf, img, metadata or {}, compression=3)
        return buf.getvalue(), *OUTPUT_FORMATS["PNG"][1:]
    img, options = prepared_for(img, fmt, quality=JPEG_QUALITY, metadata=metadata)
    if fmt == "PNG":
        options["compress_level"] = 3  # an answer waited for: a 1280x800 photo in 0.10 s, 15% larger, against 0.24 s
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue(), media_type, ext


class Colorized(NamedTuple):
    """One colorized upload, encoded."""

    body: bytes
    media_type: str
    ext: str  # the file extension that goes with media_type
    input_color: str  # what the upload was: gray, toned or color (colorize.tone.classify)


def _stem(name: str) -> str:
    """A client-given file name's last path part, without its extension."""
    return name.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]


def download_name(name: str, ext: str, *, suffix: str = COLOR_SUFFIX) -> str:
    """``<stem><suffix><ext>`` from a client-given file name, its stem reduced to safe ASCII."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", _stem(name)).strip("._")[:80]
    return f"{stem or 'photo'}{suffix}{ext}"


def content_disposition(name: str, ext: str, *, suffix: str = COLOR_SUFFIX) -> str:
    """``inline`` and the download's name: :func:`download_name` in ``filename``, and, where the client's name
    was more than that (accents, other scripts, spaces), that name in ``filename*`` (RFC 6266, UTF-8), which
    browsers prefer: "Großmutter.jpg" downloads as "Großmutter_color.jpg", not "Gro_mutter_color.jpg"."""
    plain = download_name(name, ext, suffix=suffix)
    stem = re.sub(r"[\x00-\x1f\x7f]+", "", _stem(name)).strip(". ")[:80]
    full = f"{stem}{suffix}{ext}" if stem else plain
    header = f'inline; filename="{plain}"'
    return header if full == plain else f"{header}; filename*=UTF-8''{quote(full, safe='')}"


# -- the worker pool -----------------------------------------------------------------------------
class WorkerPool:
    """``workers`` inference threads and a bound on the photos in flight (running + waiting)."""

    def __init__(self, workers: int, queue_size: int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.workers, self.capacity = workers, workers + queue_size
        self.in_flight = 0
        self._seconds_per_job = 1.0  # running mean, for Retry-After
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="colorize-web")

    def retry_after(self) -> int:
        """Seconds until a full queue has likely drained."""
        return max(1, math.ceil(self._seconds_per_job * self.capacity / self.workers))

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn`` on a worker thread; raises :class:`ApiError` 503 when ``capacity`` jobs are in flight."""
        with self._lock:
            if self.in_flight >= self.capacity:
                raise ApiError(503, "busy", f"the server is busy ({self.in_flight} photos in progress); "
                               "retry shortly", headers={"Retry-After": str(self.retry_after())})
            self.in_flight += 1

        def timed() -> T:
            start = time.perf_counter()
            try:
                return fn()
            finally:
                with self._lock:
                    self._seconds_per_job = 0.8 * self._seconds_per_job + 0.2 * (time.perf_counter() - start)

        def release(_: object) -> None:  # when the job ends, even if its client has gone
            with self._lock:
                self.in_flight -= 1

        try:
            future = self._executor.submit(timed)
        except RuntimeError:  # shut down
            release(None)
            raise ApiError(503, "shutting_down", "the server is shutting down", headers={"Retry-After": "5"}) from None
        future.add_done_callback(release)
        return asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# -- request helpers -----------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine's loopback: localhost (and *.localhost, which
    browsers keep on loopback), 127.0.0.0/8, ::1."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class KnownHosts:
    """ASGI middleware: a request whose Host header names neither this machine's loopback nor one of
    ``names`` is refused (403). For a server that listens on loopback: another site's page can point its own
    name at 127.0.0.1 (DNS rebinding) and so pass the Origin check, but its requests still carry its name.
    Not Starlette's TrustedHostMiddleware: it answers a plain-text 400 where the page and API clients read this
    app's JSON errors, cannot say which option lets a name in, and knows no address range (127.0.0.0/8)."""

    def __init__(self, app: ASGIApp, *, names: Sequence[str] = ()):
        self.app, self.names = app, {n.lower().rstrip(".") for n in names}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = (urlsplit(f"//{host}").hostname or "").rstrip(".")
            if not (is_loopback(name) or name in self.names):
                known = ", ".join(["localhost", "127.0.0.1", "[::1]", *sorted(self.names)])
                return await _error(403, "unknown_host", (
                    f"this server answers requests addressed to {known} only, not {host or '(no Host)'}; "
                    "to answer to another name (a reverse proxy's), start it with --allowed-host NAME"
                ))(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: a request body past ``limit`` bytes is refused (413) before the app sees it, except
    on the upload route, which streams and bounds its own. FastAPI reads a JSON body whole and parses it on
    the event loop: unbounded, one 200 MB list of hints held the server for a minute and took 7 GB."""

    def __init__(self, app: ASGIApp, *, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == UPLOAD_PATH:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, receive, send)
        body, more = b"", True
        while more:  # whatever Content-Length claimed, or without one (chunked)
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._too_large(scope, receive, send)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # the disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _error(413, "body_too_large", f"the request body exceeds the {self.limit:,}-byte limit")(scope, receive,
                                                                                                      send)


async def read_upload(request: Request, max_bytes: int, *, fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """The uploaded file's bytes and client-side name, from a multipart field ``file`` or the raw body.
    Multipart text fields named in ``fields`` are copied into it.

    Reading stops as soon as the body passes the limit (413), whatever Content-Length claimed.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = content_type == "multipart/form-data"
    body_limit = max_bytes + (MULTIPART_SLACK if multipart else 0)

    def too_large() -> ApiError:
        return ApiError(413, "upload_too_large", f"the upload exceeds the {max_bytes / 2**20:g} MB limit")

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise too_large()
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > body_limit:
            raise too_large()
        return message

    limited = Request(request.scope, receive)
    if not multipart:
        data, name = b"".join([chunk async for chunk in limited.stream()]), "upload"
    else:
        async with limited.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(422, "missing_file", "send the photo as a multipart file field named 'file' "
                               "or as the raw request body")
            data, name = await upload.read(), upload.filename or "upload"
            for key in fields or {}:
                value = form.get(key)
                if isinstance(value, str):
                    fields[key] = value
    if len(data) > max_bytes:
        raise too_large()
    return data, name


# -- kept predictions: re-render with other hints without the network -----------------------------
@dataclass
class Photo:
    """One uploaded photo's prediction, kept for re-rendering."""

    id: str
    prediction: Prediction
    source_format: str | None  # the upload's format: JPEG, PNG and WebP come back as such, anything else as PNG
    name: str  # client-given file name, only ever echoed
    tone: ToneReport
    colorizer: Colorizer  # the request's options (working size, temperature, saturation)
    tint: list[Hint] | None = None  # a hand-tinted photo's own colors as hints (empty unless tone.kind is "color")
    frames: int = 1  # frames (pages) in the upload; only the first was colorized
    metadata: dict | None = None  # what its colorized version keeps (colorize.io.decode): EXIF, XMP, alpha, ...
    deep: bool = False  # a 16-bit gray master: rendered and answered in 16 bits

    @property
    def nbytes(self) -> int:
        p = self.prediction
        tensors = [p.prepared.l_full, p.prepared.l_small, p.ab] + ([p.confidence] if p.confidence is not None else [])
        kept = self.metadata or {}
        alpha = kept.get("alpha")  # a transparent upload's alpha, one byte a pixel; its EXIF, XMP and IPTC
        catalogue = sum(len(kept.get(k) or b"") for k in ("exif", "xmp", "iptc"))
        pixels = sum(t.numel() * t.element_size() for t in tensors) + (alpha.width * alpha.height if alpha else 0)
        return pixels + catalogue


class PhotoCache:
    """Least-recently-used kept predictions, bounded by their memory; thread-safe."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._photos: OrderedDict[str, Photo] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, photo_id: str) -> Photo | None:
        with self._lock:
            photo = self._photos.get(photo_id)
            if photo is not None:
                self._photos.move_to_end(photo_id)
            return photo

    def put(self, photo: Photo) -> None:
        with self._lock:
            self._photos[photo.id] = photo
            self._photos.move_to_end(photo.id)
            total = sum(p.nbytes for p in self._photos.values())
            while total > self.max_bytes and len(self._photos) > 1:
                total -= self._photos.popitem(last=False)[1].nbytes

    def __len__(self) -> int:
        return len(self._photos)


def photo_id(data: bytes, colorizer: Colorizer) -> str:
    """The same bytes with the same options are the same photo: a hash of both."""
    options = json.dumps([colorizer.size, colorizer.temperature, colorizer.saturation]).encode()
    return hashlib.sha256(data + b"\0" + options).hexdigest()[:32]


def parse_hints_field(text: str | None) -> list[Hint]:
    """A ``hints`` query or form field (a JSON list) -> hints; :class:`ApiError` 422 ``bad_hints`` if invalid."""
    if not text:
        return []
    try:
        hints = hints_from_json(json.loads(text))
    except (json.JSONDecodeError, ValueError) as e:
        raise ApiError(422, "bad_hints", f"hints: {e}") from None
    if len(hints) > MAX_HINTS:
        raise ApiError(422, "bad_hints", f"at most {MAX_HINTS} hints, got {len(hints)}")
    return hints


def analyze_upload(colorizer: Colorizer, img: Image.Image, name: str, pid: str) -> Photo:
    """Decode an opened upload, classify its colors and run the network once (on a worker thread); with a
    classification model the confidence is measured in the same pass."""
    source_format, frames = img.format, getattr(img, "n_frames", 1)
    rgb = decode_upload(img, name, keep_16bit=True)  # a 16-bit master (PNG or TIFF) is answered in 16 bits
    deep = rgb.mode == "I;16"
    tone = classify(rgb)
    tint = hints_from_tint(rgb) if tone.kind == "color" else []
    with_confidence = colorizer.has_confidence
    prediction = colorizer.analyze(np.asarray(rgb) if deep else rgb, confidence=with_confidence)
    return Photo(pid, prediction, source_format, name, tone, colorizer, tint, frames, rgb.info, deep)


def render_photo(photo: Photo, hints: list[Hint], *, tint_as_hints: bool = False) -> tuple[bytes, str, str]:
    """Render a kept photo with hints and encode it (runs on a worker thread). Hints outside the photo: 422."""
    if tint_as_hints:
        hints = list(photo.tint or []) + hints
    try:
        colorizer = photo.colorizer
        img = (colorizer.render_uint16 if photo.deep else colorizer.render)(photo.prediction, hints=hints)
    except ValueError as e:
        raise ApiError(422, "bad_hints", str(e)) from None
    return encode_image(img, photo.source_format, photo.metadata)


def confidence_png(photo: Photo) -> bytes:
    if photo.prediction.confidence is None:
        raise ApiError(422, "no_confidence", f"the model {photo.colorizer.model_name} predicts colors directly; "
                       "confidence needs a classification (bins) model")
    buf = io.BytesIO()
    photo.colorizer.confidence_image(photo.prediction).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def check_origin(request: Request) -> None:
    """Refuse (403) a browser request sent by another site's page: its Origin names a host other than
    this server's. Clients that send no Origin (curl, scripts) are let through; the host alone is
    compared, so a TLS-terminating proxy in front does not matter as long as it passes the Host header on
    (nginx's default sends its upstream's address instead, and every upload from the page would be refused)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise ApiError(403, "cross_origin", f"requests from pages at {origin} are refused; use this server's own page")


def with_options(base: Colorizer, *, size: int | None, temperature: float | None,
                 saturation: float | None) -> Colorizer:
    """A shallow copy of ``base`` (sharing its model) with per-request options; the base is never changed."""
    if size is not None and size < base.stride:
        raise ApiError(422, "bad_option", f"size must be >= {base.stride} for this model, got {size}")
    colorizer = copy.copy(base)
    colorizer.size = size if size is not None else base.size
    colorizer.temperature = temperature if temperature is not None else base.temperature
    colorizer.saturation = saturation if saturation is not None else base.saturation
    return colorizer


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


UPLOAD_BODY = {  # the request body, described for /docs (the route reads it itself to bound its size)
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
ERRORS = {status: {"model": ErrorBody, "description": text} for status, text in [
    (403, "sent by another site's page (its Origin is not this server), or to a host name not allowed"),
    (413, "upload too large, or too many pixels"), (415, "not an image"),
    (422, "corrupt or truncated image, or a bad option"), (503, "queue full; see Retry-After")]}


class RevalidatedFiles(StaticFiles):
    """Static files a browser checks again on each use (``no-cache``: a 304 by ETag when unchanged), as the
    page itself is: without it a browser may keep an old app.js for days by its own guess, and run it
    with an upgraded page."""

    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update({"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
        return response


def docs_assets_dir() -> Path:
    """Swagger UI and Redoc, as the PyPI package ``fastapi-offline`` ships them (the ``web`` extra)."""
    try:
        import fastapi_offline
    except ImportError:
        raise ImportError("the API docs need the package fastapi-offline: pip install 'colorize[web]'") from None
    directory = Path(fastapi_offline.__file__).resolve().parent / "static"
    needed = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
    missing = [f for f in needed if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(f"fastapi-offline {directory} lacks {', '.join(missing)}")
    return directory


# -- the app -------------------------------------------------------------------------------------
def create_app(
    colorizer: Colorizer | str | Path | nn.Module | None = None,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
    queue_size: int = 8,
    cache_mb: float = DEFAULT_CACHE_MB,
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """The colorize web app.

    Args:
        colorizer: a ready :class:`Colorizer`, or what ``Colorizer(model)`` accepts (loaded once, here).
        max_upload_mb: largest upload accepted (413 beyond).
        max_pixels: largest image accepted, judged from its header before decoding (413 beyond).
        workers: inference threads.
        queue_size: photos allowed to wait beyond those running (503 with Retry-After beyond).
        cache_mb: memory for kept predictions (re-rendering with hints skips the network); least
            recently used photos are forgotten first (404 ``unknown_photo``: upload again).
        allowed_hosts: answer only requests addressed to loopback (localhost, 127.0.0.1, [::1]) or to these
            names (403 beyond; :class:`KnownHosts`, against DNS rebinding); None: to any name.
    Returns:
        A FastAPI app; run it with uvicorn. Its lifespan shuts the pool down.
    """
    if max_upload_mb <= 0:
        raise ValueError(f"max_upload_mb must be > 0, got {max_upload_mb}")
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be > 0, got {max_pixels}")
    base = colorizer if isinstance(colorizer, Colorizer) else Colorizer(colorizer)
    pool = WorkerPool(workers, queue_size)
    max_bytes = int(max_upload_mb * 2**20)
    cache = PhotoCache(int(cache_mb * 2**20))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.shutdown()

    app = FastAPI(title="colorize", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Colorize black-and-white photos. The page at / and these docs work offline.")
    app.state.colorizer, app.state.pool, app.state.photos = base, pool, cache
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    if allowed_hosts is not None:
        app.add_middleware(KnownHosts, names=allowed_hosts)  # added last: runs first

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(UploadRejected)
    async def upload_rejected(_: Request, exc: UploadRejected) -> JSONResponse:
        return _error(exc.status, exc.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_option(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        hints = all(tuple(e["loc"][:2]) == ("body", "hints") for e in exc.errors())  # a render's hints
        return _error(422, "bad_hints" if hints else "bad_option", detail)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return _error(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, _: ClientDisconnect) -> Response:  # nobody reads the answer
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        logger.info("%s disconnected during its upload to %s", client, request.url.path)
        return Response(status_code=499)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:  # the traceback goes to the log
        return _error(500, "internal_error", "the server failed on this photo; see its log")

    @app.get("/", include_in_schema=False)
    @app.head("/", include_in_schema=False)  # uptime monitors ask with HEAD
    @app.get("/static/index.html", include_in_schema=False)  # before the /static mount, with the same headers
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={
            "Content-Security-Policy": INDEX_CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    docs_headers = {"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"}

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "", title="colorize API", oauth2_redirect_url=None,
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url="data:,", swagger_ui_parameters={"validatorUrl": None})  # no online validator badge
        page.headers.update(docs_headers)
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url=app.openapi_url or "", title="colorize API",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js", redoc_favicon_url="data:,",
                              with_google_fonts=False)
        page.headers.update(docs_headers)
        return page

    @app.get("/healthz")
    @app.head("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        """Liveness and load: photos in flight against capacity."""
        return {"status": "ok", "model": base.model_name, "workers": pool.workers,
                "in_flight": pool.in_flight, "capacity": pool.capacity}

    @app.get("/api/models")
    async def models() -> dict[str, Any]:
        """The loaded model (one per server), the options a request may set, and the upload limits."""
        return {
            "models": [{"name": base.model_name, "loaded": True, "stride": base.stride,
                        "output": base.model.output}],
            "default": base.model_name,
            "options": {
                "size": {"default": base.size, "min": base.stride, "max": MAX_WORK_SIZE},
                "saturation": {"default": base.saturation, "min": 0.0, "max": 4.0},
                "temperature": {"default": base.temperature, "min": 0.01, "max": 4.0},
            },
            "limits": {"max_upload_bytes": max_bytes, "max_pixels": max_pixels},
            "formats": _accepted_formats(),  # Pillow's names; HEIF where the heif extra is installed
            "hints": {"max": MAX_HINTS},
            "confidence": base.has_confidence,
        }

    @app.post(UPLOAD_PATH, response_class=Response, openapi_extra={"requestBody": UPLOAD_BODY},
              responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}},
                               "description": "the colorized photo, original size; JPEG, PNG and WebP in their "
                                              "own format, anything else as PNG",
                               "headers": {
                                   INPUT_COLOR_HEADER: {
                                       "description": "the upload before colorizing: gray, toned (one tint, e.g. "
                                                      "sepia) or color (its colors were replaced)",
                                       "schema": {"type": "string", "enum": ["gray", "toned", "color"]}},
                                   FRAMES_HEADER: {
                                       "description": "frames (pages) in the upload; beyond 1, only the first was "
                                                      "colorized (a multi-page TIFF, an animated GIF)",
                                       "schema": {"type": "integer", "minimum": 1}}}},
                         **ERRORS})
    async def colorize(
        request: Request,
        size: int | None = Query(None, ge=1, le=MAX_WORK_SIZE, description="working size (long side, px)"),
        saturation: float | None = Query(None, ge=0, le=4, description="chroma multiplier"),
        temperature: float | None = Query(None, gt=0, le=4, description="annealed-mean temperature"),
        hints: str | None = Query(None, description='color hints: a JSON list of {"x", "y", "color", "radius"?} '
                                  "in the photo's pixels (or a multipart field 'hints')"),
        tint_as_hints: bool = Query(False, description="use a hand-tinted photo's own colors as hints"),
        output: str = Query("photo", pattern="^(photo|confidence)$",
                            description="photo, or confidence: the 8-bit confidence map (PNG, 255 = sure)"),
    ) -> Response:
        """Colorize one photo sent as multipart field ``file`` or as the raw body.

        The prediction is kept (header ``X-Photo-Id``): ``POST /api/photos/{id}/render`` re-renders it with
        other hints without running the network. ``X-Input-Color`` says whether the upload was gray, toned
        or already in color (:func:`colorize.tone.classify`); ``X-Frames`` how many frames (pages) it had, of
        which only the first is colorized."""
        check_origin(request)
        job = with_options(base, size=size, temperature=temperature, saturation=saturation)
        fields = {"hints": ""}
        data, name = await read_upload(request, max_bytes, fields=fields)
        hint_list = parse_hints_field(fields["hints"] or hints)
        pid = photo_id(data, job)
        photo = cache.get(pid)
        img = open_upload(data, name, max_pixels=max_pixels) if photo is None else None

        def work() -> tuple[Photo, Colorized]:
            # the same bytes sent again (under another name, maybe): the kept prediction, under this name
            kept = replace(photo, name=name) if photo is not None else analyze_upload(job, img, name, pid)
            cache.put(kept)
            if output == "confidence":
                return kept, Colorized(confidence_png(kept), "image/png", ".png", kept.tone.kind)
            return kept, Colorized(*render_photo(kept, hint_list, tint_as_hints=tint_as_hints), kept.tone.kind)

        kept, result = await pool.submit(work)
        suffix = CONFIDENCE_SUFFIX if output == "confidence" else COLOR_SUFFIX
        return Response(result.body, media_type=result.media_type, headers={
            "Content-Disposition": content_disposition(name, result.ext, suffix=suffix),
            INPUT_COLOR_HEADER: result.input_color, FRAMES_HEADER: str(kept.frames),
            "X-Content-Type-Options": "nosniff", "X-Photo-Id": kept.id,
            "Access-Control-Expose-Headers": f"X-Photo-Id, {INPUT_COLOR_HEADER}, {FRAMES_HEADER}"})

    def kept_photo(photo_id: str) -> Photo:
        photo = cache.get(photo_id)
        if photo is None:
            raise ApiError(404, "unknown_photo", "no kept photo with this id (the server forgets photos, least "
                           "recently used first, and when it restarts); send it to /api/colorize again")
        return photo

    @app.get("/api/photos/{photo_id}", responses={404: ERRORS[422] | {"description": "unknown or forgotten photo"}})
    async def photo_info(photo_id: str) -> dict[str, Any]:
        """A kept photo: size, frames (pages; only the first is colorized), whether it was gray, toned or in
        color (with the statistics), a hand-tinted photo's own colors as hints, and whether a confidence map
        is available."""
        photo = kept_photo(photo_id)
        width, height = photo.prediction.size
        return {"id": photo.id, "name": photo.name, "width": width, "height": height, "frames": photo.frames,
                "tone": photo.tone.to_json(), "tint_hints": hints_to_json(photo.tint or []),
                "confidence": photo.prediction.confidence is not None}

    @app.post("/api/photos/{photo_id}/render", response_class=Response,
              responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}},
                               "description": "the photo rendered with the hints; in the upload's format as "
                                              "/api/colorize answers"},
                         404: {"model": ErrorBody, "description": "unknown or forgotten photo"}, **ERRORS})
    async def render(request: Request, photo_id: str, body: RenderRequest | None = Body(None)) -> Response:
        """Re-render a kept photo with new hints, without running the network (the page's pins)."""
        check_origin(request)
        photo = kept_photo(photo_id)
        body = body or RenderRequest()
        if len(body.hints) > MAX_HINTS:
            raise ApiError(422, "bad_hints", f"at most {MAX_HINTS} hints, got {len(body.hints)}")
        try:
            hint_list = as_hints([h.model_dump(exclude_none=True) for h in body.hints])
        except ValueError as e:
            raise ApiError(422, "bad_hints", f"hints: {e}") from None
        data, media_type, ext = await pool.submit(
            lambda: render_photo(photo, hint_list, tint_as_hints=body.tint_as_hints))
        return Response(data, media_type=media_type, headers={
            "Content-Disposition": content_disposition(photo.name, ext),
            "X-Content-Type-Options": "nosniff", "X-Photo-Id": photo.id})

    @app.get("/api/photos/{photo_id}/confidence", response_class=Response,
             responses={200: {"content": {"image/png": {}}, "description": "8-bit confidence map, 255 = sure"},
                        404: {"model": ErrorBody, "description": "unknown or forgotten photo"}})
    async def confidence(photo_id: str) -> Response:
        """How sure the network is at each pixel, full size (where a hint would help most: the dark parts)."""
        photo = kept_photo(photo_id)
        data = await pool.submit(lambda: confidence_png(photo))
        return Response(data, media_type="image/png", headers={
            "Content-Disposition": content_disposition(photo.name, ".png", suffix=CONFIDENCE_SUFFIX),
            "X-Content-Type-Options": "nosniff"})

    app.mount("/static", RevalidatedFiles(directory=STATIC_DIR), name="static")
    app.mount(DOCS_ASSETS, RevalidatedFiles(directory=docs_assets_dir()), name="docs-assets")
    return app
