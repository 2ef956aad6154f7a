"""The ray engine: the local engine's inputs (folders, tar shards), outputs byte for byte, record, error
report and nothing else on the terminal; a bad model named as the local engine names it; the light engine
where the local engine picks it; a worker killed with SIGKILL mid-job; ColorizeBatch in a user's Ray Data
pipeline; the cluster recipes.

Ray tests share one local Ray on 127.0.0.1 with 2 CPUs and skip when ray is not installed. Each CLI
run on it starts new actors (a second or two each on an idle machine): runs are few and cover much.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import runpy
import shlex
import signal
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from colorize.cli import main
from colorize.commands.colorize import parser as colorize_parser
from helpers import make_photo

ROOT = Path(__file__).resolve().parents[1]
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (extra: ray)")


@pytest.fixture(scope="module")
def local_ray():
    """One private Ray for this module: 2 CPUs, loopback only; the CLI reuses it and leaves it running."""
    import ray

    from colorize.ray import connect

    assert connect(num_cpus=2)
    assert ray.cluster_resources()["CPU"] == 2
    yield ray
    ray.shutdown()


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.jpg"))}


OUR_LINES = ("done: ", "inputs: ", "  note: ", "  warning: ", "  failed: ")  # all a run prints with -q


def _only_our_lines(captured) -> None:
    """Nothing but our summary on the terminal: Ray's own logs and forwarded errors went to its log."""
    stray = [ln for ln in (captured.out + captured.err).splitlines() if not ln.startswith(OUR_LINES)]
    assert not stray, stray


