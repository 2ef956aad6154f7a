"""Archive batches: a crash and a rerun colorize every file exactly once; ``--shard K/N`` partitions
the files exactly; the record follows input changes and job settings."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from colorize.archive import DoneRecord, parse_shard, record_path, shard_of
from colorize.batch import LOCAL_WORKERS
from colorize.cli import main
from colorize.pipeline import Colorizer
from helpers import make_photo

# Runs the CLI with Colorizer.colorize_file logged to LOG; dies hard (no cleanup) when asked to start
# file number CRASH_AT, i.e. in the middle of the job.
CRASHING_RUN = """
import os, sys
from colorize import cli
from colorize.pipeline import Colorizer

log, crash_at = sys.argv[1], int(sys.argv[2])
real = Colorizer.colorize_file
calls = 0

def colorize_file(self, src, dst, **kwargs):
    global calls
    calls += 1
    if calls == crash_at:
        os._exit(9)
    out = real(self, src, dst, **kwargs)
    with open(log, "a") as f:
        f.write(f"{src}\\n")
    return out

Colorizer.colorize_file = colorize_file
sys.exit(cli.main(sys.argv[3:]))
"""


@pytest.fixture
def counted(monkeypatch):
    """Counts, per input, the files the colorizer finished in this process."""
    done: Counter = Counter()
    real = Colorizer.colorize_file

    def colorize_file(self, src, dst, **kwargs):
        out = real(self, src, dst, **kwargs)
        done[Path(src).name] += 1
        return out

    monkeypatch.setattr(Colorizer, "colorize_file", colorize_file)
    return done


def _rows(db: Path) -> list[str]:
    with closing(sqlite3.connect(db)) as con:
        return sorted(r[0] for r in con.execute("SELECT path FROM done"))


def test_parse_shard_and_split():
    assert parse_shard("2/5") == (2, 5)
    for bad in ("0/3", "4/3", "1", "a/b"):
        with pytest.raises(ValueError, match="K/N"):
            parse_shard(bad)
    counts = Counter(shard_of(f"folder/{i}.jpg", 4) for i in range(2000))
    assert set(counts) == {1, 2, 3, 4} and min(counts.values()) > 400
    assert shard_of("a/b.jpg", 7) == shard_of("a/b.jpg", 7)


def test_crash_and_rerun_colorize_each_file_once(photo_dir, tmp_path, tiny_model_file):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    script = tmp_path / "crashing_run.py"
    script.write_text(CRASHING_RUN)
    # --overwrite: only the record, not the outputs already there, keeps finished files from being redone
    args = [str(photo_dir), "-o", str(out), "--model", str(tiny_model_file), "--record", "--overwrite", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([sys.executable, str(script), str(log), "6", *args], env=env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 9, first.stderr[-2000:]
    finished = log.read_text().split()
    db = record_path(out)
    recorded = {str(photo_dir / row) for row in _rows(db)}
    # photos go LOCAL_WORKERS at a time: the crash may come while others are in flight or just finished
    assert 5 - LOCAL_WORKERS < len(recorded) <= len(finished) <= 5 and recorded <= set(finished)

    second = subprocess.run([sys.executable, str(script), str(log), "0", *args], env=env, capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"done: {12 - len(recorded)}," in second.stdout and f"done before (record): {len(recorded)}" in second.stdout
    processed = Counter(log.read_text().split())
    # a recorded file is never done again; one finished but not yet recorded when it crashed may be
    assert len(processed) == 12 and {f for f, n in processed.items() if n > 1} <= set(finished) - recorded
    assert _rows(db) == sorted(p.relative_to(photo_dir).as_posix() for p in photo_dir.rglob("*.jpg"))
    assert len(list(out.rglob("*.jpg"))) == 12


def test_shards_partition_the_files(photo_dir, tmp_path, tiny_model_file, counted, capsys):
    out = tmp_path / "out"
    for k in (1, 2, 3):
        assert main([str(photo_dir), "-o", str(out), "--model", str(tiny_model_file), "--shard", f"{k}/3", "-q"]) == 0
    assert len(counted) == 12 and set(counted.values()) == {1}
    rows = [_rows(record_path(out, (k, 3))) for k in (1, 2, 3)]
    assert sum(map(len, rows)) == 12 and len(set().union(*rows)) == 12
    assert all(shard_of(r, 3) == k for k, part in zip((1, 2, 3), rows) for r in part)
    with pytest.raises(SystemExit):
        main([str(photo_dir), "--shard", "4/3"])
    assert "1 <= K <= N" in capsys.readouterr().err


def test_each_shard_takes_its_photos_hints_from_a_file_for_the_whole_job(photo_dir, tmp_path, tiny_model_file,
                                                                         monkeypatch):
    """A hints file for the album, with --shard K/N: each shard failed with 'no input photo named ...' for the
    photos of the other shards (it checked the keys against its own photos only), so no shard ran."""
    import json

    given: dict[str, list] = {}
    real = Colorizer.colorize_file

    def colorize_file(self, src, dst, **kwargs):
        given[Path(src).relative_to(photo_dir).as_posix()] = [h.color for h in kwargs.get("hints") or []]
        return real(self, src, dst, **kwargs)

    monkeypatch.setattr(Colorizer, "colorize_file", colorize_file)
    names = sorted(p.relative_to(photo_dir).as_posix() for p in photo_dir.rglob("*.jpg"))
    colors = {name: f"#{i:02x}0000" for i, name in enumerate(names)}
    (tmp_path / "h.json").write_text(json.dumps({n: [{"x": 1, "y": 1, "color": c}] for n, c in colors.items()}))
    for k in (1, 2, 3):
        assert main([str(photo_dir), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file), "--shard", f"{k}/3",
                     "--hints", str(tmp_path / "h.json"), "-q"]) == 0
    assert given == {name: [color] for name, color in colors.items()}


def test_record_follows_inputs_and_settings(photo_dir, tmp_path, tiny_model_file, counted, capsys):
    out = tmp_path / "out"
    args = [str(photo_dir), "-o", str(out), "--model", str(tiny_model_file), "--record", "--overwrite", "-q"]
    assert main(args) == 0 and sum(counted.values()) == 12
    assert main(args) == 0 and sum(counted.values()) == 12  # all recorded: nothing to do
    changed = photo_dir / "p1.jpg"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    assert main(args) == 0 and sum(counted.values()) == 13 and counted["p1.jpg"] == 2
    next(out.rglob("p2.jpg")).unlink()  # an output deleted to be redone (or lost with a disk): not done any more
    assert main(args) == 0 and sum(counted.values()) == 14 and counted["p2.jpg"] == 2
    assert main([*args, "--saturation", "0.5"]) == 0 and sum(counted.values()) == 26  # new settings: redo all
    assert "starting a new record" in capsys.readouterr().out
    for option in (["--quality", "60"], ["--keep-color"]):  # they change the files too
        before = sum(counted.values())
        assert main([*args, "--saturation", "0.5", *option]) == 0 and sum(counted.values()) == before + 12, option
        assert "starting a new record" in capsys.readouterr().out


def test_record_follows_the_weights_behind_the_model(photo_dir, tmp_path, tiny_model_file, counted, capsys):
    """The record keyed the model by its name or path: a retrained file at the same path (or a release's new shipped
    weights under the same name) found every photo 'done before (record)' and kept the old model's colors."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    weights = tmp_path / "mine.safetensors"
    shutil.copy(tiny_model_file, weights)
    args = [str(photo_dir), "-o", str(tmp_path / "out"), "--model", str(weights), "--record", "--overwrite", "-q"]
    assert main(args) == 0 and sum(counted.values()) == 12
    assert main(args) == 0 and sum(counted.values()) == 12  # the same weights: all recorded
    with safe_open(weights, "pt") as f:  # retrained: other weights at the same path
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in tensors.items()}, weights, metadata=meta)
    assert main(args) == 0 and sum(counted.values()) == 24
    assert "starting a new record" in capsys.readouterr().out


