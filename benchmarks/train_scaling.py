"""Data-parallel training throughput: images/s of ``colorize train`` with 1 and 2 processes (torchrun,
gloo on CPU, NCCL on GPUs) and the scaling efficiency.

Weak scaling: the batch is per process, so N processes step through N times the photos per step.
Every run trains the same synthetic photo set (JPEGs on disk, decoded and augmented by one loader
worker per process, as in real training) for a few epochs; the first epoch is a warm-up and images/s
comes from the wall time of the others (a 4-photo validation included). On a CPU the cores are
shared: ``--threads`` per process (default: cores / max processes), plus a 1-process row using every
core as the reference a single process would get.

    python benchmarks/train_scaling.py                                        # unet_lite0, 160 px, batch 16
    python benchmarks/train_scaling.py --model alpha --size 32 --batch-size 4 --epoch-images 32 --epochs 2
                                                                              # a few-second smoke run

Writes benchmarks/results/train_scaling.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import ROOT, machine_info, machine_line, synthetic_photo, write_results


def make_photos(folder: Path, count: int, size: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(synthetic_photo(size * 5 // 4, size, seed=i)).save(folder / f"p{i:04d}.jpg", quality=90)


def run(procs: int, threads: int, args: argparse.Namespace, data: Path, out: Path) -> dict[str, Any]:
    """Train with ``procs`` processes; images/s over the epochs after the first."""
    import torch

    cmd = ["-m", "colorize.cli", "train", "--model", args.model, "--data", str(data / "train"),
           "--val-data", str(data / "val"), "--size", str(args.size), "--batch-size", str(args.batch_size),
           "--epochs", str(args.epochs), "--epoch-images", str(args.epoch_images), "--lr", "1e-4",
           "--num-workers", str(args.num_workers), "--threads", str(threads), "--device", args.device,
           "--out", str(out)]
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else []
    env = {**os.environ, "COLORIZE_NO_PROGRESS": "1", "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, *launcher, *cmd], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{procs} process(es) failed:\n{proc.stderr[-3000:]}")
    history = torch.load(out / "last.pt", weights_only=True)["history"]
    timed = history[1:]
    global_batch = args.batch_size * procs
    images = sum((args.epoch_images // global_batch) * global_batch for _ in timed)
    seconds = sum(m["seconds"] for m in timed)
    return {"processes": procs, "threads_per_process": threads, "global_batch": global_batch,
            "images": images, "seconds": seconds, "images_per_s": images / seconds}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| processes | threads/process | global batch | images/s | speed-up | efficiency |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        efficiency = "-" if r["efficiency"] is None else f"{r['efficiency']:.0%}"
        lines.append(f"| {r['processes']} | {r['threads_per_process']} | {r['global_batch']} | "
                     f"{r['images_per_s']:.1f} | {r['speedup']:.2f}x | {efficiency} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="unet_lite0")
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=16, help="per process")
    p.add_argument("--epoch-images", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3, help="the first is a warm-up")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: cores / max processes)")
    p.add_argument("--num-workers", type=int, default=1, help="loader workers per process")
    p.add_argument("--photos", type=int, default=256, help="synthetic training photos")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (the first is a warm-up)")

    cores = os.cpu_count() or 1
    threads = args.threads or max(1, cores // max(args.processes))
    configs = [(n, threads) for n in sorted(args.processes)]
    if args.device == "cpu" and threads != cores:
        configs.insert(0, (1, cores))  # one process with every core, for reference
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        make_photos(data / "train", args.photos, args.size * 3 // 2)
        make_photos(data / "val", 4, args.size * 3 // 2)
        rows = [run(n, t, args, data, data / f"run{n}x{t}") for n, t in configs]
    base = next(r for r in rows if r["processes"] == min(args.processes) and r["threads_per_process"] == threads)
    for r in rows:
        r["speedup"] = r["images_per_s"] / base["images_per_s"]
        same_share = r["threads_per_process"] == threads  # the all-cores reference row has no efficiency
        r["efficiency"] = r["speedup"] * base["processes"] / r["processes"] if same_share else None
    info = machine_info()
    settings = {k: getattr(args, k) for k in ("model", "size", "batch_size", "epoch_images", "epochs", "num_workers",
                                              "photos", "device")}
    path = write_results("train_scaling", {"machine": info, "settings": settings, "runs": rows})
    print(machine_line(info))
    print(f"{args.model}, {args.size} px, batch {args.batch_size} per process, {args.num_workers} loader worker(s) "
          f"per process; speed-up and efficiency against 1 process x {threads} thread(s)\n")
    print(table(rows))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
