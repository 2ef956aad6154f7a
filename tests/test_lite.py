"""The light engine (onnxruntime, no torch) against the torch pipeline: one description of each step, two
engines, the same photos within one 8-bit level."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from colorize import shipped, layout, steps
from colorize.lite import LiteColorizer, graphs_dir
from colorize.pipeline import Colorizer
from helpers import (ARCHIVE_IPTC, ARCHIVE_XMP, assert_archive_iptc_kept, assert_archive_xmp_kept,
                     assert_marked_colorized, make_photo, tiny_bins_model)

pytest.importorskip("onnx")  # exporting: the torch install's onnx extra


def _photos() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [np.array(make_photo(96, 64, seed=1)), np.array(make_photo(203, 157, seed=2)),
            rng.integers(0, 256, (45, 70, 3), dtype=np.uint8),  # noise: every pixel's own color and edge
            np.array(make_photo(40, 300, seed=3))]  # tall and narrow


def _max_level_difference(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """A tiny classification model, in torch and exported to ONNX (its colors are vivid: many pixels out of
    the sRGB gamut, so the gamut fitting is exercised)."""
    from colorize.onnx import export_onnx

    model = tiny_bins_model()
    path = export_onnx(model, tmp_path_factory.mktemp("lite") / "tiny.onnx", size=32, temperature=0.38)
    return model, path


def test_engines_agree_within_one_level(tiny_pair, monkeypatch):
    model, path = tiny_pair
    monkeypatch.setattr(layout, "STRIP_PIXELS", 70 * 13)  # several strips, the last one partial, both engines
    torch_engine = Colorizer(model, size=48, temperature=0.38, saturation=1.3)
    light = LiteColorizer(path, size=48, saturation=1.3)
    assert light.temperature == 0.38  # the export's default
    for photo in _photos():
        assert _max_level_difference(light.colorize_uint8(photo), torch_engine.colorize_uint8(photo)) <= 1
        gray = np.array(Image.fromarray(photo).convert("L"))  # 8-bit gray: one table lookup for its lightness
        from_gray = light.colorize_uint8(gray)
        assert _max_level_difference(from_gray, torch_engine.colorize_uint8(gray)) <= 1
        assert _max_level_difference(from_gray, light.colorize_uint8(np.repeat(gray[..., None], 3, 2))) <= 1


def test_one_export_serves_every_temperature(tiny_pair):
    """The export takes the temperature as an input: each one colors as the torch model does at it."""
    model, path = tiny_pair
    photo = _photos()[0]
    outs = {}
    for t in (0.2, 1.0, 2.5):
        outs[t] = LiteColorizer(path, size=48, temperature=t).colorize_uint8(photo)
        assert _max_level_difference(outs[t], Colorizer(model, size=48, temperature=t).colorize_uint8(photo)) <= 1
    chroma = {t: np.ptp(out.astype(int), axis=2).mean() for t, out in outs.items()}
    assert chroma[0.2] > chroma[1.0] > chroma[2.5]  # higher temperature: more muted
    with pytest.raises(ValueError, match="temperature must be > 0"):
        LiteColorizer(path, temperature=0)


@pytest.mark.parametrize("options", [dict(temperature=float("nan")), dict(temperature=float("inf")),
                                     dict(saturation=float("nan")), dict(saturation=float("inf")), dict(threads=-2),
                                     dict(saturation=1e20), dict(saturation=101)])
def test_both_engines_refuse_settings_that_are_not_numbers_alike(tiny_pair, options):
    """NaN or infinity (`--temperature nan`) used to pass the checks and fail deep in the decoding, with a
    traceback that stopped the batch; a negative thread count failed on torch alone; `--saturation 1e20` overflowed
    the chroma into an out-of-range table index (a traceback from onnxruntime), and from ~5000 faded it to gray."""
    model, path = tiny_pair
    errors = []
    for make in (lambda: LiteColorizer(path, **options), lambda: Colorizer(model, **options)):
        with pytest.raises(ValueError, match=next(iter(options))) as e:
            make()
        errors.append(str(e.value))
    assert errors[0] == errors[1]


@pytest.mark.parametrize("options, error", [
    (dict(temperature="0.3"), TypeError), (dict(temperature=True), TypeError), (dict(saturation=None), TypeError),
    (dict(saturation="1"), TypeError), (dict(threads=2.5), TypeError), (dict(size=256.7), TypeError),
    (dict(size=float("nan")), TypeError), (dict(threads=0), ValueError), (dict(size=0), ValueError)])
def test_both_engines_refuse_settings_of_the_wrong_kind_alike(tiny_pair, options, error):
    """A string failed on a comparison ("'<' not supported between 'int' and 'str'"), 2.5 threads deep in torch or
    onnxruntime, size=NaN on int(); True was taken as 1, 256.7 as 256; threads=0 and size=0 were taken as 'the
    default' while the error message for a negative one said >= 1."""
    model, path = tiny_pair
    errors = []
    for make in (lambda: LiteColorizer(path, **options), lambda: Colorizer(model, **options)):
        with pytest.raises(error, match=f"^{next(iter(options))} must be") as e:
            make()
        errors.append(str(e.value))
    assert errors[0] == errors[1]
    assert LiteColorizer(path, size=np.int64(32), temperature=np.float32(0.5)).size == 32  # numpy numbers are numbers


