"""Archive throughput: photos/s of the same ``colorize IN -o OUT`` job on the local engine and on Ray
(``--engine ray``, a local Ray with N workers), in one run, and Ray's overhead on one machine.

Each engine runs as the user runs it, a fresh ``colorize`` process on the same self-made photos
(JPEGs, 1024x768 by default). Two rates per run:

- end to end: photos / wall time of the whole command (imports, model load, Ray start-up included);
- steady: the rate while photos stream, (n - 1) / (last output's mtime - first output's mtime), which is
  what sizes a long archive job (start-up is paid once per job, not per photo).

Overhead = 1 - ray / local for each. Both get ``--workers`` (default: one per core): the local engine
that many photos at a time in one process, each on its share of the cores; Ray one actor per worker, one
thread each.

    python benchmarks/archive_scale.py                       # 200 photos, 2 workers
    python benchmarks/archive_scale.py --photos 20 --size 256 # a quick smoke run

Writes benchmarks/results/archive_scale.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, machine_info, machine_line, synthetic_photo, write_results


def make_photos(folder: Path, count: int, size: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(synthetic_photo(size, size * 3 // 4, seed=i)).save(folder / f"p{i:04d}.jpg", quality=90)


def run(engine: str, photos: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One ``colorize`` command; its end-to-end and steady photos/s."""
    extra = ["--workers", str(args.workers)] + (["--engine", "ray"] if engine == "ray" else [])
    cmd = [sys.executable, "-m", "colorize.cli", str(photos), "-o", str(out), "-q", *extra]
    if args.model:
        cmd += ["--model", args.model]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{engine}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    stamps = sorted(p.stat().st_mtime for p in out.rglob("*.jpg"))
    n = len(stamps)
    streaming = stamps[-1] - stamps[0]
    return {"engine": engine, "photos": n, "wall_s": round(wall, 2), "end_to_end_per_s": round(n / wall, 2),
            "streaming_s": round(streaming, 2), "steady_per_s": round((n - 1) / streaming, 2),
            "startup_s": round(wall - streaming, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024, help="photo width (height = 3/4 of it)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="Ray workers = local photos at a time")
    parser.add_argument("--model", help="default: the shipped model")
    args = parser.parse_args()

    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        make_photos(photos, args.photos, args.size)
        rows = [run(engine, photos, Path(tmp) / f"out_{engine}", args) for engine in ("local", "ray")]
    local, ray = rows
    result = {"machine": info, "args": vars(args), "rows": rows,
              "overhead_steady": round(1 - ray["steady_per_s"] / local["steady_per_s"], 3),
              "overhead_end_to_end": round(1 - ray["end_to_end_per_s"] / local["end_to_end_per_s"], 3),
              "steady_per_core_per_s": round(max(local["steady_per_s"], ray["steady_per_s"]) / args.workers, 2)}
    write_results("archive_scale", result)
    print(machine_line(info))
    print(f"\n{args.photos} photos of {args.size}x{args.size * 3 // 4}, {args.workers} cores\n")
    print("| engine | wall s | start-up s | photos/s end to end | photos/s steady |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['wall_s']} | {r['startup_s']} | {r['end_to_end_per_s']} | {r['steady_per_s']} |")
    print(f"\nRay overhead: {result['overhead_steady']:.1%} steady, {result['overhead_end_to_end']:.1%} end to end; "
          f"{result['steady_per_core_per_s']} photos/s per core")


if __name__ == "__main__":
    main()
