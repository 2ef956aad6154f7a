"""Tar shards: names and patterns, packing a folder, streaming every photo once per pass across ranks
and workers, skipping corrupt members, training from shards, and listing their photos as inputs."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import itertools
import sys
import tarfile
import threading
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

from colorize.cli import main
from colorize.data import PhotoDataset, collate, find_images
from colorize.io import ImageError
from colorize.shards import (ShardDataset, is_shard_spec, iter_shard_photos, list_photos, resolve_shards,
                             write_shards)
from colorize.train import TrainConfig, train
from helpers import make_photo


def test_names_and_patterns(tmp_path):
    assert resolve_shards(["http://h/s-{08..11}.tar"]) == [f"http://h/s-{i:02d}.tar" for i in range(8, 12)]
    assert resolve_shards(["http://h/{a,b}/x{0..1}.tar"]) == ["http://h/a/x0.tar", "http://h/a/x1.tar",
                                                              "http://h/b/x0.tar", "http://h/b/x1.tar"]
    assert all(map(is_shard_spec, ["a.tar", "d/*.tar", "s-{0..3}.tar", "https://host/data/x"]))
    assert not any(map(is_shard_spec, ["photos", "photos/*.jpg"]))
    for i in range(3):
        (tmp_path / f"shard-{i:06d}.tar").write_bytes(b"")
    assert resolve_shards([str(tmp_path / "shard-{000000..000001}.tar"), str(tmp_path / "*.tar")]) == [
        str(tmp_path / f"shard-{i:06d}.tar") for i in range(3)]
    with pytest.raises(FileNotFoundError, match="no such shard"):
        resolve_shards([str(tmp_path / "missing.tar")])


def test_without_webdataset_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "webdataset", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'colorize\[train\]'"):
        resolve_shards(["http://h/s-{0..1}.tar"])


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_samples_are_keyed_webdataset_style(photo_dir, tmp_path):
    """A sample is the members whose names agree up to the base name's first dot; its photo is its
    jpg/jpeg/png/webp member; hidden files and samples without a photo are left out."""
    jpg = (photo_dir / "p1.jpg").read_bytes()
    _tar(tmp_path / "x.tar", {"dir.v1/abc.jpg": jpg, "dir.v1/abc.seg.png": b"mask", "dir.v1/abc.json": b"{}",
                              "notes.txt": b"no photo", "dir.v1/.hidden.jpg": jpg, "q.PNG": b"png bytes"})
    photos = list(iter_shard_photos(str(tmp_path / "x.tar")))
    assert [(p.key, p.ext, p.data) for p in photos] == [("dir.v1/abc", "jpg", jpg), ("q", "png", b"png bytes")]
    assert photos[0].name == f"{tmp_path / 'x.tar'}:dir.v1/abc.jpg" and not photos[0].error


def test_unreadable_shards_are_reported_and_reading_goes_on(photo_dir, tmp_path):
    _tar(tmp_path / "good.tar", {"a.jpg": (photo_dir / "p1.jpg").read_bytes()})
    (tmp_path / "junk.tar").write_bytes(b"this is not a tar file" * 100)
    truncated = (tmp_path / "good.tar").read_bytes()[:700]  # the header and part of the photo
    (tmp_path / "cut.tar").write_bytes(truncated)
    photos = list(iter_shard_photos([str(tmp_path / n) for n in ("junk.tar", "cut.tar", "good.tar")]))
    assert [p.data is None for p in photos] == [True, True, False]
    assert photos[0].error.startswith(f"{tmp_path / 'junk.tar'}: unreadable shard (")
    assert "cut.tar: unreadable shard" in photos[1].error and photos[2].key == "a"


def test_pack_folder(photo_dir, tmp_path):
    make_photo(40, 32, seed=50).save(photo_dir / "sub" / "odd.name.bmp")  # re-encoded as PNG
    (photo_dir / "broken.bmp").write_bytes(b"not an image")
    (photo_dir / "notes.jpg").write_text("a stray file with a photo's name")  # stored as is, were it a photo
    (photo_dir / "locked.png").write_bytes((photo_dir / "p1.jpg").read_bytes())
    read_bytes = Path.read_bytes

    def unreadable(path: Path) -> bytes:  # as a file without read permission is (to all but root)
        if path.name == "locked.png":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    out = tmp_path / "shards 100%"  # the writer's name pattern is %-formatted
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "read_bytes", unreadable)
        result = write_shards(photo_dir, out, max_count=5)
    assert [p.name for p in result.shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    skipped = sorted(result.skipped)
    assert result.images == 13 and len(skipped) == 3, skipped
    assert "broken.bmp: not an image" in skipped[0] and "locked.png: cannot read it (Permission denied)" in skipped[1]
    assert "notes.jpg: not an image file" in skipped[2]
    (photo_dir / "locked.png").unlink()
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in result.shards]  # no temp files left
    keys = Counter()
    for shard in result.shards:
        samples = list(iter_shard_photos(str(shard)))
        assert 0 < len(samples) <= 5 and all(p.data for p in samples)
        keys.update(p.key for p in samples)
    assert max(keys.values()) == 1 and len(keys) == 13 and "sub/odd_name" in keys and "sub/p0" in keys
    with pytest.raises(FileExistsError):
        write_shards(photo_dir, out)
    # size limit: a shard is closed once it reaches it; every photo is bigger than 200 bytes
    assert len(write_shards(photo_dir, tmp_path / "small", max_size_mb=0.0002).shards) == 13


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_an_interrupted_pack_leaves_no_shard(error, photo_dir, tmp_path, monkeypatch, capsys):
    """Ctrl-C (or a full disk) after some shards are finished: none is left to pass for the whole set, and the
    same command runs again."""
    import colorize.shards as shards

    for path in list(photo_dir.rglob("*.jpg")):  # decoded formats: each goes through load_image
        make_photo(40, 32, seed=len(path.name)).save(path.with_suffix(".bmp"))
        path.unlink()
    calls, real = [], shards.load_image

    def stopping(path):
        calls.append(path)
        if len(calls) == 8:
            raise error("stop")
        return real(path)

    monkeypatch.setattr(shards, "load_image", stopping)
    out = tmp_path / "shards"
    with pytest.raises(error):
        write_shards(photo_dir, out, max_count=2)  # three shards finished before the stop
    assert list(out.iterdir()) == []
    monkeypatch.setattr(shards, "load_image", real)
    assert write_shards(photo_dir, out, max_count=2).images == 12

    if error is OSError:  # the command: a full disk is one line naming the folder, not a traceback
        monkeypatch.setattr(shards, "load_image", stopping)
        calls.clear()
        assert main(["shards", str(photo_dir), "-o", str(tmp_path / "again"), "--max-count", "2"]) == 1
        err = capsys.readouterr().err
        assert f"cannot write the shards in {tmp_path / 'again'} (stop); none was kept" in err


def test_shards_command_errors_go_to_stderr(photo_dir, tmp_path, capsys):
    """Why a pack did not start is on stderr, as for every other command (it was printed on stdout, so a script
    keeping 2> errors.log lost it), and the limits are checked, by their option names, before any photo is read."""
    assert main(["shards", str(tmp_path / "missing"), "-o", str(tmp_path / "s")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "missing: no such file or folder" in err
    for args in (["--max-count", "0"], ["--max-size", "0"], ["--max-size", "nan"]):
        with pytest.raises(SystemExit) as stop:
            main(["shards", str(photo_dir), "-o", str(tmp_path / "s"), *args])
        assert stop.value.code == 2 and args[0] in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _tensor_key(x: torch.Tensor) -> bytes:
    return x.numpy().tobytes()


def test_every_photo_once_per_pass_across_ranks_and_workers(photo_dir, tmp_path):
    shards = [str(p) for p in write_shards(photo_dir, tmp_path / "s", max_count=2).shards]  # 6 shards
    photos = PhotoDataset(find_images(photo_dir), 32)
    want = Counter(_tensor_key(photos[i][0]) for i in range(len(photos)))
    for epoch in (0, 1):
        got: Counter = Counter()
        for rank in range(2):
            ds = ShardDataset(shards, 32, rank=rank, world_size=2, shuffle_buffer=3)
            ds.set_epoch(epoch)
            for images, errors in torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate):
                assert not errors
                got.update(_tensor_key(x) for x in images)
        assert got == want
    with pytest.raises(ValueError, match="cannot feed 7 processes"):
        ShardDataset(shards, 32, world_size=7)


def test_stream_over_http(photo_dir, tmp_path):
    shards = write_shards(photo_dir, tmp_path / "s", max_count=5).shards
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "s"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        urls = resolve_shards([f"{base}/shard-{{000000..{len(shards) - 1:06d}}}.tar"])
        assert len(urls) == 3 and all(u.startswith(base) for u in urls)
        assert len(list(ShardDataset(urls, 32))) == 12
        (missing,) = iter_shard_photos(f"{base}/shard-000099.tar")
        assert missing.data is None and "unreadable shard (download failed: HTTP error" in missing.error
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreadable_shard_among_good_ones_does_not_stop_the_stream(photo_dir, tmp_path):
    """Two shards on two processes: in every pass one process's whole share is the bad shard. It goes on to the
    next pass (the docs: unreadable shards never stop training); only a stream without any readable shard fails."""
    good = write_shards(photo_dir, tmp_path / "s", max_count=100).shards[0]
    bad = tmp_path / "s" / "bad.tar"
    bad.write_bytes(b"not a tar")
    for rank in range(2):
        ds = ShardDataset([str(good), str(bad)], 32, rank=rank, world_size=2, shuffle_buffer=2, repeat=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items = list(itertools.islice(ds, 30))
        assert len(items) == 30 and any("bad.tar: unreadable shard" in e for _, e in items)
    with pytest.raises(ValueError, match=r"no readable photos in any of the 1 shard\(s\).*bad.tar"):
        next(iter(ShardDataset([str(bad)], 32, repeat=True)))


def _tar_with_corrupt_member(path, photo_dir):
    _tar(path, {"good.jpg": (photo_dir / "p1.jpg").read_bytes(), "bad.jpg": b"\xff\xd8 garbage"})


def test_corrupt_member_is_skipped_with_a_warning(photo_dir, tmp_path):
    """The reason travels with the next photo (as with PhotoDataset), or is warned at the end of a pass."""
    _tar_with_corrupt_member(tmp_path / "x.tar", photo_dir)
    for buffer in (1, 2):  # bad.jpg last, then (by the seeded shuffle) first
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            items = list(ShardDataset([str(tmp_path / "x.tar")], 32, shuffle_buffer=buffer))
        assert len(items) == 1 and items[0][0].shape == (3, 32, 32)
        reports = [e for _, e in items if e] + [str(w.message) for w in caught]
        assert len(reports) == 1 and "x.tar:bad.jpg" in reports[0]


def test_train_from_shards(photo_dir, tmp_path):
    assert main(["shards", str(photo_dir), "-o", str(tmp_path / "s"), "--max-count", "4"]) == 0
    _tar_with_corrupt_member(tmp_path / "s" / "shard-000003.tar", photo_dir)
    cfg = TrainConfig(model="alpha", data=[str(tmp_path / "s" / "shard-{000000..000003}.tar")],
                      val_data=[str(photo_dir / "sub")], size=32, batch_size=4, epochs=1, epoch_images=16,
                      num_workers=0, augment=False, out_dir=str(tmp_path / "run"), samples=1)
    with pytest.warns(UserWarning, match="skipped unreadable image .*bad.jpg"):
        metrics = train(cfg)
    assert metrics["step"] == 4 and (tmp_path / "run" / "last.pt").is_file()
    with pytest.raises(ValueError, match="needs val_data"):
        TrainConfig(model="alpha", data=[str(tmp_path / "s" / "*.tar")], epoch_images=8)
    with pytest.raises(ValueError, match="needs epoch_images"):
        TrainConfig(model="alpha", data=[str(tmp_path / "s" / "*.tar")], val_data=[str(photo_dir)])
    with pytest.raises(ValueError, match="mixes"):
        TrainConfig(model="alpha", data=[str(tmp_path / "s" / "*.tar"), str(photo_dir)], val_data=[str(photo_dir)],
                    epoch_images=8)


def _add(tar: tarfile.TarFile, name: str, data: bytes, *, mtime: int = 1_700_000_000) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), mtime
    tar.addfile(info, io.BytesIO(data))


def test_list_photos_reads_headers_and_each_photo_alone(photo_dir, tmp_path):
    """One photo per sample, by the stream reader's rules; each read back alone by its offset, byte for byte."""
    jpg, png = (photo_dir / "p1.jpg").read_bytes(), (photo_dir / "p2.jpg").read_bytes()
    shard = tmp_path / "x.tar"
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "a/s1.json", b"{}")
        _add(tar, "a/s1.png", png)
        _add(tar, "s2.seg.png", png)  # key s2, extension seg.png: not a photo extension
        _add(tar, "s2.jpg", jpg)  # the sample's photo
        _add(tar, "s3.txt", b"no photo in this sample")
        _add(tar, "dir/.hidden.jpg", jpg)
        _add(tar, "../escape.jpg", jpg)
        _add(tar, "/abs.jpg", jpg)
    photos, problems = list_photos(shard)
    assert [(p.name, p.key, p.suffix) for p in photos] == [("a/s1.png", "a/s1", ".png"), ("s2.jpg", "s2", ".jpg")]
    assert [p.read_bytes() for p in photos] == [png, jpg]
    assert str(photos[1]) == f"{shard}:s2.jpg" and photos[1].mtime_ns == 1_700_000_000 * 10**9
    streamed = [(p.key, p.ext, p.data) for p in iter_shard_photos(str(shard))]  # the training stream: the same
    assert streamed == [("a/s1", "png", png), ("s2", "jpg", jpg), ("../escape", "jpg", jpg), ("/abs", "jpg", jpg)]
    unsafe = "unsafe member name (it would be written outside the output folder)"
    assert sorted(problems) == [(f"{shard}:../escape.jpg", unsafe), (f"{shard}:/abs.jpg", unsafe)]


