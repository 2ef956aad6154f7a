import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from colorize.checkpoint import load_checkpoint, load_model
from colorize.color import gray_rgb_from_l, rgb_to_l
from colorize.pipeline import Colorizer
from colorize.train import TrainConfig, fit, get_lr, setup, train
from helpers import make_photo

REPO = Path(__file__).resolve().parents[1]


def _cfg(data: Path, out_dir: Path, **overrides) -> TrainConfig:
    """A tiny CPU run over ``data``: a few steps per epoch, one thread (the tests share the CPU)."""
    base = dict(model="alpha", data=[str(data)], out_dir=str(out_dir), size=32, batch_size=4, epoch_images=8,
                epochs=1, warmup_steps=2, num_workers=0, threads=1, device="cpu", samples=2, prior_images=8)
    return TrainConfig(**{**base, **overrides})


def _leftover_temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("model, size", [("alpha", 32), ("unet_lite0", 64)])
def test_smoke_run_writes_every_artifact(photo_dir, tmp_path, model, size):
    out = tmp_path / "run"
    cfg = _cfg(photo_dir, out, model=model, size=size, epochs=1)
    run = setup(cfg)
    metrics = fit(run)
    assert metrics["epoch"] == 1 and metrics["step"] == cfg.epoch_images // cfg.batch_size
    assert np.isfinite([metrics["train_loss"], metrics["val_loss"], metrics["val_psnr"]]).all()
    for name in ("best.pt", "last.pt", "best.safetensors", "config.yaml"):
        assert (out / name).is_file(), name
    with Image.open(out / "samples" / "epoch001.png") as grid:  # gray | predicted | truth per row
        assert grid.size == (3 * size, min(cfg.samples, len(run.val_set)) * size)
    assert not _leftover_temp_files(out)
    assert TrainConfig.from_yaml(out / "config.yaml") == cfg  # the run's recipe, written out

    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["model"] == model and ckpt["epoch"] == 1 and ckpt["config"] == asdict(cfg)
    shipped = load_model(out / "best.safetensors")
    assert shipped.model_name == model
    if model == "unet_lite0":  # classification path: the rebalancing prior was estimated and saved
        weights = shipped.bins.rebalance
        assert not torch.allclose(weights, torch.ones_like(weights))


def test_snapshots_every_nth_epoch_and_the_last(photo_dir, tmp_path):
    from safetensors import safe_open

    out = tmp_path / "run"
    cfg = _cfg(photo_dir, out, epochs=3, snapshot_every=2)
    fit(setup(cfg))
    assert sorted(p.name for p in out.glob("epoch*.safetensors")) == ["epoch002.safetensors", "epoch003.safetensors"]
    with safe_open(str(out / "epoch003.safetensors"), "pt") as f:  # the learning curve's x axis
        assert f.metadata()["photos_seen"] == str(3 * cfg.epoch_images)
    with safe_open(str(out / "best.safetensors"), "pt") as f:  # the best epoch's file says which epoch it is
        meta = f.metadata()
        assert meta["photos_seen"] == str(int(meta["epoch"]) * cfg.epoch_images)


def _history(run_dir: Path) -> list[dict]:
    """Per-epoch metrics without the wall-clock time."""
    return [{k: v for k, v in m.items() if k != "seconds"} for m in load_checkpoint(run_dir / "last.pt")["history"]]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(photo_dir, tmp_path, num_workers, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(_cfg(photo_dir, straight, epochs=2, num_workers=num_workers))
    train(_cfg(photo_dir, resumed, epochs=1, num_workers=num_workers))
    first_half = load_checkpoint(resumed / "last.pt")["state_dict"]
    capsys.readouterr()
    train(_cfg(photo_dir, resumed, epochs=2, num_workers=num_workers), resume=True)
    printed = capsys.readouterr().out
    assert "resumed from" in printed and "epoch=1 " not in printed and "epoch=2 " in printed  # one more epoch only

    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["step"] == b["step"] == 2 * 8 // 4
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k], b["state_dict"][k]), k
    assert not all(torch.equal(first_half[k], b["state_dict"][k]) for k in first_half)  # it did train on
    ha, hb = _history(straight), _history(resumed)
    assert len(ha) == 2 and [m["epoch"] for m in hb] == [1, 2]
    for ma, mb in zip(ha, hb):
        assert ma.keys() == mb.keys()
        assert all(ma[k] == pytest.approx(mb[k], rel=1e-5) for k in ma)


def test_resume_without_checkpoint_starts_fresh(photo_dir, tmp_path, capsys):
    run = setup(_cfg(photo_dir, tmp_path / "new"), resume=True)
    assert run.epoch == 0 and run.step == 0 and "starting fresh" in capsys.readouterr().out


