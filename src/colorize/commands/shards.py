"""``colorize shards``: pack a folder of photos (recursive) into WebDataset-format tar shards, for training or as
``colorize``'s input (each photo then goes to OUT/<its key>.<ext>: the folder's tree)."""

from __future__ import annotations

import argparse
import sys

from colorize.commands.options import bounded


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="colorize shards", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="train from them: colorize train --data 'OUTDIR/shard-{000000..000009}.tar' --val-data VALFOLDER "
               "--epoch-images N\ncolorize them:   colorize 'OUTDIR/*.tar' -o OUT --record")
    p.add_argument("folder", metavar="FOLDER", help="folder of photos (searched recursively)")
    p.add_argument("-o", "--output", metavar="OUTDIR", required=True, help="folder for shard-000000.tar, ...")
    p.add_argument("--max-count", type=bounded(int, 1, what="photos per shard"), default=10_000,
                   help="photos per shard at most (default 10000)")
    p.add_argument("--max-size", type=float, default=1000.0, metavar="MB", help="close a shard once it holds this much (default 1000 MB)")
    p.add_argument("--no-shuffle", action="store_true", help="pack in path order instead of a seeded random order")
    p.add_argument("--seed", type=int, default=0, help="seed of the packing order (default 0)")
    args = p.parse_args(argv)
    if not args.max_size > 0:  # NaN too
        p.error(f"--max-size must be more than 0 MB, got {args.max_size:g}")

    from colorize.shards import write_shards

    try:
        result = write_shards(args.folder, args.output, max_count=args.max_count, max_size_mb=args.max_size,
                              shuffle=not args.no_shuffle, seed=args.seed)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # writing: a full disk, a folder that cannot be written (nothing of this run is left)
        print(f"error: cannot write the shards in {args.output} ({e}); none was kept", file=sys.stderr)
        return 1
    for msg in result.skipped:
        print(f"  skipped: {msg}")
    print(f"wrote {len(result.shards)} shard(s), {result.images} photos, {result.bytes / 1e6:.1f} MB -> {args.output}"
          + (f"; skipped {len(result.skipped)} unreadable file(s)" if result.skipped else ""))
    return 0
