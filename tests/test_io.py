"""Reading and writing photos and files: decoding to 8-bit RGB, atomic writes, whole images only."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorize.io import AtomicFile, ImageError, atomic_write, clean_stale_temporaries, decode, load_image, save_image
from helpers import (ARCHIVE_IPTC, ARCHIVE_XMP, assert_archive_iptc_kept, assert_archive_xmp_kept, icc_profile,
                     make_photo)


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
    (tmp_path / "cut.jpg").write_bytes(b"")  # a copy that never finished: said as such, file or shard member
    with pytest.raises(ImageError, match="cut.jpg: empty file"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(ImageError, match="a.tar:cut.jpg: empty file"):
        load_image("a.tar:cut.jpg", data=b"")


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


def _gradient16(width: int = 90, height: int = 60) -> np.ndarray:
    """A 16-bit gray master's levels: smooth gradients that fall between 8-bit levels (257 apart) nearly everywhere."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return (3000 + x / width * 50000 + 6000 * np.sin(y / height * 5) + y * 3.7).round().astype(np.uint16)


@pytest.mark.parametrize("name, write", [
    ("m.png", lambda path, levels: Image.fromarray(levels).save(path)),  # Pillow: I;16
    ("m.tif", lambda path, levels: Image.fromarray(levels).save(path)),
    ("be.tif", lambda path, levels: __import__("tifffile").imwrite(path, levels, byteorder=">")),  # I;16B
    ("i32.tif", lambda path, levels: __import__("tifffile").imwrite(path, levels.astype(np.int32)))])  # I
def test_16bit_gray_masters_are_read_in_16_bits_for_an_output_that_holds_them(tmp_path, name, write):
    """An archive's 16-bit gray scan used to be brought to 8 bits on reading, whatever the output; for a PNG or TIFF
    output the engines now get its very levels (mode I;16), and say it was 16-bit when they get 8 bits."""
    from colorize.io import holds_16bit, load_input, written_in_8bits

    levels = _gradient16()
    write(tmp_path / name, levels)
    deep, _ = load_input(tmp_path / name, keep_16bit=True)
    assert deep.mode == "I;16" and np.array_equal(np.asarray(deep), levels)
    assert written_in_8bits(deep, "out.tif") == "" and deep.info["bits"] == 16
    shallow, _ = load_input(tmp_path / name)  # as before: 8-bit, the nearest level
    assert shallow.mode == "RGB" and np.abs(np.asarray(shallow, int)[..., 0] - levels / 257).max() <= 0.5 + 1e-9
    assert written_in_8bits(shallow, "out.jpg") == "format"
    assert holds_16bit("a.TIF") and holds_16bit("a.png") and not holds_16bit("a.jpg") and not holds_16bit("a.webp")


def test_8bit_values_in_a_32bit_mode_are_read_as_8bit(tmp_path):
    from colorize.io import load_input

    __import__("tifffile").imwrite(tmp_path / "small.tif", np.arange(200 * 10, dtype=np.int32).reshape(10, 200) % 256)
    img, _ = load_input(tmp_path / "small.tif", keep_16bit=True)
    assert img.mode == "RGB" and "bits" not in img.info


@pytest.mark.parametrize("gamma", [1.0, 1.8])
def test_a_tagged_16bit_master_is_read_through_its_profile_in_16_bits(tmp_path, gamma):
    """A 16-bit scan tagged with a gray ICC profile (Photoshop's Gray Gamma, Dot Gain...) is made sRGB by LittleCMS in
    16 bits (Pillow converts 16-bit gray to gray only: to a gray profile with sRGB's curve), as light as its 8-bit
    reading, which it used to be limited to."""
    from colorize.io import load_input, written_in_8bits
    from helpers import icc_profile

    Image.fromarray(_gradient16()).save(tmp_path / "tagged.tif", icc_profile=icc_profile("GRAY", gamma))
    deep, _ = load_input(tmp_path / "tagged.tif", keep_16bit=True)
    eight, _ = load_input(tmp_path / "tagged.tif")
    assert deep.mode == "I;16" and written_in_8bits(deep, "out.tif") == ""
    as_8bit = np.asarray(deep) / 257
    assert np.abs(as_8bit - np.asarray(eight, float)[..., 0]).max() < 4  # the 8-bit reading: its levels rounded
    assert abs(as_8bit.mean() - np.asarray(eight, float).mean()) < 0.5
    assert as_8bit.mean() > _gradient16().mean() / 257 + (10 if gamma == 1.0 else 5)  # lighter, as the profile says
    assert len(np.unique(np.asarray(deep))) > 4 * len(np.unique(np.asarray(eight)))  # tones between 8-bit levels