@pytest.mark.parametrize("fmt", ["jpg", "png", "tif", "webp"])
def test_both_engines_keep_the_photos_description_and_print_size(tiny_pair, tmp_path, fmt):
    """A phone scan turned by its EXIF orientation: the output is upright, keeps its resolution (dpi, turned with
    it), date, caption and copyright, and drops the orientation (a viewer would turn it again). Both engines used
    to drop all of it. Its catalogue, XMP and IPTC (title, keywords, credit), is kept, less what is not true of
    the output."""
    from PIL import ExifTags

    from colorize.metadata import _photoshop_segment

    model, path = tiny_pair
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.ImageDescription] = "grandma, 1931"
    exif[ExifTags.Base.Copyright] = "the family"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "1931:05:01 10:00:00"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.ImageUniqueID] = "0123456789abcdef0123456789abcdef"  # the scan's
    src = tmp_path / "scan.jpg"
    make_photo(64, 48).convert("L").save(src, exif=exif, dpi=(600, 300), xmp=ARCHIVE_XMP,
                                         extra=_photoshop_segment(ARCHIVE_IPTC))
    for name, engine in (("light", LiteColorizer(path)), ("torch", Colorizer(model))):
        dst = tmp_path / name / f"scan.{fmt}"
        engine.colorize_file(src, dst)
        with Image.open(dst) as out:
            kept = out.getexif()
            assert out.size == (48, 64) and kept.get(ExifTags.Base.Orientation, 1) == 1, name
            assert kept[ExifTags.Base.ImageDescription] == "grandma, 1931"
            assert kept[ExifTags.Base.Copyright] == "the family"
            assert kept.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "1931:05:01 10:00:00"
            assert ExifTags.Base.ImageUniqueID not in kept.get_ifd(ExifTags.IFD.Exif)  # a new image
            if fmt != "webp":  # WebP has no resolution
                assert np.allclose(out.info["dpi"], (300, 600), rtol=1e-3), (name, out.info["dpi"])
            assert_archive_xmp_kept(out.info["xmp"])
            if fmt in ("jpg", "tif"):
                assert_archive_iptc_kept(out)
    long = Image.Exif()
    long[ExifTags.Base.ImageDescription] = "a caption longer than a JPEG holds " * 2000
    make_photo(64, 48).convert("L").save(tmp_path / "long.png", exif=long)
    LiteColorizer(path).colorize_file(tmp_path / "long.png", tmp_path / "long.jpg")  # written, without it
    assert Image.open(tmp_path / "long.jpg").size == (64, 48)


@pytest.mark.parametrize("fmt", ["jpg", "png", "tif", "webp"])
def test_every_output_says_it_was_colorized(tiny_pair, tmp_path, fmt):
    """A photo with no metadata at all comes out saying what it is, where catalogues and viewers read it: the EXIF's
    Software names this program, the XMP too, with IPTC's digital source type for a capture combined with a trained
    model's output. Colorized photos used to be indistinguishable from color photographs by their files."""
    from PIL import ExifTags

    from colorize import __version__

    model, path = tiny_pair
    make_photo(64, 48).convert("L").save(tmp_path / "plain.png")
    for name, engine in (("light", LiteColorizer(path)), ("torch", Colorizer(model))):
        engine.colorize_file(tmp_path / "plain.png", tmp_path / name / f"plain.{fmt}")
        with Image.open(tmp_path / name / f"plain.{fmt}") as out:
            assert out.getexif()[ExifTags.Base.Software] == f"colorize {__version__}", name
            assert_marked_colorized(out.info["xmp"])


