"""Load test for ``colorize serve``: N concurrent clients post one photo over and over for T seconds.

Starts the server as a subprocess on a free loopback port (or targets ``--url``), then reports
throughput, p50/p99 latency of successful requests, errors, 503 refusals and the server's resident
memory before and after the load (and its peak). Writes JSON and prints a markdown table.

    python benchmarks/load_server.py --clients 8 --seconds 60 --workers 2 --image-size 1600x1200
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results" / "load_server.json"


@dataclass
class Tally:
    """What the clients saw; shared between client threads under ``lock``."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    busy: int = 0  # 503 refusals
    errors: int = 0  # any other status, or no response
    error_samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_photo(width: int, height: int) -> bytes:
    """A gray JPEG with gradients and shapes, made here so the benchmark needs no data."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = 0.5 + 0.3 * np.sin(x / width * 7) * np.cos(y / height * 5)
    img += 0.15 * (((x - width / 2) ** 2 + (y - height / 3) ** 2) < (min(width, height) / 5) ** 2)
    img += np.random.default_rng(0).normal(0, 0.02, img.shape)
    buf = io.BytesIO()
    Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def rss_mb(pid: int) -> dict[str, float | None]:
    """Resident memory now and at peak, from /proc (Linux); None elsewhere."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except OSError:
        return {"rss_mb": None, "peak_mb": None}
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "peak_mb": int(fields["VmHWM"].split()[0]) / 1024}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    """``colorize serve`` in a subprocess, so its memory can be read on its own."""
    cmd = [sys.executable, "-m", "colorize.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(args.workers), "--queue", str(args.queue), "--log-level", "warning"]
    for option in ("model", "size", "threads"):
        if getattr(args, option) is not None:
            cmd += [f"--{option}", str(getattr(args, option))]
    return subprocess.Popen(cmd)


def wait_ready(url: str, proc: subprocess.Popen | None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


def client(url: str, photo: bytes, deadline: float, tally: Tally) -> None:
    """Post the photo until the deadline; after a 503 wait as Retry-After says (at most 1 s)."""
    with httpx.Client(timeout=120) as http:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                r = http.post(f"{url}/api/colorize", files={"file": ("photo.jpg", photo, "image/jpeg")})
            except httpx.HTTPError as e:
                with tally.lock:
                    tally.errors += 1
                    tally.error_samples.append(repr(e))
                continue
            elapsed = time.perf_counter() - start
            with tally.lock:
                if r.status_code == 200:
                    tally.latencies.append(elapsed)
                elif r.status_code == 503:
                    tally.busy += 1
                else:
                    tally.errors += 1
                    tally.error_samples.append(f"{r.status_code}: {r.text[:200]}")
            if r.status_code == 503:
                time.sleep(min(1.0, float(r.headers.get("Retry-After", 1))))


def run(args: argparse.Namespace) -> dict:
    """Start (or find) the server, load it, stop it; the measurements as a dict."""
    proc = None
    url = args.url
    if url is None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(args, port)
    try:
        wait_ready(url, proc)
        pid = proc.pid if proc is not None else args.pid
        width, height = (int(v) for v in args.image_size.lower().split("x"))
        photo = make_photo(width, height)
        memory_before = rss_mb(pid) if pid else {}
        tally = Tally()
        start = time.monotonic()
        threads = [threading.Thread(target=client, args=(url, photo, start + args.seconds, tally))
                   for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        memory_after = rss_mb(pid) if pid else {}
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    lat = np.array(tally.latencies) * 1000
    return {
        "config": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "photo_bytes": len(photo),
        "elapsed_s": round(elapsed, 2),
        "ok": len(lat),
        "throughput_per_s": round(len(lat) / elapsed, 3),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "busy_503": tally.busy,
        "errors": tally.errors,
        "error_samples": tally.error_samples[:5],
        "rss_before_mb": memory_before.get("rss_mb"),
        "rss_after_mb": memory_after.get("rss_mb"),
        "rss_peak_mb": memory_after.get("peak_mb"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }


def _fmt(value: object) -> str:
    return "n/a" if value is None else f"{value:.0f}" if isinstance(value, float) else str(value)


def markdown(result: dict) -> str:
    """The result as a two-column markdown table."""
    c = result["config"]
    rows = [("clients", c["clients"]), ("seconds", result["elapsed_s"]),
            ("workers / queue", f"{c['workers']} / {c['queue']}"),
            ("photo", f"{c['image_size']} JPEG, {result['photo_bytes'] / 1024:.0f} KB"),
            ("ok", result["ok"]), ("throughput (photos/s)", result["throughput_per_s"]),
            ("p50 latency (ms)", _fmt(result["p50_ms"])), ("p99 latency (ms)", _fmt(result["p99_ms"])),
            ("503 busy", result["busy_503"]), ("errors", result["errors"]),
            ("server RSS before / after / peak (MB)",
             " / ".join(_fmt(result[k]) for k in ("rss_before_mb", "rss_after_mb", "rss_peak_mb")))]
    return "\n".join(["| metric | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--image-size", default="1024x768", help="WIDTHxHEIGHT of the synthetic photo")
    p.add_argument("--model", help="passed to `colorize serve --model`")
    p.add_argument("--size", type=int, help="passed to `colorize serve --size`")
    p.add_argument("--threads", type=int, help="passed to `colorize serve --threads`")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--queue", type=int, default=8)
    p.add_argument("--url", help="load a server that is already running instead of starting one")
    p.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON output (default: {RESULTS})")
    args = p.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"\nwrote {args.out}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
