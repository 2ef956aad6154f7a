"""The local engine's photos in flight (:func:`colorize.batch.colorize_files` with ``workers``): the same files,
outcomes, notes and record as one photo at a time, and the same clean stops."""

import sqlite3
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorize.batch import FileResult, colorize_files
from colorize.io import load_input, save_image
from colorize.tone import ToneReport
from helpers import make_photo


def _inputs(folder: Path) -> list[tuple[Path, Path]]:
    """Tiny photos of several shapes (the network's padding differs with them), gray and color, one with
    three frames (a note) and two bad files, paired with outputs in ``folder / "out"``."""
    folder.mkdir()
    sizes = [(64, 48), (48, 64), (70, 50), (50, 70), (90, 60), (33, 81), (80, 80), (61, 45)]
    for i, (w, h) in enumerate(sizes):
        photo = make_photo(w, h, seed=i)
        photo.convert("L").save(folder / f"p{i}.png") if i % 3 == 0 else photo.save(folder / f"p{i}.jpg", quality=90)
    frames = [make_photo(56, 40, seed=s) for s in range(3)]
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    (folder / "notes.jpg").write_text("not a photo")
    Image.new("RGB", (2, 2)).save(folder / "tiny.png")
    names = sorted(p.name for p in folder.iterdir())
    return [(folder / n, folder / "out" / n) for n in names]


def _colorizer(engine: str, tiny_bins_model_file):
    if engine == "light":
        pytest.importorskip("onnxruntime")
        from colorize.lite import LiteColorizer

        return LiteColorizer(size=64)  # the shipped export
    from colorize.pipeline import Colorizer

    return Colorizer(tiny_bins_model_file, size=64)  # the shipped architecture: TF 'same' padding, a kernel cache


@pytest.mark.parametrize("engine", ["torch", "light"])
def test_photos_in_flight_write_what_one_at_a_time_writes(engine, tiny_bins_model_file, tmp_path):
    colorizer = _colorizer(engine, tiny_bins_model_file)
    pairs = _inputs(tmp_path / "in")
    filters, shown = list(warnings.filters), warnings.showwarning
    results = {}
    for workers in (1, 3):
        out = [(src, tmp_path / f"out{workers}" / dst.name) for src, dst in pairs]
        results[workers] = colorize_files(colorizer, out, workers=workers)
    one, many = results[1], results[3]
    assert (one.done, sorted(one.failed), one.notes, one.kinds, one.stopped) == \
           (many.done, sorted(many.failed), many.notes, many.kinds, many.stopped)  # the same report
    pages = next(src for src, _ in pairs if src.name == "pages.tif")
    assert one.done == 9 and len(one.failed) == 2
    assert one.notes == [f"{pages}: has 3 frames (pages); only the first is colorized"]
    written = sorted(p.name for p in (tmp_path / "out1").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "out3").iterdir()) and len(written) == 9
    for name in written:  # bit-identical outputs
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out3" / name).read_bytes(), name
    assert warnings.filters == filters and warnings.showwarning is shown  # the warnings hook is taken down