def test_both_engines_keep_a_photos_transparency(tiny_pair, tmp_path):
    """A cut-out (transparent background) comes back transparent where the format can hold it (PNG, WebP,
    TIFF), on white in a JPEG; both engines used to put every one on white. An opaque alpha channel is not kept."""
    model, path = tiny_pair
    photo = make_photo(64, 48).convert("LA")
    alpha = Image.fromarray(np.where(np.arange(64)[None, :] < 40, 255, 0).repeat(48, 0).astype(np.uint8))
    photo.putalpha(alpha)
    photo.save(tmp_path / "cutout.png")
    photo.convert("RGBA").convert("RGB").convert("RGBA").save(tmp_path / "opaque.png")
    for name, engine in (("light", LiteColorizer(path)), ("torch", Colorizer(model))):
        for fmt in ("png", "webp", "tif", "jpg"):
            engine.colorize_file(tmp_path / "cutout.png", tmp_path / name / f"cutout.{fmt}")
            with Image.open(tmp_path / name / f"cutout.{fmt}") as out:
                assert out.mode == ("RGB" if fmt == "jpg" else "RGBA"), (name, fmt)
                if fmt != "jpg":
                    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(alpha)), (name, fmt)
        engine.colorize_file(tmp_path / "opaque.png", tmp_path / name / "opaque.png")
        assert Image.open(tmp_path / name / "opaque.png").mode == "RGB"


def test_both_engines_read_a_pil_photos_color_profile_as_files_are_read(tiny_pair, tmp_path):
    """``colorizer(Image.open(path))`` colors a tagged photo as ``colorize path`` does: its ICC profile honored
    (from Python it used to be ignored)."""
    from colorize.io import load_input
    from helpers import icc_profile

    model, path = tiny_pair
    make_photo(64, 48).convert("L").save(tmp_path / "linear.png", icc_profile=icc_profile("GRAY", 1.0))
    read, _ = load_input(tmp_path / "linear.png")
    assert np.asarray(read).mean() > np.asarray(Image.open(tmp_path / "linear.png")).mean() + 20  # linear: lighter
    for engine in (LiteColorizer(path), Colorizer(model)):
        with Image.open(tmp_path / "linear.png") as opened:
            from_pil = np.asarray(engine(opened))
        assert _max_level_difference(from_pil, np.asarray(engine(read))) == 0, type(engine).__name__
    prediction = Colorizer(model).analyze(Image.open(tmp_path / "linear.png"))  # the web app's path
    from_file = np.asarray(Colorizer(model)(read))
    assert _max_level_difference(np.asarray(Colorizer(model).render(prediction)), from_file) <= 1


def test_export_with_a_fixed_temperature_says_so(tmp_path):
    """An export made before the temperature was an input (version 3) runs at its own and refuses another."""
    import onnx

    from colorize.onnx import OnnxModel, export_onnx

    path = export_onnx(tiny_bins_model(), tmp_path / "t.onnx", size=32, temperature=0.5)
    proto = onnx.load(path)  # fix the temperature input to 0.5, as the former exports baked it in
    (t_input,) = [i for i in proto.graph.input if i.name == "temperature"]
    proto.graph.input.remove(t_input)
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.array(0.5, np.float32), "temperature"))
    onnx.save(proto, tmp_path / "fixed.onnx")
    fixed, current = LiteColorizer(tmp_path / "fixed.onnx", size=48), LiteColorizer(path, size=48)
    assert not fixed.info.takes_temperature and fixed.temperature == 0.5
    assert _max_level_difference(fixed.colorize_uint8(_photos()[0]), current.colorize_uint8(_photos()[0])) == 0
    for make in (lambda: LiteColorizer(tmp_path / "fixed.onnx", temperature=0.3),
                 lambda: OnnxModel(tmp_path / "fixed.onnx").predict_ab(torch.zeros(1, 1, 32, 32), temperature=0.3)):
        with pytest.raises(ValueError, match="fixed.onnx: this export fixes its temperature at 0.5"):
            make()


def test_shipped_model_agrees_in_both_engines(monkeypatch):
    """The shipped ONNX export is the shipped safetensors (``make onnx``): same photos within one level."""
    monkeypatch.delenv("COLORIZE_WEIGHTS", raising=False)
    light, torch_engine = LiteColorizer(), Colorizer()
    assert (light.size, light.temperature) == (torch_engine.size, torch_engine.temperature)
    for photo in _photos()[:2]:
        out = light.colorize_uint8(photo)
        assert _max_level_difference(out, torch_engine.colorize_uint8(photo)) <= 1
        assert np.ptp(out.astype(int), axis=2).mean() > 1  # colored, not gray