def _worker_that_quiets_late(ready) -> None:
    time.sleep(0.3)  # a worker starting slowly (a loaded machine): its signal handlers are not set yet
    from colorize.train import _quiet_worker

    _quiet_worker()
    ready.set()
    time.sleep(0.3)


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask") or sys.platform == "win32", reason="POSIX signals")
def test_a_stop_signal_while_loader_workers_start_does_not_kill_them():
    """A shutdown signals the whole process group: one landing between a loader worker's fork and its
    _quiet_worker used to kill that worker, and the loader then ended the run with a traceback."""
    import multiprocessing

    from colorize.train import _holding_stop

    ctx = multiprocessing.get_context("fork")  # as DataLoader's workers start on Linux
    ready = ctx.Event()
    with _holding_stop(forking=True):
        worker = ctx.Process(target=_worker_that_quiets_late, args=(ready,))
        worker.start()
    os.kill(worker.pid, signal.SIGTERM)  # before it has set its handlers
    worker.join(10)
    assert worker.exitcode == 0 and ready.is_set()


@pytest.mark.parametrize("sig, group, workers", [(signal.SIGKILL, False, 0), (signal.SIGTERM, False, 0),
                                                  (signal.SIGTERM, True, 1)])
def test_killed_run_resumes_to_the_end(photo_dir, tmp_path, sig, group, workers):
    """Killed hard (the run's last checkpoint is all there is) or stopped by SIGTERM, as a scheduler or a
    shutdown does (a clean stop: a one-line message, no traceback), the run resumes to the same end. A
    shutdown (systemd, `pkill -f`) signals the data-loading worker processes too: still a clean stop."""
    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    epochs = 5
    cfg = _cfg(photo_dir, out, epochs=epochs, num_workers=workers)
    recipe.write_text(yaml.safe_dump(asdict(cfg)))
    command = [sys.executable, "-m", "colorize.cli", "train", "--recipe", str(recipe)]

    log = tmp_path / "first_run.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=group)
    deadline = time.monotonic() + 120
    try:
        while not (out / "last.pt").exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
        assert proc.poll() is None, "the run finished before it could be killed; make epochs longer"
        if group:
            os.killpg(proc.pid, sig)  # the run and its loader workers alike
        else:
            proc.send_signal(sig)
    finally:
        proc.wait(timeout=30)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        text = log.read_text()
        assert proc.returncode == 130 and "continue with --resume" in text and "Traceback" not in text, text
    killed_at = load_checkpoint(out / "last.pt")["epoch"]
    assert 1 <= killed_at < epochs

    res = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"resumed from {out / 'last.pt'} at epoch {killed_at}" in res.stdout
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == epochs and ckpt["step"] == epochs * cfg.epoch_images // cfg.batch_size
    assert [m["epoch"] for m in ckpt["history"]] == list(range(1, epochs + 1))


def test_alpha_demo_learns_the_colors_of_one_photo(tmp_path):
    """``colorize train --recipe alpha --image photo.png``: afterwards the net gives the photo's colors back."""
    photo = make_photo(64, 64, seed=5)
    photo.save(tmp_path / "photo.png")
    cfg = TrainConfig.from_yaml(REPO / "configs" / "alpha.yaml", image=str(tmp_path / "photo.png"),
                                out_dir=str(tmp_path / "alpha"), size=64, epochs=3, threads=1)
    assert cfg.model == "alpha" and cfg.batch_size == 1 and cfg.epoch_images == 100  # the recipe itself
    train(cfg)

    def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(10 * torch.log10(1 / (a - b).pow(2).mean()))

    truth = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)
    gray = gray_rgb_from_l(rgb_to_l(truth))
    recolored = Colorizer(tmp_path / "alpha" / "best.safetensors", size=64)(truth)
    assert psnr(recolored, truth) > psnr(gray, truth) + 8.0  # dB; about 10-11 dB in practice


