"""Batch colorization of large archives: a resumable record of finished files, and a stable split
of the files across machines or GPUs.

The record is a small SQLite database beside the output (``OUT/.colorize-done.sqlite``, or
``OUT/.colorize-done.K-of-N.sqlite`` for shard K of N) with one row per finished input, keyed by its
path relative to its input root plus its size and mtime. A file is recorded only after its output
has been renamed into place, so a rerun after a crash skips exactly the finished files. The split
(``--shard K/N``) hashes that relative path, so every machine computes the same partition.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

if TYPE_CHECKING:
    from colorize.shards import ShardMember

RECORD_STEM = ".colorize-done"

Pair = tuple[Union[Path, "ShardMember"], Path]  # (input: a file or a photo in a tar shard, output)


def parse_shard(spec: str) -> tuple[int, int]:
    """``"K/N"`` with 1 <= K <= N -> (K, N)."""
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like K/N (e.g. 1/4), got '{spec}'") from None
    if not 1 <= k <= n:
        raise ValueError(f"shard K/N needs 1 <= K <= N, got '{spec}'")
    return k, n


def shard_of(key: str, n: int) -> int:
    """The 1-based shard of a relative path among ``n``: a stable hash, the same on every machine."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") % n + 1


def relative_key(src: "Path | ShardMember", dst: Path, out_dir: Path) -> str:
    """An input's path relative to its input root, as the output plan mirrors it: the output's path
    under ``out_dir`` with the input's suffix (``sub/p0.jpg``; for a photo in a tar shard, its member
    name); just the file name otherwise."""
    try:
        key = dst.relative_to(out_dir).with_suffix(src.suffix).as_posix()
    except ValueError:
        key = src.name
    # a file name that is not UTF-8 (an old archive's Latin-1: surrogate escapes here) as text SQLite and the hash
    # take: its undecodable bytes written \xNN, every UTF-8 name as it is
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def select_shard(pairs: Sequence[Pair], out_dir: Path, shard: tuple[int, int]) -> list[Pair]:
    """The pairs of shard ``K`` of ``N``; the N shards partition ``pairs`` exactly."""
    k, n = shard
    return [(s, d) for s, d in pairs if shard_of(relative_key(s, d, out_dir), n) == k]


def record_path(out_dir: Path, shard: tuple[int, int] | None = None) -> Path:
    """Where a job's record lives: one file per shard, so machines sharing ``out_dir`` never write
    the same database."""
    return out_dir / (f"{RECORD_STEM}.{shard[0]}-of-{shard[1]}.sqlite" if shard else f"{RECORD_STEM}.sqlite")


def _stamp(src: "Path | ShardMember") -> tuple[int, int]:
    """(size, mtime_ns) of an input: what tells a changed input on a rerun (a shard member's are from its header)."""
    if isinstance(src, Path):
        st = src.stat()
        return st.st_size, st.st_mtime_ns
    return src.size, src.mtime_ns


class DoneRecord:
    """The finished files of one job. ``settings`` (model, size, format, ...) describe the job: a
    record made with other settings is cleared (``reset`` tells), since its files must be redone.

    Raises:
        RuntimeError: another process holds the record (the same job, or the same ``shard`` of it, running twice).
    """

    def __init__(self, path: Path, settings: dict, *, shard: tuple[int, int] | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=2.0)
        try:
            # Exclusive locking: one writer, no shared-memory index, so WAL also works on network drives.
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # a commit survives a process crash
            self.db.execute("CREATE TABLE IF NOT EXISTS done "
                            "(path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL)")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            wanted = json.dumps(settings, sort_keys=True)
            row = self.db.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
            self.reset = row is not None and row[0] != wanted
            if self.reset:
                self.db.execute("DELETE FROM done")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('settings', ?)", (wanted,))
            self.db.commit()
        except sqlite3.OperationalError as e:
            self.db.close()
            running = f"shard {shard[0]}/{shard[1]} of this job" if shard else "a job with --record into this folder"
            hint = f"; is {running} already running?" if "locked" in str(e) else ""
            raise RuntimeError(f"{path}: cannot use the record ({e}){hint}") from None
        self._todo: dict[Path, tuple[str, int, int]] = {}

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM done").fetchone()[0]

    def pending(self, pairs: Sequence[Pair], out_dir: Path) -> list[Pair]:
        """The pairs not yet recorded as done for the input's current size and mtime, and those whose output is
        gone since (deleted to be redone, lost with a disk)."""
        todo = []
        for src, dst in pairs:
            try:
                stamp = _stamp(src)
            except OSError:  # gone: let the colorizer report it
                todo.append((src, dst))
                continue
            key = relative_key(src, dst, out_dir)
            row = self.db.execute("SELECT size, mtime_ns FROM done WHERE path = ?", (key,)).fetchone()
            if row != stamp or not dst.exists():
                self._todo[src] = (key, *stamp)
                todo.append((src, dst))
        return todo

    def mark_done(self, src: Path) -> None:
        """Record ``src`` (from :meth:`pending`) as finished; call once its output is in place."""
        row = self._todo.pop(src, None)
        if row is not None:
            self.db.execute("INSERT OR REPLACE INTO done VALUES (?, ?, ?)", row)
            self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "DoneRecord":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