def test_shipped_graphs_are_the_current_steps(tmp_path):
    """graphs/*.onnx are exports of steps.py as it is now: a fresh export computes the same."""
    import onnxruntime as ort

    steps.export_graphs(tmp_path)
    rng = np.random.default_rng(0)
    wide = rng.normal(0, 0.5, (1, 4, 9, 50)).astype(np.float32)
    inputs = {"lab": {"rgb": rng.uniform(0, 1, (1, 3, 6, 9)).astype(np.float32)},
              "gray_lightness": {"gray": rng.integers(0, 256, (1, 1, 11, 17), dtype=np.uint8)},
              "lightness": {"rgb": rng.integers(0, 256, (1, 11, 17, 3), dtype=np.uint8)},
              "coefficients": {"l_small": rng.uniform(0, 100, (1, 1, 9, 13)).astype(np.float32),
                               "ab": rng.normal(0, 0.4, (1, 2, 9, 13)).astype(np.float32),
                               "row": np.zeros((1, 50), np.float32)},
              "compose": {"wide": wide, "l": rng.uniform(0, 100, (1, 1, 7, 50)).astype(np.float32),
                          "first_row": np.array(5, np.int64), "height": np.array(40, np.int64)},
              "gray16_lightness": {"gray": rng.integers(0, 1 << 16, (1, 1, 11, 17), dtype=np.int32)}}
    inputs["compose16"] = inputs["compose"]
    for name in layout.GRAPHS:
        shipped = ort.InferenceSession(str(graphs_dir() / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        fresh = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        a, b = shipped.run(None, inputs[name])[0], fresh.run(None, inputs[name])[0]
        assert np.array_equal(a, b), f"graphs/{name}.onnx is stale: run `make onnx`"


@pytest.mark.parametrize("size,small", [((157, 203), (48, 64)), ((400, 600), (171, 256)), ((64, 64), (64, 64)),
                                        ((33, 500), (16, 256))])
def test_pillow_reduction_is_torch_antialiased_bilinear(size, small):
    """The working-size lightness: Pillow's bilinear reduction (light) = F.interpolate(antialias=True) (torch)."""
    rng = np.random.default_rng(0)
    l_full = (rng.uniform(0, 100, size) * 0.2 + np.linspace(0, 80, size[1])[None]).astype(np.float32)
    pil = np.asarray(Image.fromarray(l_full).resize(small[::-1], Image.BILINEAR))
    ref = F.interpolate(torch.from_numpy(l_full)[None, None], size=small, mode="bilinear", align_corners=False,
                        antialias=True)[0, 0].numpy()
    assert np.abs(pil - ref).max() < 1e-3


def test_row_strips_resize_as_the_whole_map():
    small = torch.rand(1, 4, 9, 13)
    whole = F.interpolate(small, size=(70, 50), mode="bilinear", align_corners=False)
    wide = F.interpolate(small, size=(9, 50), mode="bilinear", align_corners=False)
    for r0, rows in [(0, 70), (0, 1), (13, 20), (69, 1)]:
        strip = steps.resize_rows(wide, torch.tensor(r0), rows, 70)
        assert torch.allclose(strip, whole[:, :, r0:r0 + rows], atol=1e-6)


def test_light_engine_refuses_what_needs_torch(tiny_pair, tmp_path):
    _, path = tiny_pair
    light = LiteColorizer(path, size=32)
    src = tmp_path / "p.png"
    make_photo().save(src)
    with pytest.raises(ValueError, match="hints, confidence.*colorize\\[torch\\]"):
        light.colorize_file(src, tmp_path / "o.png", hints=["1,1,red"], confidence=True)
    with pytest.raises(TypeError, match="PIL image"):
        light(torch.zeros(3, 8, 8))
    assert not (tmp_path / "o.png").exists()
    light.colorize_file(src, tmp_path / "o.png")
    assert Image.open(tmp_path / "o.png").size == Image.open(src).size


def test_both_engines_read_arrays_by_one_rule(tiny_pair):
    """A float array of 0..255 values was clipped to 1 (a white photo), an int64 one of 0..255 scaled by 2**63 (a
    black one), without a word; the light engine refused the (H, W, 1) and (H, W, 4) uint8 arrays the torch one
    took (naming torch as the cure), and an empty array failed deep inside with ZeroDivisionError."""
    model, path = tiny_pair
    engines = (LiteColorizer(path, size=32), Colorizer(model, size=32))
    rgb = _photos()[0]
    gray = np.array(Image.fromarray(rgb).convert("L"))
    for engine in engines:
        assert np.array_equal(engine(gray[:, :, None]), engine(gray))
        assert np.array_equal(engine(np.dstack([rgb, np.full_like(gray, 255)])), engine(rgb))
        with pytest.raises(ValueError, match=r"\[0, 1\].*divide by 255"):
            engine(rgb.astype(np.float32))
        with pytest.raises(ValueError, match="nan"):
            engine(np.full((8, 8, 3), np.nan, np.float32))
        for dtype in (np.int64, np.int32, bool):
            with pytest.raises(TypeError, match=f"{np.dtype(dtype)} arrays.*uint8"):
                engine(gray.astype(dtype))
        for shape in ((0, 0), (0, 5, 3)):
            with pytest.raises(ValueError, match="no pixels"):
                engine(np.zeros(shape, np.uint8))
        with pytest.raises(ValueError, match=r"\(H, W, 4\), got \(3, 8, 8\)"):
            engine(np.zeros((3, 8, 8), np.uint8))
    torch_engine = engines[1]
    assert np.array_equal(torch_engine.render(torch_engine.analyze(gray[:, :, None])), torch_engine(gray))
    with pytest.raises(ValueError, match="divide by 255"):
        torch_engine.analyze(rgb.astype(np.float64))
    near = torch_engine(np.clip(rgb / 255 + 1e-4, 0, None))  # rounding past 1: clipped
    assert np.abs(near - torch_engine(rgb / 255)).max() < 2e-3


def test_both_engines_name_an_image_without_pixels(tiny_pair):
    """A crop outside the photo (a 0x0 or 5x0 PIL image) failed with ZeroDivisionError, a torch size error or
    'max_workers must be greater than 0'."""
    model, path = tiny_pair
    photo = make_photo(40, 30)
    torch_engine = Colorizer(model, size=32)
    for engine in (LiteColorizer(path, size=32), torch_engine):
        for box in ((10, 10, 10, 10), (10, 10, 15, 10), (10, 10, 10, 20)):
            empty = photo.crop(box)
            with pytest.raises(ValueError, match=f"no pixels: {empty.width}x{empty.height}"):
                engine(empty)
    with pytest.raises(ValueError, match="no pixels: 5x0"):
        torch_engine.analyze(photo.crop((10, 10, 15, 10)))


def test_tone_is_told_alike_by_both_engines(tiny_pair):
    """Gray, toned or color: the light engine measures the thumbnail's Lab with the export of rgb_to_lab."""
    from colorize.tone import classify

    _, path = tiny_pair
    light = LiteColorizer(path, size=32)
    gray = make_photo(120, 90).convert("L").convert("RGB")
    sepia = np.asarray(gray).astype(np.float32) * np.array([1.0, 0.85, 0.65], np.float32)
    photos = {"gray": gray, "toned": Image.fromarray(sepia.astype(np.uint8)), "color": make_photo(120, 90)}
    for kind, photo in photos.items():
        torch_report, light_report = classify(photo), classify(photo, to_lab=light.to_lab)
        assert torch_report.kind == light_report.kind == kind
        assert abs(torch_report.colored - light_report.colored) < 0.01


def test_shipped_onnx_is_checked_against_its_sha256(tmp_path, monkeypatch):
    spec = shipped.SHIPPED[shipped.DEFAULT_MODEL]
    monkeypatch.delenv("COLORIZE_WEIGHTS", raising=False)
    original = shipped.weights_dir() / spec.onnx
    changed = bytearray(original.read_bytes())
    changed[-10] ^= 1
    (tmp_path / spec.onnx).write_bytes(changed)
    monkeypatch.setenv("COLORIZE_WEIGHTS", str(tmp_path))
    with pytest.raises(ValueError, match="does not match the expected"):
        LiteColorizer()


# A process in which torch, torchvision, timm and safetensors cannot be imported: the light install. The error is
# a missing module's, which optional imports (webdataset's of torch) expect.
NO_TORCH = textwrap.dedent("""
    import importlib.abc, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "timm", "safetensors"):
                raise ModuleNotFoundError("no module named " + name)
    sys.meta_path.insert(0, Block())
    from colorize.cli import main
    code = main(sys.argv[1:])
    assert not any(m.split(".")[0] == "torch" for m in sys.modules), "torch was imported"
    sys.exit(code)
""")


def _colorize_without_torch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "COLORIZE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), **(env or {})})


def test_cli_colorizes_a_folder_without_torch(tmp_path, tiny_pair):
    _, path = tiny_pair
    (tmp_path / "in").mkdir()
    for i in range(2):
        make_photo(80, 60, seed=i).convert("L").save(tmp_path / "in" / f"p{i}.png")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    run = _colorize_without_torch(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(path))
    assert run.returncode == 1, run.stderr  # one bad file among good ones: the rest are done
    assert "broken.jpg" in run.stderr and "Traceback" not in run.stderr
    for i in range(2):
        out = Image.open(tmp_path / "out" / f"p{i}.png")
        assert out.mode == "RGB" and out.size == (80, 60)
        assert np.ptp(np.asarray(out).astype(int), axis=2).mean() > 1  # in color
    assert "inputs: 2 gray" in run.stdout

    make_photo(80, 60, seed=5).save(tmp_path / "in" / "color.png")  # already in color: warned, with what serves
    run = _colorize_without_torch(str(tmp_path / "in" / "color.png"), "-o", str(tmp_path / "warned.png"),
                                  "--model", str(path))
    assert run.returncode == 0 and "--keep-color writes" in run.stderr, run.stderr
    assert "--tint-as-hints" not in run.stderr  # it needs torch: not offered on the light install

    run = _colorize_without_torch(str(tmp_path / "in" / "color.png"), "-o", str(tmp_path / "kept.png"),
                                  "--model", str(path), "--keep-color")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "kept.png").read_bytes() == (tmp_path / "in" / "color.png").read_bytes()


def test_cli_colorizes_tar_shards_without_torch(tmp_path, tiny_pair):
    """A photo inside a tar shard goes through the light engine as a file does, to OUT/<key>.<ext>."""
    import io
    import tarfile

    _, path = tiny_pair
    photos = {"sub/p0.png": make_photo(80, 60, seed=0).convert("L"), "p1.png": make_photo(80, 60, seed=1).convert("L"),
              "color.png": make_photo(80, 60, seed=5)}
    files = {}
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        for name, photo in photos.items():
            buf = io.BytesIO()
            photo.save(buf, format="PNG")
            files[name] = buf.getvalue()
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            tar.addfile(info, io.BytesIO(files[name]))
    run = _colorize_without_torch(str(tmp_path / "s.tar"), "-o", str(tmp_path / "out"), "--model", str(path),
                                  "--keep-color")
    assert run.returncode == 0, run.stderr
    assert "inputs: 2 gray, 1 color" in run.stdout
    assert (tmp_path / "out" / "color.png").read_bytes() == files["color.png"]  # kept: its bytes in the shard
    for name in ("sub/p0.png", "p1.png"):
        out = Image.open(tmp_path / "out" / name)
        assert out.mode == "RGB" and out.size == (80, 60) and np.ptp(np.asarray(out).astype(int), axis=2).mean() > 1


def test_a_weight_files_cached_export_serves_without_torch(tmp_path, tiny_model_file, monkeypatch):
    """Your own weights, exported once (``--runtime onnx`` on the torch install), then start as fast as a shipped
    model: the cached export is found without importing torch, also on the light install."""
    from colorize.cli import main
    from colorize.shipped import cached_onnx

    photo = tmp_path / "p.png"
    make_photo(80, 60, seed=3).convert("L").save(photo)
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    args = [str(photo), "--model", str(tiny_model_file), "-q"]
    run = _colorize_without_torch(*args, "-o", str(tmp_path / "before.png"), env={"XDG_CACHE_HOME": str(cache)})
    assert run.returncode == 2 and "exported to ONNX first" in run.stderr, run.stderr
    exported = cached_onnx(tiny_model_file, folder=cache / "colorize" / "onnx")
    assert main([*args, "-o", str(tmp_path / "torch.png"), "--runtime", "onnx"]) == 0  # the torch install's
    run = _colorize_without_torch(*args, "-o", str(tmp_path / "light.png"), env={"XDG_CACHE_HOME": str(cache)})
    assert run.returncode == 0, run.stderr  # NO_TORCH asserts that torch was not imported
    assert np.array_equal(np.asarray(Image.open(tmp_path / "light.png")), np.asarray(Image.open(tmp_path / "torch.png")))
    assert sorted(cache.rglob("*.onnx")) == [exported]  # found, not exported again


def test_cli_without_torch_names_what_needs_it(tmp_path):
    make_photo().save(tmp_path / "p.png")
    for args in (["--hint", "1,1,red"], ["--tint-as-hints"], ["--device", "cuda"], ["--runtime", "torch"]):
        run = _colorize_without_torch(str(tmp_path / "p.png"), "-o", str(tmp_path / "o.png"), *args)
        assert run.returncode == 2 and "colorize[torch]" in run.stderr and "Traceback" not in run.stderr, run.stderr
    run = _colorize_without_torch("serve")  # a subcommand of the full install, named with its extra, not just torch
    assert run.returncode == 2 and "colorize[web]" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "o.png").exists()


