"""The model options every colorizing command shares, and the :class:`Colorizer` built from them.

Imports nothing heavy: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from colorize.batch import ColorizerSpec

MAX_WORK_SIZE = 2048  # the web API's cap too (web.MAX_WORK_SIZE): compute grows with its square


def working_size(text: str) -> int:
    """``--size``: the working size, 16..MAX_WORK_SIZE."""
    size = int(text)
    if not 16 <= size <= MAX_WORK_SIZE:
        raise argparse.ArgumentTypeError(
            f"{size} is outside 16..{MAX_WORK_SIZE}: it is the size the network works at, not the output's "
            "(which keeps the photo's size); larger costs time with the square and adds no detail")
    return size


def bounded(cast, low, high=None, *, what: str):
    """An argparse ``type``: ``cast(text)`` within ``low..high`` (``high`` None: no upper bound), else a usage
    error naming ``what`` and the range (NaN is outside every range)."""

    def parse(text: str):
        value = cast(text)
        if not (low <= value and (high is None or value <= high)):
            limits = f"{low}..{high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{what} must be {limits}, got {text}")
        return value

    parse.__name__ = what  # argparse's "invalid <what> value: 'x'" for text that is no number
    return parse


threads_count = bounded(int, 1, what="threads")  # --threads


def add_model_options(p: argparse.ArgumentParser, *, device: bool = True, runtime: bool = True) -> None:
    """Add ``--model --size --temperature --saturation --threads`` and, unless turned off, ``--device``
    and ``--runtime`` (read back by :func:`colorizer_spec`)."""
    p.add_argument("--model", help="shipped model name, or a .safetensors, .pt or .onnx file (default: unet_lite0)")
    p.add_argument("--size", type=working_size, metavar="PX",
                   help=f"working size: the long side, in pixels, the network sees (at most {MAX_WORK_SIZE}); the "
                        "output keeps the photo's own size. Default: the one stored in the model's weight file")
    p.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="how boldly to color (classification models): lower keeps strong colors where the "
                        "model is sure and leaves more of the photo gray; higher spreads softer, more muted color "
                        "over more of it. Default: the value tuned for the model, stored in its weight file "
                        "(`colorize models` shows it)")
    p.add_argument("--saturation", type=float, default=1.0, help="chroma multiplier, 0..100 (default 1.0)")
    p.add_argument("--threads", type=threads_count, default=None, help="CPU threads")
    if runtime:
        p.add_argument("--runtime", choices=["auto", "torch", "onnx"], default="auto",
                       help="inference engine: torch, or onnx (onnxruntime alone: the light install's engine; a "
                            "weight file is exported to ONNX once and cached, or give --model FILE.onnx). "
                            "Default auto: onnx for a shipped model or .onnx file where no option needs torch (the same "
                            "photos within one 8-bit level, a start seconds sooner, less memory); with hints, the "
                            "torch pipeline with that network on onnx; else torch")
    if device:
        p.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default cpu)")


def torch_installed() -> bool:
    """Whether torch can be imported (the full install), without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # blocked, or a broken entry in sys.modules
        return False


def _has_onnx(model: str | None) -> bool:
    """Whether the light engine can run ``model`` as it is: a shipped model with its ONNX export, or an .onnx file."""
    from colorize.shipped import DEFAULT_MODEL, SHIPPED

    name = model or DEFAULT_MODEL
    return SHIPPED[name].onnx is not None if name in SHIPPED else name.lower().endswith(".onnx")


def network_runtime(runtime: str, model: str | None, device: str = "cpu") -> str:
    """The engine ``--runtime`` picks for the network inside the torch pipeline (films, photos with hints): ``auto``
    is onnx where the model has an ONNX export (a shipped model, an .onnx file) and runs on the CPU, else torch."""
    if runtime != "auto":
        return runtime
    return "onnx" if device == "cpu" and _has_onnx(model) else "torch"


def colorizer_spec(args: argparse.Namespace, *, torch_options: list[str] = (),
                   network_options: list[str] = ()) -> "ColorizerSpec":
    """Which colorizer the options of :func:`add_model_options` describe: the torch pipeline
    (:class:`colorize.pipeline.Colorizer`), or with ``--runtime onnx`` (``auto`` without torch) the light
    engine (:class:`colorize.lite.LiteColorizer`).

    Args:
        torch_options: the command's options in use that only the torch pipeline serves (``--hint``, ...);
            with them, ``--runtime onnx`` runs the network on onnxruntime inside the torch pipeline, and so
            does ``auto`` where the model has an ONNX export (:func:`network_runtime`).
        network_options: those of them that need the torch network itself (``--confidence``: an ONNX export
            gives colors, not their distribution): with one, ``auto`` runs the network on torch.
    Raises:
        ValueError: an option needs torch and this is the light install.
    """
    from colorize.batch import ColorizerSpec

    runtime = getattr(args, "runtime", "torch")
    device = getattr(args, "device", "cpu")
    needs_torch = list(torch_options) + ([f"--device {device}"] if device != "cpu" else [])
    if runtime == "torch" and not torch_installed():
        from colorize.lite import TORCH_ONLY

        raise ValueError(f"--runtime torch: {TORCH_ONLY}")
    if runtime == "auto":  # the light engine where it serves: the same photos (within a level), a start seconds
        # sooner, half the memory on a scan, about torch's speed per photo (benchmarks/light.py: 0.44 s against 3.6;
        # 6000x4000 in 470 MB against 1,037 and 0.78 s against 0.67; 1024x768 56 ms against 45). Else the torch
        # pipeline, its network on onnxruntime where it can be: a photo with a hint in 2.0 s instead of 4.0 (no timm
        # import, no model build)
        if not torch_installed() or (not needs_torch and _has_onnx(args.model)):
            runtime = "onnx"
        else:
            runtime = "torch" if network_options else network_runtime("auto", args.model, device)
    if runtime == "onnx" and not (needs_torch and torch_installed()):
        if needs_torch:
            from colorize.lite import TORCH_ONLY

            raise ValueError(f"{', '.join(needs_torch)}: {TORCH_ONLY}")
        return ColorizerSpec(light=True, model=args.model, size=args.size, temperature=args.temperature,
                             saturation=args.saturation, threads=args.threads)
    return ColorizerSpec(model=args.model, size=args.size, temperature=args.temperature, saturation=args.saturation,
                         threads=args.threads, device=device, runtime=runtime)


def build_colorizer(args: argparse.Namespace, *, torch_options: list[str] = (), network_options: list[str] = ()):
    """The colorizer :func:`colorizer_spec` describes, built (its model loaded).

    Raises:
        one of :data:`colorize.batch.MODEL_ERRORS`, naming what is wrong.
    """
    return colorizer_spec(args, torch_options=torch_options, network_options=network_options).build()
