"""All color math of the project: sRGB <-> CIE Lab (D65) in torch, and the model-side normalizations.

Every function works on batched tensors ``(B, 3, H, W)`` or single images ``(3, H, W)`` on any device,
is differentiable, and matches scikit-image's ``rgb2lab`` / ``lab2rgb`` (same constants) to ~1e-4.
Models see normalized L in [-1, 1] and predict normalized ab (ab / 128, bounded by tanh).
"""

from __future__ import annotations

import torch

# sRGB primaries -> CIE XYZ (the matrix scikit-image uses), and its inverse.
XYZ_FROM_RGB = torch.tensor(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=torch.float64,
)
RGB_FROM_XYZ = torch.linalg.inv(XYZ_FROM_RGB)
D65_WHITE = (0.95047, 1.0, 1.08883)  # CIE 1931 2-degree observer
RGB_FROM_WHITE_XYZ = RGB_FROM_XYZ * torch.tensor(D65_WHITE, dtype=torch.float64)  # linear RGB from XYZ / white

# CIE Lab piecewise function constants.
LAB_EPSILON = 0.008856  # (6/29)^3: below it f(t) is linear
LAB_KAPPA = 7.787  # slope of the linear part of f(t)
LAB_OFFSET = 16.0 / 116.0
LAB_DELTA = 0.2068966  # 6/29: f-space threshold for the inverse

# sRGB companding.
SRGB_THRESHOLD = 0.04045
LINEAR_THRESHOLD = 0.0031308

from colorize.layout import AB_SCALE, L_CENTER, L_SCALE  # noqa: E402,F401 (model-side scales, torch-free)