def test_config_validation():
    for kwargs, pattern in [({"model": "gamma"}, "unknown model 'gamma'; choose from: .*alpha"),
                            ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
                            ({"loss": "l1"}, "unknown loss 'l1'"),
                            ({"size": 0}, "size"), ({"size": 100}, "size"), ({"size": -64}, "size"),
                            ({"batch_size": 0}, "batch_size"), ({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"),
                            ({"val_fraction": 1.0}, "val_fraction"), ({"amp": "fp8"}, "amp"),
                            ({"crop_scale": [0.8, 0.5]}, "crop_scale"), ({"crop_scale": [0.0, 1.0]}, "crop_scale"),
                            ({"crop_scale": [0.5]}, "crop_scale"), ({"init_exclude": ["encoder."]}, "init_weights"),
                            # these were a cryptic torch error or a traceback
                            ({"epoch_images": -5}, "epoch_images must be >= 0"), ({"threads": -2}, "threads"),
                            ({"num_workers": -1}, "num_workers"), ({"max_minutes": -1}, "max_minutes")]:
        with pytest.raises(ValueError, match=pattern):
            TrainConfig(**kwargs)
    assert TrainConfig(data="photos").data == ["photos"]  # a single folder is accepted as a string
    assert TrainConfig(crop_scale=[0.6, 1]).crop_scale == (0.6, 1.0)  # a YAML list becomes the crop's area range


def test_yaml_recipes_load_and_unknown_keys_fail(tmp_path):
    for recipe in sorted((REPO / "configs").glob("*.yaml")):
        cfg = TrainConfig.from_yaml(recipe)
        assert cfg.model == yaml.safe_load(recipe.read_text())["model"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: alpha\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_yaml(bad)
    # None overrides keep the recipe's value; others replace it
    alpha = REPO / "configs" / "alpha.yaml"
    cfg = TrainConfig.from_yaml(alpha, size=None, epochs=2)
    assert cfg.size == yaml.safe_load(alpha.read_text())["size"] and cfg.epochs == 2
    round_trip = tmp_path / "cfg.yaml"
    cfg = TrainConfig(model="beta", size=64, model_kwargs={"width": 16})
    cfg.to_yaml(round_trip)
    assert TrainConfig.from_yaml(round_trip) == cfg


def test_recipes_warm_start_from_the_shipped_weights_in_any_folder(tmp_path, monkeypatch):
    """A recipe that continues the shipped weights names them by model name, found wherever colorize is installed:
    as a path (weights/unet_lite0.safetensors) they existed only in a checkout's top folder, so `colorize train
    --recipe unet_lite0_semantic --data my_photos/` anywhere else failed with 'model file not found'."""
    from colorize.shipped import weight_file

    monkeypatch.chdir(tmp_path)
    for recipe in sorted((REPO / "configs").glob("*.yaml")):
        init = TrainConfig.from_yaml(recipe).init_weights
        if init and not init.startswith("runs/"):  # runs/: the stage before, trained by another recipe of the set
            assert weight_file(init).is_file(), (recipe.name, init)


def test_get_lr_warmup_and_plateau():
    cfg = TrainConfig(lr=0.01, warmup_steps=4)
    lrs = [get_lr(step, cfg) for step in range(8)]
    assert lrs[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])  # linear warmup, then the base rate
    assert lrs[4:] == pytest.approx([0.01] * 4)
    assert get_lr(100, cfg, plateau_scale=0.25) == pytest.approx(0.0025)
    assert get_lr(0, TrainConfig(lr=0.01, warmup_steps=0)) == pytest.approx(0.01)


def test_get_lr_decays_over_the_last_epochs():
    cfg = TrainConfig(lr=0.01, warmup_steps=0, epochs=4, decay_epochs=2, min_lr_scale=0.01)
    lrs = [get_lr(step, cfg, steps_per_epoch=10) for step in range(50)]
    assert lrs[:21] == pytest.approx([0.01] * 21)  # stable until the decay starts at epoch 3
    assert lrs[30] == pytest.approx(0.01 * (0.01 + 0.99 * 0.5))  # half way: the cosine's midpoint
    assert lrs[40:] == pytest.approx([0.0001] * 10)  # lr x min_lr_scale at the end, and after
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert get_lr(30, cfg) == pytest.approx(0.01)  # without the epoch length there is nothing to decay over
    with pytest.raises(ValueError, match="decay_epochs"):
        TrainConfig(epochs=3, decay_epochs=4)


def test_fit_decays_the_lr_and_resumes_on_the_same_schedule(photo_dir, tmp_path):
    cfg = _cfg(photo_dir, tmp_path / "run", epochs=4, decay_epochs=2, warmup_steps=0, max_minutes=1e-6)
    run = setup(cfg)
    fit(run)  # the time limit stops it after one epoch
    assert run.epoch == 1
    resumed = setup(cfg, resume=True)
    fit(resumed)
    resumed = setup(_cfg(photo_dir, tmp_path / "run", epochs=4, decay_epochs=2, warmup_steps=0), resume=True)
    fit(resumed)
    lrs = [m["lr"] for m in resumed.history]
    steps = cfg.epoch_images // cfg.batch_size
    assert len(lrs) == 4
    assert lrs[:2] == pytest.approx([cfg.lr] * 2)
    assert lrs[3] < lrs[2] < cfg.lr
    assert lrs[3] == pytest.approx(get_lr(4 * steps - 1, cfg, steps_per_epoch=steps))


def test_fit_applies_warmup_to_the_optimizer(photo_dir, tmp_path):
    cfg = _cfg(photo_dir, tmp_path / "run", warmup_steps=100)
    run = setup(cfg)
    fit(run)
    last_step = run.step - 1
    for group in run.optimizer.param_groups:
        assert group["lr"] == pytest.approx(get_lr(last_step, cfg) * group["lr_scale"])


@pytest.mark.parametrize("num_workers", [0, 1])
def test_mid_epoch_checkpoint_resumes_exactly(photo_dir, tmp_path, num_workers, monkeypatch, capsys):
    """A run killed between epochs' ends loses minutes, not the epoch, and resumes to the same weights."""
    import colorize.train as train_module

    over = dict(epochs=2, epoch_images=16, num_workers=num_workers, aging=0.5)  # 4 batches an epoch; aged inputs
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(_cfg(photo_dir, straight, **over))

    original, saves = train_module._checkpoint, []

    def checkpoint_then_die(run, path):
        original(run, path)
        saves.append(run.epoch_step)
        if run.epoch == 1 and run.epoch_step == 2:  # mid-epoch, just after a save: as a kill -9 there
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_checkpoint", checkpoint_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(photo_dir, resumed, checkpoint_minutes=1e-9, **over))  # a checkpoint after every step
    monkeypatch.undo()
    ckpt = load_checkpoint(resumed / "last.pt")
    assert (ckpt["epoch"], ckpt["epoch_step"], ckpt["step"]) == (1, 2, 6) and 1 in saves
    (resumed / "samples" / ".epoch002.png.a1b2c3d4.tmp").write_bytes(b"half")  # as a kill leaves it
    old = time.time() - 3600
    os.utime(resumed / "samples" / ".epoch002.png.a1b2c3d4.tmp", (old, old))
    capsys.readouterr()
    train(_cfg(photo_dir, resumed, **over), resume=True)
    assert "(batch 2 of epoch 2)" in capsys.readouterr().out
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["step"] == b["step"] == 8 and b["epoch_step"] == 0
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k], b["state_dict"][k], atol=1e-6), k
    ha, hb = _history(straight), _history(resumed)
    assert ha[-1]["train_loss"] == pytest.approx(hb[-1]["train_loss"], rel=1e-5)
    assert not _leftover_temp_files(resumed)


