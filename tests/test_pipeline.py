import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from colorize.color import gray_rgb_from_l, lab_to_rgb, normalize_ab, normalize_l, rgb_to_l, rgb_to_lab
from colorize import layout
from colorize.pipeline import Colorizer, guided_upsample, working_shape
from helpers import make_photo, tiny_bins_model


@pytest.fixture(scope="module")
def colorizer(tiny_model_file):
    return Colorizer(tiny_model_file)


def _lab(img) -> torch.Tensor:
    """PIL / (H, W, 3) uint8 array -> (3, H, W) float64 Lab."""
    arr = np.array(img, dtype=np.float64) / 255.0
    return rgb_to_lab(torch.from_numpy(arr).permute(2, 0, 1))


def _hue_error_deg(lab: torch.Tensor, ab: torch.Tensor, min_chroma: float = 5.0) -> torch.Tensor:
    """Hue difference (degrees) between every colored pixel of ``lab`` (3, H, W) and the ab direction ``ab`` (2,)."""
    chroma = lab[1:].norm(dim=0)
    hue = torch.atan2(lab[2], lab[1])[chroma > min_chroma]
    diff = torch.remainder(hue - torch.atan2(ab[1], ab[0]) + torch.pi, 2 * torch.pi) - torch.pi
    return diff.abs().rad2deg()


def test_large_photo_keeps_size_and_lightness_and_gets_color(colorizer):
    photo = make_photo(1000, 667)
    out = colorizer(photo)
    assert isinstance(out, Image.Image) and out.size == (1000, 667) and out.mode == "RGB"
    lab_in, lab_out = _lab(photo), _lab(out)
    assert (lab_in[0] - lab_out[0]).abs().mean() < 1.0  # L in [0, 100]
    assert lab_out[1:].norm(dim=0).mean() > 10  # clearly not gray


@pytest.mark.parametrize("size", [(33, 17), (17, 33), (9, 9), (8, 100), (1, 1), (3, 2)])
def test_odd_and_tiny_sizes(colorizer, size):
    photo = make_photo(64, 64).resize(size, Image.Resampling.BILINEAR)
    out = colorizer(photo)
    assert out.size == size
    assert (_lab(photo)[0] - _lab(out)[0]).abs().max() < 1.5


def test_returns_the_type_it_was_given(colorizer):
    photo = make_photo(40, 24)
    rgb = np.asarray(photo)
    gray = np.asarray(photo.convert("L"))

    out = colorizer(photo.convert("L"))
    assert isinstance(out, Image.Image) and out.size == (40, 24) and out.mode == "RGB"

    for arr in (rgb, gray):
        out = colorizer(arr)
        assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (24, 40, 3)
    for dtype in (np.float32, np.float64):
        out = colorizer(rgb.astype(dtype) / 255)
        assert out.dtype == dtype and out.shape == (24, 40, 3) and 0 <= out.min() and out.max() <= 1
    deep = colorizer(rgb.astype(np.uint16) * 257)
    assert deep.dtype == np.uint16 and deep.max() > 255  # the full 16-bit range is used
    assert np.abs(deep.astype(np.float64) / 257 - colorizer(rgb)).max() <= 1.0

    t = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255
    assert colorizer(t).shape == (3, 24, 40)
    batch = torch.stack([t, t.flip(-1)])
    out = colorizer(batch)
    assert out.shape == (2, 3, 24, 40) and out.dtype == torch.float32
    assert torch.allclose(out[0], colorizer(t), atol=1e-5)  # batch items are independent

    with pytest.raises(TypeError, match="PIL image, numpy array or torch tensor"):
        colorizer([[0, 1]])
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        colorizer(np.zeros((4, 8, 8), np.uint8))


