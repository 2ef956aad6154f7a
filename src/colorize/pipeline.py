"""The ONE inference path, used by the CLI, the web app, video and evaluation.

Any size in, the original size out: the network sees L at a small working size, its ab is brought
back to full resolution by a guided (edge-aware) upsampling that follows the ORIGINAL lightness, and
is joined to that full-resolution L. So the output has exactly the input's size and lightness.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from colorize import steps
from colorize.color import normalize_l, rgb_to_l, uint8_to_l, uint16_gray_to_l
from colorize.batch import FileResult
from colorize.io import (check_unit_range, holds_16bit, is_gray16, pass_through, photo_array, save_image, to_srgb,
                         upright, written_in_8bits)
from colorize.layout import check_color_options, strips, working_shape
from colorize.models.base import optimize_for_inference
from colorize.runtime import tune_allocator
from colorize.steps import GUIDE_EPS, GUIDE_RADIUS, guided_coefficients

if TYPE_CHECKING:
    from colorize.hints import Hint, Propagator
    from colorize.shards import ShardMember

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]

DEFAULT_SIZE = 256  # working size: the long side the network sees
CONFIDENCE_SPREAD = 30.0  # ab units: expected color distance at which confidence falls to 1/e
HintsLike = Union[Sequence["Hint"], Sequence[dict], Sequence[str], "Hint", dict, str, None]


@dataclass
class Prepared:
    """One photo split for the network: full-size L and the working-size L it sees."""

    l_full: torch.Tensor  # (1, 1, H, W) in [0, 100]
    l_small: torch.Tensor  # (1, 1, h, w) in [0, 100], h and w multiples of the model stride


@dataclass
class Prediction:
    """One photo's network output, kept so it can be rendered again (other hints) without the network."""

    prepared: Prepared
    ab: torch.Tensor  # (1, 2, h, w) normalized ab at working size, as predicted (saturation applied)
    confidence: torch.Tensor | None = None  # (1, 1, h, w) in [0, 1] (1 = sure), when asked for
    _propagator: "Propagator | None" = None  # built on the first render with hints, then reused

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the photo."""
        return self.prepared.l_full.shape[-1], self.prepared.l_full.shape[-2]

    def propagator(self) -> "Propagator":
        from colorize.hints import Propagator

        if self._propagator is None:
            self._propagator = Propagator(self.prepared.l_small, tuple(self.prepared.l_full.shape[-2:]), self.ab)
        return self._propagator


def guided_upsample(guide_small: torch.Tensor, src_small: torch.Tensor, guide_full: torch.Tensor, *,
                    radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS) -> torch.Tensor:
    """Edge-aware upsampling of a whole map at once: A, B fitted at low resolution, bilinearly upsampled,
    applied to the full-resolution guide (:meth:`Colorizer.compose` does the same a strip at a time).
    Colors snap to the edges of the real L instead of bleeding across them.

    Returns:
        (B, C, H, W) for ``guide_full`` (B, 1, H, W).
    """
    a, b = guided_coefficients(guide_small, src_small, radius=radius, eps=eps)
    size = guide_full.shape[-2:]
    a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
    return a * guide_full + b


class Colorizer:
    """Colorize photos with a trained model.

    >>> colorizer = Colorizer()                      # the shipped default model
    >>> color = colorizer(Image.open("grandma.jpg"))  # PIL in, PIL out, same size
    """

    def __init__(
        self,
        model: str | Path | nn.Module | None = None,
        *,
        size: int | None = None,
        temperature: float | None = None,
        saturation: float = 1.0,
        guided: bool = True,
        device: str = "cpu",
        threads: int | None = None,
        runtime: str = "torch",
    ):
        """
        Args:
            model: None for the shipped default, a shipped model's name, a weight/checkpoint file, or a module.
            size: working size (long side, px) the network runs at; None: the one recorded in the
                model's weight file, else 256.
            temperature: annealed-mean temperature for classification models. Lower keeps strong colors
                where the model is sure and leaves more of the photo gray; higher spreads softer, more muted
                color over more of it (measured: docs/benchmarks.md). None: the one tuned for the model
                (recorded in its weight file), else 0.38.
            saturation: multiplies the predicted chroma (1 = as predicted).
            guided: edge-aware upsampling of ab guided by the full-size L (False: plain bilinear).
            device: torch device for the network and the color math.
            threads: torch intra-op threads, and onnxruntime's (None: leave as is).
            runtime: ``"torch"`` or ``"onnx"``: the network run by onnxruntime from its ONNX export
                (:func:`colorize.shipped.resolve_model`).
        """
        from colorize.shipped import resolve_model

        check_color_options(temperature, saturation, threads, size)
        if threads:
            torch.set_num_threads(threads)
        tune_allocator()
        self.device = torch.device(device)
        self.model = resolve_model(model, device=str(self.device), runtime=runtime, threads=threads)
        if not isinstance(model, nn.Module):  # a model we loaded ourselves: rewrite it for speed
            optimize_for_inference(self.model)
        self.model.to(memory_format=torch.channels_last)
        self.size = int(size if size is not None else self.model.default_size or DEFAULT_SIZE)
        if temperature is None:
            temperature = self.model.default_temperature
        if self.size < self.stride:
            raise ValueError(f"size must be >= {self.stride} for this model, got {self.size}")
        self.temperature, self.saturation, self.guided = temperature, saturation, guided

    @property
    def stride(self) -> int:
        return int(self.model.stride)

    @property
    def has_confidence(self) -> bool:
        """Whether :meth:`predict_confidence` works: a classification (bins) model run by torch."""
        return self.model.output == "bins" and getattr(self.model, "bins", None) is not None

    @property
    def model_name(self) -> str:
        return getattr(self.model, "model_name", type(self.model).__name__)

    # -- the three stages; video and batch code call them directly -------------------------------
    def prepare(self, rgb: torch.Tensor) -> Prepared:
        """(1, 3, H, W) sRGB, float in [0, 1] or uint8, or (1, 1, H, W) uint8 or uint16 gray -> full-size L and
        working-size L."""
        rgb = rgb.to(self.device)
        height, width = rgb.shape[-2:]
        h, w = working_shape(height, width, self.size, self.stride)
        l_full = torch.empty(rgb.shape[0], 1, height, width, device=self.device)
        rows = strips(height, width)
        to_l = (uint8_to_l if rgb.dtype == torch.uint8 else uint16_gray_to_l if rgb.dtype == torch.uint16
                else (lambda x: rgb_to_l(x.float())))
        for r0 in rows:  # a strip at a time: small temporaries, reused by the allocator
            l_full[..., r0:r0 + rows.step, :] = to_l(rgb[..., r0:r0 + rows.step, :])
        l_small = F.interpolate(l_full, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return Prepared(l_full, l_small)

    @torch.inference_mode()
    def predict(self, l_small: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) L in [0, 100] -> (B, 2, h, w) normalized ab, scaled by ``saturation``."""
        x = normalize_l(l_small).contiguous(memory_format=torch.channels_last)
        return self.model.predict_ab(x, temperature=self.temperature).float() * self.saturation

    @torch.inference_mode()
    def predict_confidence(self, l_small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` and how sure the network is, from one forward pass of a classification model.

        Confidence is ``exp(-spread / CONFIDENCE_SPREAD)``, where spread is the expected distance (ab units)
        of the predicted color distribution from the color used (:meth:`AbBins.spread`).

        Returns:
            ab: (B, 2, h, w) normalized, as :meth:`predict`.
            confidence: (B, 1, h, w) in [0, 1], 1 = sure.
        Raises:
            ValueError: the model predicts colors directly (no distribution to measure).
        """
        if not self.has_confidence:
            raise ValueError(f"confidence needs a classification (bins) model; {self.model_name} predicts "
                             f"'{self.model.output}' directly (ONNX models included)")
        bins = self.model.bins
        x = normalize_l(l_small).contiguous(memory_format=torch.channels_last)
        logits = self.model(x)
        ab = bins.decode(logits, temperature=self.temperature)
        confidence = torch.exp(-bins.spread(logits, ab) / CONFIDENCE_SPREAD)
        if ab.shape[-2:] != l_small.shape[-2:]:
            ab = F.interpolate(ab, size=l_small.shape[-2:], mode="bilinear", align_corners=False)
            confidence = F.interpolate(confidence, size=l_small.shape[-2:], mode="bilinear", align_corners=False)
        return ab.float() * self.saturation, confidence.float()

    @torch.inference_mode()
    def compose(self, prepared: Prepared, ab_small: torch.Tensor, *, uint8: bool = False,
                uint16: bool = False) -> torch.Tensor:
        """Working-size ab + full-size L -> (1, 3, H, W) sRGB inside the sRGB gamut: float in [0, 1],
        uint8 with ``uint8=True``, uint16 with ``uint16=True`` (a 16-bit master's lightness kept to 16 bits).
        Full-resolution work goes a strip of rows at a time."""
        l_full = prepared.l_full
        height, width = l_full.shape[-2:]
        wide = steps.coefficients(prepared.l_small, ab_small, width, guided=self.guided)
        # laid out (H, W, 3) as a photo's array is: handed over to numpy, PIL or video frames without a copy
        dtype = torch.uint16 if uint16 else torch.uint8 if uint8 else torch.float32
        out = torch.empty(1, 3, height, width, device=l_full.device, dtype=dtype, memory_format=torch.channels_last)
        rows = strips(height, width)
        for r0 in rows:
            first = torch.tensor(r0, device=l_full.device)
            out[:, :, r0:r0 + rows.step] = steps.compose(wide, l_full[:, :, r0:r0 + rows.step], first, height,
                                                         uint8=uint8, uint16=uint16)  # uint16: int32 levels stored
        return out

    def with_hints(self, prepared: Prepared, ab_small: torch.Tensor, hints: HintsLike) -> torch.Tensor:
        """Working-size ab (1, 2, h, w) with the hints' corrections (see :mod:`colorize.hints`)."""
        from colorize.hints import apply_hints, as_hints

        hints = as_hints(hints)
        if not hints:
            return ab_small
        return apply_hints(prepared.l_small, ab_small, hints, tuple(prepared.l_full.shape[-2:]))

    # -- predict once, render many times (the web page re-renders as pins move) -------------------
    @torch.inference_mode()
    def analyze(self, image: ImageLike, *, confidence: bool = False) -> Prediction:
        """Run the network on a photo and keep what it takes to render it again with any hints.

        Args:
            image: PIL image, numpy array (as :meth:`__call__` takes it) or (3, H, W) tensor.
            confidence: also measure the network's confidence (classification models only).
        """
        if isinstance(image, Image.Image):
            rgb = torch.from_numpy(np.array(to_srgb(upright(image)))).permute(2, 0, 1)[None]
        elif isinstance(image, np.ndarray) and (gray := _gray16(image)) is not None:
            rgb = torch.from_numpy(gray)[None, None]  # 16-bit gray: its lightness a table lookup, to 16-bit precision
        elif isinstance(image, np.ndarray):
            rgb = _numpy_to_tensor(image)[None]
        elif isinstance(image, torch.Tensor):
            rgb = _tensor_batch(image)
        else:
            raise TypeError(f"expected a PIL image, numpy array or torch tensor, got {type(image).__name__}")
        if rgb.shape[0] != 1:
            raise ValueError(f"analyze takes one photo, got a batch of {rgb.shape[0]}")
        if rgb.shape[1] == 1 and rgb.dtype != torch.uint16:
            rgb = rgb.expand(-1, 3, -1, -1)
        prepared = self.prepare(rgb)
        if confidence:
            ab, conf = self.predict_confidence(prepared.l_small)
            return Prediction(prepared, ab, conf)
        return Prediction(prepared, self.predict(prepared.l_small))

    @torch.inference_mode()
    def render(self, prediction: Prediction, *, hints: HintsLike = None) -> Image.Image:
        """A kept :class:`Prediction` with ``hints`` (none: as predicted) -> the colorized photo, full size.
        Costs the hints' propagation and the full-size composition, never the network."""
        return Image.fromarray(self._render(prediction, hints=hints))

    def render_uint16(self, prediction: Prediction, *, hints: HintsLike = None) -> np.ndarray:
        """:meth:`render` of an :meth:`analyze` of 16-bit gray (a master scan) as (H, W, 3) uint16, its lightness to
        16-bit precision."""
        return self._render(prediction, hints=hints, uint16=True)

    def _render(self, prediction: Prediction, *, hints: HintsLike = None, uint16: bool = False) -> np.ndarray:
        """:meth:`render` as an (H, W, 3) array: uint8, or uint16 with ``uint16`` (a 16-bit master's)."""
        from colorize.hints import as_hints

        hints = as_hints(hints)
        ab = prediction.propagator().apply(prediction.ab, hints) if hints else prediction.ab
        out = self.compose(prediction.prepared, ab, uint8=not uint16, uint16=uint16)
        return out[0].permute(1, 2, 0).contiguous().cpu().numpy()

    @torch.inference_mode()
    def confidence_image(self, prediction: Prediction) -> Image.Image:
        """The confidence of an :meth:`analyze` made with ``confidence=True``, as an 8-bit gray image at the
        photo's full size: 255 = sure, 0 = the network has no idea."""
        if prediction.confidence is None:
            raise ValueError("this prediction was made without confidence=True")
        width, height = prediction.size
        out = torch.empty(height, width, dtype=torch.uint8)
        wide = F.interpolate(prediction.confidence, size=(prediction.confidence.shape[-2], width), mode="bilinear",
                             align_corners=False)
        rows = strips(height, width)
        for r0 in rows:
            r1 = min(height, r0 + rows.step)
            strip = steps.resize_rows(wide, torch.tensor(r0), r1 - r0, height)
            out[r0:r1] = (strip[0, 0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu()
        return Image.fromarray(out.numpy(), mode="L")

    @torch.inference_mode()
    def colorize_tensor(self, rgb: torch.Tensor, *, hints: HintsLike = None) -> torch.Tensor:
        """(3, H, W) or (B, 3, H, W) sRGB, float in [0, 1] or uint8 (or (.., 1, H, W) gray) -> colorized, (3, H, W)
        or (B, 3, H, W): uint8 for uint8, else float32 in [0, 1]. ValueError / TypeError on other shapes, types or
        value ranges. ``hints`` (see :mod:`colorize.hints`) apply to every photo of a batch."""
        single = rgb.dim() == 3
        batch = _tensor_batch(rgb)
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        uint8 = batch.dtype == torch.uint8
        out = []
        for item in batch:
            prepared = self.prepare(item[None])
            ab = self.with_hints(prepared, self.predict(prepared.l_small), hints)
            out.append(self.compose(prepared, ab, uint8=uint8))
        result = torch.cat(out).to(rgb.device)
        return result[0] if single else result

    def __call__(self, image: ImageLike, *, hints: HintsLike = None) -> ImageLike:
        """Colorize one photo; returns the type it was given: PIL (RGB), numpy (H, W, 3) of the array's dtype, or a
        tensor (:meth:`colorize_tensor`: uint8 for uint8, else float32).

        Args:
            image: the photo: a PIL image of any mode; a numpy array of shape (H, W), (H, W, 1), (H, W, 3) or
                (H, W, 4) (alpha left out), uint8, uint16 or float in [0, 1] (:func:`colorize.io.photo_array`:
                ValueError / TypeError on others); or a tensor (:meth:`colorize_tensor`).
            hints: color hints in the photo's pixel coordinates: :class:`colorize.hints.Hint` objects,
                dicts ``{"x", "y", "color", "radius"?}`` or ``"X,Y,COLOR[,RADIUS]"`` strings, in a list (one
                alone is a list of one).
        """
        if isinstance(image, Image.Image):
            pixels = to_srgb(upright(image), keep_gray=True)
            return Image.fromarray(self.colorize_uint8(np.array(pixels), hints=hints))
        if isinstance(image, np.ndarray):
            return self._call_numpy(image, hints)
        if isinstance(image, torch.Tensor):
            return self.colorize_tensor(image, hints=hints)
        raise TypeError(f"expected a PIL image, numpy array or torch tensor, got {type(image).__name__}")

    @torch.inference_mode()
    def colorize_uint8(self, rgb: np.ndarray, *, hints: HintsLike = None) -> np.ndarray:
        """(H, W, 3) uint8 sRGB or (H, W) uint8 gray -> (H, W, 3) uint8 colorized: the fast path for 8-bit
        photos, whose memory stays flat (~10 bytes per pixel) however large the photo."""
        x = torch.from_numpy(rgb)
        x = x[None, None] if x.dim() == 2 else x.permute(2, 0, 1)[None]  # (1, C, H, W) uint8 view
        prepared = self.prepare(x)
        out = self.compose(prepared, self.with_hints(prepared, self.predict(prepared.l_small), hints), uint8=True)
        return out[0].permute(1, 2, 0).contiguous().cpu().numpy()  # already (H, W, 3) in memory: no copy

    @torch.inference_mode()
    def colorize_uint16(self, gray: np.ndarray, *, hints: HintsLike = None) -> np.ndarray:
        """(H, W) uint16 gray (a 16-bit master scan) -> (H, W, 3) uint16 colorized, its lightness to 16-bit
        precision: :meth:`colorize_uint8`'s steps in 16 bits, memory as flat (~14 bytes per pixel)."""
        return self.render_uint16(self.analyze(gray), hints=hints)

    def _call_numpy(self, arr: np.ndarray, hints: HintsLike = None) -> np.ndarray:
        if (gray := _gray16(arr)) is not None:
            return self.colorize_uint16(gray, hints=hints)
        x = _numpy_to_tensor(arr)
        if x.dtype == torch.uint8:
            return self.colorize_uint8(x.permute(1, 2, 0).numpy(), hints=hints)
        y = self.colorize_tensor(x, hints=hints).permute(1, 2, 0).numpy()
        if np.issubdtype(arr.dtype, np.integer):
            return (y * np.iinfo(arr.dtype).max + 0.5).astype(arr.dtype)
        return y.astype(arr.dtype)

    def colorize_file(self, src: "str | Path | ShardMember", dst: str | Path, *, quality: int = 95,
                      hints: HintsLike = None, confidence: bool = False, keep_color: bool = False,
                      tint_as_hints: bool = False) -> FileResult:
        """Read ``src``, colorize, write ``dst`` atomically (format from its extension).

        Args:
            src: a photo file, or a photo inside a tar shard (:class:`colorize.shards.ShardMember`).
            hints: color hints in the photo's pixels (see :mod:`colorize.hints`).
            confidence: also write the network's confidence to :func:`confidence_path` of ``dst``.
            keep_color: a photo that is already in color (:func:`colorize.tone.classify`) is written
                to ``dst`` unchanged (the same bytes when the extensions match) instead.
            tint_as_hints: a photo in color (hand-tinted) gives its own colors as hints
                (:func:`colorize.hints.hints_from_tint`), before ``hints``.
        Returns:
            size, the photo's tone report, whether it was passed through and the hints used.
        Raises:
            :class:`colorize.io.ImageError` naming the file on bad input.
        """
        from colorize.hints import as_hints, hints_from_tint
        from colorize.io import load_input
        from colorize.tone import classify

        img, data = load_input(src, keep_16bit=holds_16bit(dst))  # data: a shard member's bytes
        tone = classify(img)
        if keep_color and tone.kind == "color":
            pass_through(src, dst, img, quality=quality, data=data)
            return FileResult(img.size, tone, passed_through=True)
        hints = as_hints(hints)
        tint = hints_from_tint(img) if tint_as_hints and tone.kind == "color" else []
        hints = tint + hints
        if img.mode == "I;16":  # a 16-bit gray master, to a PNG or TIFF: written with 16 bits a channel
            prediction = self.analyze(np.asarray(img), confidence=confidence)
            save_image(self.render_uint16(prediction, hints=hints), dst, quality=quality, metadata=img.info)
            if confidence:
                save_image(self.confidence_image(prediction), confidence_path(dst))
        elif confidence:
            prediction = self.analyze(img, confidence=True)
            save_image(self.render(prediction, hints=hints), dst, quality=quality, metadata=img.info)
            save_image(self.confidence_image(prediction), confidence_path(dst))
        else:
            save_image(self(img, hints=hints), dst, quality=quality, metadata=img.info)
        return FileResult(img.size, tone, tint_hints=len(tint), eight_bit=written_in_8bits(img, dst))


def _gray16(arr: np.ndarray) -> np.ndarray | None:
    """A 16-bit gray photo's array (:func:`colorize.io.is_gray16`) as an (H, W) native uint16 copy, else None."""
    if not is_gray16(arr):
        return None
    pixels, _ = photo_array(arr)  # ValueError for an array without pixels
    return np.array(pixels, dtype=np.uint16)  # a native copy: torch takes no read-only or big-endian arrays


def _numpy_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """A photo's array (:func:`colorize.io.photo_array`) -> (C, H, W), a copy (the array may be read-only, or in
    the other byte order: FITS and some TIFF readers give big-endian arrays): uint8 as it is, others float in [0, 1]."""
    pixels, white = photo_array(arr)
    x = torch.from_numpy(np.array(pixels, dtype=pixels.dtype.newbyteorder("=")))
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
    return x if x.dtype == torch.uint8 else (x.float() / white).clamp_(0, 1)


def _tensor_batch(rgb: torch.Tensor) -> torch.Tensor:
    """A photo tensor (C, H, W) or batch (B, C, H, W), C = 3 (sRGB) or 1 (gray), uint8 or float in [0, 1] -> the
    batch (B, C, H, W), uint8 as it is, floats float32; ValueError / TypeError naming a bad shape, dtype or value
    range (0..255 floats clipped to 1 would give a white photo)."""
    if rgb.dim() not in (3, 4) or rgb.shape[-3] not in (1, 3):
        hint = "; channels go first: tensor.permute(2, 0, 1)" if rgb.dim() == 3 and rgb.shape[-1] in (1, 3, 4) else ""
        raise ValueError(f"expected a tensor of shape (3, H, W) or (B, 3, H, W) (1 channel: gray), got "
                         f"{tuple(rgb.shape)}{hint}")
    if rgb.numel() == 0:
        raise ValueError(f"the tensor has no pixels: shape {tuple(rgb.shape)}")
    batch = rgb[None] if rgb.dim() == 3 else rgb
    if batch.dtype == torch.uint8:
        return batch
    if not batch.is_floating_point():
        raise TypeError(f"{batch.dtype} tensors are not read as photos: give uint8 (0..255) or float (0..1) pixels")
    low, high = float(batch.min()), float(batch.max())
    check_unit_range(low, high, f"{batch.dtype} tensor")
    batch = batch.float()
    return batch if 0 <= low and high <= 1 else batch.clamp(0, 1)  # no full-size copy when nothing is out of range


def confidence_path(dst: str | Path) -> Path:
    """Where the confidence map of output ``dst`` goes: ``NAME.confidence.png`` beside it."""
    dst = Path(dst)
    return dst.with_name(f"{dst.stem}.confidence.png")


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """(3, H, W) float [0, 1] -> (H, W, 3) uint8."""
    return (rgb.clamp(0, 1).permute(1, 2, 0) * 255 + 0.5).to(torch.uint8).cpu().numpy()
