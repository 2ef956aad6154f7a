"""The pipeline's full-resolution steps, written once in torch and run by two engines.

:class:`colorize.pipeline.Colorizer` calls these functions directly (torch engine). The light install
(:mod:`colorize.lite`, no torch) runs the same functions exported to ONNX graphs by :func:`export_graphs`
and shipped in the package's ``graphs/`` folder: one description of each step, so the two engines cannot
drift apart (``tests/test_lite.py`` checks that their outputs agree within one 8-bit level).

The steps, around the network (which has its own export, :mod:`colorize.onnx`):

- ``lab``: float sRGB (1, 3, h, w) -> CIE Lab, for a thumbnail's statistics (:func:`colorize.tone.classify`);
- ``lightness``: an 8-bit RGB strip -> its CIE L (1, 1, r, W), in [0, 100]; ``gray_lightness`` the same for an
  8-bit gray strip (1, 1, r, W): a table lookup (most inputs are gray: a third of the memory); ``gray16_lightness``
  for a 16-bit gray strip (a master scan; int32 levels: ONNX graphs take no uint16), a lookup in 65536 entries;
- the working-size lightness is an antialiased bilinear shrink of that (torch's ``F.interpolate`` with
  ``antialias=True`` here, Pillow's identical bilinear reduction in the light engine: a library operation,
  not ours to describe);
- ``coefficients``: working-size L and the network's ab -> the guided filter's local linear model
  ab ~ A * L + B (A in channels 0-1, B in 2-3), widened to the photo's width: (1, 4, h, W);
- ``compose``: those, one full-resolution strip of L and the strip's first row -> the strip in color,
  8-bit (1, 3, r, W): ab = A * L + B with A and B blended from two rows for each output row (a matrix product
  over the few rows the strip reads), Lab to RGB with out-of-gamut colors pulled in by their chroma (hue and
  lightness kept), sRGB companding; ``compose16`` the same in 16 bits (int32 levels 0..65535), for 16-bit masters.

Strips (:func:`colorize.layout.strips`) keep memory flat for any photo size. The exported graphs take and give
an RGB strip as the photo's array holds it, (1, r, W, 3). The torch functions are written in operations that
onnxruntime runs fast, as they run as fast in torch: ``torch.gather`` for table lookups (ONNX GatherElements;
onnxruntime's Gather copies element by element), matrix products for color matrices and row blends (not Einsum),
no reductions over the channel dim, arithmetic in place of ``torch.where`` and ``torch.lerp``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from colorize.color import (denormalize_ab, lab_f_offsets, lab_fy, linear_rgb_in_gamut, linear_to_srgb,
                            linear_to_srgb_uint8, normalize_l, rgb_to_lab, srgb_to_uint16, uint8_to_l,
                            uint16_gray_to_l)
from colorize.layout import GRAPHS, L_CENTER, L_SCALE

GUIDE_RADIUS = 2  # guided filter window (working-size pixels) and regularization (normalized L squared)
GUIDE_EPS = 1e-3
GRAPH_OPSET = 17


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window around each pixel, clipped at the borders: what ``avg_pool2d`` with
    ``count_include_pad=False`` computes, as 4r shifted adds (several times faster on CPU)."""
    h, w = x.shape[-2:]
    p = F.pad(x, (r, r, r, r))
    rows = p[..., :, 0:w]
    for i in range(1, 2 * r + 1):
        rows = rows + p[..., :, i:i + w]
    total = rows[..., 0:h, :]
    for i in range(1, 2 * r + 1):
        total = total + rows[..., i:i + h, :]

    def count(n: int) -> torch.Tensor:  # window length at each position along a side of length n
        i = torch.arange(n, device=x.device)
        return ((i + r).clamp(max=n - 1) - (i - r).clamp(min=0) + 1).to(x.dtype)

    return total / (count(h)[:, None] * count(w)[None, :])


