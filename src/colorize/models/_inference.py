"""Inference-only rewrites that keep a network's outputs and cut its memory passes.

:func:`fuse_conv_bn` folds each BatchNorm into the convolution before it; :func:`fuse_conv_act` then
turns each convolution and the activation right after it into one :class:`FusedConv2d`, a single
oneDNN call (the kernel PyTorch itself uses on the CPU) with the activation applied as the result is
written. Both only touch layers whose order of execution is certain, so any timm or torchvision
network can go through them; a layer they do not know stays as it is.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

# activation -> (oneDNN post-op, its scalars)
_ACTIVATIONS: dict[type, tuple[str, list[float]]] = {nn.ReLU: ("relu", []), nn.ReLU6: ("hardtanh", [0.0, 6.0])}
_PASSTHROUGH = (nn.Identity, nn.Dropout)  # identities in eval mode
_onednn = True  # see plain_operators()


@contextlib.contextmanager
def plain_operators() -> Iterator[None]:
    """Within this block :class:`FusedConv2d` runs PyTorch's plain operators (padding, ``conv2d``, the
    activation): what FLOP counters and exporters understand, and a reference for the fused path."""
    global _onednn
    before, _onednn = _onednn, False
    try:
        yield
    finally:
        _onednn = before


class FoldedNormAct(nn.Sequential):
    """What is left of a BatchNorm-with-activation (timm's ``BatchNormAct2d``) once :func:`fuse_conv_bn`
    folded its normalization into the convolution before it: the activation, applied right after."""


@torch.no_grad()
def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a convolution into that convolution (inference only).

    Works on our blocks (Conv, BN, ReLU) and timm's (``conv_*`` then ``bn*``; timm's BatchNormAct2d
    keeps its activation as a :class:`FoldedNormAct`). Cuts a memory-bound pass per layer; outputs are
    unchanged up to float error.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise ValueError("fuse_conv_bn is for inference: call model.eval() first")
    for parent in model.modules():
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                rest = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
                setattr(parent, bn_name, FoldedNormAct(*rest) if rest else nn.Identity())
    return model


def _conv2d_same_type() -> type | None:
    """timm's ``Conv2dSame``, where timm is loaded: a model holding one imported it, and importing it for a model
    that holds none (an ONNX network inside the torch pipeline) cost 2 s of the start-up (torchvision, dynamo)."""
    layers = sys.modules.get("timm.layers")
    return getattr(layers, "Conv2dSame", None)


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """The fused kernel runs CPU float32 inference; tracing and exporting (ONNX) see plain operators."""
    return (_onednn and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and x.dim() == 4
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and not torch.jit.is_tracing() and not torch.jit.is_scripting() and not torch.onnx.is_in_onnx_export()
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))


class FusedConv2d(nn.Module):
    """Inference: a convolution and the activation after it in one oneDNN call, writing the output once
    instead of writing it and then reading and writing it again. Built by :func:`fuse_conv_act`.

    TF-style 'same' padding (timm's ``Conv2dSame``, in every ``tf_`` EfficientNet) pads one more at the
    bottom and right than at the top and left when the total is odd: every stride-2 layer at an even
    input size. Copying the input into a padded buffer costs as much as the convolution; instead the
    kernel gets a leading zero tap in that dimension and the padding becomes symmetric, which gives the
    same sums over the same pixels with no copy.
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module | None = None):
        super().__init__()
        same_type = _conv2d_same_type()
        self.same = same_type is not None and type(conv) is same_type
        if conv.padding_mode != "zeros" or (isinstance(conv.padding, str) and not self.same):
            raise ValueError(f"cannot fuse {conv}: only zero padding given in pixels (or timm's Conv2dSame)")
        if act is not None and type(act) not in _ACTIVATIONS:
            raise ValueError(f"cannot fuse activation {act}; known: {', '.join(t.__name__ for t in _ACTIVATIONS)}")
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self.in_channels, self.out_channels, self.kernel_size = conv.in_channels, conv.out_channels, conv.kernel_size
        self.stride, self.dilation, self.groups = tuple(conv.stride), tuple(conv.dilation), conv.groups
        self.padding = (0, 0) if self.same else tuple(conv.padding)
        self.act = act
        self.attr, self.scalars = _ACTIVATIONS[type(act)] if act is not None else ("none", [])
        self._padded: tuple[tuple, torch.Tensor] | None = None  # the kernel with leading zero taps, cached

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={'tf-same' if self.same else self.padding}, groups={self.groups}, "
                f"activation={self.attr}")

    def same_padding(self, size: tuple[int, int]) -> list[tuple[int, int]]:
        """TF 'same' padding (before, after) per dimension for an input of ``size`` (timm's arithmetic)."""
        from timm.layers.padding import get_same_padding

        totals = (get_same_padding(n, k, s, d) for n, k, s, d in zip(size, self.kernel_size, self.stride, self.dilation))
        return [(total // 2, total - total // 2) for total in totals]

    def _kernel(self, lead: tuple[int, int]) -> torch.Tensor:
        """The kernel with ``lead`` zero taps before it in each dimension (cached for the last ``lead``). Read
        and replaced whole, once: photos of other shapes on other threads (other leads) each get their own."""
        if lead == (0, 0):
            return self.weight
        key = (lead, self.weight.data_ptr(), self.weight.stride())
        cached = self._padded
        if cached is None or cached[0] != key:
            w = F.pad(self.weight, (lead[1], 0, lead[0], 0))
            cached = (key, w.contiguous(memory_format=torch.channels_last)
                      if self.weight.is_contiguous(memory_format=torch.channels_last) else w)
            self._padded = cached
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding, weight = list(self.padding), self.weight
        if self.same:
            fast = _use_onednn(x, weight) and self.dilation == (1, 1)
            if not fast:  # timm's way: pad a copy. Its arithmetic traces sizes as tensors, so an ONNX
                from timm.layers.padding import pad_same  # export stays right at every input size

                x = pad_same(x, self.kernel_size, self.stride, self.dilation)
                y = F.conv2d(x, weight, self.bias, self.stride, 0, self.dilation, self.groups)
                return y if self.act is None else self.act(y)
            # after - before is 0 or 1; a 1 becomes a leading zero tap and symmetric padding `after`
            pads = self.same_padding(x.shape[-2:])
            padding = [after for _, after in pads]
            weight = self._kernel((pads[0][1] - pads[0][0], pads[1][1] - pads[1][0]))
        if _use_onednn(x, weight):
            return torch.ops.mkldnn._convolution_pointwise(x, weight, self.bias, padding, list(self.stride),
                                                          list(self.dilation), self.groups, self.attr,
                                                          self.scalars, None)
        y = F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return y if self.act is None else self.act(y)


def _activation_of(module: nn.Module) -> nn.Module | None:
    """The one fusable activation inside ``module`` (itself, or a FoldedNormAct of identities around it)."""
    if type(module) in _ACTIVATIONS:
        return module
    if isinstance(module, FoldedNormAct):
        acts = [m for m in module if not isinstance(m, _PASSTHROUGH)]
        if len(acts) == 1 and type(acts[0]) in _ACTIVATIONS:
            return acts[0]
    return None


@torch.no_grad()
def fuse_conv_act(model: nn.Module) -> nn.Module:
    """Replace each plain convolution (``nn.Conv2d``, timm's ``Conv2dSame``) by a :class:`FusedConv2d`,
    taking in the ReLU/ReLU6 that runs right after it: in an ``nn.Sequential`` the next layer past
    identities, in any module the activation a folded BatchNorm left (see :func:`fuse_conv_bn`).
    Inference only; outputs unchanged. Call after :func:`fuse_conv_bn`."""
    if model.training:
        raise ValueError("fuse_conv_act is for inference: call model.eval() first")
    same_type = _conv2d_same_type()
    fusable = (nn.Conv2d,) if same_type is None else (nn.Conv2d, same_type)
    for parent in list(model.modules()):
        sequential = type(parent).forward is nn.Sequential.forward
        children = list(parent.named_children())
        for i, (name, conv) in enumerate(children):
            if (type(conv) not in fusable or conv.padding_mode != "zeros"
                    or (isinstance(conv.padding, str) and type(conv) is not same_type)):
                continue
            act_at = None
            for j in range(i + 1, len(children)):
                nxt = children[j][1]
                if _activation_of(nxt) is not None and (sequential or (j == i + 1 and isinstance(nxt, FoldedNormAct))):
                    act_at = j
                if not (sequential and isinstance(nxt, _PASSTHROUGH)) or act_at is not None:
                    break
            act = None if act_at is None else _activation_of(children[act_at][1])
            setattr(parent, name, FusedConv2d(conv, act))
            if act_at is not None:
                setattr(parent, children[act_at][0], nn.Identity())
    return model