def _matmul_channels(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a (K, 3) color matrix over the channel dim of (..., 3, H, W) -> (..., K, H, W): one matrix product
    over the flattened pixels (an ONNX MatMul, which onnxruntime runs 2x faster than an Einsum)."""
    m = matrix.to(device=x.device, dtype=x.dtype)
    return (m @ x.flatten(-2)).view(*x.shape[:-3], m.shape[0], *x.shape[-2:])


def _lookup(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a 1-D table and integer indices of any shape: a gather over the flattened indices.
    Its ONNX export (GatherElements) runs 5-8x faster in onnxruntime than index_select's (Gather, an element
    copy per index); torch runs both alike."""
    return torch.gather(table.view(1, -1), 1, index.reshape(1, -1)).view(index.shape)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """Undo sRGB companding; ``rgb`` in [0, 1]."""
    high = ((rgb.clamp(min=SRGB_THRESHOLD) + 0.055) / 1.055) ** 2.4
    return torch.where(rgb > SRGB_THRESHOLD, high, rgb / 12.92)


def linear_to_srgb(lin: torch.Tensor) -> torch.Tensor:
    """Apply sRGB companding; the result is not clipped."""
    high = 1.055 * lin.clamp(min=LINEAR_THRESHOLD) ** (1 / 2.4) - 0.055
    return torch.where(lin > LINEAR_THRESHOLD, high, lin * 12.92)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    """The cube root above LAB_EPSILON, the line LAB_KAPPA * t + LAB_OFFSET below it, without a branch: the
    line is the cube root's tangent at eps, so above it everywhere, and the smaller of the two is the function."""
    return torch.minimum(t.clamp(min=LAB_EPSILON) ** (1 / 3), LAB_KAPPA * t + LAB_OFFSET)


def _lab_f_inv(f: torch.Tensor) -> torch.Tensor:
    """The cube above LAB_DELTA, the line (f - LAB_OFFSET) / LAB_KAPPA below it, written without a branch:
    m^3 + (f - m) / kappa with m = max(f, d), as the two pieces meet at d (twice as fast as ``torch.where``)."""
    m = f.clamp(min=LAB_DELTA)
    return torch.add(m ** 3, f - m, alpha=1.0 / LAB_KAPPA)  # ** 3: one pass (x * x * x inside), in both engines


def _white(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(D65_WHITE, device=x.device, dtype=x.dtype).view(3, 1, 1)


def lab_fy(l: torch.Tensor) -> torch.Tensor:
    """fy = (L + 16) / 116 of the Lab inverse, for any shape of L: the point the offsets of
    :func:`lab_f_offsets` start from."""
    return (l + 16.0) / 116.0


def lab_f_offsets(ab: torch.Tensor, *, dim: int = -3) -> torch.Tensor:
    """CIE a, b along ``dim`` (2 long) -> the offsets of fx, fy, fz from :func:`lab_fy` (3 long): a / 500, 0 and
    -b / 200 (fz before its clipping at 0). Linear in ab, so a linear model of ab maps to one of the offsets."""
    a, b = ab.unbind(dim)
    return torch.stack([a / 500.0, torch.zeros_like(a), b / -200.0], dim=dim)


def _clip_fz(f: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """fx, fy, fz with negative fz clipped to 0, as scikit-image does; ``shape``: a (3, 1, ...) view that
    broadcasts along f's channel dim."""
    return torch.maximum(f, torch.tensor([-torch.inf, -torch.inf, 0.0], device=f.device, dtype=f.dtype).view(shape))


def _linear_from_offsets(fy: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """fy (..., 1, H, W) and the offsets (..., 3, H, W) of :func:`lab_f_offsets` -> linear RGB (..., 3, H, W),
    unclipped: the Lab inverse with the white point folded into the matrix."""
    return _matmul_channels(_lab_f_inv(_clip_fz(offsets + fy, (3, 1, 1))), RGB_FROM_WHITE_XYZ)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], shape (..., 3, H, W) -> Lab with L in [0, 100], a and b roughly in [-128, 127]."""
    xyz = _matmul_channels(srgb_to_linear(rgb), XYZ_FROM_RGB) / _white(rgb)
    fx, fy, fz = _lab_f(xyz).unbind(-3)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_linear_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab (..., 3, H, W) -> linear RGB, unclipped (values outside [0, 1] are out of the sRGB gamut)."""
    return _linear_from_offsets(lab_fy(lab[..., :1, :, :]), lab_f_offsets(lab[..., 1:, :, :]))


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab (..., 3, H, W) -> sRGB in [0, 1] (clipped, as scikit-image's ``lab2rgb``)."""
    return linear_to_srgb(lab_to_linear_rgb(lab)).clamp(0.0, 1.0)


def rgb_to_l(rgb: torch.Tensor) -> torch.Tensor:
    """Lightness only, (..., 3, H, W) -> (..., 1, H, W) in [0, 100]; cheaper than a full conversion."""
    y = _matmul_channels(srgb_to_linear(rgb), XYZ_FROM_RGB[1:2])
    return 116.0 * _lab_f(y) - 16.0


_Y_TABLES: dict[torch.device, torch.Tensor] = {}


def uint8_rgb_to_l(rgb: torch.Tensor) -> torch.Tensor:
    """Lightness of 8-bit sRGB, (..., 3, H, W) uint8 -> (..., 1, H, W) float32 in [0, 100].

    Each channel's share of Y is a 256-entry table (companding and weight), so this costs three lookups and
    one cube root per pixel: several times cheaper than converting to float and calling :func:`rgb_to_l`.
    """
    tables = _Y_TABLES.get(rgb.device)
    if tables is None:  # (3, 256)
        linear = srgb_to_linear(torch.arange(256, dtype=torch.float64) / 255)
        tables = (XYZ_FROM_RGB[1][:, None] * linear).float().to(rgb.device)
        _Y_TABLES[rgb.device] = tables
    y = sum(_lookup(tables[c], rgb[..., c:c + 1, :, :].int()) for c in range(3))
    return 116.0 * _lab_f(y) - 16.0


_GRAY_L: dict[torch.device, torch.Tensor] = {}


def uint8_gray_to_l(gray: torch.Tensor) -> torch.Tensor:
    """Lightness of 8-bit gray, (..., 1, H, W) uint8 -> (..., 1, H, W) float32 in [0, 100]: what
    :func:`uint8_rgb_to_l` gives for R = G = B, as one lookup in a 256-entry table made by it."""
    table = _GRAY_L.get(gray.device)
    if table is None:
        levels = torch.arange(256, dtype=torch.uint8).view(1, 1, 256).expand(3, 1, 256).to(gray.device)
        table = uint8_rgb_to_l(levels).reshape(256)
        _GRAY_L[gray.device] = table
    return _lookup(table, gray.int())


_GRAY16_L: dict[torch.device, torch.Tensor] = {}
GRAY16_LEVELS = 1 << 16


def uint16_gray_to_l(gray: torch.Tensor) -> torch.Tensor:
    """Lightness of 16-bit gray (a master scan), (..., 1, H, W) of levels 0..65535 (uint16, or int32 where ONNX has no
    uint16) -> (..., 1, H, W) float32 in [0, 100]: :func:`rgb_to_l` of R = G = B = level / 65535 (in float64), as
    one lookup in a 65536-entry table, as :func:`uint8_gray_to_l` does for 8 bits."""
    table = _GRAY16_L.get(gray.device)
    if table is None:
        levels = (torch.arange(GRAY16_LEVELS, dtype=torch.float64) / (GRAY16_LEVELS - 1)).view(1, 1, -1)
        table = rgb_to_l(levels.expand(3, 1, -1)).reshape(-1).float().to(gray.device)
        _GRAY16_L[gray.device] = table
    return _lookup(table, gray.int())


def uint8_to_l(image: torch.Tensor) -> torch.Tensor:
    """Lightness of 8-bit sRGB (..., 3, H, W) or 8-bit gray (..., 1, H, W) -> (..., 1, H, W) in [0, 100]."""
    return uint8_gray_to_l(image) if image.shape[-3] == 1 else uint8_rgb_to_l(image)


def gray_from_l(l: torch.Tensor) -> torch.Tensor:
    """The sRGB value in [0, 1] of the neutral gray with lightness ``l``, one channel: (..., 1, H, W).
    Equals every channel of :func:`gray_rgb_from_l` (up to the matrices' ~1e-4 white-point rounding)
    at a third of the cost."""
    return linear_to_srgb(_lab_f_inv(lab_fy(l))).clamp(0.0, 1.0)


def gray_rgb_from_l(l: torch.Tensor) -> torch.Tensor:
    """The neutral gray RGB image (..., 3, H, W) that has lightness ``l`` (..., 1, H, W)."""
    lab = torch.cat([l, torch.zeros_like(l), torch.zeros_like(l)], dim=-3)
    return lab_to_rgb(lab)


def in_gamut(lab: torch.Tensor, *, tol: float = 1e-3) -> torch.Tensor:
    """Per-pixel mask (..., H, W): True where the Lab color is inside the sRGB gamut."""
    return ~_out_of_gamut(lab_to_linear_rgb(lab), tol)


def _out_of_gamut(lin: torch.Tensor, tol: float) -> torch.Tensor:
    """(..., 3, H, W) linear RGB -> (..., H, W): True where a channel is outside [-tol, 1 + tol]. The largest
    distance from mid-range, channel by channel (onnxruntime runs a reduction over the channels 2x slower)."""
    r, g, b = (lin - 0.5).abs().unbind(-3)
    return torch.maximum(torch.maximum(r, g), b) > 0.5 + tol


def _fit_chroma(fy: torch.Tensor, offsets: torch.Tensor, steps: int, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bisection over the chroma scale of N out-of-gamut colors, given by fy (N,) and the offsets (3, N) of
    :func:`lab_f_offsets` -> (the scale that fits, (N,), which multiplies ab; linear RGB (3, N)).

    :func:`lab_to_linear_rgb` unrolled for a scale ``s`` of ab: f = fy + s * offsets, then the cube and one
    matrix with the white point folded in, so a step costs a few passes over N."""
    matrix = RGB_FROM_WHITE_XYZ.to(fy.device, fy.dtype)

    def linear(scale: torch.Tensor) -> torch.Tensor:  # (N,) -> (3, N)
        return matrix @ _lab_f_inv(_clip_fz(torch.addcmul(fy, offsets, scale), (3, 1)))

    lo = torch.zeros_like(fy)
    step = 1.0
    for _ in range(steps):  # bisection with hi = lo + 2 * step: try lo + step, keep it where it fits
        step /= 2
        low, high = torch.aminmax(linear(lo + step), dim=0)  # one pass over the channels
        lo = lo + ((low >= -tol) & (high <= 1.0 + tol)).to(lo.dtype) * step
    return lo, linear(lo)


def fit_to_gamut(l: torch.Tensor, ab: torch.Tensor, *, steps: int = 8, tol: float = 1e-3) -> torch.Tensor:
    """Shrink the chroma of out-of-gamut pixels (keeping L and hue) until the color fits sRGB.

    Clipping RGB channels independently changes hue and lightness and makes flat color blocks;
    scaling ab toward zero does not. Only out-of-gamut pixels are searched (bisection).

    Args:
        l: (B, 1, H, W) lightness in [0, 100].
        ab: (B, 2, H, W) chroma in Lab units.
    Returns:
        ab with every pixel inside the sRGB gamut, same shape.
    """
    bad = _out_of_gamut(lab_to_linear_rgb(torch.cat([l, ab], dim=1)), tol)  # (B, H, W)
    if not bad.any():
        return ab
    out = ab.permute(0, 2, 3, 1).clone()
    px = out[bad]  # (N, 2)
    scale = _fit_chroma(lab_fy(l[:, 0][bad]), lab_f_offsets(px, dim=-1).T, steps, tol)[0]
    out[bad] = px * scale[:, None]
    return out.permute(0, 3, 1, 2)


def lab_to_linear_rgb_in_gamut(l: torch.Tensor, ab: torch.Tensor, *, steps: int = 8,
                               tol: float = 1e-3) -> torch.Tensor:
    """``lab_to_linear_rgb`` after :func:`fit_to_gamut`, converting the image only once: (B, 1, H, W) L
    and (B, 2, H, W) ab -> (B, 3, H, W) linear RGB inside [0, 1] (up to ``tol``), lightness exactly ``l``."""
    return linear_rgb_in_gamut(lab_fy(l), lab_f_offsets(ab), steps=steps, tol=tol)


def linear_rgb_in_gamut(fy: torch.Tensor, offsets: torch.Tensor, *, steps: int = 8, tol: float = 1e-3) -> torch.Tensor:
    """:func:`lab_to_linear_rgb_in_gamut` of colors given by :func:`lab_fy` (B, 1, H, W) and the offsets of
    :func:`lab_f_offsets` (B, 3, H, W) -> (B, 3, H, W) linear RGB inside [0, 1] (up to ``tol``)."""
    lin = _linear_from_offsets(fy, offsets)
    idx = _out_of_gamut(lin, tol).reshape(-1).nonzero().squeeze(1)  # the few pixels to fit: b * H * W + pixel
    if idx.numel():
        hw = lin.shape[-2] * lin.shape[-1]
        # (3, N) positions of their channels in the flat (B, 3, H, W) maps: no transposes of whole images
        channels = idx + (idx // hw * 2 + torch.arange(3, device=idx.device)[:, None]) * hw
        fitted = _fit_chroma(fy.reshape(-1)[idx], offsets.reshape(-1)[channels], steps, tol)[1]
        lin = lin.reshape(-1).index_copy(0, channels.reshape(-1), fitted.reshape(-1)).view_as(lin)
    return lin


def lab_to_rgb_in_gamut(l: torch.Tensor, ab: torch.Tensor, *, steps: int = 8, tol: float = 1e-3) -> torch.Tensor:
    """``lab_to_rgb`` after :func:`fit_to_gamut`: (B, 1, H, W) L and (B, 2, H, W) ab -> (B, 3, H, W)
    sRGB in [0, 1] whose lightness is exactly ``l``."""
    return linear_to_srgb(lab_to_linear_rgb_in_gamut(l, ab, steps=steps, tol=tol)).clamp(0.0, 1.0)


_LINEAR_LEVELS = 1 << 16  # the 8-bit companding table's resolution in linear light
_UINT8_LUT: dict[torch.device, torch.Tensor] = {}


def linear_to_srgb_uint8(lin: torch.Tensor) -> torch.Tensor:
    """Linear RGB (clipped to [0, 1]) -> 8-bit sRGB through a 65536-entry table: the same bytes as
    ``round(255 * linear_to_srgb(lin))`` up to one level where a value falls between table entries,
    without a per-pixel power function."""
    lut = _UINT8_LUT.get(lin.device)
    if lut is None:
        grid = torch.linspace(0.0, 1.0, _LINEAR_LEVELS, dtype=torch.float64)
        lut = (linear_to_srgb(grid).clamp(0.0, 1.0) * 255 + 0.5).to(torch.uint8).to(lin.device)
        _UINT8_LUT[lin.device] = lut
    return _lookup(lut, lin.clamp(0.0, 1.0).mul_(_LINEAR_LEVELS - 1).add_(0.5).to(torch.int32))


def srgb_to_uint16(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> its nearest 16-bit levels 0..65535, as int32 (torch and ONNX have no uint16 arithmetic; the
    caller stores them as uint16)."""
    return (rgb * (GRAY16_LEVELS - 1) + 0.5).to(torch.int32)


def normalize_l(l: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> network input in [-1, 1]."""
    return (l - L_CENTER) / L_SCALE


def denormalize_l(l_norm: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_l`."""
    return l_norm * L_SCALE + L_CENTER


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """ab in Lab units -> network target ab / 128."""
    return ab / AB_SCALE


def denormalize_ab(ab_norm: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_ab`."""
    return ab_norm * AB_SCALE


def rgb_to_model_lab(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB batch in [0, 1] -> (normalized L (B, 1, H, W), normalized ab (B, 2, H, W))."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[..., :1, :, :]), normalize_ab(lab[..., 1:, :, :])


def model_lab_to_rgb(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_model_lab`: normalized L and ab -> sRGB in [0, 1]."""
    return lab_to_rgb(torch.cat([denormalize_l(l_norm), denormalize_ab(ab_norm)], dim=-3))


def ab_gamut_bins(*, grid: int = 10, ab_range: int = 110) -> tuple[torch.Tensor, torch.Tensor]:
    """The in-gamut cells of a ``grid``-unit ab grid over [-ab_range, ab_range]^2.

    A cell counts when any part of it (its center, edge midpoints or corners) is a displayable sRGB
    color at some lightness L in [0, 100]; a 10-unit grid gives 262 bins (Zhang et al. keep 313,
    the cells that ImageNet's pixels fall in).

    Returns:
        centers: (Q, 2) float ab of the in-gamut cells.
        cell_to_bin: (G*G,) long, the nearest in-gamut bin of every grid cell (row-major over a, b).
    """
    axis = torch.arange(-ab_range, ab_range + 1, grid, dtype=torch.float64)
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    ab = torch.stack([a.flatten(), b.flatten()], dim=1)  # (G*G, 2)
    levels = torch.linspace(0, 100, 101, dtype=torch.float64)[:, None]
    ok = torch.zeros(len(ab), dtype=torch.bool)
    for da in (-grid / 2, 0.0, grid / 2):
        for db in (-grid / 2, 0.0, grid / 2):
            shifted = (ab + torch.tensor([da, db], dtype=torch.float64)).repeat(len(levels), 1)
            lab = torch.cat([levels.repeat_interleave(len(ab), dim=0), shifted], dim=1)  # (101*G*G, 3)
            ok |= in_gamut(lab.T[:, None, :], tol=0.0)[0].view(len(levels), len(ab)).any(dim=0)  # one long row
    centers = ab[ok]
    cell_to_bin = torch.cdist(ab, centers).argmin(dim=1)
    return centers.float(), cell_to_bin
