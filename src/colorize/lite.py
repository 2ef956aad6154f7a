"""The light engine: colorize photos with onnxruntime, numpy and Pillow alone (no torch).

It runs the same pipeline as :class:`colorize.pipeline.Colorizer`, step for step: the network is the shipped
model's ONNX export (``weights/<model>.onnx``, made by ``make onnx``), and the full-resolution steps are
the graphs exported from :mod:`colorize.steps` (``graphs/*.onnx`` in the package), so there is one
description of each step and two engines to run it. The working-size lightness is Pillow's antialiased
bilinear reduction, which is the operation torch's ``F.interpolate(antialias=True)`` computes
(``tests/test_lite.py`` holds them to each other and the two engines' photos to one 8-bit level).

What needs torch stays there: hints (``--tint-as-hints`` too), confidence maps, GPUs, training, evaluation,
video and the web app. ``pip install 'colorize[torch]'`` adds it.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from PIL import Image

from colorize.batch import FileResult
from colorize.io import (ARRAY_SHAPES, holds_16bit, is_gray16, load_input, pass_through, photo_array, save_image,
                         to_srgb, upright, written_in_8bits)
from colorize.layout import GRAPHS, L_CENTER, L_SCALE, check_color_options, strips, working_shape

if TYPE_CHECKING:
    from colorize.shards import ShardMember

TORCH_ONLY = "needs the torch engine: pip install 'colorize[torch]' (this is the light install, onnxruntime only)"


def graphs_dir() -> Path:
    """The step graphs exported from :mod:`colorize.steps`, shipped inside the package."""
    return Path(__file__).resolve().parent / "graphs"


def session(path: str | Path, threads: int | None = None, *, spinning: bool = True) -> Any:
    """An onnxruntime CPU session for ``path``, or ValueError naming the file and the reason.

    ``spinning=False`` stops idle worker threads from spinning: for a graph whose calls alternate with
    other (torch) work that wants the cores."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("the ONNX runtime needs onnxruntime: pip install onnxruntime") from e
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own types: missing, garbage, truncated, unsupported ops
        raise ValueError(f"{path}: not a usable ONNX model ({type(e).__name__}: {str(e).strip()[:300]})") from None


@dataclass(frozen=True)
class ExportInfo:
    """What an exported network records about itself (:func:`colorize.onnx.export_onnx` writes it), read
    from an onnxruntime session: both engines' ONNX models take their defaults from here."""

    path: Path
    model_name: str
    stride: int
    temperature: float | None  # the tuned default (classification models)
    working_size: int | None  # the pipeline's working size recorded at export
    input_name: str
    takes_temperature: bool  # False: an export (before version 4) with its temperature baked in

    @classmethod
    def of(cls, sess: Any, path: str | Path) -> "ExportInfo":
        meta = sess.get_modelmeta().custom_metadata_map
        inputs = [i.name for i in sess.get_inputs()]
        return cls(Path(path), meta.get("model", Path(path).stem), int(meta.get("stride", 32)),
                   float(meta["temperature"]) if "temperature" in meta else None,
                   int(meta["working_size"]) if "working_size" in meta else None, inputs[0], "temperature" in inputs)

    def feed(self, l_norm: np.ndarray, temperature: float | None = None) -> dict[str, np.ndarray]:
        """The network's inputs for ``l_norm`` at ``temperature`` (None: the default), or ValueError when the
        export fixes another temperature."""
        if self.takes_temperature:
            t = self.temperature if temperature is None else temperature  # an export records its default
            return {self.input_name: l_norm, "temperature": np.array(t, np.float32)}
        if temperature is not None and self.temperature is not None and abs(temperature - self.temperature) > 1e-6:
            raise ValueError(f"{self.path}: this export fixes its temperature at {self.temperature:g}; export the "
                             "model again (colorize export MODEL --format onnx) to choose another")
        return {self.input_name: l_norm}


def network_file(model: str | Path | None = None) -> Path:
    """The ONNX network for a model spec (:func:`colorize.shipped.cached_onnx`): a shipped name's export, an
    ``.onnx`` file as given, or a weight file exported once and cached (that needs torch)."""
    from colorize.shipped import SHIPPED, cached_onnx

    if model is not None and str(model) not in SHIPPED and not Path(model).is_file():
        raise FileNotFoundError(f"model file not found: {model} (shipped models: {', '.join(SHIPPED)})")
    try:
        return cached_onnx(model)
    except ImportError:
        raise ValueError(f"{model}: a weight file has to be exported to ONNX first, which {TORCH_ONLY}; "
                         "or give an exported .onnx file") from None


