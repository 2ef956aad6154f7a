import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import colorize.checkpoint as checkpoint
from colorize.checkpoint import load_checkpoint, load_model, save_checkpoint, save_weights
from colorize.io import atomic_write
from colorize.models import create_model, list_models

SRC = Path(__file__).resolve().parents[1] / "src" / "colorize"

# every model but Inception-ResNet-v2 (55M parameters); non-default options where a model has them,
# so the roundtrip has kwargs to carry
ROUNDTRIP = {name: {} for name in list_models() if name != "fusion_irv2"}
ROUNDTRIP.update(alpha={"width": 4}, beta={"width": 8}, beta_rgb={"width": 8},
                 unet_lite0={"decoder_channels": (64, 32, 24), "freeze_levels": 1})


def _scrambled(model: torch.nn.Module) -> torch.nn.Module:
    """Make every parameter and buffer differ from a fresh build, so a weight that is not loaded shows."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.mul_(1 + 0.1 * torch.rand_like(t)).add_(0.01 * torch.rand_like(t))
    return model.eval()


def _as_saved(kwargs: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}  # JSON has no tuples


@pytest.mark.parametrize("name", sorted(ROUNDTRIP))
def test_roundtrip_every_model(name, tmp_path):
    kwargs = ROUNDTRIP[name]
    torch.manual_seed(0)
    model = _scrambled(create_model(name, **kwargs))
    x = torch.randn(1, 1, 2 * model.stride, 2 * model.stride)
    with torch.no_grad():
        expected = model(x)
    assert torch.isfinite(expected).all()

    save_weights(tmp_path / "model.safetensors", model, metadata={"note": "test"})
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["model"] == name and meta["note"] == "test"
    assert json.loads(meta["model_kwargs"]) == _as_saved(kwargs)
    save_checkpoint(tmp_path / "model.pt", model, step=7)
    assert load_checkpoint(tmp_path / "model.pt")["step"] == 7

    for path in (tmp_path / "model.safetensors", tmp_path / "model.pt"):
        torch.manual_seed(1)  # a different fresh init: equal outputs need the loaded weights
        loaded = load_model(path)
        assert loaded.model_name == name and loaded.model_kwargs == _as_saved(kwargs) and not loaded.training
        state = loaded.state_dict()
        for k, v in model.state_dict().items():
            assert torch.equal(state[k], v), (path.name, k)
        with torch.no_grad():
            assert torch.equal(loaded(x), expected), path.name
        del loaded, state


def test_build_only_options_are_not_saved(tmp_path):
    """A model built with ImageNet encoder weights loads from its file without needing them."""
    model = create_model("unet_lite0_reg", backbone_weights=True)
    save_weights(tmp_path / "m.safetensors", model)
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as f:
        assert "backbone_weights" not in json.loads(f.metadata()["model_kwargs"])
    loaded = load_model(tmp_path / "m.safetensors")
    stem = "encoder.conv_stem.weight"
    assert torch.equal(loaded.state_dict()[stem], model.state_dict()[stem])


def test_model_not_built_by_registry_is_refused(tmp_path):
    with pytest.raises(ValueError, match="create_model"):
        save_weights(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))


def test_load_model_refuses_files_that_are_not_colorize_models(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    (tmp_path / "text.safetensors").write_text("not weights")
    (tmp_path / "text.pt").write_text("not weights")
    torch.save({"model": "alpha", "state_dict": {}, "extra": Path("x")}, tmp_path / "pickled_object.pt")
    for name in ("plain.safetensors", "plain.pt", "list.pt", "text.safetensors", "text.pt", "pickled_object.pt"):
        with pytest.raises(ValueError, match=re.escape(name)):
            load_model(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")


def test_load_model_refuses_weights_of_another_model(tmp_path):
    save_weights(tmp_path / "alpha.safetensors", create_model("alpha"))
    with safe_open(str(tmp_path / "alpha.safetensors"), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, str(tmp_path / "lying.safetensors"), metadata={"model": "beta", "model_kwargs": "{}"})
    with pytest.raises(ValueError, match="lying.safetensors: its weights do not fit model 'beta'"):
        load_model(tmp_path / "lying.safetensors")


def test_torch_load_is_always_weights_only():
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            depth, end = 0, m.end() - 1
            for end in range(m.end() - 1, len(text)):  # the call's closing parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            calls.append((path.name, text[m.start(): end + 1]))
    assert calls, "no torch.load call found: the pattern is stale"
    unsafe = [(f, c) for f, c in calls if not re.search(r"weights_only\s*=\s*True", c)]
    assert not unsafe


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    model = create_model("alpha")
    save_checkpoint(path, model, epoch=1)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):  # the disk fills up halfway through
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, model, epoch=2)

    def interrupted(tmp):  # Ctrl-C halfway through: same guarantee
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted)
    assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp files left behind


def test_recorded_defaults_come_from_the_header_without_building_the_model(tmp_path, monkeypatch):
    import colorize.checkpoint as checkpoint
    from colorize.checkpoint import save_weights
    from colorize.shipped import recorded_defaults
    from colorize.models import create_model

    path = tmp_path / "tuned.safetensors"
    save_weights(path, create_model("alpha"), metadata={"temperature": "0.45", "working_size": "320"})
    monkeypatch.setattr(checkpoint, "create_model", None)  # building a model here would fail loudly
    assert recorded_defaults(path) == {"temperature": 0.45, "working_size": 320.0}
    plain = tmp_path / "plain.safetensors"
    monkeypatch.undo()
    save_weights(plain, create_model("alpha"))
    assert recorded_defaults(plain) == {}
    assert recorded_defaults(tmp_path / "run.pt") == {}  # checkpoints are built to be read
    (tmp_path / "junk.safetensors").write_bytes(b"not a weight file")
    assert recorded_defaults(tmp_path / "junk.safetensors") == {}


def test_load_model_error_for_a_foreign_file_is_one_plain_line(tmp_path):
    """A photo or a pickled object given as a checkpoint: one line naming the file, without torch's advice to load
    it with weights_only=False (arbitrary code) or its terminal escapes; a truncated checkpoint likewise."""
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "photo.pt", format="JPEG")
    torch.save({"model": "alpha", "state_dict": {}, "extra": Path("x")}, tmp_path / "pickled_object.pt")
    save_checkpoint(tmp_path / "whole.pt", create_model("alpha"))
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:200])
    for name in ("photo.pt", "pickled_object.pt", "truncated.pt"):
        with pytest.raises(ValueError, match=re.escape(name)) as e:
            load_model(tmp_path / name)
        message = str(e.value)
        assert "\n" not in message and "\x1b" not in message and "weights_only" not in message, message