def _actor_pids(name: str) -> list[int]:
    """Processes descending from this one whose title names ``name`` (Ray sets a worker's title to its actor)."""
    parents, titles = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            titles[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return [pid for pid, title in titles.items() if name in title and ours(pid)]


def test_without_ray_it_says_how_to_install(monkeypatch, photo_dir, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main([str(photo_dir), "-o", str(tmp_path / "out"), "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'colorize[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_ray_options_need_the_ray_engine(photo_dir, tmp_path, capsys):
    assert main([str(photo_dir), "-o", str(tmp_path / "out"), "--address", "auto"]) == 2
    assert "--address needs --engine ray" in capsys.readouterr().err


@needs_ray
def test_a_bad_model_is_the_local_engines_one_line(local_ray, photo_dir, tmp_path, tiny_model_file, capfd,
                                                    monkeypatch):
    """The actors load the model (the driver never does) with the local engine's check: a model that cannot be
    used is its one line naming it, exit 2, no traceback, and no photo is read or written."""
    from colorize.batch import ColorizerSpec

    monkeypatch.chdir(tmp_path)  # weight files given relative to here: the actors work elsewhere
    Path("broken.safetensors").write_bytes(tiny_model_file.read_bytes()[:1000])
    build = ColorizerSpec.build

    def run(engine: str, *args: str) -> str:
        """``colorize photos -o out ARGS -q --engine ENGINE``: exit 2; what it printed."""
        monkeypatch.setattr(ColorizerSpec, "build", build if engine == "local" else
                            lambda spec: pytest.fail("the ray engine's driver loaded the model"))
        assert main([str(photo_dir), "-o", "out", *args, "-q", "--engine", engine]) == 2
        return capfd.readouterr().err

    for model, line in [("broken.safetensors", "error: broken.safetensors: not a readable safetensors file"),
                        ("missing.safetensors", "error: model file not found: missing.safetensors")]:
        local, ray = (run(engine, "--model", model) for engine in ("local", "ray"))
        assert ray == local, (local, ray)  # the local engine's one line, exit code 2 alike
        assert ray.startswith(line) and len(ray.splitlines()) == 1 and "Traceback" not in ray
    # --confidence with a model that has no color distribution: the same check as the local engine's
    local, ray = (run(engine, "--model", str(tiny_model_file), "--confidence") for engine in ("local", "ray"))
    assert ray == local and "--confidence needs a classification (bins) model" in ray
    assert not Path("out").exists()


def _shards_with_bad_members(photos: Path, out: Path) -> Path:
    """``colorize shards`` of ``photos`` into ``out``, plus ``extra.tar``: a corrupt photo, an unsafe name."""
    assert main(["shards", str(photos), "-o", str(out), "--max-count", "2"]) == 0
    with tarfile.open(out / "extra.tar", "w") as tar:
        for name, data in [("corrupt.jpg", (photos / "g0.jpg").read_bytes()[:200]), ("../up.jpg", b"x")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


@needs_ray
def test_same_outputs_report_and_record_as_local(local_ray, photo_dir, tmp_path, tiny_model_file, capfd):
    """One run over a folder and tar shards, with bad files, bad members, a hint and --keep-color: the
    local engine's outputs byte for byte, its report line for line, and nothing else on the terminal."""
    (photo_dir / "corrupt.jpg").write_bytes((photo_dir / "p1.jpg").read_bytes()[:300])  # truncated
    (photo_dir / "sub" / "notes.png").write_text("not an image")
    grays = tmp_path / "grays"
    grays.mkdir()
    for i in range(3):  # gray photos: colorized (the color ones in photo_dir pass through with --keep-color)
        make_photo(72, 48, seed=20 + i).convert("L").save(grays / f"g{i}.jpg", quality=92)
    shards = _shards_with_bad_members(grays, tmp_path / "shards")
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps({"g1.jpg": [{"x": 20, "y": 10, "color": "#2a6fdb", "radius": 30}]}))
    common = ["--model", str(tiny_model_file), "-q", "--keep-color", "--hints", str(hints)]
    inputs = [str(photo_dir), f"{shards}/*.tar"]
    capfd.readouterr()
    assert main([*inputs, "-o", str(tmp_path / "local"), *common]) == 1
    local = capfd.readouterr()

    ray_args = [*inputs, "-o", str(tmp_path / "ray"), *common, "--engine", "ray", "--workers", "2", "--record"]
    assert main(ray_args) == 1  # the bad files fail the run, the rest are done
    out = capfd.readouterr()
    _only_our_lines(out)
    assert "done: 15," in out.out and "failed: 4" in out.out
    assert [ln for ln in out.out.splitlines() if ln.startswith("inputs: ")] == ["inputs: 3 gray, 12 color"]
    assert sorted(out.out.splitlines()[1:]) == sorted(local.out.splitlines()[1:])  # tones, notes
    assert sorted(out.err.splitlines()) == sorted(local.err.splitlines())  # failures, warnings: line for line
    failures = [ln for ln in out.err.splitlines() if ln.startswith("  failed: ")]
    for name, reason in [("photos/corrupt.jpg", "truncated or corrupt"), ("sub/notes.png", "not an image"),
                         ("extra.tar:corrupt.jpg", "truncated or corrupt"), ("extra.tar:../up.jpg", "unsafe member")]:
        assert sum(f"{name}: {reason}" in f for f in failures) == 1, (name, failures)  # reported once, not retried

    local_files, ray_files = _outputs(tmp_path / "local"), _outputs(tmp_path / "ray")
    assert len(local_files) == 15 and local_files == ray_files  # byte for byte, same names
    assert {"g0.jpg", "g1.jpg", "g2.jpg"} <= set(ray_files) and ray_files["g1.jpg"] != ray_files["g0.jpg"]
    assert ray_files["photos/p1.jpg"] == (photo_dir / "p1.jpg").read_bytes()  # in color: kept as it was

    for bad in (photo_dir / "corrupt.jpg", photo_dir / "sub" / "notes.png", shards / "extra.tar"):
        bad.unlink()
    assert main(ray_args) == 0  # a rerun: every photo left is in the record (and no Ray job is started)
    out = capfd.readouterr()
    assert "done: 0, skipped (exists, use --overwrite): 0, failed: 0, done before (record): 15" in out.out


@needs_ray
def test_the_light_engine_where_the_local_engine_picks_it(local_ray, photo_dir, tmp_path, capfd, monkeypatch):
    """``--runtime auto`` on a small job with the shipped model: the actors run the light engine, as the local
    engine does, so the files are the same byte for byte."""
    monkeypatch.delenv("COLORIZE_WEIGHTS", raising=False)
    outputs = {}
    for engine in ("local", "ray"):
        assert main([str(photo_dir), "-o", str(tmp_path / engine), "-q", "--engine", engine]) == 0
        outputs[engine] = _outputs(tmp_path / engine)
    capfd.readouterr()
    assert len(outputs["local"]) == 12 and outputs["ray"] == outputs["local"]


@needs_ray
def test_progress_is_the_local_engines(local_ray, photo_dir, tmp_path, tiny_model_file, capfd, monkeypatch):
    """Without a terminal (a log, cron) a plain line at a time, as the local engine prints, not a bar's carriage
    returns; COLORIZE_NO_PROGRESS=1 or -q: none."""
    import colorize.commands.colorize as command

    monkeypatch.setattr(command, "PROGRESS_SECONDS", 0.0)
    args = [str(photo_dir), "--model", str(tiny_model_file), "--engine", "ray", "--workers", "1"]
    monkeypatch.delenv("COLORIZE_NO_PROGRESS", raising=False)
    capfd.readouterr()
    assert main([*args, "-o", str(tmp_path / "shown")]) == 0
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("progress:")]
    assert "\r" not in err and len(lines) == 12 and lines[-1].startswith("progress: 12/12 images (100%)")
    monkeypatch.setenv("COLORIZE_NO_PROGRESS", "1")
    assert main([*args, "-o", str(tmp_path / "quiet")]) == 0
    assert "progress:" not in capfd.readouterr().err


@needs_ray
def test_local_ray_workers_run_at_the_local_engines_priority(local_ray):
    """Ray's own default (niceness 15) starves a job's actors whenever anything else keeps the cores busy."""

    @local_ray.remote(num_cpus=0)
    def niceness() -> int:
        return os.nice(0)

    assert local_ray.get(niceness.remote()) == os.nice(0)


@needs_ray
def test_worker_killed_mid_job_finishes_and_rerun_skips(local_ray, tmp_path, tiny_model_file, capfd):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(24):  # large enough that the job lasts a few seconds
        make_photo(960, 720, seed=i).save(photos / f"scan{i:02d}.jpg", quality=90)
    out = tmp_path / "out"
    args = [str(photos), "-o", str(out), "--model", str(tiny_model_file), "-q", "--record"]
    killed: list[tuple[int, int]] = []  # (pid, outputs present when it was killed)

    def kill_one_worker_mid_job():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            present = len(list(out.glob("*.jpg"))) if out.exists() else 0
            pids = _actor_pids("_ArchiveWorker")
            if present >= 1 and pids:  # not waiting for the second actor: on a busy machine it may start last
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], present))
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker_mid_job)
    killer.start()
    code = main([*args, "--engine", "ray", "--workers", "2"])
    killer.join()
    assert killed, "no worker was killed"
    pid, present = killed[0]
    assert present < 24, "the kill came after the job had finished"
    captured = capfd.readouterr()
    assert code == 0, captured.err
    assert "done: 24," in captured.out
    _only_our_lines(captured)  # Ray's "(raylet) ... worker died" messages went to its log
    assert not Path(f"/proc/{pid}").exists()

    # every output present, complete and exactly the local engine's
    assert main([str(photos), "-o", str(tmp_path / "local"), "--model", str(tiny_model_file), "-q"]) == 0
    capfd.readouterr()
    finished, reference = _outputs(out), _outputs(tmp_path / "local")
    assert len(finished) == 24 and finished == reference
    for name in finished:
        with Image.open(out / name) as img:
            img.load()  # raises on a truncated file
            assert img.size == (960, 720)

    assert main([*args, "--engine", "ray", "--workers", "2"]) == 0
    assert "done: 0, skipped (exists, use --overwrite): 0, failed: 0, done before (record): 24" in \
        capfd.readouterr().out


