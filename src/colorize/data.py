"""Finding photos (folders, file lists, globs) and datasets over them for training.

Every photo is read by :func:`colorize.io.load_image`: 8-bit RGB, or :class:`colorize.io.ImageError`
naming the file and the reason.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from colorize.io import HEIF_PLUGIN, VIDEO_EXTENSIONS, ImageError, Notice, load_image


def _pillow_reads(feature: str) -> bool:
    """Whether this Pillow has the optional format ``feature`` (AVIF: recent Pillows, built with libavif; JPEG
    2000: built with OpenJPEG)."""
    from PIL import features

    known = {**features.modules, **features.codecs, **features.features}  # an older Pillow may not know it
    return feature in known and bool(features.check(feature))


_AVIF = (".avif",) if _pillow_reads("avif") else ()
_JPEG_2000 = (".jp2", ".j2k", ".jpf", ".jpx") if _pillow_reads("jpg_2000") else ()  # digital archives' masters
HEIF_EXTENSIONS = (".heic", ".heif", ".hif")  # phones' photos: read when the `heif` extra is installed
_HEIF = HEIF_EXTENSIONS if importlib.util.find_spec(HEIF_PLUGIN) else ()  # found without importing it (io.with_plugins)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm",
                    ".pbm", ".pnm") + _AVIF + _JPEG_2000 + _HEIF
# photo formats we recognize but cannot read: reported by name instead of passed over
UNSUPPORTED_EXTENSIONS = tuple(ext for ext in (*HEIF_EXTENSIONS, ".avif", ".jxl", ".dng", ".cr2", ".cr3", ".nef",
                                               ".arw", ".raf", ".orf", ".rw2", ".psd") if ext not in IMAGE_EXTENSIONS)


def unsupported_format(path: Path) -> str | None:
    """Why ``path`` cannot be read, when its extension is a photo format we recognize but cannot read; else None."""
    ext = path.suffix.lower()
    if ext not in UNSUPPORTED_EXTENSIONS:
        return None
    if ext in HEIF_EXTENSIONS:
        return f"unsupported format ({ext}) without the heif extra: pip install 'colorize[heif]', or convert it to JPEG"
    return f"unsupported format ({ext}); convert it to JPEG, PNG or TIFF first"


# folders systems keep beside photos: a Synology NAS's thumbnails of each photo, a zip's macOS resource forks
SYSTEM_FOLDERS = ("@eaDir", "__MACOSX")


def scan_folder(root: str | Path, *, recursive: bool = True
                ) -> tuple[list[Path], list[tuple[Path, str]], list[Path]]:
    """The images under a folder, every entry that looks like one but cannot be used, with the reason, and the
    videos among the other files (``colorize video`` colorizes those: a run over the folder says it left them).

    Hidden entries (``.name``: macOS's ``._photo.jpg`` resource forks, thumbnail caches) and
    :data:`SYSTEM_FOLDERS` are not photos of the folder's and are passed over. Symlinks are followed (a link back into a folder already being walked is reported, not looped);
    broken links, links that loop, unreadable folders, folders named like an image with no image in
    them, and files of unsupported formats (HEIC, AVIF, raw, ...) each give one ``(path, reason)``.
    Returns:
        (sorted image files, [(path, reason), ...], sorted videos)
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    videos: list[Path] = []

    def walk(folder: Path, ancestors: frozenset[Path]) -> int:
        try:
            entries = sorted(folder.iterdir())
        except OSError as e:
            problems.append((folder, f"cannot read folder ({e.strerror or e})"))
            return 0
        found = 0
        for entry in entries:
            if entry.name.startswith(".") or entry.name in SYSTEM_FOLDERS:
                continue
            ext = entry.suffix.lower()
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError as e:  # ELOOP on Python versions that raise it
                problems.append((entry, f"symlink loop ({e.strerror or e})"))
                continue
            if not is_dir and not is_file:
                if entry.is_symlink():
                    try:
                        entry.resolve(strict=True)
                        reason = "not a regular file"
                    except RuntimeError:
                        reason = "symlink loop"
                    except OSError as e:
                        reason = "symlink loop" if e.errno == 40 else f"broken symlink (-> {os.readlink(entry)})"
                    problems.append((entry, reason))
                elif ext in IMAGE_EXTENSIONS:
                    problems.append((entry, "not a regular file"))
                continue
            if is_dir:
                if not recursive:
                    continue
                real = entry.resolve()
                if real in ancestors:
                    problems.append((entry, f"symlink loop (points back to {real})"))
                    continue
                inside = walk(entry, ancestors | {real})
                found += inside
                if inside == 0 and ext in IMAGE_EXTENSIONS + UNSUPPORTED_EXTENSIONS:
                    problems.append((entry, "is a folder, not an image"))
            elif ext in IMAGE_EXTENSIONS:
                files.append(entry)
                found += 1
            elif why := unsupported_format(entry):
                problems.append((entry, why))
            elif ext in VIDEO_EXTENSIONS:
                videos.append(entry)
        return found

    root = Path(root)
    walk(root, frozenset({root.resolve()}))
    return sorted(files), problems, sorted(videos)


def find_images(paths: str | Path | Iterable[str | Path], *, recursive: bool = True) -> list[Path]:
    """Expand files, folders (recursively) and glob patterns into a sorted, de-duplicated list of images.

    A folder contributes only files with an image extension; a file named explicitly is always kept
    (so a bad file is reported rather than silently dropped).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found: dict[Path, None] = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in scan_folder(p, recursive=recursive)[0]:
                found[f] = None
        elif p.is_file():
            found[p] = None
        elif any(c in str(p) for c in "*?["):
            for f in sorted(glob.glob(str(p), recursive=True)):
                if Path(f).is_file():
                    found[Path(f)] = None
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return list(found)


def read_file_list(path: str | Path) -> list[Path]:
    """A text file with one image path per line (relative paths are relative to the list file)."""
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return [p if p.is_absolute() else path.parent / p for p in (Path(ln) for ln in lines if ln and not ln.startswith("#"))]


def require_photos(paths: Sequence[Path], where: Sequence[str | Path], *, role: str = "training") -> None:
    """ValueError naming ``where`` unless ``paths`` holds a photo that loads: none found, or every one of them
    unreadable (each named with its reason, up to three). Reads files until the first good one: one, usually."""
    places = ", ".join(map(str, where))
    if not paths:
        raise ValueError(f"no {role} photos in {places} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    errors = []
    for path in paths:
        try:
            load_image(path)
            return
        except ImageError as e:
            errors.append(str(e))
    if len(errors) == 1:
        raise ValueError(f"the only {role} photo cannot be read: {errors[0]}")
    more = f"; and {len(errors) - 3} more" if len(errors) > 3 else ""
    raise ValueError(f"none of the {len(paths)} {role} photos in {places} can be read: "
                     + "; ".join(errors[:3]) + more)


def split_train_val(paths: Sequence[Path], val_fraction: float, *, root: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Deterministic split by a hash of each path (relative to ``root``): stable across machines and
    runs, and a photo stays on its side when others are added."""
    train, val = [], []
    for p in paths:
        key = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else p.name
        h = int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "big") / 2**32
        (val if h < val_fraction else train).append(p)
    return train, val


