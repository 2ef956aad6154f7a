from pathlib import Path
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from colorize.data import (Augment, BadFileLog, PhotoDataset, collate, find_images, read_file_list,
                           split_train_val)
from colorize.io import ImageError, load_image
from helpers import make_photo


def _write_odd_files(d):
    """Every kind of file a real photo folder holds; returns {name: should_load}."""
    make_photo(80, 60).save(d / "good.jpg")
    data = (d / "good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "notes.jpg").write_text("this is not an image")
    Image.new("RGB", (1, 1), "red").save(d / "tiny.png")
    arr16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(arr16).save(d / "deep16.png")  # mode I;16
    make_photo(64, 48).convert("CMYK").save(d / "cmyk.jpg")
    rgba = make_photo(64, 48).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "alpha.png")
    make_photo(64, 48).convert("P").save(d / "palette.png")
    make_photo(64, 48).convert("L").save(d / "gray.png")
    return {"good.jpg": True, "truncated.jpg": False, "notes.jpg": False, "tiny.png": False, "deep16.png": True,
            "cmyk.jpg": True, "alpha.png": True, "palette.png": True, "gray.png": True}


def test_load_image_handles_every_mode_and_names_bad_files(tmp_path):
    expected = _write_odd_files(tmp_path)
    for name, ok in expected.items():
        if ok:
            img = load_image(tmp_path / name)
            assert img.mode == "RGB" and min(img.size) >= 8
        else:
            with pytest.raises(ImageError) as e:
                load_image(tmp_path / name)
            assert name in str(e.value) and e.value.reason
    # 16-bit data keeps its range after conversion to 8 bits
    deep = np.asarray(load_image(tmp_path / "deep16.png"))
    assert deep.min() < 10 and deep.max() > 245


def test_exif_orientation_applied(tmp_path):
    img = make_photo(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (40, 80)


def test_find_images_recursive_globs_and_lists(photo_dir, tmp_path):
    files = find_images(photo_dir)
    assert len(files) == 12 and any("sub" in str(f) for f in files)
    assert len(find_images(photo_dir, recursive=False)) == 9
    assert len(find_images(str(photo_dir / "*.jpg"))) == 9
    lst = tmp_path / "list.txt"
    lst.write_text("# photos\nphotos/p1.jpg\nphotos/p2.jpg\n")
    assert [p.name for p in read_file_list(lst)] == ["p1.jpg", "p2.jpg"]
    with pytest.raises(FileNotFoundError):
        find_images(tmp_path / "missing")


def test_split_is_deterministic_and_disjoint(photo_dir):
    files = find_images(photo_dir)
    a = split_train_val(files, 0.3, root=photo_dir)
    b = split_train_val(list(reversed(files)), 0.3, root=photo_dir)
    assert set(a[1]) == set(b[1]) and not set(a[0]) & set(a[1])
    assert len(a[0]) + len(a[1]) == len(files)


def test_dataset_skips_bad_files_and_reports_them(tmp_path):
    _write_odd_files(tmp_path)
    ds = PhotoDataset(find_images(tmp_path), 32, augment=Augment())
    log = BadFileLog()
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for images, errors in loader:
            assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.uint8
            log.add(errors)
        log.add(["x.jpg: again"] * 2)
    assert len(log.seen) == 4  # truncated, text, 1x1 and the repeated one (warned once)
    assert sum("x.jpg" in str(w.message) for w in caught) == 1
    assert "4 unreadable" in log.summary()


def test_augmentation_changes_crops_but_validation_is_fixed(photo_dir):
    files = find_images(photo_dir)[:2]
    train = PhotoDataset(files, 32, augment=Augment())
    val = PhotoDataset(files, 32)
    torch.manual_seed(0)
    assert not torch.equal(train[0][0], train[0][0])
    assert torch.equal(val[0][0], val[0][0])


def test_float_tiff_in_0_to_1_keeps_its_tones(tmp_path):
    ramp = np.linspace(0.0, 1.0, 64 * 48, dtype=np.float32).reshape(48, 64)
    Image.fromarray(ramp, mode="F").save(tmp_path / "float.tif")
    gray = np.asarray(load_image(tmp_path / "float.tif"))[..., 0].astype(float)
    assert abs(gray.mean() - 127.5) < 3 and gray.max() >= 250  # not black
    Image.fromarray(ramp * 255, mode="F").save(tmp_path / "float255.tif")  # 0..255 floats: as before
    assert np.abs(np.asarray(load_image(tmp_path / "float255.tif")).astype(float) - gray[..., None]).max() <= 1


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a size (no pixel data): enough for the checks made before decoding."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_one_pixel_limit_with_one_message(tmp_path):
    from colorize.io import MAX_PIXELS

    assert Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS >= MAX_PIXELS  # Pillow's guard agrees
    side = int(MAX_PIXELS ** 0.5)
    ok = tmp_path / "ok.png"
    ok.write_bytes(_png_header(side, side))  # just under the limit: refused only for its missing data
    with pytest.raises(ImageError) as e:
        load_image(ok)
    assert "the limit is" not in str(e.value) and "truncated" in str(e.value)
    messages = []
    for name, (w, h) in {"over.png": (side + 100, side + 100), "far_over.png": (3 * side, 3 * side)}.items():
        (tmp_path / name).write_bytes(_png_header(w, h))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no Pillow warning on the way
            with pytest.raises(ImageError) as e:
                load_image(tmp_path / name)
        assert name in str(e.value) and f"{MAX_PIXELS:,}" in str(e.value)
        messages.append(str(e.value).split("the limit")[1])
    assert messages[0] == messages[1]


def test_source_name_is_the_first_folder_below_its_root(tmp_path):
    from colorize.data import source_name

    (tmp_path / "a" / "deep").mkdir(parents=True)
    assert source_name(tmp_path / "a" / "deep" / "x.jpg", [tmp_path]) == "a"
    assert source_name(tmp_path / "x.jpg", [tmp_path]) == tmp_path.name
    assert source_name(Path("/elsewhere/dir/x.jpg"), [tmp_path]) == "dir"