def test_warm_start_continues_from_shipped_weights_with_a_fresh_optimizer(photo_dir, tmp_path):
    """--init: the run starts from the weight file's tensors (rebalancing weights included, a folded prior
    correction taken back out), at step 0 with warmup; other architectures are refused by name."""
    from colorize.checkpoint import save_weights
    from colorize.models.base import correct_prior

    first = setup(_cfg(photo_dir, tmp_path / "first", model="unet_lite0", size=64))
    fit(first)
    plain = {k: v.clone() for k, v in first.model.state_dict().items()}
    shipped = tmp_path / "shipped.safetensors"
    correct_prior(first.model, 0.3)  # as `colorize export --prior-correction 0.3` does
    save_weights(shipped, first.model, metadata={"prior_correction": "0.3", "temperature": "0.5"})

    run = setup(_cfg(photo_dir, tmp_path / "warm", model="unet_lite0", size=64, init_weights=str(shipped)))
    assert run.step == 0 and not run.optimizer.state  # a fresh optimizer
    for k, v in run.model.state_dict().items():
        assert torch.allclose(v, plain[k], atol=1e-6), k  # the trained tensors, correction undone
    assert get_lr(0, run.cfg) < run.cfg.lr  # warmup again

    with pytest.raises(ValueError, match="shipped.safetensors"):
        setup(_cfg(photo_dir, tmp_path / "other", model="alpha", init_weights=str(shipped)))


def test_a_warm_started_run_decodes_as_the_weights_it_started_from(photo_dir, tmp_path):
    """A run fine-tuned from tuned weights (the shipped ones: a prior correction, a temperature, a working size)
    writes files that decode alike, on load and through `colorize export` without options; they used to decode at
    the defaults of a model that records nothing (no correction, T 0.38) unless the user re-typed the options, and an
    export given them again on a corrected file corrected it twice."""
    from colorize.checkpoint import save_weights
    from colorize.cli import main
    from colorize.models.base import correct_prior

    first = setup(_cfg(photo_dir, tmp_path / "first", model="unet_lite0", size=64))
    fit(first)
    shipped = tmp_path / "shipped.safetensors"
    correct_prior(first.model, 0.3)
    save_weights(shipped, first.model, metadata={"prior_correction": "0.3", "temperature": "0.5",
                                                 "working_size": "96"})
    run = setup(_cfg(photo_dir, tmp_path / "warm", model="unet_lite0", size=64, init_weights=str(shipped),
                     snapshot_every=1))
    fit(run)
    log_w = run.model.bins.rebalance.log()
    raw_bias = run.model.head.proj.bias.detach().clone()  # the run trains without the correction
    for name in ("best.safetensors", "best.pt", "epoch001.safetensors"):
        model = load_model(tmp_path / "warm" / name)
        assert (model.prior_correction, model.default_temperature, model.default_size) == (0.3, 0.5, 96), name
        assert torch.allclose(model.head.proj.bias, raw_bias - 0.3 * log_w, atol=1e-6), name
    resumed = setup(_cfg(photo_dir, tmp_path / "warm", model="unet_lite0", size=64, init_weights=str(shipped),
                         snapshot_every=1, epochs=2), resume=True)
    assert resumed.decoding == run.decoding  # kept across a resume, from the checkpoint
    for options, total in (([], 0.3), (["--prior-correction", "0.3"], 0.3), (["--prior-correction", "0.5"], 0.5)):
        out = tmp_path / f"export{len(options)}{total}.safetensors"
        assert main(["export", str(tmp_path / "warm" / "best.pt"), "-o", str(out), *options]) == 0
        exported = load_model(out)
        assert exported.prior_correction == pytest.approx(total) and exported.default_temperature == 0.5
        assert torch.allclose(exported.head.proj.bias, raw_bias - total * log_w, atol=1e-5), options
    rewarm = setup(_cfg(photo_dir, tmp_path / "rewarm", model="unet_lite0", size=64,
                        init_weights=str(tmp_path / "warm" / "best.safetensors")))
    assert torch.allclose(rewarm.model.head.proj.bias, raw_bias, atol=1e-6)  # a run from a run: raw weights again


