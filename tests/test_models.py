import pytest
import torch

from colorize.models import create_model, list_models
from colorize.models.base import AbBins

FAST = [m for m in list_models() if m != "fusion_irv2"]  # IRv2 is 55M parameters: checked once below


@pytest.mark.parametrize("name", FAST)
def test_forward_backward_shapes_no_nans(name):
    torch.manual_seed(0)
    model = create_model(name)
    s = model.stride
    x = torch.randn(2, 1, 2 * s, 3 * s)
    model.train()
    out = model(x)
    assert torch.isfinite(out).all()
    loss = out.float().pow(2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        ab = model.predict_ab(x)
    assert ab.shape == (2, 2, 2 * s, 3 * s)
    assert ab.abs().max() <= 1.0 + 1e-5


def test_fusion_irv2_builds_and_runs():
    model = create_model("fusion_irv2").eval()
    with torch.no_grad():
        ab = model.predict_ab(torch.randn(1, 1, 64, 64))
    assert ab.shape == (1, 2, 64, 64)
    assert model.cfg.input_size == 299


def test_unknown_model_and_option_fail_with_choices():
    with pytest.raises(ValueError, match="choose from: .*alpha.*beta"):
        create_model("gamma")
    with pytest.raises(TypeError, match="unknown option"):
        create_model("alpha", depth=3)


def test_models_remember_their_spec():
    m = create_model("beta", width=16)
    assert m.model_name == "beta" and m.model_kwargs == {"width": 16}


def test_unet_freezing():
    frozen = create_model("unet_lite0", freeze_levels=4)
    tuned = create_model("unet_lite0", freeze_levels=0)
    n_frozen = sum(p.numel() for p in frozen.encoder.parameters() if p.requires_grad)
    n_tuned = sum(p.numel() for p in tuned.encoder.parameters() if p.requires_grad)
    assert n_frozen == 0 and n_tuned == sum(p.numel() for p in tuned.encoder.parameters())
    partly = create_model("unet_lite0", freeze_levels=2).train()
    stem_bn = partly.encoder.bn1
    assert not stem_bn.training  # frozen BatchNorm keeps ImageNet statistics
    assert any(p.requires_grad for p in partly.encoder.blocks[-1].parameters())


def test_bins_encode_decode_roundtrip():
    bins = AbBins()
    ab = torch.tensor([[[[0.0, 0.3, -0.4]], [[0.0, 0.2, 0.5]]]])  # (1, 2, 1, 3) normalized
    target = bins.encode(ab)
    assert torch.allclose(target.sum(1), torch.ones(1, 1, 3))
    # the mean of the soft encoding is the color itself (bilinear weights on the grid)
    mean = torch.einsum("bqhw,qc->bchw", target, bins.centers / 128)
    assert (mean - ab).abs().max() < 1e-5
    # a confident distribution decodes to its bin, whatever the temperature
    logits = torch.full((1, bins.num_bins, 1, 1), -20.0)
    k = int(torch.cdist(bins.centers, torch.tensor([[30.0, 20.0]])).argmin())
    logits[0, k] = 20.0
    assert torch.allclose(bins.decode(logits, temperature=0.38)[0, :, 0, 0] * 128, bins.centers[k], atol=1e-3)
    with pytest.raises(ValueError):
        bins.decode(logits, temperature=0)


def test_decoding_is_the_annealed_mean_in_any_memory_layout():
    bins = AbBins()
    torch.manual_seed(0)
    logits = torch.randn(2, bins.num_bins, 5, 3) * 3
    for temperature in (1.0, 0.38):
        # Zhang et al.: softmax of logits / T over the bins, then the expectation of the bin centres
        probs = torch.softmax(logits.double() / temperature, dim=1)
        expected = torch.einsum("bqhw,qc->bchw", probs, bins.centers.double() / 128).float()
        for layout in (torch.contiguous_format, torch.channels_last):
            got = bins.decode(logits.contiguous(memory_format=layout), temperature=temperature)
            assert got.shape == (2, 2, 5, 3)
            assert torch.allclose(got, expected, atol=1e-5)


def test_annealed_mean_is_more_vivid_than_mean():
    bins = AbBins()
    torch.manual_seed(0)
    logits = torch.randn(1, bins.num_bins, 4, 4) * 2
    mean = bins.decode(logits, temperature=1.0).norm(dim=1).mean()
    sharp = bins.decode(logits, temperature=0.1).norm(dim=1).mean()
    assert sharp > mean


def test_prior_correction_divides_the_rebalancing_tilt_back_out():
    from colorize.models.base import correct_prior

    model = create_model("unet_lite0").eval()
    counts = torch.exp(-model.bins.centers.norm(dim=1) / 20)  # muted colors common, vivid ones rare
    model.bins.set_prior(counts)
    with torch.no_grad():
        model.head.proj.weight.zero_()
        model.head.proj.bias.zero_()  # uniform logits: the tilted distribution p x w with p = w^-1 x const
    x = torch.zeros(1, 1, 64, 64)
    with torch.no_grad():
        before = model.predict_ab(x, temperature=1.0).norm(dim=1).mean()
        correct_prior(model, 1.0)
        probs = torch.softmax(model(x), dim=1)[0, :, 0, 0]
        after = model.predict_ab(x, temperature=1.0).norm(dim=1).mean()
    # fully corrected, the probabilities are proportional to 1 / w: the prior itself
    expected = 1 / model.bins.rebalance
    assert torch.allclose(probs, expected / expected.sum(), atol=1e-6)
    assert after < 0.8 * before  # common (muted) colors gain where the net has no preference
    assert model.prior_correction == 1.0


def test_rebalance_head_changes_the_weights_and_keeps_what_the_net_learnt():
    """New rebalancing weights: the tilt p x w follows them, the colors' probabilities p (logits - log w) stay."""
    from colorize.models.base import rebalance_head

    model = create_model("unet_lite0").eval()
    counts = torch.exp(-model.bins.centers.norm(dim=1) / 20)  # muted colors common, vivid ones rare
    model.bins.set_prior(counts, mix=0.5)
    x = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
        milder = model.bins.prior_weights(counts, mix=0.9)
        rebalance_head(model, milder)
        after = model(x)
    strong = model.bins.prior_weights(counts, mix=0.5)
    assert torch.equal(model.bins.rebalance, milder)
    assert milder.max() / milder.min() < 0.5 * strong.max() / strong.min()
    p_before = torch.softmax(before - strong.view(1, -1, 1, 1).log(), dim=1)
    p_after = torch.softmax(after - milder.view(1, -1, 1, 1).log(), dim=1)
    assert torch.allclose(p_before, p_after, atol=1e-5)
    assert not torch.allclose(torch.softmax(before, 1), torch.softmax(after, 1), atol=1e-3)  # less tilted now
    # the milder tilt leans less to vivid colors
    chroma = {k: model.bins.decode(z, temperature=1.0).norm(dim=1).mean() for k, z in (("before", before),
                                                                                       ("after", after))}
    assert chroma["after"] < chroma["before"]
    assert torch.equal(model.bins.prior_weights(counts, mix=1.0), torch.ones(model.bins.num_bins))
    with pytest.raises(ValueError, match="classification"):
        rebalance_head(create_model("unet_lite0_reg"), milder)


def test_prior_rebalancing_upweights_rare_bins():
    bins = AbBins()
    counts = torch.ones(bins.num_bins)
    gray = int(bins.centers.norm(dim=1).argmin())
    counts[gray] = 1000.0
    bins.set_prior(counts)
    assert bins.rebalance[gray] < bins.rebalance.median()
    assert bins.rebalance.min() > 0
    # mixing with uniform (lambda 0.5) bounds the weights: max/min <= Q + 1
    assert bins.rebalance.max() / bins.rebalance.min() <= bins.num_bins + 1


@pytest.mark.parametrize("name, folds_stem, kwargs", [("unet_lite0", True, {}), ("unet_lite0", True, {"context": True}),
                                                     ("beta", False, {}), ("unet_vgg16", False, {})])
def test_optimize_for_inference_keeps_outputs(name, folds_stem, kwargs):
    import copy

    from colorize.models.base import optimize_for_inference

    torch.manual_seed(0)
    model = create_model(name, **kwargs).train()
    x = torch.rand(2, 1, 64, 96) * 2 - 1
    model(x)  # one training pass so BatchNorm statistics are not the identity
    model.eval()
    fast = optimize_for_inference(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    # U-Nets on EfficientNet (mean = std for R, G, B) read one gray channel; VGG's per-channel
    # ImageNet normalization makes the three channels differ, so its stem stays as it is
    stem = getattr(getattr(fast, "encoder", None), "conv_stem", None)
    assert (stem is not None and stem.in_channels == 1) == folds_stem
    with torch.no_grad():
        assert torch.allclose(model.predict_ab(x), fast.predict_ab(x), atol=1e-5)
        assert torch.allclose(model.predict_ab(x, temperature=0.38), fast.predict_ab(x, temperature=0.38), atol=1e-5)
    assert optimize_for_inference(fast) is fast  # idempotent


def test_gray_from_l_is_each_channel_of_the_gray_rgb():
    from colorize.color import gray_from_l, gray_rgb_from_l

    l = torch.linspace(0, 100, 101).view(1, 1, 1, 101)
    one = gray_from_l(l)
    three = gray_rgb_from_l(l)
    assert one.shape == (1, 1, 1, 101)
    assert (three - one).abs().max() < 2e-4
    assert one.min() == 0 and one.max() == pytest.approx(1.0, abs=1e-4)
    assert (one.diff(dim=-1) > 0).all()  # lighter L, lighter gray


@pytest.mark.parametrize("name", ["unet_lite0", "beta", "unet_vgg16"])
def test_fusing_batchnorm_keeps_outputs(name):
    import copy

    from colorize.models.base import fuse_conv_bn

    torch.manual_seed(0)
    model = create_model(name).train()
    x = torch.randn(2, 1, 64, 64)
    model(x)  # one training pass so BatchNorm statistics are not the identity
    model.eval()
    fused = fuse_conv_bn(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())  # all folded
    with torch.no_grad():
        assert torch.allclose(model.predict_ab(x), fused.predict_ab(x), atol=1e-5)
    with pytest.raises(ValueError, match="inference"):
        fuse_conv_bn(create_model(name).train())


def test_global_context_makes_a_pixel_depend_on_the_whole_photo():
    """The fusion block broadcasts image-level features: changing one corner of the deepest grid changes
    the output at the opposite corner (a 1x1 mix alone could not), and a context U-Net keeps its shapes."""
    from colorize.models.unet import GlobalContext

    torch.manual_seed(0)
    block = GlobalContext(32, hidden=16).eval()
    x = torch.rand(2, 32, 12, 12)
    y = x.clone()
    y[:, :, 0, 0] += 5.0
    with torch.no_grad():
        out_x, out_y = block(x), block(y)
    assert out_x.shape == x.shape
    assert (out_x[:, :, -1, -1] - out_y[:, :, -1, -1]).abs().max() > 1e-4
    model = create_model("unet_lite0", context=True).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 64, 96) * 2 - 1).shape == (1, model.bins.num_bins, 16, 24)


