"""Reading and writing photos and files: the one place that decodes a photo and writes a file.

- :func:`load_image` decodes a photo from a path or its bytes to 8-bit sRGB with EXIF orientation
  applied (:func:`to_rgb`: CMYK, palette, 16-bit, float, alpha and gray made 8-bit RGB; :func:`to_srgb`:
  an embedded ICC profile's colors made sRGB; the engines' :func:`load_input` keeps 8-bit gray as it is,
  16-bit gray too for an output that holds 16 bits (:func:`gray16`), and what the output keeps of the
  metadata, :func:`colorize.metadata.kept_metadata`); an unreadable,
  truncated, degenerate or oversized file raises :class:`ImageError` naming the file and the reason.
- :func:`save_image` writes a photo (a PIL image, or a 16-bit RGB array as PNG or TIFF), checked to be whole,
  through :func:`atomic_write` (temp file, fsync, rename) or :class:`AtomicFile` for writers that need a path held
  open (video, tar shards).
"""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError

from colorize.metadata import append_sub_ifds, kept_metadata, png16_chunks, save_options, tiff16_tags

MIN_SIDE = 8  # smaller images carry no usable content
# The one limit on a photo's pixels (decompression-bomb guard): ~14,000 x 14,000, a 600 dpi scan of a
# 23 x 23 inch print. Pillow's own guard is raised to it, so every file past it gets the same message.
MAX_PIXELS = 200_000_000
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow warns above it and refuses above twice it
# a film named where a photo is expected is told apart from a bad photo: `colorize video` is its command
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts",
                    ".m2ts", ".3gp", ".ogv", ".h264")
NOT_A_PHOTO = "a video, not a photo: colorize it with `colorize video`"  # why such a file, named as a photo, is refused


class Notice(UserWarning):
    """A message for the user, not for a developer: the command line shows it as one line, ``warning: ...``,
    with no source file or line of code (``colorize.cli``); ``label`` is that line's first word."""

    label = "warning"


class ImageNote(Notice):
    """Something a user should know about a photo that was used anyway (only its first frame, ...)."""

    label = "note"


# The warnings module's filters and ``showwarning`` are process-wide, and ``catch_warnings`` swaps them on
# entry and back on exit: two threads inside it at once leave each other's state behind (one thread's
# notes in another's list, a filter that stays). So the photos' threads never swap them: they collect
# their notes through one hook set up before they start (:func:`notes_by_thread`), and the one swap they
# make (:func:`_open`) takes turns.
_collecting = threading.local()  # .notes: where this thread's ImageNotes go, inside collect_notes()
_routing = False  # whether notes_by_thread() is in place
_swapping = threading.Lock()


@contextmanager
def notes_by_thread() -> Iterator[None]:
    """While inside, an :class:`ImageNote` warned by a thread that is inside :func:`collect_notes` goes to that
    thread's list; other warnings go where they went. Enter it before starting the threads that collect."""
    global _routing
    with warnings.catch_warnings():
        warnings.simplefilter("always", ImageNote)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            notes = getattr(_collecting, "notes", None)
            if notes is None or not issubclass(category, ImageNote):
                return shown(message, category, filename, lineno, file, line)
            notes.append(str(message))

        warnings.showwarning = show
        before, _routing = _routing, True
        try:
            yield
        finally:
            _routing = before


@contextmanager
def collect_notes() -> Iterator[list[str]]:
    """The :class:`ImageNote` messages this thread warns while inside (others' go to their own lists). Safe
    on many threads at once within :func:`notes_by_thread`; without it, this sets it up (one thread at a time)."""
    notes: list[str] = []
    _collecting.notes = notes
    try:
        with nullcontext() if _routing else notes_by_thread():
            yield notes
    finally:
        _collecting.notes = None