def test_the_torch_api_on_the_light_install_names_the_extra_and_the_light_engine(monkeypatch):
    """The README's `from colorize import Colorizer` on the light install was a bare "No module named 'torch'"; it
    now names the extra to install and LiteColorizer, which the light install has."""
    import colorize

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch: ModuleNotFoundError, as without it
    monkeypatch.delitem(sys.modules, "colorize.pipeline")
    with pytest.raises(ModuleNotFoundError, match=r"colorize\.Colorizer needs torch: pip install 'colorize\[torch\]'.*"
                                                  r"LiteColorizer") as e:
        colorize.Colorizer  # noqa: B018 - the lazy attribute is the import
    assert e.value.name == "torch"


def test_models_lists_the_shipped_ones_without_torch():
    """--temperature's help sends the user to `colorize models` for the tuned default: on the light install it used
    to answer 'needs the torch engine'."""
    from colorize.shipped import DEFAULT_MODEL, recorded_defaults

    run = _colorize_without_torch("models")
    assert run.returncode == 0, run.stderr
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith(DEFAULT_MODEL))
    assert f"temperature {recorded_defaults(DEFAULT_MODEL)['temperature']:g}" in line and "(default)" in line
    assert "colorize[torch]" in run.stdout  # what the other architectures need
    assert "colorize[train]" in run.stdout  # and training them: recipes, backbone weights, not torch alone


