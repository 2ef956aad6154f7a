"""Inference rewrites: convolution + activation fusion and TF 'same' padding without a padded copy."""

import copy

import pytest
import torch
import torch.nn as nn
from timm.layers import Conv2dSame

from colorize.models._inference import (FoldedNormAct, FusedConv2d, fuse_conv_act, fuse_conv_bn,
                                        plain_operators)


@pytest.mark.parametrize("kernel, stride, groups", [(3, 2, 1), (5, 2, 8), (3, 1, 8), (3, 2, 8), (1, 1, 1)])
@pytest.mark.parametrize("size", [(16, 16), (15, 17), (16, 13), (9, 9)])
def test_tf_same_convolution_matches_timm_at_even_odd_and_mixed_sizes(kernel, stride, groups, size):
    torch.manual_seed(0)
    conv = Conv2dSame(8, 8, kernel, stride=stride, groups=groups).eval()
    fused = FusedConv2d(conv, nn.ReLU6())
    x = torch.randn(2, 8, *size) * 8
    with torch.no_grad():
        want = conv(x).clamp(0, 6)
        got = fused(x)
        got_cl = fused(x.contiguous(memory_format=torch.channels_last))
        with plain_operators():
            plain = fused(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(got_cl, want, atol=1e-5)
    assert torch.allclose(plain, want, atol=1e-5)
    assert 0 < (want == 6).float().mean() < 0.5  # the clamp was exercised at both ends
    assert (want == 0).float().mean() > 0.1


def test_tf_same_odd_padding_becomes_a_leading_zero_tap():
    conv = Conv2dSame(4, 4, 3, stride=2)
    fused = FusedConv2d(conv)
    assert fused.same_padding((16, 15)) == [(0, 1), (1, 1)]  # even side: one more after; odd: symmetric
    w = fused._kernel((1, 0))
    assert w.shape[-2:] == (4, 3)
    assert (w[..., 0, :] == 0).all() and torch.equal(w[..., 1:, :], conv.weight)


@pytest.mark.parametrize("act", [nn.ReLU(), nn.ReLU6(), None])
def test_plain_convolution_fuses_with_padding_stride_and_dilation(act):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, stride=1, padding=2, dilation=2).eval()
    fused = FusedConv2d(conv, act)
    x = torch.randn(1, 6, 12, 10) * 3
    with torch.no_grad():
        y = conv(x)
        want = y if act is None else act(y)
        assert torch.allclose(fused(x), want, atol=1e-5)
    if act is not None:
        assert fused.attr in ("relu", "hardtanh")


class _ResidualBlock(nn.Module):
    """The activation runs after the residual add (as in Inception-ResNet): it must not be fused."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x) - 2 * x)


def test_fuse_conv_act_only_takes_activations_that_run_right_after_the_convolution():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),  # Sequential: conv, (folded BN), act
        _ResidualBlock(),
        nn.Conv2d(4, 4, 1), nn.ReLU6(),
        nn.Conv2d(4, 2, 1),  # no activation after it
    )
    model.train()
    model(torch.randn(2, 1, 8, 8))  # BatchNorm statistics that are not the identity
    model.eval()
    x = torch.randn(2, 1, 12, 12)
    with torch.no_grad():
        want = model(x)
        fast = fuse_conv_act(fuse_conv_bn(copy.deepcopy(model)))
        got = fast(x)
    assert torch.allclose(got, want, atol=1e-5)
    assert fast[0].attr == "relu" and isinstance(fast[2], nn.Identity)
    assert fast[3].conv.attr == "none" and isinstance(fast[3].act, nn.ReLU)  # left where it runs
    assert fast[4].attr == "hardtanh" and fast[6].attr == "none"
    assert not any(type(m) is nn.Conv2d for m in fast.modules())


def test_folded_batchnorm_activation_fuses_in_any_module():
    from timm.layers import BatchNormAct2d

    class Block(nn.Module):  # timm style: named layers called in order by forward
        def __init__(self):
            super().__init__()
            self.conv = Conv2dSame(3, 8, 3, stride=2, bias=False)
            self.bn = BatchNormAct2d(8, act_layer=nn.ReLU6)

        def forward(self, x):
            return self.bn(self.conv(x))

    torch.manual_seed(0)
    block = Block().train()
    block(torch.randn(4, 3, 16, 16) * 3)
    block.eval()
    x = torch.randn(1, 3, 32, 32) * 3
    with torch.no_grad():
        want = block(x)
        folded = fuse_conv_bn(copy.deepcopy(block))
        assert isinstance(folded.bn, FoldedNormAct)
        fast = fuse_conv_act(folded)
        assert isinstance(fast.conv, FusedConv2d) and fast.conv.attr == "hardtanh" and fast.conv.same
        assert isinstance(fast.bn, nn.Identity)
        assert torch.allclose(fast(x), want, atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*torch.jit.trace.*:FutureWarning")
def test_fused_model_traces_to_plain_operators_and_refuses_training():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()).eval()
    fast = fuse_conv_act(copy.deepcopy(conv))
    traced = torch.jit.trace(fast, torch.randn(1, 1, 8, 8))
    assert "mkldnn" not in str(traced.graph)  # exporters (ONNX) see conv2d and relu
    x = torch.randn(1, 1, 8, 8)
    assert torch.allclose(traced(x), conv(x), atol=1e-6)
    with pytest.raises(ValueError, match="inference"):
        fuse_conv_act(nn.Sequential(nn.Conv2d(1, 1, 1)).train())