class ImageError(ValueError):
    """A file that cannot be used as a photo; ``str(e)`` names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


# -- reading photos ------------------------------------------------------------------------------
def transparency(img: Image.Image) -> Image.Image | None:
    """The alpha channel (mode L) of a photo with transparent or translucent pixels, else None (an alpha channel
    that is opaque all over included)."""
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        alpha = img.getchannel("A")
    elif img.mode == "PA" or "transparency" in img.info:  # a palette's or a gray/RGB value's transparency
        alpha = img.convert("RGBA").getchannel("A")
    else:
        return None
    return None if alpha.getextrema() == (255, 255) else alpha


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if img.mode == "F" and top <= 1.0:  # float data in 0..1 (scientific and HDR-tool TIFFs)
            hi = 1.0
        else:
            hi = 65535.0 if img.mode.startswith("I;16") or top > 255 else 255.0
        return Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img).convert("RGB")
    if img.mode == "RGB":
        return img
    return img.convert("RGB")  # L, 1, CMYK (PIL inverts Adobe CMYK), YCbCr, LAB, HSV


_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")  # what an ICC profile's space can describe
_RGB_MODES = ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA")


def _embedded_profile(img: Image.Image) -> "ImageCms.ImageCmsProfile | None":
    """The ICC profile ``img`` carries, unless it is none, unreadable (the pixels are taken as sRGB, as
    untagged ones are) or sRGB itself (nothing to convert)."""
    data = img.info.get("icc_profile")
    if not data:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(data))
        description = ImageCms.getProfileDescription(profile)
    except (OSError, ImageCms.PyCMSError, TypeError, ValueError):
        return None
    return None if "srgb" in description.lower() else profile


def _icc_tags(profile: bytes) -> dict[bytes, bytes]:
    """An ICC profile's tags by signature (its tag table, after the 128-byte header, names their offsets and sizes)."""
    count = int.from_bytes(profile[128:132], "big")
    entries = (profile[132 + 12 * i:144 + 12 * i] for i in range(count))
    return {e[:4]: profile[int.from_bytes(e[4:8], "big"):][:int.from_bytes(e[8:12], "big")] for e in entries}