def test_warm_start_into_another_rebalancing_keeps_the_learnt_color_probabilities(photo_dir, tmp_path):
    """rebalance_mix on a warm start: the prior is estimated again with that mix and the head moved to the new
    weights, so the net predicts the same colors' probabilities under the new tilt; without it, the file's own
    weights; a fresh run takes the mix too."""
    from colorize.checkpoint import save_weights

    first = setup(_cfg(photo_dir, tmp_path / "first", model="unet_lite0", size=64))
    fit(first)
    shipped = tmp_path / "shipped.safetensors"
    save_weights(shipped, first.model)
    w_file = first.model.bins.rebalance.clone()
    x = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    first.model.eval()
    with torch.no_grad():
        p_file = torch.softmax(first.model(x) - w_file.view(1, -1, 1, 1).log(), dim=1)

    same = setup(_cfg(photo_dir, tmp_path / "same", model="unet_lite0", size=64, init_weights=str(shipped)))
    assert torch.equal(same.model.bins.rebalance, w_file)
    run = setup(_cfg(photo_dir, tmp_path / "mild", model="unet_lite0", size=64, init_weights=str(shipped),
                     rebalance_mix=0.9))
    w_new = run.model.bins.rebalance
    assert w_new.max() / w_new.min() < w_file.max() / w_file.min()
    run.model.eval()
    with torch.no_grad():
        p_new = torch.softmax(run.model(x) - w_new.view(1, -1, 1, 1).log(), dim=1)
    assert torch.allclose(p_file, p_new, atol=1e-5)
    fresh = setup(_cfg(photo_dir, tmp_path / "plain", model="unet_lite0", size=64, rebalance_mix=1.0))
    assert torch.allclose(fresh.model.bins.rebalance, torch.ones_like(w_file))
    with pytest.raises(ValueError, match="rebalance_mix"):
        _cfg(photo_dir, tmp_path / "bad", rebalance_mix=0.0)


def test_warm_start_can_keep_the_models_own_encoder(photo_dir, tmp_path):
    """init_exclude: tensors under those prefixes keep the new model's initialization (its pretrained
    backbone), the rest come from the weight file; a prefix that matches nothing is refused."""
    from colorize.checkpoint import save_weights

    first = setup(_cfg(photo_dir, tmp_path / "first", model="unet_lite0", size=64))
    fit(first)
    shipped = tmp_path / "shipped.safetensors"
    save_weights(shipped, first.model)
    trained = first.model.state_dict()
    fresh = setup(_cfg(photo_dir, tmp_path / "fresh", model="unet_lite0", size=64, seed=3)).model.state_dict()

    run = setup(_cfg(photo_dir, tmp_path / "warm", model="unet_lite0", size=64, seed=3, init_weights=str(shipped),
                     init_exclude=["encoder."]))
    state = run.model.state_dict()
    encoder = [k for k in state if k.startswith("encoder.")]
    assert encoder and len(encoder) < len(state)
    for k, v in state.items():
        assert torch.equal(v, fresh[k] if k.startswith("encoder.") else trained[k]), k
    assert any(not torch.equal(trained[k], fresh[k]) for k in encoder)  # the two sources differ: the test can fail

    with pytest.raises(ValueError, match="matches no tensor"):
        setup(_cfg(photo_dir, tmp_path / "typo", model="unet_lite0", size=64, init_weights=str(shipped),
                   init_exclude=["encoderr."]))


def test_warm_start_can_add_a_module_the_file_does_not_have(photo_dir, tmp_path):
    """A model that adds a module (the ImageNet branch) warm-starts from weights without it when init_exclude
    names it: the module keeps its own initialization, everything else is the file's, and since the branch's
    FiLM starts at zero the new model computes what the file's model computed. Without init_exclude, refused."""
    from colorize.checkpoint import load_model, save_weights

    first = setup(_cfg(photo_dir, tmp_path / "first", model="unet_lite0", size=64, model_kwargs={"context": True}))
    fit(first)
    shipped = tmp_path / "shipped.safetensors"
    save_weights(shipped, first.model)
    kwargs = {"context": True, "imagenet_context": True}
    run = setup(_cfg(photo_dir, tmp_path / "warm", model="unet_lite0", size=64, model_kwargs=kwargs,
                     init_weights=str(shipped), init_exclude=["imagenet_context."]))
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(run.model.eval()(x), load_model(shipped).eval()(x), atol=1e-5)  # channels_last

    with pytest.raises(ValueError, match="other options"):
        setup(_cfg(photo_dir, tmp_path / "refused", model="unet_lite0", size=64, model_kwargs=kwargs,
                   init_weights=str(shipped)))


