"""Tar shards in the WebDataset layout: pack a folder of photos into shards, stream them for training,
list them as the inputs of ``colorize``.

A shard is a plain tar file. Members sharing a key (the member name up to the first dot of its base
name: ``sub/p0.jpg`` has key ``sub/p0``) are one sample; a sample's first image member (jpg, jpeg,
png or webp) is its photo (:func:`split_key`, :func:`photo_extension`: one rule for every reader).
Training reads shards front to back as a stream, so local files and http(s) URLs read alike.
``colorize SHARDS -o OUT`` instead lists each shard's headers once (:func:`list_photos`) and reads every
photo on its own by seeking to its data (:class:`ShardMember`), so a job can skip finished photos and
spread the rest over processes or machines: plain ``.tar`` files on a filesystem only.

The tar reading and writing, URL fetching, brace expansion and shuffle buffer are the ``webdataset``
package's (as fast as our former reader: docs/benchmarks.md). Ours: which shards each rank and loader
worker reads in each pass, decoding as :class:`colorize.data.PhotoDataset` does, bad shards and photos
reported beside the good ones, and shards written atomically.

This module does not import torch (the light install reads shards too); training's torch dataset over
shards is :class:`colorize.shard_dataset.ShardDataset` (also importable from here).
"""

from __future__ import annotations

import contextlib
import glob
import io
import itertools
import random
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterator, NamedTuple, Sequence

from PIL import Image, UnidentifiedImageError

from colorize.data import find_images
from colorize.io import AtomicFile, ImageError, load_image

SHARD_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
SHARD_PATTERN = "shard-%06d.tar"  # webdataset.ShardWriter's %-pattern: shard-000000.tar, ...
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def __getattr__(name: str):
    """``ShardDataset``, imported from :mod:`colorize.shard_dataset` on first use (it needs torch)."""
    if name == "ShardDataset":
        from colorize.shard_dataset import ShardDataset

        return ShardDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def is_shard_spec(spec: str) -> bool:
    """True for a data entry naming tar shards: a ``.tar`` path, glob or brace pattern, or a URL."""
    return is_url(spec) or spec.lower().endswith(SHARD_SUFFIXES)


def _webdataset():
    """``import webdataset``, failing with the extra that installs it."""
    try:
        import webdataset
    except ImportError:
        raise ImportError("tar shards need the webdataset package: pip install 'colorize[train]'") from None
    return webdataset


def resolve_shards(specs: Sequence[str]) -> list[str]:
    """Data entries -> shard paths and URLs: braces expanded (``shard-{000..009}.tar``: ten names, zero
    padding kept; ``{a,b}`` lists), local globs matched (sorted), duplicates dropped.

    Raises:
        FileNotFoundError: a local shard or pattern matches nothing.
    """
    _webdataset()
    from braceexpand import braceexpand  # webdataset's own dependency

    found: dict[str, None] = {}
    for spec in specs:
        for name in braceexpand(spec):
            if is_url(name) or Path(name).is_file():
                found[name] = None
            elif any(c in name for c in "*?["):
                hits = sorted(glob.glob(name))
                if not hits:
                    raise FileNotFoundError(f"{name}: no shards match")
                found.update(dict.fromkeys(hits))
            else:
                raise FileNotFoundError(f"{name}: no such shard")
    return list(found)


