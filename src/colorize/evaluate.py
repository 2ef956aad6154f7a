"""Score colorization models against the truth on color photos (``colorize eval``).

Every photo's lightness goes through the one pipeline (:class:`colorize.pipeline.Colorizer`, which
uses only the photo's L) and the result is compared with the photo itself. The gray baseline
(ab = 0) is always scored beside the models. Two protocols: ``crop256`` (short side resized to 256,
centre crop 256x256) and ``original`` (the photo as it is).

Metrics per image: PSNR and SSIM on RGB, AuC of the per-pixel ab error (Zhang et al.), colorfulness
(Hasler & Suesstrunk) and, with the ImageNet classifier (EfficientNet-Lite2), whether its top-1 class
on the colorized photo equals its top-1 on the true photo. Per set: delta-colorfulness and the
Frechet distance between the classifier's pooled features of the colorized and the true photos.

Writes ``per_image.csv``, ``summary.json``, ``report.md`` and ``grid_<protocol>.png`` (gray | each
model | truth) to the report folder.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from colorize import metrics
from colorize.color import gray_rgb_from_l, rgb_to_l

PROTOCOLS = ("crop256", "original")
CROP_SIZE = 256
GRAY = "gray"  # name of the baseline method
CLASSIFIER = "tf_efficientnet_lite2"
REPORT_COLUMNS = ("method", "PSNR (dB)", "SSIM", "AuC", "colorfulness", "delta-CF", "top-1 agreement", "Frechet",
                  "s / photo")
_FLOAT_FIELDS = ("psnr", "ssim", "auc", "colorfulness")
T = TypeVar("T")
CSV_FIELDS = ("protocol", "method", "image", "width", "height", "psnr", "ssim", "auc", "colorfulness",
              "colorfulness_truth", "top1_agree")


class ImageNetClassifier:
    """A pretrained ImageNet classifier for the semantic metrics: top-1 class and pooled features.

    The photo is centre-cropped to a square and resized to the classifier's input size (260 px for
    EfficientNet-Lite2), then normalized as its weights expect.
    """

    def __init__(self, name: str = CLASSIFIER, *, device: str = "cpu"):
        from colorize.models.backbones import backbone_cfg, create_backbone

        self.cfg = backbone_cfg(name)
        self.device = torch.device(device)
        self.model = create_backbone(name, pretrained=True).to(self.device, memory_format=torch.channels_last).eval()

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) sRGB in [0, 1] -> (B, 3, S, S) normalized classifier input."""
        h, w = rgb.shape[-2:]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        x = rgb[..., top:top + s, left:left + s].to(self.device, torch.float32)
        size = self.cfg.input_size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.cfg.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)  # faster convs on CPU

    @torch.inference_mode()
    def __call__(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) sRGB in [0, 1] -> (logits (B, 1000), pooled features (B, C))."""
        feats = self.model.forward_features(self.preprocess(rgb))
        pooled = self.model.forward_head(feats, pre_logits=True)
        return self.model.get_classifier()(pooled), pooled


def load_truth(path: str | Path, protocol: str) -> torch.Tensor:
    """A color photo as (3, H, W) sRGB in [0, 1]: as it is (``original``) or resized so the short side
    is 256 and centre-cropped to 256x256 (``crop256``)."""
    from colorize.io import load_image

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{protocol}'; choose from: {', '.join(PROTOCOLS)}")
    x = torch.from_numpy(np.array(load_image(path))).permute(2, 0, 1).float().div(255)
    if protocol == "crop256":
        from torchvision.transforms.v2 import functional as TF

        x = TF.center_crop(TF.resize(x, CROP_SIZE, antialias=True), [CROP_SIZE, CROP_SIZE]).clamp(0, 1)
    return x


def gray_baseline(rgb: torch.Tensor) -> torch.Tensor:
    """The photo's lightness with ab = 0: (..., 3, H, W) -> same shape."""
    return gray_rgb_from_l(rgb_to_l(rgb))