class LiteColorizer:
    """Colorize photos without torch.

    >>> colorizer = LiteColorizer()                   # the shipped default model
    >>> color = colorizer(Image.open("grandma.jpg"))  # PIL in, PIL out, same size
    """

    def __init__(self, model: str | Path | None = None, *, size: int | None = None, temperature: float | None = None,
                 saturation: float = 1.0, threads: int | None = None):
        """
        Args:
            model: None for the shipped default, a shipped model's name, or an exported ``.onnx`` file.
            size: working size (long side) the network sees; None: the one recorded in the export, else 256.
            temperature: annealed-mean temperature (classification models; None: the one tuned for the
                weights, recorded in the export). Lower keeps strong colors, higher mutes them.
            saturation: multiplies the predicted chroma (1 = as predicted).
            threads: CPU threads (None: all cores): full-resolution strips run side by side, one thread each; the
                network runs on onnxruntime's intra-op threads.
        """
        check_color_options(temperature, saturation, threads, size)
        path = network_file(model)
        self.network = session(path, threads)
        self.info = ExportInfo.of(self.network, path)
        self.model_name, self.stride = self.info.model_name, self.info.stride
        self.info.feed(np.zeros(0, np.float32), temperature)  # an export with a fixed other temperature: say so now
        self.temperature = self.info.temperature if temperature is None else temperature
        self.size = int(size if size is not None else self.info.working_size or 256)
        if self.size < self.stride:
            raise ValueError(f"size must be >= {self.stride} for this model, got {self.size}")
        self.saturation = saturation
        self.threads = threads or os.cpu_count() or 1
        self.steps: dict[str, Any] = {}  # step graphs, loaded on first use (a gray photo needs no RGB step)
        self._loading = threading.Lock()

    def _run(self, step: str, **inputs: np.ndarray) -> np.ndarray:
        with self._loading:
            if step not in self.steps:
                if step not in GRAPHS:
                    raise KeyError(f"no step graph '{step}'; the graphs are {', '.join(GRAPHS)}")
                # one thread a run: strips run side by side (no per-operator hand-offs between threads)
                self.steps[step] = session(graphs_dir() / f"{step}.onnx", 1)
        return self.steps[step].run(None, inputs)[0]

    def _each(self, work: Callable[[int], None], items: Sequence[int]) -> None:
        """``work(item)`` for every item, on up to ``threads`` threads (onnxruntime and Pillow let go of the GIL)."""
        if self.threads == 1 or len(items) == 1:
            for item in items:
                work(item)
            return
        with ThreadPoolExecutor(min(self.threads, len(items))) as pool:
            for _ in pool.map(work, items):  # raises the first error
                pass

    def colorize_uint8(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 sRGB or (H, W) uint8 gray -> (H, W, 3) uint8 colorized, the same photo size and
        lightness."""
        return self._colorize(rgb)

    def colorize_uint16(self, gray: np.ndarray) -> np.ndarray:
        """(H, W) uint16 gray (a 16-bit master scan, native byte order) -> (H, W, 3) uint16 colorized, its lightness
        to 16-bit precision (the ``gray16_lightness`` and ``compose16`` steps)."""
        if gray.ndim != 2 or gray.dtype != np.uint16:
            raise ValueError(f"expected an (H, W) uint16 array, got {gray.dtype} {gray.shape}")
        return self._colorize(gray)

    def _colorize(self, rgb: np.ndarray) -> np.ndarray:
        """:meth:`colorize_uint8` and :meth:`colorize_uint16`: the same steps, 16-bit gray through its own two."""
        deep = rgb.dtype == np.uint16
        height, width = rgb.shape[:2]
        h, w = working_shape(height, width, self.size, self.stride)
        rows = strips(height, width)
        l_full = np.empty((1, 1, height, width), np.float32)
        narrow = np.empty((height, w), np.float32)  # l_full shrunk along its rows

        def lightness(r0: int) -> None:
            if deep:  # int32 levels (ONNX graphs take no uint16): a strip's copy
                l_strip = self._run("gray16_lightness", gray=rgb[None, None, r0:r0 + rows.step].astype(np.int32))
            elif rgb.ndim == 2:
                l_strip = self._run("gray_lightness", gray=rgb[None, None, r0:r0 + rows.step])
            else:
                l_strip = self._run("lightness", rgb=rgb[None, r0:r0 + rows.step])
            l_full[:, :, r0:r0 + rows.step] = l_strip
            # Pillow's bilinear reduction is separable: along the rows a strip at a time, then down the columns
            narrow[r0:r0 + rows.step] = Image.fromarray(l_strip[0, 0]).resize((w, l_strip.shape[2]), Image.BILINEAR)

        self._each(lightness, rows)
        # Pillow's bilinear reduction (antialiased, exact: no reducing_gap) = F.interpolate(antialias=True)
        l_small = np.asarray(Image.fromarray(narrow).resize((w, h), Image.BILINEAR))[None, None]
        (ab,) = self.network.run(None, self.info.feed((l_small - L_CENTER) / L_SCALE, self.temperature))
        ab = ab.astype(np.float32) * np.float32(self.saturation)
        row = np.zeros((1, width), np.float32)  # its shape gives the graph the photo's width
        wide = self._run("coefficients", l_small=l_small, ab=ab, row=row)
        out = np.empty((height, width, 3), rgb.dtype)
        size = np.array(height, np.int64)

        def compose(r0: int) -> None:  # compose16's int32 levels 0..65535 stored as uint16
            out[r0:r0 + rows.step] = self._run("compose16" if deep else "compose", wide=wide,
                                               l=l_full[:, :, r0:r0 + rows.step], first_row=np.array(r0, np.int64),
                                               height=size)[0]

        self._each(compose, rows)
        return out

    def __call__(self, image: Image.Image | np.ndarray) -> Image.Image | np.ndarray:
        """Colorize one photo: a PIL image (returns an RGB one) or a uint8 array of shape (H, W), (H, W, 1),
        (H, W, 3) or (H, W, 4) (alpha left out; returns an (H, W, 3) one), as the torch engine takes them
        (:func:`colorize.io.photo_array`), or a 16-bit gray one, (H, W) or (H, W, 1) uint16 (returns (H, W, 3)
        uint16)."""
        if isinstance(image, Image.Image):
            pixels = np.asarray(to_srgb(upright(image), keep_gray=True))  # read, never written
            return Image.fromarray(self.colorize_uint8(pixels))
        if isinstance(image, np.ndarray):
            pixels, _ = photo_array(image)  # ValueError / TypeError naming a bad shape or dtype
            if pixels.dtype == np.uint8:
                return self.colorize_uint8(pixels)
            if is_gray16(image):
                return self.colorize_uint16(np.ascontiguousarray(pixels, dtype=np.uint16))
        raise TypeError(f"the light engine takes a PIL image, a uint8 array of shape {ARRAY_SHAPES} or a 16-bit gray "
                        f"one; other arrays and tensors {TORCH_ONLY}")

    def to_lab(self, rgb: np.ndarray) -> np.ndarray:
        """(1, 3, h, w) float sRGB in [0, 1] -> CIE Lab (:func:`colorize.color.rgb_to_lab`, exported)."""
        return self._run("lab", rgb=rgb.astype(np.float32))

    def colorize_file(self, src: "str | Path | ShardMember", dst: str | Path, *, quality: int = 95, hints: Any = None,
                      confidence: bool = False, keep_color: bool = False, tint_as_hints: bool = False) -> FileResult:
        """Read ``src``, colorize, write ``dst`` atomically (format from its extension), as
        :meth:`colorize.pipeline.Colorizer.colorize_file` does; hints, tints as hints and confidence raise
        ValueError here (they need torch)."""
        from colorize.tone import classify

        asked = [name for name, on in (("hints", bool(hints)), ("confidence", confidence),
                                       ("tint_as_hints", tint_as_hints)) if on]
        if asked:
            raise ValueError(f"{', '.join(asked)} {TORCH_ONLY}")
        # a file, or a photo inside a tar shard (data: its bytes); 16-bit gray kept for a PNG or TIFF
        img, data = load_input(src, keep_16bit=holds_16bit(dst))
        tone = classify(img, to_lab=self.to_lab)
        if keep_color and tone.kind == "color":
            pass_through(src, dst, img, quality=quality, data=data)
            return FileResult(img.size, tone, passed_through=True)
        color = self.colorize_uint16(np.asarray(img, np.uint16)) if img.mode == "I;16" else self(img)
        save_image(color, dst, quality=quality, metadata=img.info)
        return FileResult(img.size, tone, eight_bit=written_in_8bits(img, dst))
