"""Tar shards: packing and streaming speed of colorize.shards (webdataset underneath) against the
standard-library tar reader it replaced.

Packs 2,000 small JPEGs (synthetic, 160x120, ~6 kB) into 8 shards, then times (CPU seconds, best of
``--repeats`` after a warm-up):

- pack: ``write_shards`` (webdataset's ShardWriter, each shard written atomically);
- raw read: the photo bytes of every sample, by a plain ``tarfile`` stream reader (what shards.py did
  before) and by ``iter_shard_photos`` (webdataset's tar iterator and key grouping);
- stream: one pass of ``ShardDataset`` at 128 px, one process, no loader workers: shuffle buffer,
  JPEG decode and crop included (what training's loader does per worker).

    python benchmarks/shard_stream.py               # 2000 photos, best of 3
    python benchmarks/shard_stream.py --photos 500 --repeats 1

Writes benchmarks/results/shard_stream.json and the "shard_stream" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

from PIL import Image

from _common import machine_info, machine_line, publish, synthetic_photo


def make_photos(folder: Path, n: int) -> int:
    """``n`` JPEGs (160x120, quality 90) in 20 subfolders; returns their total size in bytes."""
    total = 0
    for i in range(n):
        path = folder / f"d{i % 20:02d}" / f"p{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_photo(160, 120, seed=i)).save(path, quality=90)
        total += path.stat().st_size
    return total


def stdlib_read(shards: list[str]) -> int:
    """The former reader: a ``tarfile`` stream (mode ``r|*``), members grouped by key, photo bytes kept."""
    count = 0
    for url in shards:
        key, files = None, {}
        with open(url, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                k, _, ext = member.name.partition(".")
                if k != key and files:
                    count += 1
                    files = {}
                key = k
                files[ext] = tar.extractfile(member).read()
        count += bool(files)
    return count


def best_of(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    """(fewest CPU seconds of this process, what ``fn`` returned) over ``repeats`` calls after an untimed
    one. CPU time, not wall-clock: on a shared machine the wait for a core is not the reader's cost
    (everything here runs in this process, reading local files)."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        result = fn()
        best = min(best, time.process_time() - t0)
    return best, result


def time_pack(folder: Path, out: Path, repeats: int) -> tuple[float, list[str]]:
    """Seconds to pack ``folder`` into shards of 250 photos; the shard paths."""
    from colorize.shards import write_shards

    shards: list[str] = []

    def pack() -> int:
        target = out / f"run{time.perf_counter_ns()}"
        shards[:] = [str(p) for p in write_shards(folder, target, max_count=250).shards]
        return len(shards)

    seconds, _ = best_of(pack, repeats)
    return seconds, shards


def time_stream(shards: list[str], repeats: int) -> tuple[float, int]:
    """Seconds for one pass of ShardDataset (128 px, shuffle buffer 1000) and the photos it gave."""
    from colorize.shards import ShardDataset

    return best_of(lambda: sum(1 for _ in ShardDataset(shards, 128, shuffle_buffer=1000)), repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import webdataset

    from colorize.shards import iter_shard_photos

    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "photos", Path(tmp) / "shards"
        size = make_photos(folder, args.photos)
        pack_s, shards = time_pack(folder, out, args.repeats)
        stdlib_s, n_stdlib = best_of(lambda: stdlib_read(shards), args.repeats)
        wds_s, n_wds = best_of(lambda: sum(1 for ph in iter_shard_photos(shards) if ph.data), args.repeats)
        stream_s, n_stream = time_stream(shards, args.repeats)
    assert n_stdlib == n_wds == n_stream == args.photos, (n_stdlib, n_wds, n_stream)
    rate = {"pack": args.photos / pack_s, "raw_stdlib": args.photos / stdlib_s,
            "raw_webdataset": args.photos / wds_s, "stream_128px": args.photos / stream_s}
    result = {"machine": info, "webdataset": webdataset.__version__, "photos": args.photos, "shards": len(shards),
              "photo_bytes": size, "repeats": args.repeats, "photos_per_s": rate}
    rows = [("pack (`write_shards`)", rate["pack"]),
            ("raw read, plain `tarfile` stream (the former reader)", rate["raw_stdlib"]),
            ("raw read, `iter_shard_photos` (webdataset)", rate["raw_webdataset"]),
            ("`ShardDataset` pass: shuffle, JPEG decode, 128 px crop", rate["stream_128px"])]
    markdown = "\n".join([
        "## Tar shards: packing and streaming",
        "",
        machine_line(info) + f" webdataset {webdataset.__version__}.",
        f"{args.photos} JPEGs (160x120, {size / args.photos / 1e3:.1f} kB each) in {len(shards)} shards, "
        f"local disk, one process; CPU time, best of {args.repeats} after a warm-up (`benchmarks/shard_stream.py`).",
        "",
        "| step | photos / CPU-s |",
        "|---|---:|",
        *(f"| {name} | {value:,.0f} |" for name, value in rows),
    ])
    publish("shard_stream", result, markdown)


if __name__ == "__main__":
    main()