def test_training_progress_without_a_terminal_is_plain_lines(photo_dir, tmp_path, monkeypatch, capsys):
    """In a log or a pipe, training prints whole progress lines (no carriage-return bar)."""
    import colorize.train as train_mod

    monkeypatch.delenv("COLORIZE_NO_PROGRESS", raising=False)
    monkeypatch.setattr(train_mod, "PROGRESS_SECONDS", 0.0)  # a line per batch
    fit(setup(_cfg(photo_dir, tmp_path / "run", epoch_images=8, batch_size=4)))
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "epoch 1/1: 1/2 batches" in err and "epoch 1/1: 2/2 batches" in err


def test_train_cli_names_a_bad_init_file_without_a_traceback(photo_dir, tmp_path, capsys):
    from colorize.checkpoint import save_weights
    from colorize.cli import main
    from colorize.models import create_model

    weights = tmp_path / "alpha.safetensors"
    save_weights(weights, create_model("alpha"))
    code = main(["train", "--model", "unet_lite0", "--data", str(photo_dir), "--size", "64", "--epochs", "1",
                 "--epoch-images", "4", "--batch-size", "2", "--num-workers", "0", "--threads", "1",
                 "--out", str(tmp_path / "run"), "--init", str(weights)])
    out = capsys.readouterr().err
    assert code == 2 and "alpha.safetensors" in out and "Traceback" not in out


def test_cpu_decoder_precision_is_asked_for(monkeypatch):
    """On the CPU only ``amp: bf16`` trains the U-Net decoder in bfloat16, with or without AMX (``auto`` keeps the
    validated float32: model card, stage 13); CUDA keeps its own autocast (``amp_dtype``)."""
    from colorize.train import cpu_decoder_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for amx in (False, True):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx, raising=False)
        assert cpu_decoder_dtype("bf16", cpu) == torch.bfloat16
        assert all(cpu_decoder_dtype(mode, cpu) is None for mode in ("auto", "off", "fp16"))
        assert all(cpu_decoder_dtype(mode, cuda) is None for mode in ("auto", "bf16", "fp16", "off"))


def test_training_with_a_bfloat16_decoder_ships_float32_weights(photo_dir, tmp_path, capsys):
    """A run with the decoder in bfloat16 says so, trains to finite losses, and its weight file is an ordinary
    float32 one that loads for inference without the training-time setting."""
    run = setup(_cfg(photo_dir, tmp_path / "bf16", model="unet_lite0", size=64, amp="bf16"))
    assert run.model.decoder_dtype == torch.bfloat16
    assert "decoder in bfloat16 on the CPU" in capsys.readouterr().out
    metrics = fit(run)
    assert np.isfinite([metrics["train_loss"], metrics["val_loss"], metrics["val_psnr"]]).all()
    shipped = load_model(tmp_path / "bf16" / "best.safetensors")
    assert shipped.decoder_dtype is None
    assert all(t.dtype == torch.float32 for t in shipped.state_dict().values() if t.is_floating_point())
    for amp in ("auto", "off"):
        assert setup(_cfg(photo_dir, tmp_path / amp, model="unet_lite0", size=64, amp=amp)).model.decoder_dtype is None


def test_train_cli_data_without_val_data_splits_it_not_the_recipes_val(photo_dir, tmp_path, capsys):
    """``--data`` without ``--val-data`` validates on a split of --data (as --help says), never on the recipe's own
    validation folder, which goes with the recipe's data (and is not on a hobbyist's machine)."""
    from colorize.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(asdict(_cfg(tmp_path / "elsewhere", tmp_path / "unused",
                                                 val_data=[str(tmp_path / "elsewhere_val")]))))
    out = tmp_path / "run"
    code = main(["train", "--recipe", str(recipe), "--data", str(photo_dir), "--out", str(out)])
    assert code == 0, capsys.readouterr()
    assert load_checkpoint(out / "last.pt")["config"]["val_data"] == []
    assert "elsewhere_val" not in capsys.readouterr().out


@pytest.mark.parametrize("data, expected", [("empty", "no training photos in"), ("bad", "bad/b.jpg: truncated"),
                                            ("missing", "missing: no such file or folder")])
