"""ONNX export of a model's ``predict_ab`` and an onnxruntime-backed model for the same pipeline.

The exported graph is ``l_norm (B, 1, H, W) -> ab_norm (B, 2, H, W)``: the model plus its decoding, with
dynamic batch, height and width (H and W multiples of the model's stride). A classification model's graph
takes a second input, ``temperature`` (a float32 scalar: the annealed mean's), so one export serves every
temperature. The model's name, stride, tuned temperature and working size are stored in the file's
metadata, so ``Colorizer(OnnxModel("model.onnx"))`` works like the torch model.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from colorize.models.base import DEFAULT_TEMPERATURE, as_model

OPSET = 17
INPUT, TEMPERATURE, OUTPUT = "l_norm", "temperature", "ab_norm"


class PredictAb(nn.Module):
    """``forward(l_norm[, temperature]) -> ab_norm``: a model's ``predict_ab``, for export; the temperature
    is an input for classification models (``output == "bins"``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = as_model(model)

    def forward(self, l_norm: torch.Tensor, temperature: torch.Tensor | None = None) -> torch.Tensor:
        if temperature is None:
            return self.model.predict_ab(l_norm)
        return self.model.predict_ab(l_norm, temperature=temperature)


def takes_temperature(model: nn.Module) -> bool:
    """Whether ``model``'s export has a ``temperature`` input (its output is decoded from ab bins)."""
    return getattr(as_model(model), "output", "") == "bins"


def export_onnx(model: nn.Module, path: str | Path, *, size: int = 256,
                temperature: float | None = None, opset: int = OPSET) -> Path:
    """Export ``model.predict_ab`` to ONNX with dynamic batch, height and width.

    Args:
        model: a colorization model (``create_model`` / ``resolve_model``).
        path: the ``.onnx`` file to write (atomically).
        size: side of the square example input used for tracing (rounded to the model's stride).
        temperature: the annealed-mean temperature recorded as the export's default (None: the model's
            ``default_temperature``); classification models take any other at run time.
        opset: ONNX opset version (>= 17).
    Returns:
        The written path.
    """
    import onnx

    from colorize.io import atomic_write

    model = as_model(model)
    if temperature is None:
        temperature = model.default_temperature
    stride = model.stride
    side = max(stride, round(size / stride) * stride)
    wrapper = PredictAb(model).eval()  # export restores this (eval) mode
    device = next(model.parameters()).device
    example: tuple[torch.Tensor, ...] = (torch.zeros(1, 1, side, side, device=device),)
    inputs = [INPUT]
    if takes_temperature(model):  # traced at a value other than 1 (decode skips the division at exactly 1)
        example += (torch.tensor(0.5 if temperature == 1 else temperature, device=device),)
        inputs.append(TEMPERATURE)
    axes = {0: "batch", 2: "height", 3: "width"}
    path = Path(path)

    def write(tmp: str) -> None:
        # The TorchScript exporter keeps H and W symbolic (the torch.export one needs minutes on these
        # backbones). Its tracer warnings are about Python-side shape checks that are constant per model.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(wrapper, example, tmp, dynamo=False, opset_version=opset,
                              input_names=inputs, output_names=[OUTPUT],
                              dynamic_axes={INPUT: axes, OUTPUT: axes})
        proto = onnx.load(tmp)
        meta = {"model": getattr(model, "model_name", type(model).__name__), "stride": str(stride),
                "temperature": str(temperature), "producer": "colorize"}
        if getattr(model, "default_size", None):
            meta["working_size"] = str(int(model.default_size))
        onnx.helper.set_model_props(proto, meta)
        onnx.save(proto, tmp)

    atomic_write(path, write)
    return path


class OnnxModel(nn.Module):
    """An exported ``.onnx`` file run by onnxruntime, usable wherever a model is: ``Colorizer(OnnxModel(p))``.

    It has no parameters; ``predict_ab`` moves the input to the CPU, runs the session and returns ab on
    the input's device. The graph decodes (``output`` is ``"ab"``): at the temperature asked for when the
    export takes one, else at the one fixed at export (``default_temperature``).
    """

    output = "ab"
    default_size: int | None = None  # the pipeline's working size

    def __init__(self, path: str | Path, *, threads: int | None = None):
        """
        Args:
            path: a file written by :func:`export_onnx`.
            threads: onnxruntime intra-op threads (None: onnxruntime's default).
        """
        super().__init__()
        from colorize.lite import ExportInfo, session

        path = Path(path)
        # idle onnxruntime threads spin by default: they would take the cores from the torch work around
        # the network (upsampling, Lab to RGB) that runs right after each call
        self.session = session(path, threads, spinning=False)
        info = ExportInfo.of(self.session, path)
        self.path = path
        self.model_name: str = info.model_name
        self.stride: int = info.stride
        self.default_temperature: float = DEFAULT_TEMPERATURE if info.temperature is None else info.temperature
        self.default_size = info.working_size
        self.info = info

    def predict_ab(self, l_norm: torch.Tensor, *, temperature: float | None = None) -> torch.Tensor:
        """Normalized L (B, 1, H, W) -> normalized ab (B, 2, H, W), at ``temperature`` (None: the default).

        Raises:
            ValueError: another temperature than the export's, from an export that fixes its own.
        """
        x = l_norm.detach().to("cpu", torch.float32).contiguous().numpy()
        (ab,) = self.session.run(None, self.info.feed(x, temperature))
        return torch.from_numpy(ab).to(l_norm.device)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.predict_ab(l_norm)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, model_name={self.model_name!r}, stride={self.stride}"
