"""The light engine (onnxruntime, no torch) beside the torch engine, in one run on one machine:

- start-up: ``colorize photo.jpg -o out.jpg`` on one 1024x768 JPEG, median wall time of fresh processes,
  beside ``python -c pass``: the default (``--runtime auto``: the light engine for the shipped model),
  ``--runtime torch``, with a hint (``--hint``: the torch pipeline, its network on onnxruntime), and, with
  ``--light-python``, the same command in a light install (a venv made by ``pip install colorize``, no torch);
- scans: a 6000x4000 photo (decoded, in memory) colorized in a fresh process: wall time of the first and a
  second call, and the process's peak RSS, per engine;
- latency at 1024x768 in one process (p50), and the two engines' agreement (max 8-bit level difference).

    python benchmarks/light.py [--light-python /path/to/light-venv/bin/python] [--runs 5]

Writes benchmarks/results/light.json and the "light" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, current_rss_mb, machine_info, machine_line, peak_rss_mb, percentiles, publish, \
    synthetic_photo, time_calls

SCAN = (6000, 4000)
PHOTO = (1024, 768)


def startup(python: str, args: list[str], photo: Path, out: Path, runs: int) -> dict[str, Any]:
    """Median wall time of ``runs`` fresh ``colorize`` processes (after one untimed run: a warm disk cache)."""
    cmd = [python, "-m", "colorize.cli", str(photo), "-o", str(out), "--overwrite", "-q", *args]
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        if i:
            times.append(time.perf_counter() - t0)
    return {"command": " ".join(["colorize", "photo.jpg", "-o", "out.jpg", *args]), "median_s": statistics.median(times),
            "runs_s": times}


def python_pass(python: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def scan_child(engine: str, width: int, height: int) -> dict[str, Any]:
    """In a fresh process: build the engine, colorize a decoded scan twice; times and peak RSS."""
    photo = synthetic_photo(width, height)
    t0 = time.perf_counter()
    if engine == "light":
        from colorize.lite import LiteColorizer

        colorizer = LiteColorizer()
    else:
        from colorize.pipeline import Colorizer

        colorizer = Colorizer()
    load = time.perf_counter() - t0
    before = current_rss_mb() or peak_rss_mb()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        colorizer.colorize_uint8(photo)
        times.append(time.perf_counter() - t0)
    return {"engine": engine, "width": width, "height": height, "load_s": load, "first_s": times[0],
            "second_s": times[1], "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}


def latency_and_agreement(repeats: int) -> dict[str, Any]:
    import numpy as np

    from colorize.lite import LiteColorizer
    from colorize.pipeline import Colorizer

    photo = synthetic_photo(*PHOTO)
    light, torch_engine = LiteColorizer(), Colorizer()
    a, b = light.colorize_uint8(photo), torch_engine.colorize_uint8(photo)
    diff = np.abs(a.astype(int) - b.astype(int))
    return {"light": percentiles(time_calls(lambda: light.colorize_uint8(photo), repeats=repeats)),
            "torch": percentiles(time_calls(lambda: torch_engine.colorize_uint8(photo), repeats=repeats)),
            "max_level_difference": int(diff.max()), "share_differing": float((diff > 0).mean())}


def site_packages_mb(python: str) -> float:
    """Size of an environment's site-packages, without pip and setuptools (not part of an install)."""
    code = ("import sysconfig, pathlib; p = pathlib.Path(sysconfig.get_paths()['purelib']); "
            "print(sum(f.stat().st_size for f in p.rglob('*') if f.is_file() and not "
            "any(s in f.parts for s in ('pip', 'setuptools', '_distutils_hack'))))")
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout
    return int(out.strip()) / 1e6


def markdown(r: dict[str, Any]) -> str:
    s = r["startup"]
    lines = ["## Light install and start-up", "", machine_line(r["machine"]),
             f"Start-up: one {PHOTO[0]}x{PHOTO[1]} JPEG, `colorize photo.jpg -o out.jpg`, median of {r['runs']} fresh "
             f"processes (after one untimed run); `python -c pass` takes {1000 * r['python_pass_s']:.0f} ms.", "",
             "| install / engine | command | median wall (s) | target |", "|---|---|---|---|"]
    for key, label, target in (("light_install", "light install (no torch)", "<= 1.0"),
                               ("auto", "torch install, default (light engine)", "<= 2.0"),
                               ("torch", "torch install, torch engine", "<= 2.0"),
                               ("hint", "torch install, a hint (torch pipeline, network on onnxruntime)", "-")):
        if key in s:
            lines.append(f"| {label} | `{s[key]['command']}` | {s[key]['median_s']:.2f} | {target} |")
    lines += ["", f"Scans: a decoded {SCAN[0]}x{SCAN[1]} photo in a fresh process (target <= 1.0 s, <= 1 GB peak RSS):",
              "", "| engine | engine load (s) | first call (s) | second call (s) | peak RSS (MB) |", "|---|---|---|---|---|"]
    for row in r["scan"]:
        lines.append(f"| {row['engine']} | {row['load_s']:.2f} | {row['first_s']:.2f} | {row['second_s']:.2f} | "
                     f"{row['peak_rss_mb']:.0f} |")
    lat = r["latency"]
    lines += ["", f"{PHOTO[0]}x{PHOTO[1]} in one process, p50: light {lat['light']['p50_ms']:.0f} ms, torch "
                  f"{lat['torch']['p50_ms']:.0f} ms (light / torch = {lat['light']['p50_ms'] / lat['torch']['p50_ms']:.2f}); "
                  f"outputs differ by at most {lat['max_level_difference']} level(s) per channel "
                  f"({100 * lat['share_differing']:.3f}% of values differ)."]
    if "light_install_mb" in r:
        lines += ["", f"Light install size: {r['light_install_mb']:.0f} MB of site-packages (numpy, Pillow, onnxruntime, "
                      f"tqdm, colorize with its weights); the torch install: {r['torch_install_mb']:.0f} MB."]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="fresh processes per start-up figure (default 5)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls for the in-process latency (default 10)")
    p.add_argument("--light-python", help="python of a light install (pip install colorize, no torch)")
    p.add_argument("--scan-child", nargs=3, metavar=("ENGINE", "W", "H"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.scan_child:
        engine, w, h = args.scan_child
        print(json.dumps(scan_child(engine, int(w), int(h))))
        return 0

    from PIL import Image

    result: dict[str, Any] = {"machine": machine_info(), "runs": args.runs, "startup": {}, "scan": []}
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        Image.fromarray(synthetic_photo(*PHOTO)).convert("L").save(photo, quality=90)
        result["python_pass_s"] = python_pass(sys.executable, args.runs)
        if args.light_python:
            print("start-up: light install", flush=True)
            result["startup"]["light_install"] = startup(args.light_python, [], photo, Path(tmp) / "o.jpg", args.runs)
        for key, extra in (("auto", []), ("torch", ["--runtime", "torch"]), ("hint", ["--hint", "500,300,red"])):
            print(f"start-up: {key}", flush=True)
            result["startup"][key] = startup(sys.executable, extra, photo, Path(tmp) / "o.jpg", args.runs)
    for engine in ("light", "torch"):
        print(f"scan: {engine}", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--scan-child", engine, str(SCAN[0]), str(SCAN[1])],
                              check=True, capture_output=True, text=True, cwd=ROOT)
        result["scan"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("latency and agreement", flush=True)
    result["latency"] = latency_and_agreement(args.repeats)
    if args.light_python:
        result["light_install_mb"] = site_packages_mb(args.light_python)
        result["torch_install_mb"] = site_packages_mb(sys.executable)
    publish("light", result, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