def test_record_follows_the_contents_of_the_hints_file(photo_dir, tmp_path, tiny_model_file, counted, capsys):
    """The record held the --hints file's name alone: after editing its colors, a rerun with --overwrite found every
    photo 'done before (record)' and wrote none of the new colors."""
    import json

    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps({"p1.jpg": [{"x": 5, "y": 5, "color": "red"}]}))
    args = [str(photo_dir), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file), "--hints", str(hints),
            "--record", "--overwrite", "-q"]
    assert main(args) == 0 and sum(counted.values()) == 12
    assert main(args) == 0 and sum(counted.values()) == 12  # the same hints: all recorded
    hints.write_text(json.dumps({"p1.jpg": [{"x": 5, "y": 5, "color": "navy"}]}))
    assert main(args) == 0 and sum(counted.values()) == 24
    assert "starting a new record" in capsys.readouterr().out


def test_file_names_that_are_not_utf8_are_recorded_and_sharded(tmp_path, tiny_model_file, counted, capsys):
    """A Latin-1 name from an old archive: --record and --shard failed with a UnicodeEncodeError traceback."""
    if sys.platform == "win32":
        pytest.skip("POSIX file names are bytes")
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    names = [os.fsdecode(b"caf\xe9.jpg"), "plain.jpg"]
    for name in names:
        make_photo(48, 32).save(src / name)
    args = [str(src), "-o", str(out), "--model", str(tiny_model_file), "--record", "--overwrite", "-q"]
    assert main(args) == 0 and sum(counted.values()) == 2
    assert main(args) == 0 and sum(counted.values()) == 2  # recorded: nothing to do
    for k in (1, 2):
        assert main([str(src), "-o", str(tmp_path / "split"), "--model", str(tiny_model_file), "--shard", f"{k}/2",
                     "-q"]) == 0
    assert sum(counted.values()) == 4 and len(list((tmp_path / "split").glob("*.jpg"))) == 2


def test_one_writer_per_record(tmp_path):
    """The error named a shard when none was given."""
    path = tmp_path / ".colorize-done.sqlite"
    with DoneRecord(path, {"model": None}):
        with pytest.raises(RuntimeError, match="is a job with --record into this folder already running") as e:
            DoneRecord(path, {"model": None})
        assert "shard" not in str(e.value)
        with pytest.raises(RuntimeError, match="is shard 2/3 of this job already running"):
            DoneRecord(path, {"model": None}, shard=(2, 3))
    with DoneRecord(path, {"model": None}) as record:  # free again once closed
        assert len(record) == 0
