"""Data-parallel training: the rank-aware sampler, the shared ab prior, and a real 2-process torchrun
(gloo on CPU) that must follow the single-process loss curve at the same global batch and resume."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from colorize.distributed import Dist, EpochSampler
from colorize.train import TrainConfig, count_ab_bins, train
from helpers import make_photo


@pytest.mark.parametrize("size,num_samples", [(10, 10), (10, 25), (7, 3), (16, 16)])
def test_epoch_sampler_is_random_sampler_split_by_rank(size, num_samples):
    def gen():
        return torch.Generator().manual_seed(3)

    single = list(torch.utils.data.RandomSampler(range(size), num_samples=num_samples, generator=gen()))
    assert list(EpochSampler(size, num_samples, gen())) == single  # one process: unchanged sampling
    ranks = [list(EpochSampler(size, num_samples, gen(), rank=r, world_size=2)) for r in range(2)]
    usable = num_samples // 2 * 2
    assert ranks[0] == single[0:usable:2] and ranks[1] == single[1:usable:2]
    assert len(ranks[0]) == len(ranks[1]) == len(EpochSampler(size, num_samples, gen(), world_size=2))
    # step k of all ranks (batch b each) = step k of one process with batch 2b
    b = 2
    for k in range(usable // (2 * b)):
        step = ranks[0][k * b:(k + 1) * b] + ranks[1][k * b:(k + 1) * b]
        assert sorted(step) == sorted(single[2 * b * k:2 * b * (k + 1)])


def test_prior_counts_split_across_ranks(photo_dir):
    """Each rank counts its share of the same seeded subset; the shares add up to the whole."""
    from types import SimpleNamespace

    from colorize.data import PhotoDataset, find_images
    from colorize.models.base import AbBins

    cfg = TrainConfig(model="unet_lite0", data=[str(photo_dir)], size=32, prior_images=9, num_workers=0)
    model = SimpleNamespace(bins=AbBins())  # all the count needs
    dataset = PhotoDataset(find_images(photo_dir), cfg.size)
    whole, n = count_ab_bins(model, dataset, cfg)
    parts = [count_ab_bins(model, dataset, cfg, dist=Dist(rank=r, world_size=2)) for r in range(2)]
    assert n == 9 and [p[1] for p in parts] == [5, 4]
    torch.testing.assert_close(parts[0][0] + parts[1][0], whole, rtol=1e-5, atol=1e-3)


def _photos(folder, n, offset):
    folder.mkdir()
    for i in range(n):
        make_photo(40, 32, seed=offset + i).save(folder / f"p{i:02d}.jpg", quality=92)


def _history(run_dir):
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    return [[m[k] for k in ("train_loss", "val_loss", "val_psnr")] for m in ckpt["history"]], ckpt


def _torchrun(tmp_path, recipe, out, *extra, entry=("-m", "colorize.cli"), code=0):
    env = {**os.environ, "COLORIZE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *entry, "train", "--recipe", str(recipe), "--batch-size", "4", "--out", str(out), *extra]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert (proc.returncode == 0) == (code == 0), proc.stderr[-3000:]
    return proc.stdout


# colorize train whose ranks all stop (as on Ctrl-C) after the first training step, halfway through epoch 1
_STOP_AFTER_THE_FIRST_STEP = """
import sys
import colorize.train as t
from colorize.cli import main
original = t.color_loss
def color_loss(*args, **kwargs):
    t.request_stop()  # inside a step it only sets the flag: the step ends, then the run stops
    return original(*args, **kwargs)
t.color_loss = color_loss
sys.exit(main())
"""


def test_torchrun_two_processes_match_one_and_resume(tmp_path):
    _photos(tmp_path / "train", 16, 0)
    _photos(tmp_path / "val", 4, 100)
    settings = dict(model="alpha", data=[str(tmp_path / "train")], val_data=[str(tmp_path / "val")], size=32,
                    epochs=2, optimizer="adam", lr=0.01, warmup_steps=0, augment=False, num_workers=0,
                    early_stop_patience=0, samples=2, seed=0)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(settings))

    # one process, global batch 8, three epochs without a break
    single = tmp_path / "single"
    train(TrainConfig(**{**settings, "epochs": 3, "batch_size": 8, "out_dir": str(single)}))
    want, _ = _history(single)

    # two processes x batch 4: the same photos per step, gradients averaged by DDP
    out = tmp_path / "ddp"
    stdout = _torchrun(tmp_path, recipe, out)
    got, ckpt = _history(out)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 4  # 16 photos / global batch 8, two epochs
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want[:2]), rtol=1e-4, atol=1e-5)
    assert stdout.count("epoch=2 step=4") == 1  # rank 0 alone reports
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert [f for f in files if not f.startswith("tb/")] == [
        "best.pt", "best.safetensors", "config.yaml", "last.pt", "samples/epoch001.png", "samples/epoch002.png"]
    assert len([f for f in files if f.startswith("tb/")]) == 1  # one TensorBoard writer
    assert set(ckpt["state_dict"]) == set(torch.load(single / "last.pt", weights_only=True)["state_dict"])

    # resume with two processes, and the same checkpoint with one: both continue the curve
    shutil.copytree(out, tmp_path / "ddp_then_single")
    stdout = _torchrun(tmp_path, recipe, out, "--epochs", "3", "--resume")
    assert stdout.count("resumed from") == 1
    got, ckpt = _history(out)
    assert ckpt["epoch"] == 3 and ckpt["step"] == 6
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-4, atol=1e-5)

    train(TrainConfig(**{**settings, "epochs": 3, "batch_size": 8, "out_dir": str(tmp_path / "ddp_then_single")}),
          resume=True)
    got, _ = _history(tmp_path / "ddp_then_single")
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-4, atol=1e-5)

    # stopped mid-epoch (rank 0 alone writes last.pt) and resumed: the epoch's train loss is still the whole job's
    stopper = tmp_path / "stop_after_the_first_step.py"
    stopper.write_text(_STOP_AFTER_THE_FIRST_STEP)
    _torchrun(tmp_path, recipe, tmp_path / "stopped", entry=(str(stopper),), code=130)
    assert torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)["epoch_step"] == 1
    _torchrun(tmp_path, recipe, tmp_path / "stopped", "--resume")
    got, _ = _history(tmp_path / "stopped")
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want[:2]), rtol=1e-4, atol=1e-5)


def test_torchrun_counts_a_bad_file_once_when_both_ranks_drew_it(tmp_path):
    """Each rank warns about the files it drew; the closing count is of distinct files, as in one process."""
    _photos(tmp_path / "train", 5, 0)
    (tmp_path / "train" / "zz.jpg").write_text("not a photo")
    _photos(tmp_path / "val", 1, 100)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(dict(model="alpha", data=[str(tmp_path / "train")], size=16, epochs=4,
                                          val_data=[str(tmp_path / "val")], num_workers=0, samples=1)))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "colorize.cli", "train", "--recipe", str(recipe), "--batch-size", "1",
                           "--out", str(tmp_path / "run")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLORIZE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("zz.jpg") == 2  # drawn by both ranks over the epochs
    assert "1 unreadable image(s) skipped" in proc.stdout