@functools.cache
def _srgb_gray() -> "ImageCms.ImageCmsProfile":
    """A gray ICC profile with sRGB's tone curve (LittleCMS's own sRGB profile's, with its white and description):
    what a tagged 16-bit gray scan is converted to, in 16 bits, where Pillow converts 16-bit gray only to gray. Its
    levels are those of the sRGB gray that :func:`to_srgb` gives an 8-bit scan, in 16 bits."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tags = _icc_tags(srgb)
    tags = {b"desc": tags[b"desc"], b"wtpt": tags[b"wtpt"], b"kTRC": tags[b"rTRC"]}
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags.items():
        body += bytes(-len(body) % 4)
        table += sig + (start + len(data)).to_bytes(4, "big") + len(body).to_bytes(4, "big")
        data += body
    header = bytearray(srgb[:128])
    header[0:4] = (start + len(data)).to_bytes(4, "big")
    header[16:20] = b"GRAY"
    header[84:100] = bytes(16)  # the profile ID: an MD5 of the sRGB profile's bytes, not of these
    return ImageCms.ImageCmsProfile(io.BytesIO(bytes(header) + len(tags).to_bytes(4, "big") + table + data))


def to_srgb(img: Image.Image, *, keep_gray: bool = False) -> Image.Image:
    """Any PIL mode -> 8-bit sRGB (:func:`to_rgb`; :func:`to_8bit` with ``keep_gray``), the colors an embedded
    ICC profile describes converted to sRGB (LittleCMS): what the network and every viewer take untagged pixels
    for. A gray scan in Photoshop's *Dot Gain 20%*, or linear gray, is as light as it looked; an Adobe RGB or
    CMYK photo keeps its colors. Without a profile, or with an sRGB one, the pixels are used as they are."""
    profile = _embedded_profile(img)
    space = profile.profile.xcolor_space.strip() if profile is not None else ""
    srgb = ImageCms.createProfile("sRGB") if space else None
    if space == "CMYK" and img.mode == "CMYK":
        try:
            return ImageCms.profileToProfile(img, profile, srgb, outputMode="RGB")
        except ImageCms.PyCMSError:  # a profile LittleCMS cannot apply: the pixels as they are, as before
            pass
    out = to_8bit(img) if keep_gray else to_rgb(img)
    try:
        if space == "GRAY" and img.mode in _GRAY_MODES:  # made L or RGB: its gray through the profile
            color = ImageCms.profileToProfile(out if out.mode == "L" else out.convert("L"), profile, srgb,
                                              outputMode="RGB")
            return color.convert("L") if out.mode == "L" else color
        if space == "RGB" and img.mode in _RGB_MODES:
            return ImageCms.profileToProfile(out, profile, srgb, outputMode="RGB")
    except ImageCms.PyCMSError:
        pass
    return out


ARRAY_SHAPES = "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
# float pixels past [0, 1] by less than this (rounding, a resampling's overshoot) are clipped; further out, the
# array does not hold 0..1 values (0..255 ones clipped to 1 would give a white photo), and is refused
UNIT_SLACK = 0.5 / 255


def check_unit_range(low: float, high: float, what: str) -> None:
    """ValueError unless float pixels from ``low`` to ``high`` are 0..1 values (within :data:`UNIT_SLACK`; NaN never)."""
    if not (-UNIT_SLACK <= low and high <= 1 + UNIT_SLACK):
        hint = ": 0..255 values? divide by 255" if high > 1 + UNIT_SLACK else ""
        raise ValueError(f"{what} pixels must be in [0, 1], got values from {low:g} to {high:g}{hint}")


def photo_array(arr: np.ndarray) -> tuple[np.ndarray, float]:
    """A photo given as a numpy array, as both engines take it: (H, W) gray or (H, W, 3) RGB, a view (an (H, W, 1)
    array is gray; of (H, W, 4), the 4th channel, alpha, is left out), and the value of white in it: 255 for
    uint8, 65535 for uint16, 1.0 for floats (which must be in [0, 1]: :func:`check_unit_range`).

    Raises:
        ValueError: another shape, no pixels, float values outside [0, 1] (NaN included).
        TypeError: another dtype (an int64 array of 0..255, scaled by its type's range, would be black).
    """
    if arr.ndim == 3 and arr.shape[2] == 1:
        pixels = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        pixels = arr[:, :, :3]
    elif arr.ndim == 2:
        pixels = arr
    else:
        raise ValueError(f"expected an array of shape {ARRAY_SHAPES}, got {arr.shape}")
    if pixels.size == 0:
        raise ValueError(f"the array has no pixels: shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize <= 2:  # uint8, uint16 in either byte order
        return pixels, float(np.iinfo(arr.dtype).max)
    if np.issubdtype(arr.dtype, np.floating):
        check_unit_range(float(pixels.min()), float(pixels.max()), f"{arr.dtype} array")
        return pixels, 1.0
    raise TypeError(f"{arr.dtype} arrays are not read as photos: give uint8 (0..255), uint16 (0..65535) or float "
                    "(0..1) pixels, e.g. arr.astype(np.uint8)")


def is_gray16(arr: np.ndarray) -> bool:
    """Whether an array is a 16-bit gray photo (a master scan): (H, W) or (H, W, 1) uint16, in either byte order."""
    return arr.dtype.kind == "u" and arr.dtype.itemsize == 2 and (arr.ndim == 2 or arr.ndim == 3 and arr.shape[2] == 1)


def upright(img: Image.Image) -> Image.Image:
    """``img`` with its EXIF orientation applied (:func:`PIL.ImageOps.exif_transpose`), or ``img`` itself when
    there is none to apply (Pillow would copy it: 96 MB for a 24-megapixel photo)."""
    if img.getexif().get(ExifTags.Base.Orientation, 1) in range(2, 9):
        return ImageOps.exif_transpose(img)
    return img


def to_8bit(img: Image.Image) -> Image.Image:
    """8-bit gray (mode L) as it is: a third of the memory of RGB, and its lightness is one table lookup;
    anything else -> :func:`to_rgb`."""
    return img if img.mode == "L" else to_rgb(img)


GRAY16_MODES = ("I;16", "I;16B", "I;16L", "I")  # 16-bit gray as Pillow opens it (I: a 32-bit mode some readers use)
DEEP_FORMATS = ("PNG", "TIFF")  # the output formats that hold 16 bits a channel (JPEG, WebP, BMP, GIF: 8)
BITS = "bits"  # an engine input's ``info`` key: 16 for a photo whose file held 16-bit gray (kept or not)


def gray16(img: Image.Image) -> Image.Image | None:
    """A 16-bit gray photo (an archive's master scan) as mode ``I;16`` (0..65535, read as an (H, W) uint16 array),
    or None for any other: modes ``I;16``, ``I;16B``, ``I;16L``, and ``I`` whose values go past 255 (as
    :func:`to_rgb` tells 16-bit from 8-bit values in it; values outside 0..65535 are clipped)."""
    if img.mode not in GRAY16_MODES:
        return None
    if img.mode == "I;16":
        return img
    levels = np.asarray(img)
    if img.mode == "I" and (levels.size == 0 or int(levels.max()) <= 255):
        return None  # 8-bit values in a 32-bit mode: read as 8-bit, as to_rgb reads them
    return Image.fromarray(np.clip(levels, 0, 65535).astype(np.uint16) if img.mode == "I" else levels.astype(np.uint16))


def _gray16_to_srgb(img: Image.Image, profile: "ImageCms.ImageCmsProfile | None") -> Image.Image | None:
    """16-bit gray (mode I;16) in sRGB, as :func:`to_srgb` makes 8-bit gray: a gray ICC profile applied by LittleCMS
    in 16 bits; a profile of another space (RGB, CMYK) is no gray's, and ignored, as :func:`to_srgb` does. None
    when LittleCMS cannot apply it (read in 8 bits then)."""
    if profile is None or profile.profile.xcolor_space.strip() != "GRAY":
        return img
    try:
        return ImageCms.profileToProfile(img, profile, _srgb_gray(), outputMode="I;16")
    except ImageCms.PyCMSError:
        return None


def _too_many_pixels(width: int | None = None, height: int | None = None) -> str:
    size = f"{width}x{height} = {width * height:,} pixels" if width else "more pixels than that"
    return (f"too large: {size}; the limit is {MAX_PIXELS:,} pixels (about 14,000 x 14,000); "
            "scale it down first")


HEIF_PLUGIN = "pillow_heif"  # HEIC/HEIF (phones' photos): the `heif` extra's Pillow plugin


@functools.cache
def with_plugins() -> bool:
    """Register the Pillow openers of the installed plugins (HEIC and HEIF by pillow-heif, the ``heif`` extra), once;
    whether there are any. Importing pillow-heif costs ~35 ms, which a run of JPEGs need not pay: :func:`_open` calls
    this for a file Pillow alone does not know."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _open(source) -> Image.Image:
    """``Image.open`` without Pillow's warning for sizes between MAX_PIXELS and twice it: the check
    right after opening refuses them with the one message; a format Pillow does not know is tried again with the
    installed plugins (:func:`with_plugins`). Threads take turns (see :func:`notes_by_thread`): opening reads the
    header only."""
    with _swapping, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(source)
        except UnidentifiedImageError:
            if not with_plugins():
                raise
            if hasattr(source, "seek"):
                source.seek(0)
            return Image.open(source)


def load_image(path: str | Path, *, data: bytes | None = None, keep_gray: bool = False, keep_16bit: bool = False,
               metadata: bool = False) -> Image.Image:
    """Open a photo as 8-bit RGB with EXIF orientation applied. Raises :class:`ImageError`.

    ``data``: the file's bytes (e.g. a member of a tar shard); ``path`` then only names it in errors.
    ``keep_gray``: 8-bit gray stays as it is (:func:`to_8bit`).
    ``keep_16bit``: 16-bit gray stays 16-bit, as mode ``I;16`` (:func:`gray16`), its gray ICC profile (other than
    sRGB's) applied in 16 bits (:func:`_srgb_gray`); should LittleCMS refuse that, read in 8 bits, as before.
    ``metadata``: the image's ``info`` is what its colorized version keeps (:func:`kept_metadata`, and the
    ``alpha`` of :func:`transparency`: the image itself is composited onto white).
    """
    try:
        with _open(Path(path) if data is None else io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(path, _too_many_pixels(img.width, img.height))
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                warnings.warn(ImageNote(f"{path}: has {frames} frames (pages); only the first is colorized"),
                              stacklevel=2)
            rgb = _decoded(img, keep_gray=keep_gray, keep_16bit=keep_16bit, metadata=metadata)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image") from None
    except PermissionError:
        raise ImageError(path, "cannot read it (permission denied)") from None
    except UnidentifiedImageError:
        if os.path.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS:  # a path, or a photo in a tar shard
            raise ImageError(path, NOT_A_PHOTO) from None
        if (len(data) if data is not None else _size(path)) == 0:  # a copy or download that never finished
            raise ImageError(path, "empty file (0 bytes)") from None
        raise ImageError(path, "not an image file (unrecognized format)") from None
    except Image.DecompressionBombError:  # Pillow refused it while opening: past twice MAX_PIXELS
        raise ImageError(path, _too_many_pixels()) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(path, decode_failure(e)) from None
    check_size(rgb, path)
    return rgb


def _size(path) -> int | None:
    """A file's size in bytes, None where it cannot be told."""
    try:
        return os.path.getsize(path)
    except (OSError, TypeError):
        return None


def load_input(src, *, keep_16bit: bool = False) -> tuple[Image.Image, bytes | None]:
    """A job's input photo, for both engines' ``colorize_file``: a file (a path), or a photo inside a tar
    shard (:class:`colorize.shards.ShardMember`, read by seeking to it). Returns the image as
    :func:`load_image` does, 8-bit gray kept gray (a third of the memory of RGB, and its lightness is one
    table lookup), 16-bit gray kept 16-bit (mode ``I;16``) with ``keep_16bit`` (for an output that holds it:
    :func:`holds_16bit`), its ``info`` what an output keeps (:func:`kept_metadata`, the alpha; ``bits``: 16 for a
    16-bit gray file, kept or not), and the shard member's bytes (None for a file) for :func:`pass_through`.
    Raises :class:`ImageError` naming it."""
    from colorize.shards import ShardMember

    data = src.read_bytes() if isinstance(src, ShardMember) else None
    return load_image(src, data=data, keep_gray=True, keep_16bit=keep_16bit, metadata=True), data


def holds_16bit(dst: str | Path) -> bool:
    """Whether an output file named ``dst`` is in a format that holds 16 bits a channel (PNG, TIFF)."""
    return format_of(Path(dst).suffix) in DEEP_FORMATS


def written_in_8bits(img: Image.Image, dst: str | Path) -> str:
    """Why a photo read by :func:`load_input` for ``dst`` is written in 8 bits though its file held 16 (``format``:
    ``dst``'s format holds 8; ``profile``: its ICC profile is applied in 8 bits), "" when it was not 16-bit or
    keeps its 16 bits."""
    if img.info.get(BITS) != 16 or img.mode == "I;16":
        return ""
    return "profile" if holds_16bit(dst) else "format"


def decode(img: Image.Image, name: str | Path, *, keep_16bit: bool = False, metadata: bool = False) -> Image.Image:
    """An opened image (e.g. identified from its header alone) decoded to 8-bit RGB with EXIF orientation
    applied, then closed, as :func:`load_image` does for files, with the same ``keep_16bit`` and ``metadata``.
    Raises :class:`ImageError` (naming ``name``) for truncated, corrupt or too small images."""
    try:
        with img:
            rgb = _decoded(img, keep_16bit=keep_16bit, metadata=metadata)
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(name, decode_failure(e)) from None
    check_size(rgb, name)
    return rgb


def _decoded(img: Image.Image, *, keep_gray: bool = False, keep_16bit: bool = False,
             metadata: bool = False) -> Image.Image:
    """:func:`load_image`'s and :func:`decode`'s work on an opened image: loaded, turned upright, in sRGB, 8-bit
    (16-bit gray kept with ``keep_16bit``), its ``info`` what a colorized version keeps with ``metadata``: the
    metadata (:func:`kept_metadata`), the ``alpha`` (:func:`transparency`: the image itself is composited onto
    white) and, for a 16-bit gray file, ``BITS``."""
    img.load()
    up = upright(img)
    kept = None
    if metadata:
        kept = kept_metadata(img)
        if (alpha := transparency(up)) is not None:
            kept["alpha"] = alpha
    deep = gray16(up) if keep_16bit or metadata else None
    if deep is not None and metadata:
        kept[BITS] = 16
    if deep is not None and keep_16bit:
        deep = _gray16_to_srgb(deep, _embedded_profile(up))  # None: LittleCMS refused its profile
    rgb = deep if deep is not None and keep_16bit else to_srgb(up, keep_gray=keep_gray)
    if kept is not None:
        rgb.info = kept
    return rgb


def decode_failure(e: BaseException) -> str:
    """Why Pillow could not decode an image, as an :class:`ImageError` reason."""
    broken = "truncated" in str(e).lower() or "broken" in str(e).lower()  # Pillow's words for cut-short data
    return "truncated or corrupt image data" if broken else f"cannot decode image ({e})"


def check_size(rgb: Image.Image, name: str | Path) -> None:
    """Raise :class:`ImageError` for an image under :data:`MIN_SIDE` pixels on a side."""
    if min(rgb.size) < MIN_SIDE:
        raise ImageError(name, f"too small ({rgb.width}x{rgb.height}; need at least {MIN_SIDE} px per side)")


# -- writing files -------------------------------------------------------------------------------
def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


TEMP_SUFFIX = ".tmp"
STALE_SECONDS = 60.0  # a temporary of ours untouched this long was left by a killed run
# what AtomicFile's mkstemp makes; a video's temporary ends in its extension too (FFmpeg picks the container by it)
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


class AtomicFile:
    """A hidden temporary beside ``path`` that becomes ``path`` only when complete: readers never see a
    half-written file, and a full disk is an error here rather than a short file later.

    ``with AtomicFile(path) as tmp:`` writes at ``tmp``; leaving the block normally commits (flush to
    disk, usual permissions, rename onto ``path``), an exception (KeyboardInterrupt included) removes
    the temporary. Writers that span several calls (tar shards) call :meth:`commit` / :meth:`discard`.
    ``suffix`` ends the temporary's name (a video writer picks its container from the extension).
    """

    def __init__(self, path: str | Path, *, suffix: str = ""):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX + suffix)
        os.close(fd)
        self.tmp = Path(tmp)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard(error)

    def commit(self) -> None:
        """Flush the temporary to disk and rename it onto ``path``."""
        try:
            with open(self.tmp, "rb+") as f:
                os.fsync(f.fileno())  # the data is on disk before the name points at it
            os.chmod(self.tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
            os.replace(self.tmp, self.path)
        except BaseException as e:
            self.discard(e)
            raise
        _fsync_dir(self.path.parent)

    def discard(self, error: BaseException | None = None) -> None:
        """Remove the temporary; an OSError that caused it gets ``path`` as its file name."""
        self.tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None and error.errno is not None:
            error.filename = str(self.path)  # "[Errno 28] No space left on device: 'runs/x/last.pt'"; an OSError
            # without an errno (an encoder's) keeps its own words, which a file name would turn into "[Errno None] None"


def atomic_write(path: str | Path, write, *, verify=None) -> None:
    """Call ``write(tmp_path)``, check it, flush it to disk, then rename onto ``path`` (:class:`AtomicFile`).

    Args:
        write: writes the file at the temporary path it is given (a ``str``).
        verify: optional ``verify(tmp_path)`` that raises if the written file is incomplete (some
            writers, Pillow's BMP and TIFF among them, do not notice a short write).
    """
    with AtomicFile(path) as tmp:
        write(str(tmp))
        if verify is not None:
            verify(str(tmp))


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_stale_temporaries(folder: str | Path, *, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove the hidden temporaries :class:`AtomicFile` leaves when its process is killed (``kill -9``,
    power loss): ``.NAME.XXXXXXXX.tmp`` (or ``.tmp.EXT``) files in ``folder`` untouched for ``older_than`` seconds (a
    younger one may belong to a run still writing it). Other files are never touched.
    Returns the removed paths."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for entry in folder.iterdir():
        if not _TEMP_NAME.match(entry.name):
            continue
        try:
            if entry.is_file() and not entry.is_symlink() and now - entry.stat().st_mtime >= older_than:
                entry.unlink()
                removed.append(entry)
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed


_LOSSY = ("JPEG", "WEBP", "AVIF", "HEIF")  # formats written at a --quality (HEIF: with the heif extra)
_WITH_ALPHA = ("PNG", "WEBP", "TIFF")  # formats that keep a photo's transparency (JPEG and BMP: on white)
_LONGEST_SIDE = {"JPEG": 65_500, "WEBP": 16_383}  # what the formats' encoders can write (libjpeg, libwebp)


def format_of(suffix: str) -> str | None:
    """Pillow's format for a file extension (``.jpg``, ``.JPEG`` and ``.jfif``: JPEG), None for one it does not
    know."""
    return Image.registered_extensions().get(suffix.lower())


def save_image(img: Image.Image | np.ndarray, dst: str | Path, *, quality: int = 95,
               metadata: dict | None = None) -> None:
    """Write atomically (temp file + rename): a crash never leaves a half-written image.

    ``img``: a PIL image, or an (H, W, 3) uint16 RGB array (a 16-bit master's colorized version), written with 16
    bits a channel as PNG or TIFF (:func:`_save_16bit`) and brought to 8 bits for the other formats.
    ``metadata``: ``dpi``, ``exif``, ``xmp`` and ``iptc`` to write (:func:`kept_metadata`) and the ``alpha`` channel
    (:func:`transparency`) to put back, where the format holds them."""
    dst = Path(dst)
    fmt = format_of(dst.suffix)
    if fmt is None:
        raise ValueError(f"{dst}: unknown image extension '{dst.suffix}'")
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint16 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"save_image takes a PIL image or an (H, W, 3) uint16 array, got {img.dtype} {img.shape}")
        if fmt in DEEP_FORMATS:
            return _save_16bit(img, dst, fmt, metadata or {})
        img = Image.fromarray(((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8))  # nearest 8-bit level
    longest = _LONGEST_SIDE.get(fmt)
    if longest is not None and max(img.size) > longest:
        raise ValueError(f"{img.width}x{img.height} is too large for {dst.suffix} (at most {longest:,} pixels a side); "
                         "write it as PNG or TIFF (--format png)")
    img, options = prepared_for(img, fmt, quality=quality, metadata=metadata)
    atomic_write(dst, lambda tmp: img.save(tmp, format=fmt, **options),
                 verify=lambda tmp: verify_image(tmp, img.size))


def prepared_for(img: Image.Image, fmt: str, *, quality: int = 95, metadata: dict | None = None
                 ) -> tuple[Image.Image, dict]:
    """An 8-bit photo and Pillow's ``save`` options to write it as ``fmt`` (a Pillow format name) with what
    :func:`colorize.metadata.kept_metadata` kept of its source where the format holds it
    (:func:`colorize.metadata.save_options`), and the ``alpha`` put back (PNG, WebP, TIFF). :func:`save_image`
    writes files with it, the web app its answers."""
    metadata = metadata or {}
    options = {"quality": quality} if fmt in _LOSSY else {}
    options.update(save_options(fmt, metadata))
    alpha = metadata.get("alpha")
    if alpha is not None and fmt in _WITH_ALPHA and img.mode == "RGB" and alpha.size == img.size:
        img = Image.merge("RGBA", (*img.split(), alpha))
    return img, options


def _save_16bit(rgb: np.ndarray, dst: Path, fmt: str, metadata: dict) -> None:
    """Write (H, W, 3) uint16 sRGB as a 16-bit-per-channel PNG or TIFF, atomically and checked whole, keeping what
    :func:`save_image` keeps where the format holds it: the dpi, the EXIF (PNG: in an eXIf chunk; TIFF: its tags,
    the Exif and GPS IFDs appended), the XMP (and in TIFF the IPTC), the alpha (made 16-bit).

    Pillow writes no 16-bit RGB. tifffile (pure Python over numpy) writes the TIFF, uncompressed as Pillow's TIFFs
    are; pypng (one pure-Python module) the PNG, a row at a time through zlib at Pillow's level 6. A 6000x4000
    master colorized to PNG takes 4.5 s on one core against 1.7 s for its 8-bit version (light engine, end to end),
    nearly all of it zlib on twice the bytes: no native encoder (OpenCV: tens of MB) is worth adding to the light
    install for it.
    """
    height, width = rgb.shape[:2]
    if fmt == "TIFF":
        import tifffile

        dpi = metadata.get("dpi")
        rgba = _with_alpha16(rgb, metadata)

        def write(tmp: str) -> None:
            tifffile.imwrite(tmp, rgba, photometric="rgb", extrasamples=["unassalpha"] if rgba.shape[2] == 4 else None,
                             resolution=tuple(dpi) if dpi else None, resolutionunit="INCH" if dpi else None,
                             metadata=None, software=False, bigtiff=False, byteorder="<",
                             extratags=tiff16_tags(metadata))
            append_sub_ifds(tmp, metadata)
    else:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                write_png16(f, rgb, metadata)

    atomic_write(dst, write, verify=lambda tmp: verify_image(tmp, (width, height)))


def _with_alpha16(rgb: np.ndarray, metadata: dict) -> np.ndarray:
    """(H, W, 3) uint16 with the kept ``alpha`` (8-bit, made 16) as a fourth channel, when there is one."""
    alpha = metadata.get("alpha")
    if alpha is not None and alpha.size == (rgb.shape[1], rgb.shape[0]):
        return np.dstack([rgb, np.asarray(alpha, np.uint16) * np.uint16(257)])
    return rgb


def write_png16(f, rgb: np.ndarray, metadata: dict, *, compression: int = 6) -> None:
    """(H, W, 3) uint16 sRGB as a 16-bit PNG into the binary file ``f`` (pypng, a row at a time through zlib at
    ``compression``), with what :func:`save_image` keeps: the dpi, the EXIF (an eXIf chunk), the XMP, the alpha.
    :func:`save_image` writes files with it, the web app its answers for 16-bit masters."""
    import png

    rgb = _with_alpha16(rgb, metadata)
    height, width, channels = rgb.shape
    dpi = metadata.get("dpi")

    class Writer(png.Writer):
        def write_preamble(self, outfile) -> None:  # IHDR, pHYs, ...; then the EXIF and XMP, before the pixels
            super().write_preamble(outfile)
            for kind, data in png16_chunks(metadata):
                png.write_chunk(outfile, kind, data)

    ppm = {"x_pixels_per_unit": round(dpi[0] / 0.0254), "y_pixels_per_unit": round(dpi[1] / 0.0254),
           "unit_is_meter": True} if dpi else {}
    writer = Writer(width, height, greyscale=False, alpha=channels == 4, bitdepth=16, compression=compression, **ppm)
    # rows packed big-endian, as PNG stores them: one row's copy at a time
    writer.write_packed(f, (row.astype(">u2").tobytes() for row in rgb.reshape(height, -1)))


def verify_image(path: str | Path, size: tuple[int, int]) -> None:
    """Check a just-written image is whole: raises :class:`OSError` if it is cut short or unreadable
    (Pillow's BMP and TIFF writers do not notice a short write on a full disk).

    JPEG, PNG, WebP and BMP are checked from their structure (end marker, recorded length: nothing is
    decoded, so a 24-megapixel JPEG costs no second decode); other formats are read back in full.
    """
    path = Path(path)
    try:
        with Image.open(path) as written:
            if written.size != tuple(size):
                raise ValueError(f"it reads back as {written.size[0]}x{written.size[1]}, not {size[0]}x{size[1]}")
            fmt = written.format
            if fmt not in _ENDS and fmt not in ("WEBP", "BMP"):
                written.load()
        length = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, length - 12))
            tail = f.read()
        if fmt in _ENDS and not tail.endswith(_ENDS[fmt]):
            raise ValueError(f"its {fmt} end marker is missing")
        recorded = {"WEBP": lambda: int.from_bytes(head[4:8], "little") + 8,
                    "BMP": lambda: int.from_bytes(head[2:6], "little")}.get(fmt)
        if recorded is not None and recorded() != length:
            raise ValueError(f"{length} bytes where its header records {recorded()}")
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error on a short file
        raise OSError(errno.EIO, f"the written image is incomplete ({e}); is the disk full?") from None


_ENDS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}  # the last bytes of a whole file


def pass_through(src, dst: str | Path, img: Image.Image, *, quality: int = 95, data: bytes | None = None) -> None:
    """Write a photo unchanged: its very bytes when ``dst`` is in ``src``'s format (``.jpeg`` to ``.jpg`` too), else
    ``img`` re-encoded.

    ``data``: the photo's bytes when ``src`` is not a file of its own (a photo in a tar shard, whose
    ``suffix`` is its extension); otherwise ``src`` is a path and the file is copied.
    """
    import shutil

    if data is None:
        src = Path(src)
    fmt = format_of(src.suffix)
    if fmt is not None and fmt == format_of(Path(dst).suffix):
        atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp) if data is None else Path(tmp).write_bytes(data))
    else:
        save_image(img, dst, quality=quality, metadata=img.info)
