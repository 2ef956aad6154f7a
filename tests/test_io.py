"""Reading and writing photos and files: decoding to 8-bit RGB, atomic writes, whole images only."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorize.io import AtomicFile, ImageError, atomic_write, clean_stale_temporaries, decode, load_image, save_image
from helpers import icc_profile, make_photo


def test_decode_bytes_and_path_alike(tmp_path):
    photo = make_photo(40, 30).convert("L")
    photo.save(tmp_path / "p.png")
    data = (tmp_path / "p.png").read_bytes()
    from_path, from_bytes = load_image(tmp_path / "p.png"), load_image("upload.png", data=data)
    opened = decode(Image.open(io.BytesIO(data)), "upload.png")
    assert from_path.mode == from_bytes.mode == opened.mode == "RGB"
    assert from_path.tobytes() == from_bytes.tobytes() == opened.tobytes()


def test_engine_inputs_keep_8bit_gray_and_are_upright(tmp_path):
    """load_input (both engines' reader) keeps 8-bit gray as it is; orientation applied as for RGB."""
    from colorize.io import load_input

    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    make_photo(40, 30).convert("L").save(tmp_path / "g.jpg", exif=exif)
    img, data = load_input(tmp_path / "g.jpg")
    assert img.mode == "L" and img.size == (30, 40) and data is None
    assert load_image(tmp_path / "g.jpg").mode == "RGB"
    make_photo(40, 30).save(tmp_path / "c.jpg", exif=exif)
    img, _ = load_input(tmp_path / "c.jpg")
    assert img.mode == "RGB" and img.size == (30, 40)


@pytest.mark.parametrize("mode, space, name", [("L", "GRAY", "g.png"), ("L", "GRAY", "g.jpg"),
                                              ("I;16", "GRAY", "g.tif"), ("RGB", "RGB", "c.jpg")])
def test_photos_with_a_color_profile_are_read_as_the_profile_says(tmp_path, mode, space, name):
    """A scan tagged with its ICC profile (here linear light: a pixel of 64 is a mid-gray of 137 in sRGB) is read in
    sRGB, as a color-managed viewer shows it: it used to be read as if untagged, the output a lot darker."""
    from PIL import ImageCms

    from colorize.io import load_input

    gray = make_photo(40, 30).convert("L")
    photo = {"L": gray, "I;16": Image.fromarray(np.asarray(gray, np.uint16) * 257), "RGB": make_photo(40, 30)}[mode]
    profile = icc_profile(space, 1.0)
    photo.save(tmp_path / name, icc_profile=profile, **({"quality": 100} if name.endswith("jpg") else {}))
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    with Image.open(tmp_path / name) as raw:
        expected = ImageCms.profileToProfile(raw if raw.mode != "I;16" else gray, source,
                                             ImageCms.createProfile("sRGB"), outputMode="RGB")
    read, (engine_input, _) = load_image(tmp_path / name), load_input(tmp_path / name)
    assert np.abs(np.asarray(read, int) - np.asarray(expected, int)).max() <= 1
    assert np.abs(np.asarray(engine_input.convert("RGB"), int) - np.asarray(expected, int)).max() <= 1
    assert engine_input.mode == ("L" if mode == "L" else "RGB")  # 8-bit gray stays gray
    assert np.asarray(read).mean() > np.asarray(photo.convert("RGB") if mode != "I;16" else gray).mean() + 20


def test_photos_with_an_srgb_or_a_broken_profile_are_read_as_they_are(tmp_path):
    from PIL import ImageCms

    photo = make_photo(40, 30)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for name, profile in (("srgb.png", srgb), ("broken.png", b"not a profile"), ("none.png", None)):
        photo.save(tmp_path / name, **({"icc_profile": profile} if profile else {}))
        assert load_image(tmp_path / name).tobytes() == photo.tobytes(), name


@pytest.mark.parametrize("cut, reason", [(0.9, "truncated or corrupt"), (None, "too small")])
def test_decode_failures_name_the_file(cut, reason):
    buf = io.BytesIO()
    (make_photo(640, 480) if cut else make_photo(64, 48).resize((4, 4))).save(buf, format="JPEG")
    data = buf.getvalue()[: int(len(buf.getvalue()) * cut)] if cut else buf.getvalue()
    with pytest.raises(ImageError, match=f"upload.jpg: {reason}"):
        decode(Image.open(io.BytesIO(data)), "upload.jpg")


def test_a_photo_that_cannot_be_read_says_so(tmp_path, monkeypatch):
    """It used to read "cannot decode image ([Errno 13] Permission denied: ...)": not a decoding problem."""
    import colorize.io

    make_photo(40, 30).save(tmp_path / "locked.jpg")

    def refused(source):
        raise PermissionError(13, "Permission denied", str(source))

    monkeypatch.setattr(colorize.io, "_open", refused)
    with pytest.raises(ImageError, match=r"locked.jpg: cannot read it \(permission denied\)"):
        load_image(tmp_path / "locked.jpg")


def test_a_film_given_as_a_photo_is_told_to_use_colorize_video(tmp_path):
    film = tmp_path / "film.MP4"
    film.write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64))
    with pytest.raises(ImageError, match="film.MP4: a video, not a photo: colorize it with `colorize video`"):
        load_image(film)
    with pytest.raises(ImageError, match="a.tar:film.mov: a video"):  # a member of a tar shard, named as reports do
        load_image("a.tar:film.mov", data=film.read_bytes())
    (tmp_path / "notes.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="notes.jpg: not an image file"):
        load_image(tmp_path / "notes.jpg")


def test_atomic_file_keeps_a_suffix_and_discards_on_error(tmp_path):
    target = tmp_path / "clip.mp4"
    with AtomicFile(target, suffix=".mp4") as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path
        tmp.write_bytes(b"video")
    assert target.read_bytes() == b"video"
    with pytest.raises(KeyboardInterrupt):
        with AtomicFile(target, suffix=".mp4") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"] and target.read_bytes() == b"video"


@pytest.mark.parametrize("name, width", [("wide.webp", 16_384), ("wide.jpg", 65_501)])
def test_a_photo_wider_than_its_format_allows_is_refused_by_name(tmp_path, name, width):
    """A panorama past JPEG's or WebP's side limit: a clear reason, and nothing written. JPEG's used to read
    "cannot write wide.jpg ([Errno None] None: 'wide.jpg')"."""
    with pytest.raises(ValueError, match=f"{width}x8 is too large for .{name.split('.')[1]}.*PNG"):
        save_image(Image.new("RGB", (width, 8)), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_an_encoders_error_keeps_its_words(tmp_path):
    """An OSError without an errno (an encoder's "broken data stream") is not given a file name that would turn
    its message into "[Errno None] None: 'x.jpg'"."""
    with pytest.raises(OSError, match="broken data stream"):
        with AtomicFile(tmp_path / "x.jpg"):
            raise OSError("broken data stream when writing image file")
    with pytest.raises(OSError, match="No space left on device: '.*x.jpg'"):  # one with an errno is named
        with AtomicFile(tmp_path / "x.jpg"):
            raise OSError(28, "No space left on device")


@pytest.mark.parametrize("ext", ["jpg", "webp", "avif"])
def test_quality_sets_every_lossy_format(tmp_path, ext):
    from PIL import features

    if ext == "avif" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF")
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    sizes = []
    for quality in (20, 95):
        save_image(photo, tmp_path / f"q{quality}.{ext}", quality=quality)
        sizes.append((tmp_path / f"q{quality}.{ext}").stat().st_size)
    assert sizes[0] < sizes[1]  # AVIF used to be written at its own default whatever --quality said


def test_save_image_round_trips(tmp_path):
    save_image(make_photo(), tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").size == make_photo().size


def test_atomic_write_creates_folders_and_replaces(tmp_path):
    target = tmp_path / "deep" / "er" / "file.txt"
    atomic_write(target, lambda tmp: Path(tmp).write_text("one"))
    atomic_write(target, lambda tmp: Path(tmp).write_text("two"))
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_atomic_write_on_a_full_disk_names_the_file_and_leaves_nothing(tmp_path):
    import errno

    def write(tmp):
        Path(tmp).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e:
        atomic_write(tmp_path / "last.pt", write)
    assert e.value.errno == errno.ENOSPC and "last.pt" in str(e.value)
    assert list(tmp_path.iterdir()) == []

    def incomplete(tmp):
        raise OSError(errno.EIO, "reads back short")

    with pytest.raises(OSError, match="reads back short"):
        atomic_write(tmp_path / "x.bin", lambda tmp: Path(tmp).write_bytes(b"data"), verify=incomplete)
    assert list(tmp_path.iterdir()) == []


def test_clean_stale_temporaries_removes_only_old_ones_of_ours(tmp_path):
    import os
    import time

    names = {".last.pt.k3j2h1g0.tmp": True, ".best.safetensors.abcdefgh.tmp": True,
             ".last.pt.fresh123.tmp": False, ".hidden.tmp": False, "last.pt": False, "x.tmp": False}
    old = time.time() - 3600
    for name in names:
        (tmp_path / name).write_bytes(b"x")
        if name != ".last.pt.fresh123.tmp":
            os.utime(tmp_path / name, (old, old))
    removed = {p.name for p in clean_stale_temporaries(tmp_path)}
    assert removed == {n for n, stale in names.items() if stale}
    assert {p.name for p in tmp_path.iterdir()} == {n for n, stale in names.items() if not stale}
