"""Helpers shared by the speed benchmarks: machine info, timing statistics, synthetic photos, peak
memory of a child process, and writing results (JSON + a section of docs/benchmarks.md)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
DOC_HEADER = """# Benchmarks

Measured by the scripts in `benchmarks/` (each rewrites its own section below and writes the raw
numbers to `benchmarks/results/*.json`). Latencies are wall-clock on the machine named in each
section; models without shipped weights are timed with random weights (same compute).
"""


def machine_info() -> dict[str, Any]:
    """CPU, core count, library versions and torch threads: printed beside every result.

    The CPU's family and model, and its widest vector instructions, are part of its name: machines that
    all call themselves "AMD EPYC" have differed here by 1.7x in the same training step.
    """
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.+)", text)
        cpu = match.group(1).strip() if match else cpu
        fields = dict(re.findall(r"^(cpu family|model|flags)\s*:\s*(.*)$", text, re.M))
        flags = fields.get("flags", "").split()
        details = [f"family {fields['cpu family']} model {fields['model']}" if "model" in fields else "",
                   next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2")) if flag in flags), "")]
        if any(details):
            cpu += f" ({', '.join(d for d in details if d)})"
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    # OpenMP settings change small-op latency a lot: OMP_WAIT_POLICY=PASSIVE (good for training beside
    # other work) puts idle threads to sleep, and waking them costs every small layer; measured here it
    # doubled our network's latency while barely moving the big reference networks
    info["env"] = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")
                   if k in os.environ}
    if info["env"].get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        print("warning: OMP_WAIT_POLICY=PASSIVE slows small layers (thread wake-ups); "
              "latency results are not what a user's default environment gives", file=sys.stderr)
    return info


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 / p95 / mean in milliseconds."""
    arr = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "mean_ms": float(arr.mean()), "runs": len(arr)}


def time_calls(fn: Callable[[], Any], *, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def synthetic_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 photo-like test image (gradients, a bright band, colored discs), built in uint8
    so a 6000x4000 scan costs its 72 MB and no float temporaries."""
    rng = np.random.default_rng(seed)
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (127 + 100 * np.sin(x / width * 5 + seed)).astype(np.uint8)  # (1, W) broadcast over rows
    img[..., 1] = (100 + 80 * np.cos(y / height * 6)).astype(np.uint8)  # (H, 1) broadcast over columns
    img[..., 2] = np.where(y < height / 3, 215, 80).astype(np.uint8)
    for _ in range(30):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.02, 0.1) * min(width, height)
        y0, y1 = int(max(0, cy - r)), int(min(height, cy + r))
        x0, x1 = int(max(0, cx - r)), int(min(width, cx + r))
        disc = (x[:, x0:x1] - cx) ** 2 + (y[y0:y1] - cy) ** 2 < r**2
        img[y0:y1, x0:x1][disc] = rng.integers(0, 256, 3, dtype=np.uint8)
    return img


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB.

    On Linux this is VmHWM of /proc/self/status: ru_maxrss is carried across execve, so a child started
    by a big benchmark process would report its parent's peak whenever its own is lower. Elsewhere,
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss``.
    """
    import resource

    try:
        match = re.search(r"VmHWM:\s*(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        match = None
    if match:
        return int(match.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def current_rss_mb() -> float | None:
    """This process's resident memory now, in MB (Linux only; None elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_child(script: Path, args: list[str], *, timeout: float = 1800) -> dict[str, Any]:
    """Run ``python script args`` in a fresh process (so its peak RSS is its own); parse the JSON it
    prints on its last stdout line."""
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_results(name: str, data: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json"""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def update_doc_section(section: str, markdown: str) -> Path:
    """Replace (or append) the section between ``<!-- section:begin -->`` and ``<!-- section:end -->``
    of docs/benchmarks.md, leaving the rest of the file alone."""
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = DOC.read_text() if DOC.is_file() else DOC_HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    return DOC


def publish(name: str, result: dict[str, Any], markdown: str) -> None:
    """Write benchmarks/results/<name>.json and the <name> section of docs/benchmarks.md; print both."""
    path = write_results(name, result)
    doc = update_doc_section(name, markdown)
    print(markdown)
    print(f"\nwrote {path} and {doc}")


def fmt_params(n: int) -> str:
    """12345 -> '12k', 3_800_000 -> '3.8M'."""
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n / 1e3:.0f}k"


def machine_line(info: dict[str, Any]) -> str:
    """One markdown line naming the machine and versions."""
    ort = f", onnxruntime {info['onnxruntime']}" if "onnxruntime" in info else ""
    env = ", ".join(f"{k}={v}" for k, v in info.get("env", {}).items()) or "default OpenMP settings"
    return (f"Machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
            f"({info['torch_threads']} threads){ort}, Python {info['python']}; {env}.")