def split_key(name: str) -> tuple[str | None, str | None]:
    """A tar member's (sample key, extension), WebDataset's rule (``webdataset.tariterators.base_plus_ext``):
    the key ends at the base name's first dot, ``dir.v1/abc.seg.png`` -> (``dir.v1/abc``, ``seg.png``),
    the extension lower-cased. ``(None, None)``: the member is in no sample (a base name without a dot, or
    hidden: starting with one). The stream reader groups members by it, so it and :func:`list_photos`
    cannot disagree."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not stem or not dot:
        return None, None
    return (f"{folder}/{stem}" if "/" in name else stem), ext.lower()


def photo_extension(extensions) -> str | None:
    """A sample's photo, given its members' extensions: the first of :data:`SHARD_IMAGE_EXTENSIONS` it
    has (None: no photo in this sample)."""
    return next((ext for ext in SHARD_IMAGE_EXTENSIONS if ext in extensions), None)


class ShardPhoto(NamedTuple):
    """One photo read from a shard, or (``data`` None) a shard that could not be read."""

    source: str  # the shard's path or URL
    key: str  # the sample's key in the shard, e.g. "sub/p0" ("" for an unreadable shard)
    ext: str  # the photo member's extension: jpg, jpeg, png or webp
    data: bytes | None  # the photo file's bytes; None: the shard is unreadable, ``error`` says why
    error: str = ""  # "shard: unreadable shard (reason)" when ``data`` is None

    @property
    def name(self) -> str:
        """``shard.tar:sub/p0.jpg``: the photo's name in messages (and for :func:`colorize.io.load_image`)."""
        return f"{self.source}:{self.key}.{self.ext}"


def iter_shard_photos(shards: str | Sequence[str]) -> Iterator[ShardPhoto]:
    """Every photo in ``shards``, shard after shard, in tar order: for readers other than training (decode
    one with ``colorize.io.load_image(p.name, data=p.data)``).

    Args:
        shards: shard paths, globs, brace patterns or http(s) URLs (:func:`resolve_shards`); a string is one.
    Yields:
        A :class:`ShardPhoto` per sample holding a photo. A shard that cannot be read (not a tar,
        truncated, a failed download) yields one with ``data`` None after the photos read before the
        damage, and reading goes on with the next shard.
    Raises:
        FileNotFoundError: a local shard or pattern matches nothing (checked before anything is read).
    """
    return _read_shards(resolve_shards([shards] if isinstance(shards, str) else shards))


# curl's exit statuses: all that webdataset's gopen reports of a failed download
_CURL_ERRORS = {6: "host not found", 7: "could not connect", 18: "transfer cut short", 22: "HTTP error (4xx/5xx)",
                28: "timed out", 56: "connection lost"}