def test_auto_runtime_picks_the_light_engine_where_it_serves(monkeypatch):
    import argparse

    from colorize.commands.options import build_colorizer

    monkeypatch.delenv("COLORIZE_WEIGHTS", raising=False)
    args = dict(runtime="auto", model=None, size=None, temperature=None, saturation=1.0, threads=None, device="cpu")
    assert isinstance(build_colorizer(argparse.Namespace(**args)), LiteColorizer)
    bolder = build_colorizer(argparse.Namespace(**{**args, "temperature": 0.3}))
    assert isinstance(bolder, LiteColorizer) and bolder.temperature == 0.3
    # an option only the torch pipeline serves: that pipeline, its network still on onnxruntime (no timm import,
    # no model build: a hinted photo in about half the time), unless an option needs the torch network itself
    from colorize.onnx import OnnxModel

    hinted = build_colorizer(argparse.Namespace(**args), torch_options=["--hint"])
    assert isinstance(hinted, Colorizer) and isinstance(hinted.model, OnnxModel)
    sure = build_colorizer(argparse.Namespace(**args), torch_options=["--hint", "--confidence"],
                           network_options=["--confidence"])
    assert isinstance(sure, Colorizer) and not isinstance(sure.model, OnnxModel) and sure.has_confidence


def test_a_hinted_photo_does_not_import_timm(tmp_path):
    """The torch pipeline around an ONNX network builds no torch model: it leaves timm's import (2 s of start-up)
    alone, as the first hint's start-up depends on it."""
    photo = tmp_path / "p.png"
    make_photo(80, 60, seed=1).convert("L").save(photo)
    code = ("import sys; from colorize.cli import main; code = main(sys.argv[1:]); "
            "assert 'timm' not in sys.modules, 'timm was imported'; sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", code, str(photo), "-o", str(tmp_path / "out.png"), "-q",
                          "--hint", "10,10,red"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "out.png").size == (80, 60)