@pytest.mark.parametrize("ext", ["tif", "png"])
def test_16bit_rgb_is_written_whole_with_what_outputs_keep(tmp_path, ext):
    """Pillow writes no 16-bit RGB: save_image writes an (H, W, 3) uint16 array as a 16-bit PNG (pypng) or TIFF
    (tifffile), atomically and checked, with the dpi, the EXIF description (its Exif and GPS IFDs too, which
    tifffile does not write), the XMP and the transparency."""
    import png
    import tifffile
    from PIL import ExifTags

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 65536, (30, 40, 3), dtype=np.uint16)
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = "grandma, 1931"
    exif[ExifTags.Base.Copyright] = "the family"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "1931:05:01 10:00:00"  # sub-IFDs, in TIFF too
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 30.0)
    alpha = Image.fromarray(np.where(np.arange(40)[None, :] < 25, 255, 0).repeat(30, 0).astype(np.uint8))
    from colorize.metadata import kept_iptc, kept_xmp

    kept = {"dpi": (600.0, 300.0), "exif": exif.tobytes(), "alpha": alpha, "xmp": kept_xmp(ARCHIVE_XMP),
            "iptc": kept_iptc(ARCHIVE_IPTC)}
    for name, metadata in (("plain", {}), ("kept", kept)):
        dst = tmp_path / f"{name}.{ext}"
        save_image(rgb, dst, metadata=metadata)
        if ext == "tif":
            back = tifffile.imread(dst)
        else:
            width, height, rows, info = png.Reader(filename=str(dst)).read()
            assert info["bitdepth"] == 16
            back = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, -1)
        assert back.dtype == np.uint16 and np.array_equal(back[..., :3], rgb)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
        if name == "kept":
            assert np.array_equal(back[..., 3], np.asarray(alpha, np.uint16) * 257)
            with Image.open(dst) as out:
                assert np.allclose(out.info["dpi"], (600, 300), rtol=1e-3)
                assert out.getexif()[ExifTags.Base.ImageDescription] == "grandma, 1931"
                assert out.getexif()[ExifTags.Base.Copyright] == "the family"
                assert out.getexif().get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "1931:05:01 10:00:00"
                assert out.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] == (48.0, 51.0, 30.0)
                assert_archive_xmp_kept(out.info["xmp"])
                if ext == "tif":
                    assert_archive_iptc_kept(out)
    save_image(rgb, tmp_path / "eight.jpg", quality=100)  # a format of 8 bits: the nearest 8-bit levels
    assert Image.open(tmp_path / "eight.jpg").mode == "RGB"


