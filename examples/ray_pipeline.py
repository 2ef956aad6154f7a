"""Colorize photos inside your own Ray Data pipeline with ``colorize.ray.ColorizeBatch``.

    pip install 'colorize[ray]'
    python examples/ray_pipeline.py examples/ out_ray/                    # starts a local Ray
    python examples/ray_pipeline.py /data/scans /data/color --address auto # on a running cluster

Each actor loads the model once; photos are read and written by Ray tasks, here as PNG files that
mirror the input folder. (``colorize IN -o OUT --engine ray`` is the ready-made job: it also keeps
the record, honors EXIF orientation and reports bad files; this shows the building block.)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import ray
from PIL import Image

from colorize.ray import ColorizeBatch


def save_batch(batch: dict[str, np.ndarray], *, root: str, out: str) -> dict[str, np.ndarray]:
    """Write each colorized image to OUT/<its path under ROOT>.png; return the written paths."""
    written = []
    for image, path in zip(batch["image"], batch["path"]):
        dst = Path(out) / Path(os.path.relpath(path, root)).with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(dst)
        written.append(str(dst))
    return {"written": np.array(written)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="a folder of photos (any filesystem pyarrow reads)")
    parser.add_argument("output", help="a folder for the colorized PNGs")
    parser.add_argument("--model", help="shipped model name or weight file (default: the shipped model)")
    parser.add_argument("--address", help="a running Ray cluster (auto, HOST:PORT); default: a local Ray")
    parser.add_argument("--workers", type=int, help="colorizing actors, one CPU each (default: the cluster's CPUs - 1)")
    args = parser.parse_args()

    ray.init(address=args.address, ignore_reinit_error=True)
    # actors hold their CPUs for the whole job: leave one for the tasks that write (else they never start)
    workers = args.workers or max(1, int(ray.cluster_resources().get("CPU", 2)) - 1)
    ds = ray.data.read_images(args.input, mode="RGB", include_paths=True)  # columns: image (H, W, 3), path
    ds = ds.map_batches(ColorizeBatch, fn_constructor_kwargs={"model": args.model, "threads": 1},
                        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1, batch_size=4)
    ds = ds.map_batches(save_batch, fn_kwargs={"root": os.path.abspath(args.input), "out": args.output})
    print(f"colorized {ds.count()} photos into {args.output}")


if __name__ == "__main__":
    main()
