"""Model resolution: the shipped weights are loaded only through their sha256, with their recorded defaults."""

import pytest

from colorize import shipped


def test_shipped_weights_load_through_their_sha256(tmp_path, monkeypatch):
    monkeypatch.delenv("COLORIZE_WEIGHTS", raising=False)
    spec = shipped.SHIPPED[shipped.DEFAULT_MODEL]
    original = shipped.weights_dir() / spec.file
    assert spec.sha256 is not None and original.is_file()
    model = shipped.resolve_model()  # the default: checked against its sha256, then built from the file alone
    recorded = shipped.recorded_defaults()
    assert model.model_name == shipped.DEFAULT_MODEL and not model.training
    assert model.default_temperature == recorded.get("temperature", model.default_temperature)
    assert model.default_size == (int(recorded["working_size"]) if "working_size" in recorded else None)

    changed = bytearray(original.read_bytes())
    changed[-1] ^= 1  # one bit of one weight
    (tmp_path / spec.file).write_bytes(changed)
    monkeypatch.setenv("COLORIZE_WEIGHTS", str(tmp_path))
    with pytest.raises(ValueError, match="does not match the expected"):
        shipped.resolve_model(shipped.DEFAULT_MODEL)


def test_unknown_name_and_runtime_name_the_choices():
    with pytest.raises(ValueError, match="choose from: unet_lite0"):
        shipped.resolve_model("no_such_model")
    with pytest.raises(ValueError, match="choose from: torch, onnx"):
        shipped.resolve_model(runtime="tensorrt")