def _reason(e: BaseException) -> str:
    """An exception's message without what webdataset adds: the stream and URL appended to ``args``,
    `` @ <stream>`` to the message."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    message = re.sub(r" @ <.*", "", str(e.args[0]) if e.args else type(e).__name__)
    curl = re.search(r"'curl'.*: exit (\d+)", message)
    if curl:
        status = int(curl.group(1))
        return f"download failed: {_CURL_ERRORS.get(status, 'curl error')} (curl exit status {status})"
    return message


def _read_shards(urls: Sequence[str]) -> Iterator[ShardPhoto]:
    """:func:`iter_shard_photos` over resolved shard names."""
    wds = _webdataset()
    group_by_keys, tar_file_expander = wds.tariterators.group_by_keys, wds.tariterators.tar_file_expander
    for url in urls:
        try:
            # a URL through webdataset's gopen (curl); a path through open(): gopen takes a Windows drive
            # letter for a URL scheme
            with wds.gopen(url) if is_url(url) else open(url, "rb") as stream:
                # one shard per call: an error ends that shard only, and is reported with its name
                for sample in group_by_keys(tar_file_expander([{"url": url, "stream": stream}]), keys=split_key):
                    ext = photo_extension(sample)
                    if ext is not None:
                        yield ShardPhoto(url, sample["__key__"], ext, sample[ext])
        except (OSError, EOFError, tarfile.TarError, zlib.error, ValueError) as e:
            yield ShardPhoto(url, "", "", None, f"{url}: unreadable shard ({_reason(e)})")


@dataclass(frozen=True)
class ShardMember:
    """A sample's photo inside a plain tar shard, as an input of ``colorize``: read on its own by seeking
    to its data, so the local engine and each Ray actor read just the photos they colorize. Named
    ``SHARD:MEMBER`` in reports; ``name`` and ``suffix`` answer as a file's path does where a job
    names or records its inputs (hints by name, the record's relative key)."""

    shard: Path
    name: str  # the member's name in the tar: sub/p0.jpg (key sub/p0)
    offset: int  # where its data starts in the shard
    size: int  # bytes
    mtime_ns: int = 0  # from its tar header: with size, what the record compares on a rerun

    def __str__(self) -> str:
        return f"{self.shard}:{self.name}"

    @property
    def key(self) -> str:
        return split_key(self.name)[0]

    @property
    def suffix(self) -> str:
        return "." + split_key(self.name)[1]  # lower case: one of SHARD_IMAGE_EXTENSIONS

    def read_bytes(self) -> bytes:
        """The photo's bytes. Raises :class:`ImageError` naming it (shard gone, cut short)."""
        try:
            with open(self.shard, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.size)
        except OSError as e:
            raise ImageError(self, f"cannot read it from its shard ({e.strerror or e})") from None
        if len(data) != self.size:
            raise ImageError(self, f"cut short: {len(data)} of its {self.size} bytes are in the shard")
        return data


def list_photos(shard: str | Path) -> tuple[list[ShardMember], list[tuple[str, str]]]:
    """Every sample's photo in a plain tar shard, in tar order, from its headers alone (no photo is read),
    by the stream reader's rules (:func:`split_key`, :func:`photo_extension`; regular files only); and
    what cannot be used, as ``(name, reason)`` pairs.

    A member named outside the output folder (absolute, or with ``..``) is a problem; so is a link (symbolic
    or hard) named as a photo, which holds no data; and a shard that cannot be read or is cut short (the
    photos whose headers came before the damage are kept).
    """
    shard = Path(shard)
    if str(shard).lower().endswith((".tar.gz", ".tgz")):
        return [], [(str(shard), "compressed: its photos cannot be read one by one; gunzip it to a .tar")]
    members: list[tarfile.TarInfo] = []
    damage = ""
    try:
        with tarfile.open(shard, "r:") as tar:
            for member in tar:  # headers only: "r:" seeks over the data
                members.append(member)
            end = tar.offset  # where the end-of-archive blocks (zeros) must be
        with open(shard, "rb") as f:
            f.seek(end)
            if f.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
                damage = "no end-of-archive marker"
    except (OSError, EOFError, tarfile.TarError) as e:
        if not members:
            return [], [(str(shard), f"not a readable plain tar file ({e})")]
        damage = str(e)
    # (key, extension, member) of the members in a sample; as in the stream, the others do not part a sample
    keyed = [(*split_key(m.name), m) for m in members if m.isreg()]
    photos: list[ShardMember] = []
    problems: list[tuple[str, str]] = [
        (f"{shard}:{m.name}", f"a {'symbolic' if m.issym() else 'hard'} link (to {m.linkname}), not a photo; "
                              "store the photo itself in the shard")
        for m in members if (m.issym() or m.islnk()) and split_key(m.name)[1] in SHARD_IMAGE_EXTENSIONS]
    for key, run in itertools.groupby((k for k in keyed if k[0] is not None), key=lambda k: k[0]):
        by_ext = {ext: m for _, ext, m in run}
        ext = photo_extension(by_ext)
        if ext is None:
            continue
        member = by_ext[ext]
        if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
            problems.append((f"{shard}:{member.name}", "unsafe member name (it would be written outside the "
                                                       "output folder)"))
            continue
        photos.append(ShardMember(shard, member.name, member.offset_data, member.size,
                                  int(member.mtime * 1_000_000_000)))
    if damage:
        problems.append((str(shard), f"cut short or damaged after {len(photos)} photo(s) ({damage}); any photos "
                                     "after those are missing"))
    return photos, problems


@dataclass
class PackResult:
    """What :func:`write_shards` wrote."""

    shards: list[Path] = field(default_factory=list)
    images: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # "path: reason" of unreadable files


class _AtomicShards:
    """The ``opener`` and ``post`` of a ``webdataset.ShardWriter``: each shard is written to a hidden
    temporary that is renamed to its name when complete, so a crash never leaves a half-written shard
    under a shard name."""

    def __init__(self):
        self.written: list[Path] = []
        self.file: AtomicFile | None = None
        self.stream: BinaryIO | None = None

    def open(self, name: str) -> BinaryIO:
        self.file = AtomicFile(name)
        self.stream = open(self.file.tmp, "wb")
        return self.stream

    def commit(self, name: str) -> None:
        self.stream.close()
        self.file.commit()
        self.written.append(self.file.path)
        self.file = None

    def discard(self) -> None:
        """After an error or Ctrl-C: the shard being written and those this run finished are removed. Part of the
        photos would pass for the whole set (and the folder, holding shards, would refuse a rerun)."""
        if self.file is not None:
            self.stream.close()
            self.file.discard()
            self.file = None
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written = []


def _shard_key(rel: Path, used: set[str]) -> str:
    """A WebDataset key for a relative path: dots in the base name become ``_`` (the key ends at the
    first dot); a clash gets a numeric suffix."""
    key = (rel.parent / rel.stem.replace(".", "_")).as_posix()
    base, i = key, 1
    while key in used:
        key, i = f"{base}_{i}", i + 1
    used.add(key)
    return key


def write_shards(folder: str | Path, out_dir: str | Path, *, max_count: int = 10_000, max_size_mb: float = 1000.0,
                 shuffle: bool = True, seed: int = 0) -> PackResult:
    """Pack every photo under ``folder`` (recursive) into ``out_dir/shard-000000.tar``, ...

    jpg, jpeg, png and webp files are stored byte for byte (their header checked); other formats are
    decoded and stored as PNG. Unreadable files and files that are no image are skipped and listed. ``shuffle`` packs in a seeded random order, so
    consecutive samples of a stream are unrelated.

    Args:
        max_count: photos per shard at most.
        max_size_mb: a shard is closed once its photos reach this size (webdataset's ShardWriter rule:
            it can pass it by one photo).
    Returns:
        a :class:`PackResult`.
    """
    wds = _webdataset()
    folder, out_dir = Path(folder), Path(out_dir)
    if not max_count > 0 or not max_size_mb > 0:  # NaN too
        raise ValueError(f"max_count and max_size_mb must be positive, got {max_count} and {max_size_mb}")
    files = find_images(folder)
    if not files:
        raise ValueError(f"{folder}: no images found")
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.glob("shard-*.tar")):
        raise FileExistsError(f"{out_dir} already holds shards; choose an empty folder")
    if shuffle:
        random.Random(seed).shuffle(files)
    result = PackResult()
    shards = _AtomicShards()
    writer = None
    used: set[str] = set()
    try:
        for f in files:
            ext = f.suffix.lower().lstrip(".")
            if ext in SHARD_IMAGE_EXTENSIONS:
                try:
                    data = f.read_bytes()
                    with Image.open(io.BytesIO(data)):  # its header only: a photo, not a stray file with its name
                        pass
                except UnidentifiedImageError:
                    result.skipped.append(f"{f}: not an image file (unrecognized format)")
                    continue
                except Image.DecompressionBombError as e:
                    result.skipped.append(f"{f}: too large ({e})")
                    continue
                except OSError as e:  # unreadable (permissions, a disk error)
                    result.skipped.append(f"{f}: cannot read it ({e.strerror or e})")
                    continue
            else:
                try:
                    img = load_image(f)
                except ImageError as e:
                    result.skipped.append(str(e))
                    continue
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                ext, data = "png", buf.getvalue()
            if writer is None:  # it opens its first shard at once: not before there is a photo to put in
                # PAX: names of any length and alphabet; members extract as 0644, not webdataset's read-only 0444
                writer = wds.ShardWriter(str(out_dir).replace("%", "%%") + "/" + SHARD_PATTERN, maxcount=max_count,
                                         maxsize=max_size_mb * 1e6, opener=shards.open, post=shards.commit,
                                         verbose=0, encoder=False, format="PAX_FORMAT", mode=0o644)
            writer.write({"__key__": _shard_key(f.relative_to(folder), used), ext: data})
            result.images += 1
            result.bytes += len(data)
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None and writer.tarstream is not None:
            with contextlib.suppress(Exception):  # its tar closed now, not by the collector on a closed file
                writer.tarstream.close()
        shards.discard()
        raise
    result.shards = shards.written
    return result