class _Stub:
    """A colorizer whose photos take ``seconds[name]`` (later ones first: they finish out of order); writes
    the photo as it is."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds, self.started = seconds, []

    def colorize_file(self, src, dst, **options) -> FileResult:
        self.started.append(Path(src).name)
        time.sleep(self.seconds.get(Path(src).name, 0.0))
        img, _ = load_input(src)
        save_image(img, dst)
        return FileResult(img.size, ToneReport("gray", 0.0, 0.0, 0.0, 0.0, 0.0))


class _Record:
    """A ``DoneRecord`` stand-in that notes each input marked done, and the thread that marked it."""

    path = Path("record.sqlite")

    def __init__(self, fail_after: int | None = None):
        self.marked, self.threads, self.fail_after = [], set(), fail_after

    def mark_done(self, src) -> None:
        if self.fail_after is not None and len(self.marked) >= self.fail_after:
            raise sqlite3.OperationalError("database or disk is full")
        self.marked.append(Path(src).name)
        self.threads.add(threading.current_thread())


def _stub_inputs(folder: Path, n: int = 8, bad: tuple[int, ...] = (2,)) -> list[tuple[Path, Path]]:
    folder.mkdir()
    pairs = []
    for i in range(n):
        src = folder / f"p{i}.png"
        if i in bad:
            src.write_text("not a photo")
        else:
            make_photo(24, 16, seed=i).save(src)
        pairs.append((src, folder / "out" / src.name))
    return pairs


def test_each_photo_is_recorded_and_shown_as_it_finishes_on_the_calling_thread(tmp_path):
    pairs = _stub_inputs(tmp_path / "in", bad=())
    stub = _Stub({f"p{i}.png": 0.03 * (8 - i) for i in range(8)})  # later photos finish first
    record = _Record()
    at_each_step = []

    def progress(items):
        for item in items:
            at_each_step.append(len(record.marked))  # photos taken when the display moved on
            yield item

    result = colorize_files(stub, pairs, record=record, progress=progress, workers=3)
    assert result.done == 8 and not result.failed and not result.stopped
    assert sorted(record.marked) == [f"p{i}.png" for i in range(8)] and record.threads == {threading.main_thread()}
    assert at_each_step == list(range(8))  # a step a photo, each as it was taken
    assert sorted(p.name for p in (tmp_path / "in" / "out").iterdir()) == sorted(record.marked)


def test_ctrl_c_lets_the_photos_in_flight_finish_and_counts_them(tmp_path):
    pairs = _stub_inputs(tmp_path / "in", n=12, bad=())
    stub = _Stub({name: 0.05 for name in (f"p{i}.png" for i in range(12))})
    record = _Record()

    def progress(items):
        for i, item in enumerate(items):
            if i == 3:
                raise KeyboardInterrupt  # on this thread, as Ctrl-C arrives
            yield item

    result = colorize_files(stub, pairs, record=record, progress=progress, workers=2)
    written = sorted(p.name for p in (tmp_path / "in" / "out").iterdir())
    assert result.stopped == "interrupted" and not result.failed
    assert len(stub.started) == result.done and result.done + result.left == 12 and 3 <= result.done <= 3 + 2 * 2
    assert written == sorted(record.marked) and len(written) == result.done  # whole, counted and recorded
    assert not any(name.endswith(".tmp") for name in written)


def test_a_full_disk_stops_the_run_and_counts_the_photos_in_flight(tmp_path):
    import errno

    pairs = _stub_inputs(tmp_path / "in", n=12, bad=())

    class Full(_Stub):
        def colorize_file(self, src, dst, **options):
            if Path(src).name == "p4.png":
                self.started.append("p4.png")
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().colorize_file(src, dst, **options)

    stub = Full({"p4.png": 0.0, **{f"p{i}.png": 0.05 for i in range(5, 12)}})
    result = colorize_files(stub, pairs, workers=2)
    assert "No space left on device" in result.stopped and result.failed[0].startswith(f"{pairs[4][0]}: cannot write")
    assert result.done + len(result.failed) + result.left == 12
    assert len(stub.started) == result.done + len(result.failed) < 12  # each photo started is counted
    assert sorted(p.name for p in (tmp_path / "in" / "out").iterdir()) == sorted(set(stub.started) - {"p4.png"})


def test_an_unwritable_record_stops_the_run_once(tmp_path):
    pairs = _stub_inputs(tmp_path / "in", n=10, bad=())
    record = _Record(fail_after=3)
    result = colorize_files(_Stub({f"p{i}.png": 0.02 for i in range(10)}), pairs, record=record, workers=2)
    assert "cannot be written" in result.stopped and len(record.marked) == 3
    assert len(result.failed) == 1 and "done (database or disk is full)" in result.failed[0]
    assert result.done + result.left == 10  # the outputs in flight are counted done (not recorded: a rerun skips
    # them as existing)


def test_a_photo_too_large_for_the_memory_fails_alone(tmp_path):
    """A MemoryError on one photo (a huge panorama on a small machine) is that photo's failure, named with the
    reason; it used to end the whole batch with a traceback."""

    class Hungry(_Stub):
        def colorize_file(self, src, dst, **options) -> FileResult:
            if Path(src).name == "p4.jpg":
                raise MemoryError
            return super().colorize_file(src, dst, **options)

    pairs = _inputs(tmp_path / "in")
    result = colorize_files(Hungry({}), pairs, workers=2)
    assert result.done == 8 and not result.stopped
    assert any("p4.jpg: not enough memory" in msg for msg in result.failed), result.failed


def test_an_output_folder_that_cannot_be_written_stops_the_run(tmp_path):
    """Every photo after the first would meet it too: one line and a stop, as for a full disk, not a failure a photo
    (a read-only folder of 10,000 photos gave 10,000 of them)."""
    import errno

    class Refused(_Stub):
        def colorize_file(self, src, dst, **options) -> FileResult:
            self.started.append(Path(src).name)
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))

    pairs = _inputs(tmp_path / "in")
    stub = Refused({})
    result = colorize_files(stub, pairs, workers=1)
    assert result.stopped == f"cannot write to {pairs[0][1].parent} (Permission denied)"
    assert len(stub.started) == 1 and result.left == len(pairs) - 1


@pytest.mark.parametrize("engine", ["torch", "light"])
def test_8bit_photos_are_written_as_before_byte_for_byte(engine, tiny_bins_model_file, tmp_path):
    """16-bit masters have a path of their own; every 8-bit photo (gray, color, transparent, palette, tagged with a
    profile, a 32-bit TIFF of 8-bit values) is written as colorize_file wrote it before: the engine's 8-bit
    colorization of load_input's photo, saved by save_image, to the same bytes in every format."""
    import tifffile

    from colorize.io import load_image
    from helpers import icc_profile

    colorizer = _colorizer(engine, tiny_bins_model_file)
    folder = tmp_path / "in"
    folder.mkdir()
    make_photo(64, 48, seed=1).convert("L").save(folder / "gray.png")
    make_photo(64, 48, seed=2).save(folder / "color.jpg", quality=90, dpi=(300, 300))
    cutout = make_photo(64, 48, seed=3).convert("LA")
    cutout.putalpha(Image.fromarray(((np.arange(64) < 40) * 255).astype(np.uint8)[None].repeat(48, 0)))
    cutout.save(folder / "cutout.png")
    make_photo(64, 48, seed=4).convert("P").save(folder / "palette.gif")
    make_photo(64, 48, seed=5).convert("L").save(folder / "linear.tif", icc_profile=icc_profile("GRAY", 1.0))
    tifffile.imwrite(folder / "i32.tif", np.asarray(make_photo(64, 48, seed=6).convert("L"), np.int32))
    for src in sorted(folder.iterdir()):
        for ext in ("png", "jpg", "tif", "webp"):
            dst, before = tmp_path / "now" / f"{src.name}.{ext}", tmp_path / "before" / f"{src.name}.{ext}"
            assert colorizer.colorize_file(src, dst).eight_bit == ""
            img = load_image(src, keep_gray=True, metadata=True)  # what colorize_file did before 16-bit masters
            save_image(colorizer(img), before, metadata=img.info)
            assert dst.read_bytes() == before.read_bytes(), dst.name