def guided_coefficients(guide: torch.Tensor, src: torch.Tensor, *, radius: int = GUIDE_RADIUS,
                        eps: float = GUIDE_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast guided filter (He & Sun 2015) at low resolution: the local linear model ``src ~ A * guide + B``.

    Args:
        guide: (B, 1, h, w) normalized L at working size.
        src: (B, C, h, w) normalized ab at working size.
    Returns:
        A, B: (B, C, h, w) each, box-smoothed.
    """
    c = src.shape[1]
    means = _box(torch.cat([guide, src, guide * src, guide * guide], dim=1), radius)  # one box filter for all
    mean_i, mean_p, mean_ip, mean_ii = means.split([1, c, c, 1], dim=1)
    a = (mean_ip - mean_i * mean_p) / (mean_ii - mean_i * mean_i + eps)  # covariance / (variance + eps)
    b = mean_p - a * mean_i
    return _box(torch.cat([a, b], dim=1), radius).split(c, dim=1)


def coefficients(l_small: torch.Tensor, ab: torch.Tensor, width: int, *, guided: bool = True) -> torch.Tensor:
    """Working-size L (B, 1, h, w) in [0, 100] and normalized ab (B, 2, h, w) -> (B, 4, h, width): A and B of
    ``ab ~ A * normalized L + B``, already widened to the photo's ``width`` (bilinear: each row on its own,
    so :func:`compose` only has to blend two rows per output row); with ``guided=False``, A = 0 and B = ab
    (plain bilinear upsampling)."""
    ab = ab.contiguous()  # the network's channels_last output makes the box filter's shifted adds 2x slower
    if guided:
        coeffs = torch.cat(guided_coefficients(normalize_l(l_small), ab), dim=1)
    else:
        coeffs = torch.cat([torch.zeros_like(ab), ab], dim=1)
    return F.interpolate(coeffs, size=(coeffs.shape[-2], width), mode="bilinear", align_corners=False)


def row_window(h: int, first_row: torch.Tensor, rows: int, height: int | torch.Tensor,
               device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """How rows ``first_row .. first_row + rows`` of a map of ``h`` rows bilinearly resized to ``height`` rows
    (``F.interpolate(align_corners=False)``) are made: from the k consecutive rows ``window`` (k,) of the map,
    as ``weights @ map[..., window, :]`` with ``weights`` (rows, k), two nonzero weights a row.

    ``first_row`` is a 0-d tensor (and ``height`` may be one) so an exported graph takes them as inputs.
    """
    y = torch.arange(rows, device=device, dtype=torch.float32) + first_row.to(device, torch.float32) + 0.5
    src = (y * (h / torch.as_tensor(height, dtype=torch.float32, device=device)) - 0.5).clamp(min=0)
    i0 = src.floor().to(torch.int64).clamp(max=h - 1)
    i1 = (i0 + 1).clamp(max=h - 1)
    wy = (src - i0.to(torch.float32)).clamp(0, 1)[:, None]
    window = torch.arange(i1[-1] - i0[0] + 1, device=device) + i0[0]
    weights = (window == i0[:, None]).float() * (1 - wy) + (window == i1[:, None]).float() * wy
    return window, weights


def resize_rows(wide: torch.Tensor, first_row: torch.Tensor, rows: int, height: int | torch.Tensor) -> torch.Tensor:
    """Rows ``first_row .. first_row + rows`` of ``wide`` (B, C, h, W) bilinearly resized to ``height`` rows,
    as ``F.interpolate(align_corners=False)`` of the whole map would give them: (B, C, rows, W)."""
    window, weights = row_window(wide.shape[-2], first_row, rows, height, wide.device)
    return weights @ wide.index_select(2, window)


def compose(wide: torch.Tensor, l: torch.Tensor, first_row: torch.Tensor, height: torch.Tensor | int, *,
            uint8: bool = True, uint16: bool = False) -> torch.Tensor:
    """One strip of the photo in color.

    Args:
        wide: (1, 4, h, W) from :func:`coefficients`.
        l: (1, 1, r, W) full-resolution L of the strip, in [0, 100].
        first_row: 0-d int64 tensor: the strip's first row in the photo.
        height: the photo's height in rows.
        uint8: 8-bit sRGB (a table lookup) or float sRGB in [0, 1].
        uint16: 16-bit sRGB levels 0..65535 as int32 (:func:`colorize.color.srgb_to_uint16`), ``uint8`` aside.
    Returns:
        (1, 3, r, W) sRGB inside the gamut, lightness exactly ``l``.
    """
    window, weights = row_window(wide.shape[-2], first_row, l.shape[-2], height, wide.device)
    a, b = wide.index_select(2, window).split(2, dim=1)  # (1, 2, k, W) each: the k rows the strip blends
    # ab = denormalize_ab(a * normalize_l(l) + b) is linear in l, and lab_f_offsets linear in ab: the offsets of
    # the Lab inverse are slope * l + intercept, both made on the k rows, then blended to the strip's rows
    slope = lab_f_offsets(denormalize_ab(a / L_SCALE))
    intercept = lab_f_offsets(denormalize_ab(b - a * (L_CENTER / L_SCALE)))
    offsets = torch.addcmul(weights @ intercept, weights @ slope, l)  # (1, 3, r, W)
    lin = linear_rgb_in_gamut(lab_fy(l), offsets)
    if uint8 and not uint16:
        return linear_to_srgb_uint8(lin)
    rgb = linear_to_srgb(lin).clamp_(0.0, 1.0)
    return srgb_to_uint16(rgb) if uint16 else rgb


# -- the graphs the light engine runs -------------------------------------------------------------------
class _Lightness(nn.Module):
    """8-bit RGB as a photo's array holds it, (1, rows, W, 3), 8-bit gray (1, 1, rows, W) or 16-bit gray levels
    (``gray16``: int32 (1, 1, rows, W)) -> L (1, 1, rows, W)."""

    def __init__(self, rgb: bool, gray16: bool = False):
        super().__init__()
        self.rgb, self.gray16 = rgb, gray16

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.gray16:
            return uint16_gray_to_l(image)
        return uint8_to_l(image.permute(0, 3, 1, 2) if self.rgb else image)


class _Lab(nn.Module):
    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return rgb_to_lab(rgb)


class _Coefficients(nn.Module):
    def forward(self, l_small: torch.Tensor, ab: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        return coefficients(l_small, ab, row.shape[-1])  # row: (1, W), any values: its shape is the width


class _Compose(nn.Module):
    def __init__(self, uint16: bool = False):
        super().__init__()
        self.uint16 = uint16

    def forward(self, wide: torch.Tensor, l: torch.Tensor, first_row: torch.Tensor,
                height: torch.Tensor) -> torch.Tensor:
        # (1, rows, W, 3): the photo array's layout
        return compose(wide, l, first_row, height, uint16=self.uint16).permute(0, 2, 3, 1)


def export_graphs(folder: str | Path) -> list[Path]:
    """Export every step of :data:`colorize.layout.GRAPHS` to ``folder/<name>.onnx`` (dynamic sizes), as
    the light engine loads them. Run at packaging time: ``python -m colorize.steps src/colorize/graphs``."""
    from colorize.io import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, width, h, w = 24, 40, 8, 12  # example shapes for tracing; every axis below is dynamic
    l = torch.rand(1, 1, rows, width) * 100
    specs = {
        "lightness": (_Lightness(rgb=True), (torch.randint(0, 256, (1, rows, width, 3), dtype=torch.uint8),), ["rgb"],
                      "l", {"rgb": {1: "rows", 2: "width"}, "l": {2: "rows", 3: "width"}}),
        "gray_lightness": (_Lightness(rgb=False), (torch.randint(0, 256, (1, 1, rows, width), dtype=torch.uint8),),
                           ["gray"], "l", {"gray": {2: "rows", 3: "width"}, "l": {2: "rows", 3: "width"}}),
        "lab": (_Lab(), (torch.rand(1, 3, h, w),), ["rgb"], "lab", {"rgb": {2: "h", 3: "w"}, "lab": {2: "h", 3: "w"}}),
        "coefficients": (_Coefficients(), (torch.rand(1, 1, h, w) * 100, torch.rand(1, 2, h, w) - 0.5,
                                           torch.zeros(1, width)), ["l_small", "ab", "row"], "wide",
                         {"l_small": {2: "h", 3: "w"}, "ab": {2: "h", 3: "w"}, "row": {1: "width"},
                          "wide": {2: "h", 3: "width"}}),
        "compose": (_Compose(), (torch.rand(1, 4, h, width), l, torch.tensor(3), torch.tensor(100)),
                    ["wide", "l", "first_row", "height"], "rgb",
                    {"wide": {2: "h", 3: "width"}, "l": {2: "rows", 3: "width"}, "rgb": {1: "rows", 2: "width"}}),
        "gray16_lightness": (_Lightness(rgb=False, gray16=True),
                             (torch.randint(0, 1 << 16, (1, 1, rows, width), dtype=torch.int32),), ["gray"], "l",
                             {"gray": {2: "rows", 3: "width"}, "l": {2: "rows", 3: "width"}}),
        "compose16": (_Compose(uint16=True), (torch.rand(1, 4, h, width), l, torch.tensor(3), torch.tensor(100)),
                      ["wide", "l", "first_row", "height"], "rgb",
                      {"wide": {2: "h", 3: "width"}, "l": {2: "rows", 3: "width"}, "rgb": {1: "rows", 2: "width"}}),
    }
    assert set(specs) == set(GRAPHS)
    written = []
    for name, (module, args, inputs, output, axes) in specs.items():
        def write(tmp: str, module=module, args=args, inputs=inputs, output=output, axes=axes) -> None:
            with warnings.catch_warnings():  # tracer warnings: Python-side shape arithmetic, symbolic in the graph
                warnings.simplefilter("ignore")
                torch.onnx.export(module.eval(), args, tmp, dynamo=False, opset_version=GRAPH_OPSET,
                                  input_names=inputs, output_names=[output], dynamic_axes=axes)

        atomic_write(folder / f"{name}.onnx", write)
        written.append(folder / f"{name}.onnx")
    return written


if __name__ == "__main__":
    import sys

    for path in export_graphs(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "graphs"):
        print(path)