@dataclass(frozen=True)
class Augment:
    """Augmentation as in the write-ups (shear, zoom, rotation, flip) plus random crops."""

    rotation: float = 10.0  # max degrees either way
    shear: float = 10.0  # max degrees either way
    zoom: float = 0.2  # zoom in by up to this fraction
    hflip: bool = True
    crop_scale: tuple[float, float] = (0.35, 1.0)  # area fraction of the random crop
    p_affine: float = 0.5  # probability of the shear/zoom/rotation step


def photo_transform(size: int, augment: Augment | None):
    """uint8 (3, H, W) -> (3, size, size): ``augment``'s random crop and distortions, or (``None``, for
    validation) a deterministic resize and centre crop."""
    from torchvision.transforms import v2

    if augment is None:
        return v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    a = augment
    steps = [v2.RandomApply([v2.RandomAffine(degrees=a.rotation, shear=a.shear, scale=(1.0, 1.0 + a.zoom))],
                            p=a.p_affine),
             v2.RandomResizedCrop(size, scale=a.crop_scale, ratio=(3 / 4, 4 / 3), antialias=True)]
    if a.hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)


class PhotoDataset:
    """Photos as uint8 RGB tensors (3, size, size); color conversion happens on the batch, on device.

    Images are read lazily. A file that fails to load is replaced by the next good one; the failing
    path is returned beside the sample (``""`` when none) so the training loop can warn once per file
    and count, whatever process read it.
    """

    def __init__(self, paths: Sequence[str | Path], size: int, *, augment: Augment | None = None):
        if not paths:
            raise ValueError("no images to train on")
        self.paths = [Path(p) for p in paths]
        self.size, self.augment = size, augment
        self.transform = photo_transform(size, augment)

    def __len__(self) -> int:
        return len(self.paths)

    def set_size(self, size: int) -> None:
        """Change the crop size (progressive resizing); takes effect in loaders created afterwards."""
        if size != self.size:
            self.size, self.transform = size, photo_transform(size, self.augment)

    def __getitem__(self, index: int):
        from torchvision.transforms.v2 import functional as TF

        bad = ""
        n = len(self.paths)
        for attempt in range(n):
            path = self.paths[(index + attempt) % n]
            try:
                img = load_image(path)
            except ImageError as e:
                if not bad:
                    bad = str(e)
                continue
            x = TF.pil_to_tensor(img)  # (3, H, W) uint8
            return self.transform(x).contiguous(), bad
        raise RuntimeError(f"none of the {n} images could be read (first error: {bad})")


def collate(batch):
    """(uint8 images (B, 3, S, S), list of 'path: reason' strings for files that failed to load)."""
    import torch

    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch if b[1]]


class BadFileLog:
    """Warn once per unreadable file and count them."""

    def __init__(self):
        self.seen: set[str] = set()

    def add(self, messages: Iterable[str]) -> None:
        for msg in messages:
            if msg not in self.seen:
                self.seen.add(msg)
                warnings.warn(Notice(f"skipped unreadable image {msg}"), stacklevel=2)

    def summary(self) -> str:
        return f"{len(self.seen)} unreadable image(s) skipped" if self.seen else ""


def source_name(path: Path, roots: Sequence[Path]) -> str:
    """A photo's source: its first folder below the data root holding it; the root's name for photos
    directly in it or given as files."""
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            parts = path.relative_to(root).parts
            return parts[0] if len(parts) > 1 else root.name
    return path.parent.name