def _read16(path: Path) -> np.ndarray:
    """A 16-bit RGB output, (H, W, 3) uint16 (Pillow reads such files in 8 bits)."""
    if path.suffix == ".png":
        import png

        width, height, rows, info = png.Reader(filename=str(path)).read()
        assert info["bitdepth"] == 16, path
        return np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, -1)
    import tifffile

    return tifffile.imread(path)


def _lightness_error(rgb16: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """How far (in 16-bit levels; an 8-bit level is 257) the lightness of each pixel of a 16-bit sRGB image is from
    that of gray ``levels``: its CIE L made neutral gray, against the level. Pixels with a channel at 0 or 65535 are
    left out (NaN): the gamut fit's tolerance lets a vivid color a little past the gamut, and its clipping shifts
    the lightness (in 8 bits alike)."""
    from colorize.color import gray_from_l, rgb_to_l

    l = rgb_to_l(torch.from_numpy(rgb16.astype(np.float64) / 65535).permute(2, 0, 1))
    error = np.abs(gray_from_l(l)[0].numpy() * 65535 - levels)
    error[((rgb16 == 0) | (rgb16 == 65535)).any(axis=2)] = np.nan
    assert np.isnan(error).mean() < 0.1  # nearly every pixel is inside the gamut
    return error


@pytest.mark.parametrize("name", ["master.png", "master.tif"])
def test_both_engines_keep_a_16bit_masters_lightness_in_16_bits(tiny_pair, tmp_path, name):
    """An archivist's 16-bit gray master used to come out in 8 bits, the tonal depth of the scan lost (its lightness
    off by up to half an 8-bit level, 128 in 16-bit units). A PNG or TIFF output is now 16-bit RGB whose lightness
    is the master's to a small fraction of an 8-bit level, on both engines, with its print size kept."""
    model, path = tiny_pair
    y, x = np.mgrid[0:60, 0:90].astype(np.float64)
    levels = (3000 + x / 90 * 50000 + 6000 * np.sin(y / 12) + y * 3.7).round().astype(np.uint16)  # smooth gradients
    Image.fromarray(levels).save(tmp_path / name, dpi=(1200, 1200))
    outs = {}
    for engine in (LiteColorizer(path, size=48), Colorizer(model, size=48)):
        for ext in ("tif", "png"):
            dst = tmp_path / type(engine).__name__ / f"out.{ext}"
            assert engine.colorize_file(tmp_path / name, dst).eight_bit == ""
            out = outs[type(engine).__name__, ext] = _read16(dst)
            assert out.dtype == np.uint16 and out.shape == (60, 90, 3)
            assert np.ptp(out.astype(int), axis=2).mean() > 257  # in color
            assert np.nanmax(_lightness_error(out, levels)) < 2, (type(engine).__name__, ext)  # in 8 bits: ~128
            with Image.open(dst) as written:
                assert np.allclose(written.info["dpi"], (1200, 1200), rtol=1e-3)
    light, torch_out = outs["LiteColorizer", "tif"], outs["Colorizer", "tif"]
    assert np.array_equal(outs["LiteColorizer", "png"], light)
    assert np.abs(light.astype(int) - torch_out.astype(int)).max() <= 257  # the engines agree within an 8-bit level
    for engine in (LiteColorizer(path, size=48), Colorizer(model, size=48)):  # arrays: uint16 in, uint16 out
        for given in (levels, levels.astype(">u2"), levels[..., None]):
            out = engine(given)
            assert out.dtype == np.uint16 and out.shape == (60, 90, 3)
            assert np.nanmax(_lightness_error(out, levels)) < 2


def test_cli_writes_16bit_masters_in_16_bits_or_says_once_why_not(tmp_path, tiny_pair):
    """A folder of 16-bit masters on the light install: TIFF outputs are 16-bit RGB; JPEG ones stay 8-bit (as before)
    and the run says once, not once a photo, that they were written in 8 bits and which --format keeps them."""
    _, path = tiny_pair
    (tmp_path / "in").mkdir()
    for i in range(2):
        levels = (np.linspace(2000, 60000, 80 * 60).reshape(60, 80) + 900 * i).astype(np.uint16)
        Image.fromarray(levels).save(tmp_path / "in" / f"m{i}.{('png', 'tif')[i]}")
    make_photo(80, 60).convert("L").save(tmp_path / "in" / "eight.png")
    run = _colorize_without_torch(str(tmp_path / "in"), "-o", str(tmp_path / "jpg"), "--format", "jpg",
                                  "--model", str(path))
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("16-bit") == 1 and "warning: 2 16-bit inputs written in 8 bits" in run.stderr, run.stderr
    assert "PNG and TIFF keep 16 bits: --format png or --format tif (or an output named .png or .tif)" in run.stderr
    assert {Image.open(tmp_path / "jpg" / f"m{i}.jpg").mode for i in range(2)} == {"RGB"}
    run = _colorize_without_torch(str(tmp_path / "in"), "-o", str(tmp_path / "tif"), "--format", "tif",
                                  "--model", str(path))
    assert run.returncode == 0 and "16-bit" not in run.stderr, run.stderr
    for i in range(2):
        assert _read16(tmp_path / "tif" / f"m{i}.tif").dtype == np.uint16
    assert _read16(tmp_path / "tif" / "eight.tif").dtype == np.uint8  # 8-bit in, 8-bit out