@needs_ray
def test_colorize_batch_example_pipeline(local_ray, photo_dir, tmp_path, tiny_model_file):
    from colorize.pipeline import Colorizer

    out = tmp_path / "out"
    argv = sys.argv
    try:
        sys.argv = ["ray_pipeline.py", str(photo_dir), str(out), "--model", str(tiny_model_file)]
        runpy.run_path(str(ROOT / "examples" / "ray_pipeline.py"), run_name="__main__")
    finally:
        sys.argv = argv
    written = sorted(out.rglob("*.png"))
    assert len(written) == 12
    colorizer = Colorizer(tiny_model_file)
    for path in written:
        src = photo_dir / path.relative_to(out).with_suffix(".jpg")
        expected = colorizer(np.array(Image.open(src).convert("RGB")))
        assert np.array_equal(np.array(Image.open(path)), expected), path


def test_colorize_batch_without_ray(tiny_model_file):
    from colorize.pipeline import Colorizer
    from colorize.ray import ColorizeBatch

    same = [np.array(make_photo(64, 48, seed=s)) for s in (1, 2)]
    mixed = [np.array(make_photo(64, 48, seed=3)), np.array(make_photo(80, 40, seed=4).convert("L"))]
    batch_fn, colorizer = ColorizeBatch(tiny_model_file), Colorizer(tiny_model_file)
    stacked = batch_fn({"image": np.stack(same), "id": np.array([7, 8])})
    assert stacked["image"].shape == (2, 48, 64, 3) and list(stacked["id"]) == [7, 8]
    column = np.empty(2, dtype=object)
    column[0], column[1] = mixed
    ragged = batch_fn({"image": column})["image"]
    assert ragged.dtype == object and ragged[1].shape == (40, 80, 3)
    for got, img in zip([*stacked["image"], *ragged], same + mixed):
        assert np.array_equal(got, colorizer(img))