def test_training_runs_the_frozen_prefix_fused_with_the_same_features():
    """In training mode a U-Net on EfficientNet runs its frozen stem and blocks as a fused inference copy:
    the encoder's features are those of the plain path, and nothing of the copy is saved."""
    torch.manual_seed(0)
    model = create_model("unet_lite0", freeze_levels=2).train()
    assert model._fast_prefix and model._frozen_blocks == 2
    gray = torch.rand(2, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        fast = model._encode(gray)
        plain = model.encoder(gray)
    assert len(fast) == len(plain)
    for a, b in zip(fast, plain):
        assert torch.allclose(a, b, atol=1e-3)
    assert not any("_fast_prefix" in k for k in model.state_dict())
    model.eval()
    assert not model._fast_prefix  # inference uses the plain modules (which optimize_for_inference rewrites)


def test_weight_files_with_the_former_buffer_name_still_load():
    """``AbBins.rebalance`` was ``weights``: state dicts saved under that name load into the renamed buffer."""
    from colorize.models.base import AbBins

    saved = AbBins()
    saved.rebalance.copy_(torch.linspace(0.5, 2.0, saved.num_bins))
    state = {("weights" if k == "rebalance" else k): v for k, v in saved.state_dict().items()}
    loaded = AbBins()
    loaded.load_state_dict(state)  # strict: no key left over, none missing
    assert torch.equal(loaded.rebalance, saved.rebalance)


def test_imagenet_context_is_the_classifiers_view_and_starts_as_the_model_without_it():
    """The ImageNet branch continues the encoder's frozen prefix through the original classifier's stages (its
    pooled features are the classifier's own on the same photo), stays frozen in training, and its FiLM starts
    at zero: loaded with a plain model's weights, the conditioned model computes exactly that model; once the
    FiLM moves, the branch changes the colors, and inference rewrites keep them."""
    import copy

    from colorize.models.backbones import create_backbone

    torch.manual_seed(0)
    model = create_model("unet_lite0", context=True, imagenet_context=True, backbone_weights=True).eval()
    gray = torch.rand(1, 3, 96, 128) * 2 - 1
    classifier = create_backbone("tf_efficientnet_lite0", pretrained=True).eval()
    with torch.no_grad():
        expected = classifier.forward_features(gray).mean(dim=(2, 3))
        got = model.imagenet_context.stages(model.encoder(gray)[0]).mean(dim=(2, 3))
    assert torch.allclose(got, expected, atol=1e-4)

    plain = create_model("unet_lite0", context=True).eval()
    for p in plain.parameters():  # not the ImageNet values: the comparison must not pass by coincidence
        p.data.add_(0.01 * torch.randn_like(p))
    state = model.state_dict()
    state.update(plain.state_dict())
    model.load_state_dict(state)
    x = torch.rand(2, 1, 64, 96) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))

    model.train()
    loss = model(x).logsumexp(dim=1).mean()
    loss.backward()
    assert all(p.grad is None for p in model.imagenet_context.stages.parameters())
    assert model.imagenet_context.film.weight.grad.abs().sum() > 0
    torch.nn.init.normal_(model.imagenet_context.film.weight, std=0.05)  # the FiLM moved (zero compares nothing)
    with torch.no_grad():  # the training path's fused copy of the branch gives the same FiLM as the plain one
        stride4 = model._encode(torch.rand(1, 3, 64, 64) * 2 - 1)[0]
        fast = model.imagenet_context(stride4, model._fast_branch[0])
        slow = model.imagenet_context(stride4)
    assert fast[0][0].abs().max() > 1e-3
    assert all(torch.allclose(a, b, atol=1e-4) for pa, pb in zip(fast, slow) for a, b in zip(pa, pb))
    assert not any("_fast" in k for k in model.state_dict())

    model.eval()
    with torch.no_grad():
        conditioned = model(x)
        assert (conditioned - plain(x)).abs().max() > 1e-3
        fused = copy.deepcopy(model).optimize_for_inference()
        assert torch.allclose(fused(x), conditioned, atol=1e-3)

    with pytest.raises(ValueError, match="frozen"):
        create_model("unet_lite0", imagenet_context=True, freeze_levels=1)


