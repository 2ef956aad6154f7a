"""ONNX export matches PyTorch, and the exported file runs through the one pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from colorize.models import create_model  # noqa: E402
from colorize.shipped import cached_onnx, shipped_file  # noqa: E402
from colorize.onnx import OnnxModel, export_onnx  # noqa: E402
from colorize.pipeline import Colorizer  # noqa: E402

MAX_AB_ERROR = 1e-4  # normalized ab (x128 in Lab units: ~0.01)


@pytest.fixture(scope="module", params=["as trained", "optimized"])
def unet_onnx(request, tmp_path_factory):
    """The model, and its export: as it is, or after the pipeline's inference rewrites (BatchNorms folded,
    the gray stem folded, convolutions fused with their activations), which cached_onnx exports."""
    import copy

    from colorize.models.base import optimize_for_inference

    torch.manual_seed(0)
    model = create_model("unet_lite0").eval()
    exported = optimize_for_inference(copy.deepcopy(model)) if request.param == "optimized" else model
    path = export_onnx(exported, tmp_path_factory.mktemp("onnx") / "unet_lite0.onnx", size=128)
    return model, path


def test_export_matches_torch_at_other_sizes(unet_onnx):
    model, path = unet_onnx
    onnx_model = OnnxModel(path, threads=1)
    assert (onnx_model.model_name, onnx_model.stride, onnx_model.output) == ("unet_lite0", 32, "ab")
    for shape in [(1, 1, 128, 128), (2, 1, 96, 160)]:  # dynamic batch, height and width
        x = torch.rand(*shape) * 2 - 1
        with torch.no_grad():
            ref = model.predict_ab(x)
        out = onnx_model.predict_ab(x)
        assert out.shape == ref.shape == (shape[0], 2, *shape[2:])
        assert (out - ref).abs().max().item() < MAX_AB_ERROR


def test_pipeline_runs_with_onnx(unet_onnx, photo):
    model, path = unet_onnx
    out_onnx = Colorizer(OnnxModel(path))(photo)
    out_torch = Colorizer(model)(photo)
    assert out_onnx.size == photo.size
    diff = np.abs(np.asarray(out_onnx, dtype=np.int16) - np.asarray(out_torch, dtype=np.int16))
    assert diff.max() <= 1  # uint8 rounding at most


def test_cli_export_regression_model(tmp_path, tiny_model_file):
    from colorize.cli import main
    from colorize.shipped import resolve_model

    path = tmp_path / "alpha.onnx"
    assert main(["export", str(tiny_model_file), "-o", str(path), "--format", "onnx", "--size", "64"]) == 0
    model = resolve_model(tiny_model_file)
    x = torch.rand(1, 1, 48, 72) * 2 - 1
    with torch.no_grad():
        ref = model.predict_ab(x)
    assert (OnnxModel(path).predict_ab(x) - ref).abs().max().item() < MAX_AB_ERROR


def test_cached_onnx_exports_once(tmp_path, tiny_model_file):
    path = cached_onnx(tiny_model_file, folder=tmp_path)
    assert path.parent == tmp_path and path.suffix == ".onnx"
    mtime = path.stat().st_mtime_ns
    assert cached_onnx(tiny_model_file, folder=tmp_path) == path and path.stat().st_mtime_ns == mtime
    assert cached_onnx("unet_lite0", folder=tmp_path) == shipped_file("unet_lite0", onnx=True)  # not re-exported
    assert cached_onnx(path) == path  # an .onnx file is used as is
    with pytest.raises(ValueError, match="choose from"):
        cached_onnx("no_such_model", folder=tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        OnnxModel(tmp_path / "nope.onnx")


def test_cli_runtime_onnx_matches_torch(tmp_path, tiny_model_file, photo, monkeypatch):
    from PIL import Image

    from colorize.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "in" / "p.png"
    src.parent.mkdir()
    photo.convert("L").save(src)
    for runtime in ("torch", "onnx", "onnx"):  # the second onnx run reuses the cached export
        out = tmp_path / runtime / "p.png"
        assert main([str(src), "-o", str(out), "--model", str(tiny_model_file), "--runtime", runtime, "-q",
                     "--overwrite"]) == 0
    assert len(list((tmp_path / "cache").rglob("*.onnx"))) == 1
    a, b = (np.asarray(Image.open(tmp_path / r / "p.png"), dtype=np.int16) for r in ("torch", "onnx"))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1  # uint8 rounding at most


def test_cli_export_format_follows_the_output_name(tmp_path, tiny_model_file, capsys):
    """`colorize export best.pt -o mine.onnx` wrote safetensors under the .onnx name (the light engine then refused
    it as broken protobuf); the extension now picks the format, and a --format that contradicts it is refused."""
    from colorize.cli import main

    path = tmp_path / "mine.onnx"
    assert main(["export", str(tiny_model_file), "-o", str(path), "--size", "64"]) == 0
    x = torch.rand(1, 1, 48, 72) * 2 - 1
    assert OnnxModel(path).predict_ab(x).shape == (1, 2, 48, 72)
    with pytest.raises(SystemExit) as e:
        main(["export", str(tiny_model_file), "-o", str(tmp_path / "w.safetensors"), "--format", "onnx"])
    assert e.value.code == 2 and "disagree" in capsys.readouterr().err
    assert not (tmp_path / "w.safetensors").exists()


def test_cli_export_of_an_onnx_file_is_named(tmp_path, tiny_model_file, capsys):
    """`colorize export mine.onnx -o mine.safetensors` crashed with an AttributeError traceback."""
    from colorize.cli import main

    onnx_file = tmp_path / "mine.onnx"
    assert main(["export", str(tiny_model_file), "-o", str(onnx_file), "--format", "onnx", "--size", "64"]) == 0
    capsys.readouterr()
    assert main(["export", str(onnx_file), "-o", str(tmp_path / "back.safetensors")]) == 2
    assert "mine.onnx is an ONNX export already" in capsys.readouterr().err
    assert not (tmp_path / "back.safetensors").exists()


@pytest.mark.parametrize("option, value, expected", [("--temperature", "-1", "must be > 0"),
                                                     ("--temperature", "inf", "must be > 0"),
                                                     ("--prior-correction", "3", "0..1"),
                                                     ("--working-size", "0", "16..")])
def test_cli_export_refuses_settings_no_photo_could_use(tmp_path, tiny_model_file, capsys, option, value, expected):
    """A temperature <= 0 was recorded in the file, and every photo colorized with it then failed; a prior correction
    outside 0..1 was folded in; a working size of 0 was dropped without a word. Each is a usage error now."""
    from colorize.cli import main

    with pytest.raises(SystemExit) as e:
        main(["export", str(tiny_model_file), "-o", str(tmp_path / "w.safetensors"), option, value])
    assert e.value.code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "w.safetensors").exists()


def test_cli_export_prior_correction_of_a_regression_model_is_named(tmp_path, tiny_model_file, capsys):
    """--prior-correction on a regression model (no bins to correct) was a ValueError traceback."""
    from colorize.cli import main

    assert main(["export", str(tiny_model_file), "-o", str(tmp_path / "w.safetensors"),
                 "--prior-correction", "0.5"]) == 2
    assert "classification (bins) model" in capsys.readouterr().err


def test_cli_export_onnx_records_the_working_size(tmp_path, tiny_model_file):
    """--working-size was dropped without a word for --format onnx (recorded only in safetensors)."""
    from colorize.cli import main

    path = tmp_path / "w.onnx"
    assert main(["export", str(tiny_model_file), "-o", str(path), "--size", "64", "--working-size", "320"]) == 0
    assert OnnxModel(path).default_size == 320
