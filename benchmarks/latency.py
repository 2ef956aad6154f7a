"""Latency of the one pipeline per photo (p50, p95) at 256x256, 512x512, 1024x768 and a 6000x4000
scan for every registered model; torch vs onnxruntime for the default model; peak memory while
colorizing a 6000x4000 photo; and folder throughput of the CLI end to end (decode, colorize, encode).

Models without shipped weights are timed with random weights (same compute); the default model uses
its shipped weights when present. Timings are in-memory (PIL in, PIL out) except the folder run.

    python benchmarks/latency.py                          # everything (~10 min on 2 cores)
    python benchmarks/latency.py --quick --repeats 1      # smoke run: default model, small sizes

Writes benchmarks/results/latency.json and the "latency" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from _common import (current_rss_mb, machine_info, machine_line, peak_rss_mb, percentiles, publish,
                     run_child, synthetic_photo, time_calls)

SIZES: dict[str, tuple[int, int]] = {"256x256": (256, 256), "512x512": (512, 512), "1024x768": (1024, 768),
                                     "6000x4000": (6000, 4000)}
QUICK_SIZES = ("256x256", "512x512")
QUICK_SCAN = (1200, 800)  # --quick: the memory and scan checks run on this instead of 6000x4000


def build_model(name: str):
    """(module, note): the shipped weights for a shipped model when present, else random weights."""
    from colorize.shipped import SHIPPED, resolve_model, weights_dir
    from colorize.models import create_model

    if name in SHIPPED and (weights_dir() / SHIPPED[name].file).is_file():
        return resolve_model(name), "shipped weights"
    return create_model(name).eval(), "random weights"


def time_model(label: str, model, sizes: dict[str, tuple[int, int]], *, repeats: int, scan_repeats: int,
               note: str) -> dict[str, Any]:
    """Pipeline latency per size, and the network alone at 256x256."""
    import torch
    from PIL import Image

    from colorize.models.base import optimize_for_inference
    from colorize.pipeline import Colorizer

    colorizer = Colorizer(optimize_for_inference(model))  # as the pipeline does for the models it loads
    row: dict[str, Any] = {"model": label, "weights": note, "stride": colorizer.stride,
                           "working_size": colorizer.size, "sizes": {}}
    for key, (w, h) in sizes.items():
        scan = w * h > 4_000_000  # slow: fewer runs, no warm-up
        call = partial(colorizer, Image.fromarray(synthetic_photo(w, h)))
        row["sizes"][key] = percentiles(time_calls(call, repeats=scan_repeats if scan else repeats,
                                                   warmup=0 if scan else 1))
    l_small = torch.rand(1, 1, 256, 256) * 100
    row["network_256"] = percentiles(time_calls(lambda: colorizer.predict(l_small), repeats=repeats))
    return row


def memory_child(model_name: str, onnx: str | None, width: int, height: int) -> dict[str, Any]:
    """In a fresh process: resident memory with the model loaded and the photo decoded, and the peak
    after colorizing it (importing torch alone takes several hundred MB)."""
    import torch
    from PIL import Image

    from colorize.models.base import optimize_for_inference
    from colorize.pipeline import Colorizer

    if onnx:
        from colorize.onnx import OnnxModel

        colorizer = Colorizer(OnnxModel(onnx, threads=torch.get_num_threads()))
    else:
        colorizer = Colorizer(optimize_for_inference(build_model(model_name)[0]))
    photo = Image.fromarray(synthetic_photo(width, height))
    before = current_rss_mb() or peak_rss_mb()
    t0 = time.perf_counter()
    colorizer(photo)
    return {"width": width, "height": height, "rss_before_mb": before, "peak_rss_mb": peak_rss_mb(),
            "seconds": time.perf_counter() - t0}


def folder_throughput(model_spec: str | None, *, images: int, width: int, height: int) -> dict[str, Any]:
    """`colorize FOLDER -o OUT` on generated JPEGs, as a user runs it: process start, model load,
    decode, colorize, encode. Steady-state rate = (N - 1) / (time for N - time for 1)."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        src, one = Path(tmp) / "photos", Path(tmp) / "one"
        src.mkdir()
        one.mkdir()
        for i in range(images):
            Image.fromarray(synthetic_photo(width, height, seed=i)).save(src / f"photo{i:03d}.jpg", quality=90)
        (one / "photo000.jpg").write_bytes((src / "photo000.jpg").read_bytes())
        model_args = ["--model", model_spec] if model_spec else []

        def run(folder: Path, out: str) -> float:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "colorize.cli", str(folder), "-o", str(Path(tmp) / out), "-q",
                            *model_args], check=True, capture_output=True)
            return time.perf_counter() - t0

        t_one, t_all = run(one, "out_one"), run(src, "out_all")
    steady = (images - 1) / (t_all - t_one) if images > 1 and t_all > t_one else None
    return {"images": images, "width": width, "height": height, "seconds": t_all, "seconds_one_image": t_one,
            "images_per_second": images / t_all, "steady_images_per_second": steady}