def select(items: Sequence[T], limit: int) -> list[T]:
    """Up to ``limit`` items spread evenly over the sorted list (so every source folder shows up)."""
    if limit <= 0 or limit >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]


@dataclass
class MethodScores:
    """Per-image scores of one method under one protocol."""

    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    auc: list[float] = field(default_factory=list)
    colorfulness: list[float] = field(default_factory=list)
    top1_agree: list[bool] = field(default_factory=list)
    features: list[torch.Tensor] = field(default_factory=list)  # (1, C) pooled classifier features each
    seconds: list[float] = field(default_factory=list)  # colorization time per image (models only)

    def add(self, scores: dict[str, torch.Tensor], j: int) -> None:
        """Append row ``j`` of :func:`score_photo`'s output."""
        self.psnr.append(float(scores["psnr"][j]))
        self.ssim.append(float(scores["ssim"][j]))
        self.auc.append(float(scores["auc"][j]))
        self.colorfulness.append(float(scores["colorfulness"][j]))
        if "top1_agree" in scores:
            self.top1_agree.append(bool(scores["top1_agree"][j]))
            self.features.append(scores["features"][j:j + 1])

    def versus(self, base: "MethodScores") -> dict:
        """This method against ``base`` on the same photos: mean differences in PSNR and in top-1 agreement
        with their 95% intervals (paired), and the photos where only one of the two agrees with the truth's
        class (won: only this one; lost: only ``base``), which is all a top-1 difference rests on."""
        out: dict = {"psnr": metrics.paired_difference(self.psnr, base.psnr)}
        if self.top1_agree and len(self.top1_agree) == len(base.top1_agree):
            a, b = np.array(self.top1_agree, dtype=bool), np.array(base.top1_agree, dtype=bool)
            out["top1"] = metrics.paired_difference(a.astype(float), b.astype(float))
            out["won"], out["lost"] = int((a & ~b).sum()), int((b & ~a).sum())
        return out

    def summary(self, truth_cf: list[float], truth_feats: torch.Tensor | None,
                versus: dict[str, "MethodScores"] | None = None) -> dict:
        """Means over the photos; and for each ``name: scores`` in ``versus`` other than these, ``vs_<name>``
        (:meth:`versus`): ``vs_gray`` against the gray baseline, ``vs_reference`` against a reference model."""
        def mean(v: list) -> float | None:
            return float(np.mean(v)) if v else None

        finite_psnr = [p for p in self.psnr if math.isfinite(p)]
        fd = None
        if truth_feats is not None and len(self.features) >= 2:
            fd = metrics.frechet_distance(torch.cat(self.features), truth_feats)
        return {
            "psnr": mean(finite_psnr),
            "ssim": mean(self.ssim),
            "auc": mean(self.auc),
            "colorfulness": mean(self.colorfulness),
            "delta_colorfulness": metrics.delta_colorfulness(self.colorfulness, truth_cf),
            "top1_agreement": mean([float(a) for a in self.top1_agree]),
            "frechet": fd,
            "seconds_per_image": mean(self.seconds),
            **{f"vs_{name}": self.versus(other) for name, other in (versus or {}).items() if other is not self},
        }


def score_photo(preds: torch.Tensor, truth: torch.Tensor,
                classifier: ImageNetClassifier | None = None) -> dict[str, torch.Tensor]:
    """Scores of M colorizations (M, 3, H, W) of one photo against the truth (3, H, W).

    Returns:
        psnr, ssim, auc, colorfulness: (M,); colorfulness_truth: 0-d; with a classifier also
        top1_agree (M,) bool, features (M, C) and features_truth (1, C), float64 on the CPU.
    """
    target = truth.expand_as(preds)
    scores = {"psnr": metrics.psnr(preds, target), "ssim": metrics.ssim(preds, target),
              "auc": metrics.ab_error_auc(preds, target), "colorfulness": metrics.colorfulness(preds),
              "colorfulness_truth": metrics.colorfulness(truth)}
    if classifier is not None:
        logits, feats = classifier(torch.cat([preds, truth[None]]))  # the truth is the last row
        scores["top1_agree"] = metrics.top1_agreement(logits[:-1], logits[-1:].expand_as(logits[:-1]))
        scores["features"], scores["features_truth"] = feats[:-1].double().cpu(), feats[-1:].double().cpu()
    return scores