def test_train_cli_names_data_with_no_usable_photo(tmp_path, capsys, data, expected):
    """An empty folder (once taken for tar shards), one whose photos are all unreadable (a traceback from the
    loader) or a path that is not there: a one-line error naming it, no traceback, no advice to --resume."""
    from colorize.cli import main

    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "bad" / name).write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    code = main(["train", "--model", "alpha", "--data", str(tmp_path / data), "--size", "32", "--epochs", "1",
                 "--num-workers", "0", "--threads", "1", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().err
    assert code == 2 and expected in out and "resume" not in out and "shard" not in out, out
    assert not (tmp_path / "run" / "last.pt").exists()


def test_train_cli_leaves_out_notes_about_colorizing_a_photo(photo_dir, tmp_path, recwarn):
    """A multi-page TIFF's note ('only the first is colorized', about colorizing) came back at every epoch."""
    from colorize.cli import main
    from colorize.io import ImageNote

    make_photo(64, 64, seed=1).save(photo_dir / "pages.tif", save_all=True, append_images=[make_photo(64, 64)])
    assert main(["train", "--model", "alpha", "--data", str(photo_dir), "--size", "32", "--epochs", "2",
                 "--num-workers", "0", "--threads", "1", "--out", str(tmp_path / "run")]) == 0
    assert not [w for w in recwarn if issubclass(w.category, ImageNote)]


def test_train_cli_names_a_validation_folder_with_no_photo(photo_dir, tmp_path, capsys):
    """--val-data that holds no photo is an error, not a silent validation on training photos."""
    from colorize.cli import main

    (tmp_path / "val").mkdir()
    code = main(["train", "--model", "alpha", "--data", str(photo_dir), "--val-data", str(tmp_path / "val"),
                 "--size", "32", "--epochs", "1", "--num-workers", "0", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().err
    assert code == 2 and "no validation photos in" in out and str(tmp_path / "val") in out, out


@pytest.mark.parametrize("change", [dict(model="beta"), dict(optimizer="rmsprop")])
def test_resume_with_another_recipe_names_the_runs_own(photo_dir, tmp_path, change):
    """--resume given another model or optimizer than the run's (a forgotten --recipe): an error naming the
    checkpoint and the run's config.yaml, before anything is written (it was a traceback, at once or after the
    first step, with the run's config.yaml already overwritten)."""
    out = tmp_path / "run"
    fit(setup(_cfg(photo_dir, out)))
    recipe = (out / "config.yaml").read_text()
    with pytest.raises(ValueError, match="config.yaml") as e:
        setup(_cfg(photo_dir, out, epochs=2, **change), resume=True)
    assert str(out / "last.pt") in str(e.value)
    assert (out / "config.yaml").read_text() == recipe


def test_train_cli_model_over_a_recipe_for_another_names_the_options(photo_dir, tmp_path, capsys):
    """--model over a recipe whose model_kwargs that model does not take: an error naming them (it was a traceback)."""
    from colorize.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model": "unet_lite0", "model_kwargs": {"context": True}}))
    code = main(["train", "--recipe", str(recipe), "--model", "alpha", "--data", str(photo_dir),
                 "--out", str(tmp_path / "run")])
    out = capsys.readouterr().err
    assert code == 2 and "'context'" in out and "alpha" in out, out


@pytest.mark.parametrize("stop_in", ["color_loss", "validate"])
def test_stop_saves_the_run_so_far_and_resumes_exactly(photo_dir, tmp_path, monkeypatch, capsys, stop_in):
    """Ctrl-C or kill (request_stop) in the first epoch, long before the first periodic checkpoint, or while it
    validates: the run stops after the step in progress and last.pt holds it (there was none, and the message
    said there was); --resume ends as the uninterrupted run."""
    import colorize.train as train_module

    over = dict(epochs=2, epoch_images=16)  # 4 batches an epoch
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(_cfg(photo_dir, straight, **over))

    original, calls = getattr(train_module, stop_in), []

    def stop_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == (3 if stop_in == "color_loss" else 1):
            train_module.request_stop()  # as the signal handler does; inside a step it only sets the flag
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, stop_in, stop_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(photo_dir, stopped, **over))  # checkpoint_minutes: 5, so no periodic checkpoint yet
    monkeypatch.undo()
    ckpt = load_checkpoint(stopped / "last.pt")
    assert (ckpt["epoch"], ckpt["epoch_step"]) == ((0, 3) if stop_in == "color_loss" else (0, 4))
    train(_cfg(photo_dir, stopped, **over), resume=True)
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(stopped / "last.pt")
    assert a["step"] == b["step"] == 8
    for k in a["state_dict"]:
        assert torch.allclose(a["state_dict"][k], b["state_dict"][k], atol=1e-6), k
    assert [m["train_loss"] for m in _history(straight)] == pytest.approx([m["train_loss"] for m in _history(stopped)])


def test_train_cli_epochs_and_size_fit_the_recipes_schedule(photo_dir, tmp_path, capsys):
    """--epochs shorter than the recipe's decay_epochs was refused with no option to change it (the shipped recipe
    decays over 8: a 1-epoch try was impossible); --size was ignored for the recipe's early epochs (all of a short
    run). Now the decay spans the short run, --size holds from the first epoch, and a note says so."""
    from colorize.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(asdict(_cfg(photo_dir, tmp_path / "unused", epochs=4, decay_epochs=3,
                                                 early_epochs=2, early_size=48, size=32))))
    out = tmp_path / "run"
    code = main(["train", "--recipe", str(recipe), "--epochs", "1", "--size", "40", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    config = load_checkpoint(out / "last.pt")["config"]
    assert (config["epochs"], config["decay_epochs"], config["size"], config["early_epochs"]) == (1, 1, 40, 0)
    assert "over all 1" in err and "--size 40 from the first epoch" in err


def test_train_cli_option_completes_a_recipe_that_is_not_valid_alone(photo_dir, tmp_path, capsys):
    """A recipe is checked with the command's options in it, not alone first: a size only --size makes valid trains."""
    from colorize.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**asdict(_cfg(photo_dir, tmp_path / "unused", epochs=1)), "size": 30}))
    assert main(["train", "--recipe", str(recipe), "--size", "32", "--out", str(tmp_path / "run")]) == 0, \
        capsys.readouterr().err
    assert load_checkpoint(tmp_path / "run" / "last.pt")["config"]["size"] == 32


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_cli_device_that_is_not_there_is_named(photo_dir, tmp_path, capsys):
    """--device cuda on a machine without a GPU: an error naming the device (it was torch's traceback)."""
    from colorize.cli import main

    code = main(["train", "--model", "alpha", "--data", str(photo_dir), "--device", "cuda", "--size", "32",
                 "--epochs", "1", "--num-workers", "0", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().err
    assert code == 2 and "device 'cuda'" in out and "--device cpu" in out, out


def test_warm_start_from_a_shipped_models_name(photo_dir, tmp_path, monkeypatch):
    """--init unet_lite0: the shipped weights wherever the package is installed (the README's
    weights/unet_lite0.safetensors exists only in a checkout of the repository); an ONNX export is named."""
    from colorize import shipped
    from colorize.checkpoint import save_weights
    from colorize.models import create_model

    source = create_model("alpha")
    save_weights(tmp_path / "tiny.safetensors", source)
    monkeypatch.setitem(shipped.SHIPPED, "tiny_shipped", shipped.ShippedWeights("tiny.safetensors", None, 32, "test",
                                                                              "none.md"))
    monkeypatch.setenv("COLORIZE_WEIGHTS", str(tmp_path))
    run = setup(_cfg(photo_dir, tmp_path / "warm", init_weights="tiny_shipped"))
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, source.state_dict()[k]), k
    (tmp_path / "tiny.onnx").write_bytes(b"onnx")
    with pytest.raises(ValueError, match="tiny.onnx: an ONNX export"):
        setup(_cfg(photo_dir, tmp_path / "other", init_weights=str(tmp_path / "tiny.onnx")))


@pytest.mark.parametrize("text, expected", [("model: [unclosed\n", "not a readable YAML recipe"),
                                            ("- a\n- b\n", "not a list"),
                                            ('epochs: "three"\n', "epochs must be int, got 'three'"),
                                            ('augment: "no"\n', "augment must be bool")])
def test_train_cli_names_what_is_wrong_in_a_recipe(photo_dir, tmp_path, capsys, text, expected):
    """Broken YAML was a traceback, a list was read as unknown keys, and a value of the wrong type failed deep
    inside with "'<=' not supported between 'str' and 'int'" (or was taken: augment "no" is true)."""
    from colorize.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    code = main(["train", "--recipe", str(recipe), "--data", str(photo_dir), "--out", str(tmp_path / "run")])
    out = capsys.readouterr().err
    assert code == 2 and expected in out, out


def test_a_new_run_into_a_run_folder_is_refused(photo_dir, tmp_path, capsys):
    """The command of an interrupted run given again without --resume started afresh in the same folder and, at its
    first epoch's end, wrote over the run's last.pt, best.pt and best.safetensors; now it is refused by name."""
    from colorize.cli import main

    out = tmp_path / "run"
    fit(setup(_cfg(photo_dir, out)))
    before = (out / "best.pt").read_bytes()
    code = main(["train", "--model", "alpha", "--data", str(photo_dir), "--size", "32", "--epochs", "1",
                 "--num-workers", "0", "--threads", "1", "--out", str(out)])
    printed = capsys.readouterr().err
    assert code == 2 and "--resume continues it" in printed and str(out) in printed, printed
    assert (out / "best.pt").read_bytes() == before


def test_a_run_folder_inside_the_data_is_not_trained_on(photo_dir, tmp_path):
    """--out inside --data: the run's sample grids (gray | predicted | truth) joined the photos on --resume, so
    the resumed run trained on them and no longer matched an uninterrupted one."""
    out = photo_dir / "run"
    fit(setup(_cfg(photo_dir, out)))
    assert list((out / "samples").glob("*.png"))
    resumed = setup(_cfg(photo_dir, out, epochs=2), resume=True)
    assert not any(out in p.parents for p in [*resumed.train_set.paths, *resumed.val_set.paths])


def test_an_unreadable_validation_photo_is_warned_about(photo_dir, tmp_path):
    """A broken photo in --val-data was replaced by another without a word (validated twice, named nowhere);
    it is warned about and counted as a broken training photo is."""
    val = tmp_path / "val"
    val.mkdir()
    make_photo(64, 64, seed=40).save(val / "good.jpg")
    (val / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        fit(setup(_cfg(photo_dir, tmp_path / "run", val_data=[str(val)])))


def test_only_rank_0_reports_an_interrupted_run(photo_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C on torchrun stops every rank; rank 0 saves last.pt and says so. Another rank looked for last.pt while
    rank 0 was writing it and printed 'no checkpoint to resume' beside rank 0's 'holds the run so far'."""
    import colorize.train as train_module
    from colorize.cli import main

    def stopped(cfg, resume=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train", stopped)
    argv = ["train", "--model", "alpha", "--data", str(photo_dir), "--out", str(tmp_path / "run")]
    for rank, said in (("1", ""), ("0", "interrupted before the first training step: no checkpoint to resume\n")):
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main(argv) == 130
        assert capsys.readouterr().err == said