@needs_ray
def test_an_address_where_nothing_answers_fails_at_once(photo_dir, tmp_path, tiny_model_file, capsys, monkeypatch):
    """A mistyped --address: one line naming it, not minutes of Ray retrying in silence (its messages in the log)."""
    import socket

    import ray

    with socket.socket() as sock:  # a loopback port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: pytest.fail("Ray was asked to connect"))
    temp = tmp_path / "temp"  # where the job's log of Ray's own messages goes
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    args = [str(photo_dir), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file), "-q", "--engine", "ray"]
    assert main([*args, "--address", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused)" in err
    assert "Ray's own messages" not in err and not list(temp.iterdir())  # Ray wrote nothing: no log named or left
    assert main([*args, "--address", "head-node"]) == 2  # no port
    assert "--address must be auto, HOST:PORT or ray://HOST:PORT, got 'head-node'" in capsys.readouterr().err


def test_a_local_ray_has_the_machines_cores(monkeypatch):
    """--threads T without --workers: one actor per T cores (not one per core, each T threads); --workers N:
    N actors' CPUs; an actor wider than the machine still gets its CPUs (else it would never be scheduled)."""
    from colorize.ray import _local_cpus

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [_local_cpus(None, 1), _local_cpus(None, 4), _local_cpus(3, 2), _local_cpus(None, 16)] == [8, 8, 6, 16]


def test_the_ledger_counts_the_workers_that_died_on_each_photo():
    from colorize.ray import _Ledger

    ledger = _Ledger()
    assert ledger.start(1) == 0
    ledger.finish(1)
    assert ledger.start(1) == 0  # finished before its block was retried: a new attempt, not a death
    assert [ledger.start(2) for _ in range(4)] == [0, 1, 2, 3]  # never finished: its workers died
    assert ledger.running == {1: 1, 2: 4}  # only photos in flight (or killing their workers) are held
    assert ledger.begin([3, 4]) == [0, 0] and ledger.running == {1: 1, 2: 4, 3: 1, 4: 1}  # a clean block: all marked
    assert ledger.begin([2, 5]) == [4, 0] and 5 not in ledger.running  # a block that lost a worker: none marked
    ledger.finish(1, 3, 4)
    assert ledger.running == {2: 4}


class _WorkerDied(BaseException):
    """Stands for the SIGKILL of an actor's process: the block stops there, nothing after it runs."""


@needs_ray
def test_a_photo_that_kills_its_workers_is_reported_and_its_block_mates_are_not(monkeypatch):
    """The actor's block logic against the ledger, each retry of the block a new attempt (as Ray Data
    retries it): a clean block costs one round trip to the ledger; a photo that kills every worker is
    reported after MAX_WORKER_DEATHS deaths, and the photos that shared its block are colorized, not blamed."""
    import ray

    from colorize.batch import Outcome
    from colorize.ray import MAX_WORKER_DEATHS, WORKER_DIED, _ArchiveWorker, _Ledger

    ledger, waits = _Ledger(), []

    class Handle:  # the ledger as the actor's handle reaches it: method.remote(...) (synchronous here)
        def __getattr__(self, name):
            return type("Method", (), {"remote": staticmethod(getattr(ledger, name))})

    monkeypatch.setattr(ray, "get", lambda ref: waits.append(ref) or ref)
    tries: dict[int, int] = {}
    ids = [10, 11, 12, 13]
    batch = {"id": np.array(ids), "src": np.array([f"/in/p{i}.jpg" for i in ids], dtype=object),
             "member": np.array([""] * 4, dtype=object), "offset": np.zeros(4, int), "size": np.zeros(4, int)}

    def colorize(batch, k):
        photo = ids[k]
        tries[photo] = tries.get(photo, 0) + 1
        if photo == killer:
            raise _WorkerDied
        return Outcome(kind="gray")

    worker = _ArchiveWorker.__new__(_ArchiveWorker)  # no colorizer to build: its step is the fake above
    worker.ledger, worker._colorize = Handle(), colorize

    killer = None
    assert [o.kind for o in worker._colorize_block(batch, ids)] == ["gray"] * 4
    assert len(waits) == 1 and ledger.running == {}  # a clean block: one round trip, all finished

    killer, tries, attempts = 11, {}, 0
    while True:
        attempts += 1
        try:
            outcomes = worker._colorize_block(batch, ids)
            break
        except _WorkerDied:
            continue
    assert tries[killer] == MAX_WORKER_DEATHS and attempts == MAX_WORKER_DEATHS + 1
    assert outcomes[1].error == f"/in/p11.jpg: {WORKER_DIED} {MAX_WORKER_DEATHS} times while colorizing it; " \
                                "not tried again (a rerun with --record retries only such files)"
    assert [o.kind for k, o in enumerate(outcomes) if k != 1] == ["gray"] * 3  # its block mates: colorized
    assert ledger.running == {}  # the killer reported, the block done: nothing held


def test_what_ray_prints_goes_to_its_log(tmp_path, capfd):
    from colorize.ray import _ray_output_to

    log = tmp_path / "ray.log"
    print("before")
    with _ray_output_to(log) as terminal:
        os.write(2, b"[E core_worker.cc] a C++ log line\n")  # Ray's C++ logs: straight to file descriptor 2
        print("(raylet) an error forwarded to the driver")  # Ray's error thread: sys.stdout
        print("a Ray logger's line", file=sys.stderr)
        terminal.write("our progress bar\n")
    print("after")
    captured = capfd.readouterr()
    assert captured.out == "before\nafter\n" and captured.err == "our progress bar\n"
    assert log.read_text().splitlines() == ["[E core_worker.cc] a C++ log line",
                                            "(raylet) an error forwarded to the driver", "a Ray logger's line"]


def test_cluster_recipes_have_what_a_launch_needs():
    cluster = yaml.safe_load((ROOT / "deploy" / "ray-cluster.yaml").read_text())
    assert cluster["cluster_name"] and cluster["provider"]["type"]
    nodes = cluster["available_node_types"]
    assert cluster["head_node_type"] in nodes
    workers = [n for name, n in nodes.items() if name != cluster["head_node_type"]]
    assert workers and all(n["max_workers"] >= n.get("min_workers", 0) >= 0 and n["resources"]["CPU"] >= 1
                           for n in workers)
    assert any("colorize[ray]" in cmd for cmd in cluster["setup_commands"])
    if importlib.util.find_spec("ray") is not None:  # Ray's own schema for `ray up` configs
        import jsonschema
        import ray.autoscaler

        schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
        jsonschema.validate(cluster, schema)

    job = yaml.safe_load((ROOT / "deploy" / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    groups = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert groups and all(g["replicas"] >= 1 and g["template"]["spec"]["containers"][0]["image"] for g in groups)
    mounts = {m["mountPath"] for c in [head["containers"][0], groups[0]["template"]["spec"]["containers"][0]]
              for m in c["volumeMounts"]}
    # the entrypoint is a valid colorize command on the ray engine, reading and writing the shared mount
    entry = shlex.split(spec["entrypoint"])
    assert entry[0] == "colorize"
    args = colorize_parser().parse_args(entry[1:])
    assert args.engine == "ray" and args.address == "auto" and args.record
    assert all(any(p.startswith(m) for m in mounts) for p in [*args.paths, args.output])