def markdown(result: dict[str, Any]) -> str:
    sizes = result["settings"]["sizes"]
    quick = " (quick smoke run: not representative)" if result["settings"]["quick"] else ""
    lines = [f"## Latency per photo (pipeline, in memory){quick}", "", machine_line(result["machine"]),
             f"Repeats: {result['settings']['repeats']} ({result['settings']['scan_repeats']} for the scan). "
             "p50 / p95 in ms; the network alone at 256x256 in the last column.", "",
             "| model | weights | " + " | ".join(sizes) + " | network 256x256 |",
             "|---|---|" + "---|" * (len(sizes) + 1)]
    for row in result["latency"]:
        cells = [f"{row['sizes'][s]['p50_ms']:.0f} / {row['sizes'][s]['p95_ms']:.0f}" for s in sizes]
        lines.append(f"| {row['model']} | {row['weights']} | " + " | ".join(cells)
                     + f" | {row['network_256']['p50_ms']:.1f} |")
    for m in result.get("skipped", []):
        lines.append(f"\nSkipped {m['model']}: {m['reason']}")
    mem = result.get("memory")
    if mem:
        lines += ["", f"Peak memory colorizing a {mem['width']}x{mem['height']} photo ({result['default_model']}, "
                      f"fresh process): {mem['peak_rss_mb']:.0f} MB peak RSS "
                      f"({mem['rss_before_mb']:.0f} MB with the model loaded and the photo decoded; "
                      f"{mem['seconds']:.1f} s)."]
        onnx_mem = result.get("memory_onnx")
        if onnx_mem:
            lines[-1] += f" With onnxruntime: {onnx_mem['peak_rss_mb']:.0f} MB ({onnx_mem['seconds']:.1f} s)."
    folder = result.get("folder")
    if folder:
        steady = folder["steady_images_per_second"]
        lines += ["", f"CLI folder throughput ({folder['images']} JPEGs of {folder['width']}x{folder['height']}, "
                      f"decode + colorize + encode): {folder['seconds']:.1f} s in all, "
                      f"{folder['images_per_second']:.2f} photos/s including start-up"
                  + (f", {steady:.2f} photos/s steady state" if steady else "") + "."]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", help="registered models to time (default: all)")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per size (default 20)")
    p.add_argument("--scan-repeats", type=int, default=3, help="timed runs of the 6000x4000 scan (default 3)")
    p.add_argument("--quick", action="store_true",
                   help=f"default model only, sizes {', '.join(QUICK_SIZES)}, a {QUICK_SCAN[0]}x{QUICK_SCAN[1]} "
                        "'scan' for memory, 4 small photos for the folder run")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    p.add_argument("--no-folder", action="store_true", help="skip the CLI folder run")
    p.add_argument("--folder-images", type=int, default=24, help="JPEGs in the folder run (default 24)")
    p.add_argument("--memory-child", nargs=4, metavar=("MODEL", "ONNX", "W", "H"), help=argparse.SUPPRESS)
    args = p.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        name, onnx, w, h = args.memory_child
        print(json.dumps(memory_child(name, onnx if onnx != "-" else None, int(w), int(h))))
        return 0

    from colorize.shipped import DEFAULT_MODEL, SHIPPED, weights_dir
    from colorize.models import list_models

    models = [DEFAULT_MODEL] if args.quick and not args.models else (args.models or list_models())
    sizes = {k: SIZES[k] for k in QUICK_SIZES} if args.quick else dict(SIZES)
    scan = QUICK_SCAN if args.quick else SIZES["6000x4000"]
    result: dict[str, Any] = {"machine": machine_info(), "default_model": DEFAULT_MODEL,
                              "settings": {"repeats": args.repeats, "scan_repeats": args.scan_repeats,
                                           "sizes": list(sizes), "quick": args.quick},
                              "latency": [], "skipped": []}
    with tempfile.TemporaryDirectory() as tmp:
        default_onnx = None
        for name in models:
            try:
                model, note = build_model(name)
            except Exception as e:  # an architecture that needs unavailable weights or packages
                result["skipped"].append({"model": name, "reason": str(e).splitlines()[0]})
                continue
            print(f"{name} ({note})", flush=True)
            result["latency"].append(time_model(name, model, sizes, repeats=args.repeats,
                                                scan_repeats=args.scan_repeats, note=note))
            if name == DEFAULT_MODEL and not args.no_onnx:
                from colorize.onnx import OnnxModel, export_onnx

                default_onnx = str(export_onnx(model, Path(tmp) / f"{name}.onnx"))
                onnx_model = OnnxModel(default_onnx, threads=torch.get_num_threads())  # as many threads as torch
                result["latency"].append(time_model(f"{name} (onnxruntime)", onnx_model, sizes, repeats=args.repeats,
                                                    scan_repeats=args.scan_repeats, note=note))
            del model

        if not args.no_memory:
            print(f"peak memory at {scan[0]}x{scan[1]}", flush=True)
            threads = ["--threads", str(torch.get_num_threads())]
            result["memory"] = run_child(Path(__file__), [*threads, "--memory-child", DEFAULT_MODEL, "-",
                                                          str(scan[0]), str(scan[1])])
            if default_onnx:
                result["memory_onnx"] = run_child(Path(__file__), [*threads, "--memory-child", DEFAULT_MODEL,
                                                                   default_onnx, str(scan[0]), str(scan[1])])
        if not args.no_folder:
            spec = None
            if not (weights_dir() / SHIPPED[DEFAULT_MODEL].file).is_file():
                from colorize.checkpoint import save_weights

                spec = str(Path(tmp) / f"{DEFAULT_MODEL}_random.safetensors")
                save_weights(spec, build_model(DEFAULT_MODEL)[0])
            n, (w, h) = (4, (512, 384)) if args.quick else (args.folder_images, (1024, 768))
            print(f"CLI folder run: {n} photos of {w}x{h}", flush=True)
            result["folder"] = folder_throughput(spec, images=n, width=w, height=h)

    publish("latency", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