def test_tensors_are_checked_before_the_work(colorizer):
    """A float tensor of 0..255 values was clipped to a white photo without a word; an (H, W, 3) or (H, W) tensor,
    a 4-channel one or an empty one failed deep in torch (a matrix product's size mismatch, ZeroDivisionError)."""
    t = torch.from_numpy(np.asarray(make_photo(40, 24), dtype=np.float32) / 255).permute(2, 0, 1)
    with pytest.raises(ValueError, match=r"\[0, 1\].*divide by 255"):
        colorizer(t * 255)
    with pytest.raises(ValueError, match=r"\[0, 1\].*nan"):
        colorizer(torch.full((3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match=r"got \(24, 40, 3\); channels go first"):
        colorizer(t.permute(1, 2, 0))
    for shape in [(24, 40), (4, 24, 40), (2, 2, 3, 8, 8)]:
        with pytest.raises(ValueError, match=r"\(3, H, W\) or \(B, 3, H, W\)"):
            colorizer(torch.zeros(shape))
    with pytest.raises(ValueError, match="no pixels"):
        colorizer(torch.zeros(3, 0, 5))
    with pytest.raises(TypeError, match="torch.int64 tensors"):
        colorizer((t * 255).long())
    with pytest.raises(ValueError, match="divide by 255"):
        colorizer.analyze(t * 255)
    assert torch.equal(colorizer(t.double()), colorizer(t))  # other floats: read as float32


def test_big_endian_arrays_are_read(colorizer):
    """FITS files (astropy) and some TIFF readers give big-endian arrays: torch.from_numpy refused them ('byte order
    different from the native byte order')."""
    rgb = np.asarray(make_photo(40, 24))
    for native in (rgb.astype(np.float32) / 255, rgb.astype(np.uint16) * 257):
        swapped = native.astype(native.dtype.newbyteorder(">" if native.dtype.byteorder != ">" else "<"))
        out = colorizer(swapped)
        assert out.dtype == swapped.dtype and np.array_equal(out, colorizer(native))
        assert np.array_equal(colorizer.render(colorizer.analyze(swapped)), colorizer.render(colorizer.analyze(native)))


def test_a_uint8_tensor_comes_back_uint8(colorizer):
    """As a uint8 array does: a uint8 tensor (torchvision's read_image) came back float32 in [0, 1]."""
    rgb = np.asarray(make_photo(40, 24))
    t = torch.from_numpy(rgb.copy()).permute(2, 0, 1)
    out = colorizer(t)
    assert out.dtype == torch.uint8 and out.shape == (3, 24, 40)
    assert np.array_equal(out.permute(1, 2, 0).numpy(), colorizer(rgb))
    batch = colorizer(torch.stack([t, t])[:, :1])  # gray batch
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 24, 40)


def test_color_input_is_treated_as_gray(colorizer):
    """Only L reaches the network: photos with the same L and different colors give the same result."""
    x = torch.from_numpy(np.asarray(make_photo(64, 48), dtype=np.float32) / 255).permute(2, 0, 1)
    gray = gray_rgb_from_l(rgb_to_l(x))
    assert (x - gray).abs().max() > 0.3  # the inputs do differ
    assert torch.allclose(colorizer(x), colorizer(gray), atol=2e-3)


def test_exif_orientation_is_honored(colorizer, tmp_path):
    photo = make_photo(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    photo.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "rot.jpg") as img:
        out = colorizer(img)
    assert out.size == (40, 80)
    upright = photo.transpose(Image.Transpose.ROTATE_270)
    assert (_lab(upright)[0] - _lab(out)[0]).abs().mean() < 2.0  # JPEG error only

    colorizer.colorize_file(tmp_path / "rot.jpg", tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").size == (40, 80)


@pytest.mark.parametrize("ab", [(60.0, -80.0), (100.0, 100.0), (-90.0, 60.0)])
def test_output_keeps_lightness_and_hue_of_out_of_gamut_predictions(colorizer, ab):
    """Colors sRGB cannot show lose chroma, not lightness or hue (clipping channels changes both)."""
    x = torch.from_numpy(np.asarray(make_photo(64, 48), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    target = torch.tensor(ab)
    prepared = colorizer.prepare(x)
    ab_small = normalize_ab(target).view(1, 2, 1, 1).expand(1, 2, *prepared.l_small.shape[-2:]).contiguous()
    lab = rgb_to_lab(colorizer.compose(prepared, ab_small))[0]
    l_in = prepared.l_full[0, 0]
    assert (lab[0] - l_in).abs().max() < 0.2
    assert _hue_error_deg(lab, target).max() < 2.0

    # the naive way (convert, then clip RGB) is visibly wrong on the same input: the check can fail
    clipped = rgb_to_lab(lab_to_rgb(torch.cat([prepared.l_full[0], target.view(2, 1, 1).expand(2, *l_in.shape)])))
    assert (clipped[0] - l_in).abs().mean() > 1.0 and _hue_error_deg(clipped, target).max() > 4.0


def test_saturation_zero_gives_gray_and_scales_chroma(tiny_model_file):
    photo = make_photo(48, 32)
    chroma = {s: _lab(Colorizer(tiny_model_file, saturation=s)(photo))[1:].norm(dim=0).mean().item()
              for s in (0.0, 0.5, 1.0)}
    assert chroma[0.0] < 1.0  # uint8 rounding only
    assert chroma[0.0] < chroma[0.5] < chroma[1.0]


def test_bad_settings_raise(tiny_model_file):
    for kwargs, pattern in [({"temperature": 0}, "temperature"), ({"temperature": -1.0}, "temperature"),
                            ({"saturation": -0.5}, "saturation"), ({"size": 4}, "size")]:
        with pytest.raises(ValueError, match=pattern):
            Colorizer(tiny_model_file, **kwargs)
    with pytest.raises(FileNotFoundError):
        Colorizer(tiny_model_file.parent / "missing.safetensors")


def test_guided_upsample_keeps_a_step_edge_sharp():
    """ab that follows an L edge at low resolution comes back sharp at full resolution."""
    full = 64
    guide_full = torch.full((1, 1, full, full), -0.6)
    guide_full[..., 27:] = 0.7  # the edge does not fall on the 4x downsampling grid
    ab_full = 0.1 - 0.5 * guide_full  # truth: the color follows the lightness
    guide_small = F.avg_pool2d(guide_full, 4)
    ab_small = F.avg_pool2d(ab_full, 4)

    guided = guided_upsample(guide_small, ab_small, guide_full)
    bilinear = F.interpolate(ab_small, size=(full, full), mode="bilinear", align_corners=False)
    err_guided = (guided - ab_full).abs().mean()
    err_bilinear = (bilinear - ab_full).abs().mean()
    assert err_guided < 0.2 * err_bilinear
    # the edge is one pixel wide: no intermediate values either side of it
    row = guided[0, 0, 32]
    assert torch.allclose(row[:27], ab_full[0, 0, 32, :27], atol=0.02)
    assert torch.allclose(row[27:], ab_full[0, 0, 32, 27:], atol=0.02)


@pytest.mark.parametrize("shape, radius", [((1, 2, 17, 9), 2), ((2, 1, 3, 4), 2), ((1, 3, 6, 6), 1)])
def test_box_filter_is_the_border_clipped_window_mean(shape, radius):
    from colorize.steps import _box

    torch.manual_seed(0)
    x = torch.rand(shape)
    want = torch.empty_like(x)  # the definition, one window at a time
    h, w = shape[-2:]
    for i in range(h):
        for j in range(w):
            win = x[..., max(0, i - radius): i + radius + 1, max(0, j - radius): j + radius + 1]
            want[..., i, j] = win.mean(dim=(-2, -1))
    assert torch.allclose(_box(x, radius), want, atol=1e-6)
    assert torch.allclose(_box(x.contiguous(memory_format=torch.channels_last), radius), want, atol=1e-6)


def test_guided_upsample_of_flat_color_is_flat():
    guide_full = torch.rand(1, 1, 40, 60) * 2 - 1
    guide_small = F.interpolate(guide_full, size=(10, 15), mode="area")
    out = guided_upsample(guide_small, torch.full((1, 2, 10, 15), 0.3), guide_full)
    assert out.shape == (1, 2, 40, 60) and torch.allclose(out, torch.full_like(out, 0.3), atol=1e-4)


@pytest.mark.parametrize("h, w, size, stride", [(667, 1000, 256, 8), (1000, 667, 256, 32), (100, 60, 256, 8),
                                                (9, 9, 256, 8), (1, 1, 256, 32), (4000, 37, 512, 16)])
def test_working_shape(h, w, size, stride):
    wh, ww = working_shape(h, w, size, stride)
    assert wh % stride == 0 and ww % stride == 0 and wh >= stride and ww >= stride
    scale = min(1.0, size / max(h, w))  # long side ~size, never upscaled
    assert abs(wh - h * scale) <= stride / 2 or wh == stride
    assert abs(ww - w * scale) <= stride / 2 or ww == stride
    assert max(wh, ww) <= max(size, stride) + stride / 2


def test_working_size_follows_the_size_setting(tiny_model_file):
    seen = []
    colorizer = Colorizer(tiny_model_file, size=64)
    model = colorizer.model
    hook = model.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    colorizer(make_photo(300, 200))
    hook.remove()
    assert seen == [working_shape(200, 300, 64, model.stride)] == [(40, 64)]


def test_predict_normalizes_l_for_the_model(colorizer):
    """The network sees normalized L in [-1, 1], not L in [0, 100]."""
    seen = []
    hook = colorizer.model.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    prepared = colorizer.prepare(torch.rand(1, 3, 32, 32))
    colorizer.predict(prepared.l_small)
    hook.remove()
    assert torch.allclose(seen[0], normalize_l(prepared.l_small))


def test_strip_compose_equals_whole_image_compose(tiny_model_file, monkeypatch):
    """Full-resolution work in row strips (flat memory) gives the same image as doing it at once."""
    import colorize.pipeline as pipeline
    from colorize.color import denormalize_ab, lab_to_rgb_in_gamut, normalize_l

    torch.manual_seed(0)
    colorizer = pipeline.Colorizer(tiny_model_file, size=64)
    rgb = torch.rand(1, 3, 157, 203)
    prepared = colorizer.prepare(rgb)
    ab_small = colorizer.predict(prepared.l_small)
    ab = pipeline.guided_upsample(normalize_l(prepared.l_small), ab_small, normalize_l(prepared.l_full))
    whole = lab_to_rgb_in_gamut(prepared.l_full, denormalize_ab(ab))
    monkeypatch.setattr(layout, "STRIP_PIXELS", 203 * 10)  # 16 strips, the last one partial
    strips = colorizer.compose(prepared, ab_small)
    assert (strips - whole).abs().max() < 1e-4
    as_uint8 = colorizer.compose(prepared, ab_small, uint8=True)
    assert as_uint8.dtype == torch.uint8
    assert (as_uint8.float() - whole * 255).abs().max() <= 1.0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_strip_prepare_equals_whole_image_lightness(tiny_model_file, monkeypatch, dtype):
    import colorize.pipeline as pipeline
    from colorize.color import rgb_to_l, uint8_rgb_to_l

    torch.manual_seed(0)
    colorizer = pipeline.Colorizer(tiny_model_file, size=64)
    rgb = torch.randint(0, 256, (1, 3, 157, 203), dtype=torch.uint8)
    rgb = rgb if dtype == torch.uint8 else rgb.float() / 255
    whole = uint8_rgb_to_l(rgb) if dtype == torch.uint8 else rgb_to_l(rgb)
    monkeypatch.setattr(layout, "STRIP_PIXELS", 203 * 10)  # 16 strips, the last one partial
    prepared = colorizer.prepare(rgb)
    assert prepared.l_full.shape == (1, 1, 157, 203)
    assert (prepared.l_full - whole).abs().max() < 1e-4  # the same up to vectorized float rounding


def test_uint8_lightness_matches_float_path():
    from colorize.color import rgb_to_l, uint8_rgb_to_l

    x = torch.randint(0, 256, (2, 3, 9, 7), dtype=torch.uint8)
    assert (uint8_rgb_to_l(x) - rgb_to_l(x.double() / 255).float()).abs().max() < 1e-3


def test_confidence_map_from_the_spread_of_the_bins():
    colorizer = Colorizer(tiny_bins_model())
    arr = np.zeros((40, 90, 3), np.uint8)
    arr[:, :45] = 255  # white left half: the tiny model is sure there
    prediction = colorizer.analyze(Image.fromarray(arr), confidence=True)
    conf = colorizer.confidence_image(prediction)
    assert conf.mode == "L" and conf.size == (90, 40)
    c = np.asarray(conf, np.float64)
    assert c[:, :40].min() > 240 and c[:, 50:].max() < 60
    torch.testing.assert_close(prediction.ab, colorizer.predict(prediction.prepared.l_small))


def test_confidence_needs_a_bins_model(colorizer):
    with pytest.raises(ValueError, match="bins"):
        colorizer.analyze(make_photo(32, 32), confidence=True)
    with pytest.raises(ValueError, match="confidence=True"):
        colorizer.confidence_image(colorizer.analyze(make_photo(32, 32)))


def test_gray_lightness_is_the_rgb_lightness_of_equal_channels():
    from colorize.color import uint8_gray_to_l, uint8_rgb_to_l

    gray = torch.randint(0, 256, (1, 1, 13, 9), dtype=torch.uint8)
    assert torch.allclose(uint8_gray_to_l(gray), uint8_rgb_to_l(gray.expand(1, 3, 13, 9)), atol=1e-5)