@pytest.mark.parametrize("ext", ["png", "tif", "webp", "jpg"])
def test_catalogues_are_read_from_and_written_to_every_format_that_holds_them(tmp_path, ext):
    """An XMP packet read from a photo of each format, with its EXIF, reaches a colorized version of each format
    (a TIFF's XMP is a tag beside its EXIF tags: both kept), cleaned; so do IPTC-IIM records, from and to JPEG and
    TIFF. BMP holds neither and is written without."""
    from PIL import ExifTags

    from colorize.io import format_of
    from colorize.metadata import save_options

    exif = Image.Exif()
    exif[ExifTags.Base.Copyright] = "the family"
    src = tmp_path / f"scan.{ext}"
    fmt = format_of(src.suffix)
    iptc = ARCHIVE_IPTC if ext in ("jpg", "tif") else None
    options = save_options(fmt, {"xmp": ARCHIVE_XMP, "iptc": iptc, "exif": exif.tobytes()})
    make_photo(40, 30).convert("L").save(src, **options)
    photo = load_image(src, metadata=True)
    assert ("iptc" in photo.info) == (iptc is not None)
    for out_ext in ("png", "tif", "webp", "jpg", "bmp"):
        dst = tmp_path / "out" / f"{ext}.{out_ext}"
        save_image(photo, dst, metadata=photo.info)
        with Image.open(dst) as out:
            assert out.size == (30, 40)  # turned upright by the XMP's orientation (Pillow reads it), as viewers do
            if out_ext == "bmp":
                assert "xmp" not in out.info
                continue
            assert_archive_xmp_kept(out.info["xmp"])
            assert out.getexif()[ExifTags.Base.Copyright] == "the family", (ext, out_ext)
            if iptc and out_ext in ("jpg", "tif"):
                assert_archive_iptc_kept(out)


def test_iptc_a_tiff_declares_as_32_bit_words_is_kept(tmp_path):
    """Photoshop declares a TIFF's IPTC tag as LONG words, of which Pillow's value keeps the first alone: the bytes
    as the file holds them are kept (they used to be dropped)."""
    import tifffile

    from colorize.metadata import kept_iptc

    words = np.frombuffer(ARCHIVE_IPTC + bytes(-len(ARCHIVE_IPTC) % 4), "<u4")
    tifffile.imwrite(tmp_path / "scan.tif", np.full((30, 40), 128, np.uint8), byteorder="<",
                     extratags=[(33723, "I", len(words), tuple(int(w) for w in words), True)])
    with pytest.warns(UserWarning, match="Metadata Warning"):  # Pillow's; the CLI does not show it
        assert load_image(tmp_path / "scan.tif", metadata=True).info["iptc"] == kept_iptc(ARCHIVE_IPTC)


def test_metadata_that_cannot_be_written_back_never_refuses_a_photo(tmp_path):
    """EXIF Pillow reads but cannot write back (a GPS tag holding text) is left out, the photo colorized with the
    marks alone; it used to stop the batch with a TypeError. A JPEG's description past one segment leaves the
    Software mark."""
    from PIL import ExifTags

    from colorize import __version__

    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] = "N"
    # the same entry made GPSLongitude (tag 4, numbers expected) holding the text: Pillow reads it, cannot write it
    raw = exif.tobytes().replace(b"\x00\x01\x00\x02\x00\x00\x00\x02N", b"\x00\x04\x00\x02\x00\x00\x00\x02N")
    make_photo(40, 30).convert("L").save(tmp_path / "gps.jpg", exif=raw)
    photo = load_image(tmp_path / "gps.jpg", metadata=True)
    long = Image.Exif()
    long[ExifTags.Base.ImageDescription] = "a caption longer than a JPEG holds " * 2000
    make_photo(40, 30).convert("L").save(tmp_path / "long.png", exif=long.tobytes())
    for src in (photo, load_image(tmp_path / "long.png", metadata=True)):
        save_image(src, tmp_path / "out.jpg", metadata=src.info)
        with Image.open(tmp_path / "out.jpg") as out:
            assert out.getexif()[ExifTags.Base.Software] == f"colorize {__version__}"
            assert ExifTags.Base.ImageDescription not in out.getexif()