def method_name(spec: str | Path | torch.nn.Module, taken: set[str]) -> str:
    """A short unique label for a model spec: the shipped name, the file's stem or the module's name."""
    if isinstance(spec, torch.nn.Module):
        name = getattr(spec, "model_name", type(spec).__name__)
    else:
        name = Path(spec).stem if Path(spec).suffix else str(spec)
    label, i = name, 2
    while label in taken or label == GRAY:
        label, i = f"{name}_{i}", i + 1
    return label


def evaluate(
    data: str | Path | Sequence[str | Path],
    models: Sequence[str | Path | torch.nn.Module],
    *,
    out_dir: str | Path = "eval_report",
    protocols: Sequence[str] = ("crop256",),
    limit: int = 0,
    semantic: bool = True,
    size: int | None = None,
    grid_rows: int = 8,
    progress: bool = True,
    reference: str | None = None,
) -> dict:
    """Colorize the photos under ``data`` with each model and score them against the truth.

    Args:
        data: folders, files or globs of color photos.
        models: shipped model names, weight/checkpoint files, ``.onnx`` files (run on onnxruntime)
            or modules; each is labelled by its name or file stem.
        out_dir: report folder (created).
        protocols: any of ``crop256`` and ``original``.
        limit: score at most this many photos, spread evenly over the set (0: all).
        semantic: compute the classifier metrics (top-1 agreement, Frechet distance).
        size: the pipeline's working size (None: each model's default).
        grid_rows: photos shown in each side-by-side grid.
        progress: show a progress bar.
        reference: the label of one of ``models``; every other model is also compared with it photo by
            photo (``vs_reference``, as ``vs_gray``): a candidate against the weights it should replace.
    Returns:
        The summary written to ``summary.json``.
    """
    from tqdm import tqdm

    from colorize.data import ImageError, find_images, source_name
    from colorize.pipeline import Colorizer

    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise ValueError(f"unknown protocol(s) {bad}; choose from: {', '.join(PROTOCOLS)}")
    roots = [Path(d) for d in (data if isinstance(data, (list, tuple)) else [data])]
    paths = select(find_images(roots), limit)
    if not paths:
        raise ValueError(f"no images found in {', '.join(map(str, roots))}")
    colorizers: dict[str, Colorizer] = {}
    for spec in models:
        colorizers[method_name(spec, set(colorizers))] = Colorizer(spec, size=size)
    classifier = ImageNetClassifier() if semantic else None
    methods = [GRAY, *colorizers]
    if reference is not None and reference not in colorizers:
        raise ValueError(f"reference '{reference}' is none of the models: {', '.join(colorizers)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid_idx = set(select(range(len(paths)), grid_rows)) if grid_rows > 0 else set()

    rows: list[dict] = []
    summary: dict = {"data": [str(r) for r in roots], "images": len(paths), "methods": methods,
                     "models": {k: c.model_name for k, c in colorizers.items()},
                     "classifier": CLASSIFIER if semantic else None, "protocols": {}}
    sources = {path: source_name(path, roots) for path in paths}
    for protocol in protocols:
        per_method = {m: MethodScores() for m in methods}
        truth_cf: list[float] = []
        truth_feats: list[torch.Tensor] = []
        # the same scores grouped by source (first folder below a data root): collections differ
        by_source = {s: ({m: MethodScores() for m in methods}, [], []) for s in sorted(set(sources.values()))}
        grid: list[list[torch.Tensor]] = []
        skipped: list[str] = []
        for i, path in enumerate(tqdm(paths, desc=protocol, unit="img", disable=not progress, dynamic_ncols=True)):
            try:
                truth = load_truth(path, protocol)
            except ImageError as e:
                skipped.append(str(e))
                continue
            preds = {GRAY: gray_baseline(truth)}
            for label, colorizer in colorizers.items():
                t0 = time.perf_counter()
                preds[label] = colorizer.colorize_tensor(truth)
                per_method[label].seconds.append(time.perf_counter() - t0)
            scores = score_photo(torch.stack([preds[m] for m in methods]), truth, classifier)
            truth_cf.append(float(scores["colorfulness_truth"]))
            if classifier is not None:
                truth_feats.append(scores["features_truth"])
            name = _display_name(path, roots)
            src_methods, src_cf, src_feats = by_source[sources[path]]
            src_cf.append(truth_cf[-1])
            if classifier is not None:
                src_feats.append(scores["features_truth"])
            for j, m in enumerate(methods):
                per_method[m].add(scores, j)
                src_methods[m].add(scores, j)
                rows.append({"protocol": protocol, "method": m, "image": name, "width": truth.shape[-1],
                             "height": truth.shape[-2], **{f: _fmt(scores[f][j]) for f in _FLOAT_FIELDS},
                             "colorfulness_truth": _fmt(truth_cf[-1]),
                             "top1_agree": int(scores["top1_agree"][j]) if classifier is not None else ""})
            if i in grid_idx:
                grid.append([*(preds[m] for m in methods), truth])
        if not truth_cf:
            raise ValueError(f"none of the {len(paths)} images could be read; first error: {skipped[:1]}")
        feats_truth = torch.cat(truth_feats) if truth_feats else None
        summary["protocols"][protocol] = {
            "images": len(truth_cf),
            "skipped": skipped,
            "truth_colorfulness": float(np.mean(truth_cf)),
            "methods": {m: per_method[m].summary(truth_cf, feats_truth, _versus(per_method, m, reference))
                        for m in methods},
        }
        if len(by_source) > 1:
            summary["protocols"][protocol]["sources"] = {
                src: {"images": len(cf), "truth_colorfulness": float(np.mean(cf)),
                      "methods": {m: ms[m].summary(cf, torch.cat(fs) if fs else None, _versus(ms, m, reference))
                                  for m in methods}}
                for src, (ms, cf, fs) in by_source.items() if cf}
        if grid:
            save_grid(grid, [*methods, "truth"], out_dir / f"grid_{protocol}.png")

    _write_csv(rows, out_dir / "per_image.csv")
    _write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    _write_text(out_dir / "report.md", markdown_report(summary))
    return summary


def _versus(scores: dict[str, MethodScores], method: str, reference: str | None) -> dict[str, MethodScores]:
    """What ``method`` is compared with: a model with gray and the reference model if there is one; gray with
    nothing (its differences are the models' negated)."""
    if method == GRAY:
        return {}
    return {GRAY: scores[GRAY], **({"reference": scores[reference]} if reference else {})}


def _display_name(path: Path, roots: Sequence[Path]) -> str:
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return str(path.relative_to(root))
    return str(path)


def _fmt(x: torch.Tensor | float) -> str:
    v = float(x)
    return "inf" if math.isinf(v) else f"{v:.6g}"


def _write_text(path: Path, text: str) -> None:
    from colorize.io import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _write_csv(rows: list[dict], path: Path) -> None:
    from colorize.io import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, write)


