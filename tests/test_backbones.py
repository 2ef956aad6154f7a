import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from colorize.color import gray_rgb_from_l, rgb_to_l
from colorize.models.backbones import (BACKBONES, _stage_depths, create_backbone, load_state_dict_file,
                                       packaged_state_dict, rename_efficientnet_keys)

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def _chelsea(size: int) -> torch.Tensor:
    """scikit-image's cat photo as (1, 3, size, size) RGB in [0, 1]."""
    from skimage import data

    rgb = torch.from_numpy(data.chelsea().astype(np.float32) / 255).permute(2, 0, 1)[None]
    return F.interpolate(rgb, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1"])
def test_packaged_efficientnet_knows_a_cat_in_color_and_in_gray(name):
    cfg = BACKBONES[name]
    model = create_backbone(name, pretrained=True).eval()
    rgb = _chelsea(cfg.input_size)
    gray = gray_rgb_from_l(rgb_to_l(rgb)).expand(-1, 3, -1, -1)  # what the colorization models feed it
    mean, std = torch.tensor(cfg.mean).view(1, 3, 1, 1), torch.tensor(cfg.std).view(1, 3, 1, 1)
    assert torch.allclose((rgb - mean) / std, rgb * 2 - 1)  # inputs in [-1, 1]
    with torch.no_grad():
        for kind, x in [("color", rgb), ("gray", gray)]:
            top = int(model((x - mean) / std).argmax())
            assert top in CAT_CLASSES, (kind, top)
    # the check can fail: an untrained net of the same architecture does not see the cat
    torch.manual_seed(0)
    with torch.no_grad():
        assert int(create_backbone(name).eval()((rgb - mean) / std).argmax()) not in CAT_CLASSES


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "tf_efficientnet_lite1"])
def test_renamed_efficientnet_keys_load_strictly(name):
    state = packaged_state_dict(name)
    model = timm.create_model(name)
    model.load_state_dict(state, strict=True)  # every key present, none left over, all shapes fit
    assert torch.equal(model.conv_stem.weight, state["conv_stem.weight"])

    # the mapping itself: depthwise-separable first block vs inverted-residual blocks
    raw = {"_conv_stem.weight": 1, "_blocks.0._depthwise_conv.weight": 2, "_blocks.0._project_conv.weight": 3,
           "_blocks.1._expand_conv.weight": 4, "_blocks.1._bn1.running_mean": 5, "_blocks.2._project_conv.weight": 6,
           "_blocks.2._expand_conv.weight": 7, "_fc.bias": 8}
    renamed = rename_efficientnet_keys(raw, [1, 2])
    assert renamed == {"conv_stem.weight": 1, "blocks.0.0.conv_dw.weight": 2, "blocks.0.0.conv_pw.weight": 3,
                       "blocks.1.0.conv_pw.weight": 4, "blocks.1.0.bn2.running_mean": 5,
                       "blocks.1.1.conv_pwl.weight": 6, "blocks.1.1.conv_pw.weight": 7, "classifier.bias": 8}
    assert _stage_depths(name) == [len(s) for s in model.blocks]


def _write_weights(name: str, folder, *, fmt: str) -> dict[str, torch.Tensor]:
    """A weight file like a real release: a (perturbed) classifier state dict; returns what was written."""
    torch.manual_seed(0)
    state = timm.create_model(name).state_dict()
    with torch.no_grad():
        for t in state.values():
            if t.is_floating_point():
                t.mul_(1.5).add_(0.01)  # differs from any fresh init, BatchNorm statistics included
    if fmt == "safetensors":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}  # shipped as fp16
        save_file(state, str(folder / f"{name}.safetensors"))
    else:
        torch.save({"state_dict": state}, folder / f"{name}.pth")
    return state


def _assert_holds(model: torch.nn.Module, written: dict[str, torch.Tensor], *, rename=lambda k: k) -> int:
    own = model.state_dict()
    checked = 0
    for k, v in written.items():
        if rename(k) in own:
            assert torch.equal(own[rename(k)], v.to(own[rename(k)].dtype)), k
            checked += 1
    return checked


def test_vgg16_from_a_local_file_as_classifier_and_as_features(tmp_path):
    written = _write_weights("vgg16", tmp_path, fmt="safetensors")
    path = tmp_path / "vgg16.safetensors"
    classifier = create_backbone("vgg16", pretrained=path)
    assert _assert_holds(classifier, written) == len(written) == len(classifier.state_dict())
    del classifier
    features = create_backbone("vgg16", pretrained=str(path), features_only=True)  # what unet_vgg16 uses
    n_conv = sum(k.startswith("features.") for k in written)
    assert _assert_holds(features, written, rename=lambda k: k.replace(".", "_", 1)) == n_conv
    assert n_conv == len(features.state_dict())


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_inception_v3_from_a_local_file(tmp_path, fmt):
    written = _write_weights("inception_v3", tmp_path, fmt=fmt)
    model = create_backbone("inception_v3", pretrained=tmp_path / f"inception_v3.{fmt}")
    assert _assert_holds(model, written) == len(written) == len(model.state_dict())


def test_inception_resnet_v2_from_a_local_file(tmp_path):
    written = _write_weights("inception_resnet_v2", tmp_path, fmt="pth")
    model = create_backbone("inception_resnet_v2", pretrained=tmp_path / "inception_resnet_v2.pth")
    assert _assert_holds(model, written) == len(written) == len(model.state_dict())


def test_missing_and_wrong_weight_files_fail_clearly(tmp_path):
    missing = tmp_path / "nowhere" / "vgg16.safetensors"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        create_backbone("vgg16", pretrained=missing)

    lite = {k: v for k, v in timm.create_model("tf_efficientnet_lite0").state_dict().items()}
    save_file(lite, str(tmp_path / "lite0.safetensors"))
    with pytest.raises(ValueError, match="lite0.safetensors.*do not fit"):  # another architecture's weights
        create_backbone("inception_v3", pretrained=tmp_path / "lite0.safetensors")
    lite["conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    save_file(lite, str(tmp_path / "bad_shape.safetensors"))
    with pytest.raises(ValueError, match="(?s)bad_shape.safetensors.*conv_stem"):  # right keys, wrong shape
        create_backbone("tf_efficientnet_lite0", pretrained=tmp_path / "bad_shape.safetensors")

    (tmp_path / "notes.safetensors").write_text("not weights")
    (tmp_path / "notes.pth").write_text("not weights")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    for name in ("notes.safetensors", "notes.pth", "list.pth"):
        with pytest.raises(ValueError, match=name):
            load_state_dict_file(tmp_path / name)

    with pytest.raises(ValueError, match="unknown backbone 'resnet50'; choose from: .*vgg16"):
        create_backbone("resnet50")