def test_unet_decoder_can_train_in_bfloat16_with_float32_encoder_and_head():
    """``decoder_dtype`` (set by training under ``amp: bf16`` on the CPU) runs the decoder's convolutions in bfloat16 and
    nothing else: the encoder and the head stay float32, the logits are float32 and close to the float32
    model's, and every trainable parameter still gets a float32 gradient."""
    torch.manual_seed(0)
    model = create_model("unet_lite0", context=True, freeze_levels=2).train()
    seen: dict[str, torch.dtype] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d) and name.split(".")[0] in ("encoder", "decoder", "context", "head"):
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.dtype))
    l_norm = torch.rand(2, 1, 64, 64) * 2 - 1
    want = model(l_norm)
    assert set(seen.values()) == {torch.float32}
    model.decoder_dtype = torch.bfloat16
    seen.clear()
    got = model(l_norm)
    by_part = {part: {d for n, d in seen.items() if n.startswith(part + ".")}
               for part in ("decoder", "context", "head")}
    assert by_part == {"decoder": {torch.bfloat16}, "context": {torch.bfloat16}, "head": {torch.float32}}
    assert {d for n, d in seen.items() if n.startswith("encoder.")} == {torch.float32}
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).abs().max() < 0.05 * want.abs().max()  # bfloat16's 8-bit mantissa, not another network
    got.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_unet_without_a_decoder_dtype_leaves_an_outer_autocast_alone():
    """Mixed precision set around the model (CUDA's ``amp`` in training) reaches the decoder too: the decoder's own
    bfloat16 setting, when unset, must not switch it off (a half-precision encoder feeding a float32 decoder fails)."""
    torch.manual_seed(0)
    model = create_model("unet_lite0", context=True, freeze_levels=2).train()
    seen: dict[str, torch.dtype] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d) and name.split(".")[0] in ("decoder", "context"):
            module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.dtype))
    assert model.decoder_dtype is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(2, 1, 64, 64) * 2 - 1)
    assert seen and set(seen.values()) == {torch.bfloat16}
    assert torch.isfinite(out.float()).all()