def markdown_report(summary: dict) -> str:
    """One table per protocol: a row per method (the gray baseline first)."""
    lines = ["# Colorization evaluation", "",
             f"{summary['images']} photos from {', '.join(summary['data'])}. Higher is better for PSNR, SSIM, "
             "AuC and top-1 agreement; lower is better for delta-colorfulness and the Frechet distance. "
             "`gray` is the baseline (ab = 0)."]
    if summary["classifier"]:
        lines[-1] += f" Semantic metrics use {summary['classifier']} (ImageNet)."
    for protocol, res in summary["protocols"].items():
        lines += ["", f"## {protocol} ({res['images']} photos, truth colorfulness {res['truth_colorfulness']:.1f})",
                  "", "| " + " | ".join(REPORT_COLUMNS) + " |", "|---" * len(REPORT_COLUMNS) + "|"]
        for m, s in res["methods"].items():
            cells = [_cell(s["psnr"], ".2f"), _cell(s["ssim"], ".4f"), _cell(s["auc"], ".4f"),
                     _cell(s["colorfulness"], ".1f"), _cell(s["delta_colorfulness"], ".1f"),
                     _cell(s["top1_agreement"], ".1%"), _cell(s["frechet"], ".2f"),
                     _cell(s["seconds_per_image"], ".3f")]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        if res.get("skipped"):
            lines += ["", f"Not scored: {len(res['skipped'])} photo(s) that cannot be used:", "",
                      *(f"- {reason}" for reason in res["skipped"])]
        lines += _versus_gray_lines(protocol, res)
        if res.get("sources"):
            lines += ["", f"### {protocol}, per source", "",
                      "| source | photos | method | PSNR (dB) | top-1 agreement | colorfulness (truth) | delta-CF |",
                      "|---|---|---|---|---|---|---|"]
            for src, r in res["sources"].items():
                for m, s in r["methods"].items():
                    lines.append(f"| {src} | {r['images']} | {m} | {_cell(s['psnr'], '.2f')} | "
                                 f"{_cell(s['top1_agreement'], '.1%')} | {_cell(s['colorfulness'], '.1f')} "
                                 f"({r['truth_colorfulness']:.1f}) | {_cell(s['delta_colorfulness'], '.1f')} |")
    return "\n".join(lines) + "\n"


