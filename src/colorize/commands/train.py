"""``colorize train``: train a model from a YAML recipe and/or options; ``--resume`` continues a run.

Data-parallel on N GPUs or CPU processes: ``torchrun --nproc_per_node N -m colorize.cli train ...``
(``--batch-size`` is per process). See docs/scaling.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def _recipe_path(recipe: str) -> Path:
    from colorize.shipped import package_dir

    recipes = package_dir("configs")  # the shipped recipes, inside the installed package
    p = Path(recipe)
    if p.is_file():
        return p
    named = recipes / f"{recipe}.yaml"
    if named.is_file():
        return named
    known = sorted(f.stem for f in recipes.glob("*.yaml")) if recipes.is_dir() else []
    raise FileNotFoundError(f"recipe '{recipe}' not found; give a YAML file or one of: {', '.join(known)}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="colorize train", description=__doc__)
    p.add_argument("--recipe", help="YAML recipe: a file, or a name under configs/ (alpha, beta, unet_lite0, ...)")
    p.add_argument("--model", help="registered model name (overrides the recipe)")
    p.add_argument("--data", nargs="+", help="training folders, files or globs; or tar shards (.tar paths, "
                   "globs, {000..009} ranges, http(s) URLs)")
    p.add_argument("--val-data", nargs="+", help="validation folders (default: a 2%% split of --data)")
    p.add_argument("--image", help="train on this one photo (the Alpha demo)")
    p.add_argument("--size", type=int, help="training crop in pixels, every epoch (a multiple of 8; replaces a "
                   "recipe's progressive resizing)")
    p.add_argument("--batch-size", type=int, help="photos per step and process")
    p.add_argument("--epochs", type=int, help="epochs to train (a recipe's LR decay is fitted into fewer)")
    p.add_argument("--epoch-images", type=int, help="images per epoch (default: the whole set)")
    p.add_argument("--lr", type=float, help="peak learning rate (after warmup)")
    p.add_argument("--out", dest="out_dir", help="run folder for checkpoints, logs and samples (default: the "
                   "recipe's out_dir, runs/RECIPE for the shipped ones; runs/default without a recipe)")
    p.add_argument("--device", help="auto (the default: a GPU where there is one), cpu, cuda, cuda:N or mps")
    p.add_argument("--amp", help="mixed precision on CUDA: auto (default), bf16, fp16 or off; on the CPU, bf16 trains "
                   "the U-Net decoder in bfloat16 (faster on CPUs with AMX)")
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes (per training process)")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--max-minutes", type=float, help="stop cleanly after this long (resume later)")
    p.add_argument("--seed", type=int, help="seed of the photo order and the augmentation (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--init", dest="init_weights", metavar="WEIGHTS",
                   help="warm start: begin from these weights (a shipped model's name such as unet_lite0, or a "
                        ".safetensors / .pt file) with a fresh optimizer and warmup; the recipe's architecture must "
                        "match")
    args = p.parse_args(argv)

    from colorize.distributed import from_env
    from colorize.io import ImageNote
    from colorize.train import TrainConfig, train

    # a photo's notes are about colorizing it (only a TIFF's first page is); training reads its photos every epoch,
    # in loader processes that cannot tell what was said before: each note came back at each epoch
    warnings.filterwarnings("ignore", category=ImageNote)

    overrides = {k: getattr(args, k) for k in ("model", "data", "val_data", "image", "size", "batch_size",
                                               "epochs", "epoch_images", "lr", "out_dir", "device", "amp",
                                               "num_workers", "threads", "max_minutes", "seed", "init_weights")}
    if args.data and not args.val_data:
        overrides["val_data"] = []  # the recipe's validation photos go with its own data: split --data instead
    try:
        if args.recipe:
            raw = TrainConfig.read_recipe(_recipe_path(args.recipe))
            own = {k: raw.get(k, TrainConfig.__dataclass_fields__[k].default)  # the recipe's, before any option
                   for k in ("decay_epochs", "early_epochs", "early_size")}
            own = {k: v if isinstance(v, int) else 0 for k, v in own.items()}  # a mistyped one: refused by name below
            if args.epochs and own["decay_epochs"] > args.epochs:  # a shorter run: the LR decays over all of it
                overrides["decay_epochs"] = args.epochs
                print(f"note: the recipe decays the learning rate over {own['decay_epochs']} epochs; over all "
                      f"{args.epochs} here", file=sys.stderr)
            if args.size and own["early_epochs"]:  # the crop asked for, from the first epoch
                overrides["early_epochs"] = 0
                print(f"note: --size {args.size} from the first epoch (the recipe's first {own['early_epochs']} at "
                      f"{own['early_size']} px are not kept)", file=sys.stderr)
            cfg = TrainConfig.from_recipe(raw, **overrides)
        else:
            cfg = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    except (ValueError, FileNotFoundError, TypeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import signal

    from colorize.train import request_stop

    signal.signal(signal.SIGTERM, request_stop)  # `kill` (a scheduler's, a shutdown's) stops a run as Ctrl-C does
    signal.signal(signal.SIGINT, request_stop)
    try:
        metrics = train(cfg, resume=args.resume)
    except KeyboardInterrupt:
        last = Path(cfg.out_dir) / "last.pt"
        if not from_env().is_main:  # under torchrun, rank 0 writes last.pt and says so: another rank looking
            return 130  # while it was being written said there was none
        if last.is_file():
            print(f"interrupted: {last} holds the run so far; continue with --resume", file=sys.stderr)
        else:
            print("interrupted before the first training step: no checkpoint to resume", file=sys.stderr)
        return 130
    except ImportError as e:  # an optional package (the train extra) is missing
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:  # --init weights of another architecture, data that is not there
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a folder that cannot be written: last.pt holds the last good state
        print(f"error: {e}; resume with --resume once it is fixed", file=sys.stderr)
        return 1
    except RuntimeError as e:  # torch.save's own writer reports a full disk this way
        if "writ" not in str(e).lower():
            raise
        print(f"error: cannot write a checkpoint in {cfg.out_dir} ({str(e).splitlines()[0]}); "
              "resume with --resume once it is fixed", file=sys.stderr)
        return 1
    if from_env().is_main:
        print(f"finished: {metrics}")
        print(f"checkpoints in {cfg.out_dir}: best.pt, last.pt, best.safetensors")
    return 0