def test_list_photos_names_links_named_as_photos(photo_dir, tmp_path):
    """A symbolic or hard link member named as a photo holds no data: it was left out without a word."""
    shard = tmp_path / "links.tar"
    with tarfile.open(shard, "w") as tar:
        _add(tar, "p1.jpg", (photo_dir / "p1.jpg").read_bytes())
        for name, kind in [("soft.jpg", tarfile.SYMTYPE), ("hard.jpg", tarfile.LNKTYPE), ("notes", tarfile.SYMTYPE)]:
            link = tarfile.TarInfo(name)
            link.type, link.linkname = kind, "p1.jpg"
            tar.addfile(link)
    photos, problems = list_photos(shard)
    assert [p.name for p in photos] == ["p1.jpg"]
    assert [(name, reason.split(",")[0]) for name, reason in problems] == [
        (f"{shard}:soft.jpg", "a symbolic link (to p1.jpg)"), (f"{shard}:hard.jpg", "a hard link (to p1.jpg)")]


def test_list_photos_names_damaged_shards(photo_dir, tmp_path):
    jpg = (photo_dir / "p1.jpg").read_bytes()
    whole = tmp_path / "whole.tar"
    with tarfile.open(whole, "w") as tar:
        for i in range(3):
            _add(tar, f"p{i}.jpg", jpg)
    data = whole.read_bytes()
    block = 512 * (1 + (len(jpg) + 511) // 512)  # a member: its header and its padded data
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: block + 512 + len(jpg) // 2])  # the 2nd photo's data cut short
    photos, problems = list_photos(cut)
    assert [p.name for p in photos] == ["p0.jpg", "p1.jpg"] and len(problems) == 1
    assert problems[0][0] == str(cut) and "cut short or damaged after 2 photo(s)" in problems[0][1]
    assert photos[0].read_bytes() == jpg
    with pytest.raises(ImageError, match=r"cut.tar:p1.jpg: cut short"):
        photos[1].read_bytes()
    headerless = tmp_path / "headerless.tar"
    headerless.write_bytes(data[: 2 * block + 300])  # ends inside the 3rd header: tarfile alone would not say
    photos, problems = list_photos(headerless)
    assert len(photos) == 2 and "no end-of-archive marker" in problems[0][1]
    (tmp_path / "x.tar.gz").write_bytes(data)
    (tmp_path / "gz.tar").write_bytes(gzip.compress(data))
    for name, reason in [("x.tar.gz", "compressed"), ("gz.tar", "not a readable plain tar file"),
                         ("missing.tar", "not a readable plain tar file")]:
        photos, problems = list_photos(tmp_path / name)
        assert not photos and len(problems) == 1 and problems[0][0] == str(tmp_path / name)
        assert problems[0][1].startswith(reason)