def _versus_gray_lines(protocol: str, res: dict) -> list[str]:
    """A table of each model against the gray baseline on the same photos (overall, then per source): the
    mean difference with its 95% interval, so a reader sees which differences the photo count can tell."""
    groups = [("all", res)] + list((res.get("sources") or {}).items())
    rows = []
    for group, r in groups:
        for m, s in r["methods"].items():
            v = s.get("vs_gray")
            if not v:
                continue
            top1 = v.get("top1")
            rows.append(f"| {group} | {m} | {format_interval(v['psnr'])} | {format_interval(top1, '+.1f', 100)} | "
                        + (f"{v['won']} / {v['lost']} |" if top1 else "- |"))
    if not rows:
        return []
    return ["", f"### {protocol}, against gray on the same photos (mean difference, 95% interval)", "",
            "An interval that holds 0 is a difference these photos cannot tell from none. Top-1 agreement rests "
            "on the photos where only one of the two agrees with the true photo's class (won / lost).", "",
            "| photos | method | PSNR - gray (dB) | top-1 - gray (points) | won / lost |", "|---|---|---|---|---|",
            *rows]


def format_interval(d: dict | None, spec: str = "+.2f", scale: float = 1.0) -> str:
    """A :func:`metrics.paired_difference` as ``mean [low, high]`` (times ``scale``), or ``-``."""
    if not d:
        return "-"
    return (f"{d['mean'] * scale:{spec}} [{d['low'] * scale:{spec}}, {d['high'] * scale:{spec}}]")


def _cell(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def save_grid(rows: list[list[torch.Tensor]], labels: list[str], path: Path, *, cell: int = 192) -> None:
    """A PNG with a header of ``labels`` and one row per photo, each image fitted into a ``cell`` square."""
    from PIL import Image, ImageDraw

    from colorize.io import atomic_write
    from colorize.pipeline import to_uint8

    header = 20
    canvas = Image.new("RGB", (cell * len(labels), header + cell * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(labels):
        draw.text((j * cell + 4, 4), label, fill="black")
    for i, images in enumerate(rows):
        for j, img in enumerate(images):
            pil = Image.fromarray(to_uint8(img))
            pil.thumbnail((cell, cell), Image.Resampling.LANCZOS)
            canvas.paste(pil, (j * cell + (cell - pil.width) // 2, header + i * cell + (cell - pil.height) // 2))
    atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))