def test_iptc_records_that_cannot_be_kept_are_left_out():
    """Records cut short, or with nothing but their version and what is not true of a colorized version, give no
    IPTC; an extended dataset (a length past 32 KB) is read through; padding after the last is ignored."""
    from colorize.metadata import kept_iptc

    assert kept_iptc(ARCHIVE_IPTC[:-3]) is None and kept_iptc(b"junk" + ARCHIVE_IPTC) is None
    assert kept_iptc(ARCHIVE_IPTC + bytes(3)) == kept_iptc(ARCHIVE_IPTC)
    layout_only = b"\x1c\x02\x00\x00\x02\x00\x04" + b"\x1c\x02\x82\x00\x021M"
    assert kept_iptc(layout_only) is None
    caption = "x" * 40_000
    extended = b"\x1c\x02\x78\x80\x04" + len(caption).to_bytes(4, "big") + caption.encode()
    assert kept_iptc(extended + layout_only) == extended + layout_only[:7]  # the record version stays


def _properties(packet: bytes) -> dict[str, str]:
    """An XMP packet's simple properties, by local name."""
    from defusedxml import ElementTree

    root = ElementTree.fromstring(packet)
    return {name.rpartition("}")[2]: value for el in root.iter() for name, value in el.attrib.items()}


def test_xmp_that_cannot_be_kept_is_left_out_and_the_marks_are_always_there():
    """Malformed XML, a DTD's entity expansion ("billion laughs"), and XML that is not XMP are not copied; what
    the output's packet says of it then is that it is colorized, as it does when the photo had no XMP. A packet past
    a JPEG segment is not written there."""
    from colorize.metadata import PROVENANCE, kept_xmp, save_options

    marks = {name: value for (_, name), value in PROVENANCE.items()}
    laughs = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
              b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="&b;"/></rdf:RDF></x:xmpmeta>')
    refused = [ARCHIVE_XMP.replace(b"</rdf:RDF>", b""), laughs, laughs.replace(b"&b;", b"image/jpeg"),  # any DTD
               b"<html><body>not XMP</body></html>", None]
    for packet in refused:
        kept = _properties(kept_xmp(packet))
        assert {k: v for k, v in kept.items() if k != "about"} == marks, packet
    assert _properties(kept_xmp(laughs.split(b"]>")[1].replace(b"&b;", b"image/jpeg")))["format"] == "image/jpeg"
    scan = (b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            b'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="ScanSoft 2.1" '
            b'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
            b'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/print"/></rdf:RDF>')
    assert {k: v for k, v in _properties(kept_xmp(scan)).items() if k != "about"} == marks  # the scan's, replaced
    assert b"Grandma at the seaside" in kept_xmp(ARCHIVE_XMP.decode("utf-8") + "\0\0  ")  # text, padded out
    huge = kept_xmp(ARCHIVE_XMP.replace(b"family</rdf:li>", b"family</rdf:li>" + b"<rdf:li>x</rdf:li>" * 5000))
    assert len(huge) > 65_535 and save_options("PNG", {"xmp": huge})
    assert save_options("JPEG", {"xmp": huge})["xmp"] == kept_xmp(None)  # past a JPEG segment: the marks alone
    deep = b"<a>" * 3000 + b"</a>" * 3000  # deeper than ElementTree's writer recurses
    deep_xmp = ARCHIVE_XMP.replace(b"<dc:title>", b"<dc:source>" + deep + b"</dc:source><dc:title>")
    assert {k for k in _properties(kept_xmp(deep_xmp)) if k != "about"} == set(marks)
    utf16 = ARCHIVE_XMP.decode("utf-8").encode("utf-16")  # the spec allows it outside JPEG; it ends in a NUL byte
    assert _properties(kept_xmp(utf16))["Credit"] == "Smith family archive"
    pantry = ARCHIVE_XMP.replace(b"<dc:title>", b'<xmpMM:Pantry><rdf:Bag><rdf:li><rdf:Description '
                                 b'xmpMM:InstanceID="xmp.iid:placed-1"/></rdf:li></rdf:Bag></xmpMM:Pantry><dc:title>')
    assert b"xmp.iid:placed-1" in kept_xmp(pantry)  # a placed document's own identity: not the photo's, kept
