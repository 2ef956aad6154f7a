"""Color hints (colorize.hints) through the pipeline: parsing, the edge-bounded fill, re-rendering."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from colorize.color import rgb_to_lab
from colorize.hints import Hint, as_hints, hint_ab, hints_from_json, hints_from_tint, load_hints, parse_color, parse_hint
from colorize.pipeline import Colorizer

BLUE = "#2a6fdb"


@pytest.fixture(scope="module")
def colorizer(tiny_model_file):
    return Colorizer(tiny_model_file)


def two_regions(width: int = 128, height: int = 96, *, split: int | None = None, levels=(40, 75)) -> Image.Image:
    """A gray photo of two flat regions (A left, B right) split by a sharp vertical edge."""
    arr = np.full((height, width), levels[0], np.uint8)
    arr[:, split or width // 2:] = levels[1]
    return Image.fromarray(arr).convert("RGB")


def lab(img) -> torch.Tensor:
    return rgb_to_lab(torch.from_numpy(np.asarray(img, dtype=np.float64) / 255).permute(2, 0, 1))


def hue_deg(ab: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.atan2(ab[1], ab[0]))


def hue_diff(a: torch.Tensor, b: float) -> torch.Tensor:
    return (torch.remainder(a - b + 180, 360) - 180).abs()


@pytest.mark.parametrize("levels", [(40, 75), (75, 40)])
def test_hint_fills_its_region_and_stops_at_the_edge(colorizer, levels):
    """The contract: a blue hint in A turns all of A blue (hue within 10 degrees), B's ab moves < 2 units."""
    photo = two_regions(levels=levels)
    before, after = lab(colorizer(photo)), lab(colorizer(photo, hints=[Hint(20, 30, BLUE)]))
    target = hue_deg(hint_ab([Hint(0, 0, BLUE)])[0])
    a_region, b_region = (slice(None), slice(0, 64)), (slice(None), slice(64, None))
    assert hue_diff(hue_deg(after[1:][:, a_region[0], a_region[1]]), float(target)).max() < 10
    moved = (after[1:] - before[1:])[:, b_region[0], b_region[1]].norm(dim=0)
    assert moved.max() < 2.0
    assert (after[0] - before[0]).abs().max() < 0.5  # lightness is the photo's


def test_radius_limits_the_reach_and_far_hints_do_nothing(colorizer):
    photo = Image.new("RGB", (160, 40), (120, 120, 120))  # one flat region
    before = lab(colorizer(photo))
    after = lab(colorizer(photo, hints=[Hint(10, 20, BLUE, radius=30)]))
    target = float(hue_deg(hint_ab([Hint(0, 0, BLUE)])[0]))
    assert hue_diff(hue_deg(after[1:, 12:28, 2:18]), target).max() < 10  # within half the radius: the hint's hue
    moved = (after[1:] - before[1:]).norm(dim=0)
    assert moved[:, 60:].max() < 1.0  # over 1.5 radii away: untouched


def test_two_hints_each_own_their_side(colorizer):
    photo = two_regions()
    out = lab(colorizer(photo, hints=["20,30,#2a6fdb", {"x": 100, "y": 30, "color": "red"}]))
    assert hue_diff(hue_deg(out[1:, :, :60]), float(hue_deg(hint_ab([Hint(0, 0, BLUE)])[0]))).max() < 10
    assert hue_diff(hue_deg(out[1:, :, 68:]), float(hue_deg(hint_ab([Hint(0, 0, "red")])[0]))).max() < 10


def test_render_reuses_the_prediction(colorizer, monkeypatch):
    photo = two_regions()
    prediction = colorizer.analyze(photo)
    calls = []
    monkeypatch.setattr(colorizer, "predict", lambda *a, **k: calls.append(1))
    plain = colorizer.render(prediction)
    hinted = colorizer.render(prediction, hints=[Hint(20, 30, BLUE)])
    assert calls == [] and plain.size == hinted.size == photo.size
    expected = colorizer.__class__.__call__  # the one-shot path gives the same result
    monkeypatch.undo()
    np.testing.assert_allclose(np.asarray(hinted, np.int16), np.asarray(expected(colorizer, photo, hints=[Hint(20, 30, BLUE)]), np.int16), atol=1)


def test_hints_work_for_every_input_type(colorizer):
    photo = two_regions(64, 48)
    arr = np.asarray(photo)
    for image in (photo, arr, arr.astype(np.float32) / 255, torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255):
        out = colorizer(image, hints=[Hint(5, 5, BLUE)])
        out = np.asarray(out.permute(1, 2, 0) * 255 if isinstance(out, torch.Tensor) else out, np.float64)
        if out.max() <= 1.0:
            out = out * 255
        assert hue_diff(hue_deg(lab(out.astype(np.uint8))[1:, 10, 10]), float(hue_deg(hint_ab([Hint(0, 0, BLUE)])[0]))) < 10


def test_parse_hint_and_colors():
    assert parse_hint("120,80,#2a6fdb") == Hint(120, 80, "#2a6fdb")
    assert parse_hint("1,2,red,15") == Hint(1, 2, "red", 15.0)
    assert parse_hint("1,2,rgb(10, 20, 30)").rgb == (10, 20, 30)
    assert parse_hint("1,2,rgb(10,20,30),7").radius == 7.0
    assert parse_color("navy") == (0, 0, 128)
    for bad in ("1,2", "x,2,red", "1,2,notacolor", "1,2,red,-3"):
        with pytest.raises(ValueError):
            parse_hint(bad)


def test_one_hint_alone_is_a_list_of_one():
    """hints="120,80,red" was read a character at a time ("bad hint '1'"), one dict by its keys ("bad hint 'x'")."""
    hint = Hint(120, 80, "red")
    for one in ("120,80,red", {"x": 120, "y": 80, "color": "red"}, hint):
        assert as_hints(one) == [hint]
    assert as_hints(("120,80,red", hint)) == [hint, hint] and as_hints(None) == []
    with pytest.raises(TypeError, match="list of hints"):
        as_hints(5)


def test_numpy_numbers_are_numbers():
    """A hint placed with numpy (an argmax, an array's element) was refused: 'x must be a finite number, got
    np.int64(10)'; it is kept as Python's number, so it writes to JSON."""
    hint = Hint(np.int64(10), np.float32(2.5), "red", np.uint8(4))
    assert hint == Hint(10, 2.5, "red", 4) and json.loads(json.dumps(hint.to_json())) == hint.to_json()
    assert as_hints([{"x": np.int32(3), "y": np.float64(1), "color": "red"}]) == [Hint(3, 1, "red")]
    with pytest.raises(ValueError, match="finite"):
        Hint(np.float32("nan"), 1, "red")
    with pytest.raises(ValueError, match="finite"):
        Hint(np.bool_(True), 1, "red")


def test_hints_json(tmp_path):
    items = [{"x": 1, "y": 2, "color": "red"}, {"x": 3.5, "y": 4, "color": "#00ff00", "radius": 9}]
    (tmp_path / "h.json").write_text(json.dumps(items))
    hints = load_hints(tmp_path / "h.json")
    assert [h.to_json() for h in hints] == items
    (tmp_path / "many.json").write_text(json.dumps({"a.jpg": items}))
    assert load_hints(tmp_path / "many.json")["a.jpg"] == hints
    for bad in ({"x": 1}, [{"x": 1, "y": 2}], [{"x": 1, "y": 2, "color": "red", "size": 3}], [{"x": "a", "y": 2, "color": "red"}],
                [{"x": True, "y": 2, "color": "red"}], [{"x": 1, "y": 2, "color": "red", "radius": True}]):  # true was 1
        with pytest.raises(ValueError):
            hints_from_json(bad)


def test_hint_outside_the_photo_is_refused(colorizer):
    with pytest.raises(ValueError, match="outside"):
        colorizer(two_regions(), hints=[Hint(500, 10, "red")])


def test_tint_becomes_hints():
    arr = np.asarray(two_regions(128, 96)).copy()
    arr[20:60, 10:50] = (200, 60, 50)  # a hand-tinted red patch on the gray print
    hints = hints_from_tint(arr)
    assert len(hints) == 1
    h = hints[0]
    assert 10 <= h.x <= 50 and 20 <= h.y <= 60
    assert hue_diff(hue_deg(hint_ab([h])[0]), float(hue_deg(hint_ab([Hint(0, 0, "#c83c32")])[0]))) < 5
    assert hints_from_tint(np.asarray(two_regions())) == []


def test_tint_warning_counts_only_the_hints_from_the_tint(tiny_model_file, tmp_path, capsys):
    """With --tint-as-hints and a --hint, the warning said the print was colorized 'with 2 hints from its
    tint' when its tint gave one: the user's own hints were counted as the photo's."""
    from colorize.cli import main

    arr = np.asarray(two_regions(128, 96)).copy()
    arr[20:60, 10:50] = (200, 60, 50)  # one hand-tinted patch
    Image.fromarray(arr).save(tmp_path / "p.png")
    assert main([str(tmp_path / "p.png"), "-o", str(tmp_path / "out.png"), "--model", str(tiny_model_file),
                 "--tint-as-hints", "--hint", "100,80,blue", "--hint", "5,5,navy"]) == 0
    assert "with 1 hint from its tint" in capsys.readouterr().err


def test_contract_with_the_shipped_model():
    """The same contract with the real (classification) model, whose prediction varies across a flat region
    and ripples near the frame; skipped when its weights are not installed."""
    from colorize.shipped import weight_file

    if not weight_file(None).is_file():
        pytest.skip("shipped weights not installed")
    colorizer = Colorizer()
    target = float(hue_deg(hint_ab([Hint(0, 0, BLUE)])[0]))
    for levels in [(40, 75), (75, 40)]:
        photo = two_regions(256, 192, levels=levels)
        before, after = lab(colorizer(photo)), lab(colorizer(photo, hints=[Hint(40, 60, BLUE)]))
        assert hue_diff(hue_deg(after[1:, :, :128]), target).max() < 10
        # the other region keeps its color (the column at the edge itself is shared by the upsampling)
        assert (after[1:] - before[1:])[:, :, 129:].norm(dim=0).max() < 2.0


def test_hints_file_name_that_picks_several_photos_is_refused(tiny_model_file, tmp_path, capsys):
    """{"a.png": [...]} over an album with a.png in two folders: an error naming both (the same hints, at pixels
    meant for one photo, were applied to each); keyed by path, each photo gets its own."""
    from colorize.cli import main

    for folder in ("2019", "2020"):
        (tmp_path / "album" / folder).mkdir(parents=True)
        two_regions().save(tmp_path / "album" / folder / "a.png")
    hint = [{"x": 5, "y": 5, "color": "red"}]
    (tmp_path / "h.json").write_text(json.dumps({"a.png": hint}))
    args = [str(tmp_path / "album"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file), "-q", "--hints"]
    assert main([*args, str(tmp_path / "h.json")]) == 2
    err = capsys.readouterr().err
    assert "'a.png' names 2 input photos" in err and "2019" in err and "2020" in err, err
    assert not (tmp_path / "out").exists()
    (tmp_path / "h.json").write_text(json.dumps({str(tmp_path / "album" / "2019" / "a.png"): hint}))
    assert main([*args, str(tmp_path / "h.json")]) == 0


def test_hints_file_keys_name_photos_by_the_end_of_their_path(tiny_model_file, tmp_path, monkeypatch, capsys):
    """Keys had to be the path exactly as the command line's folder made it: with `colorize /data/album`, neither
    "2019/a.png" (the path within the album) nor "album/2019/a.png" (as the README showed) named a photo, and
    neither did a Windows path; each was 'no input photo named ...'."""
    from colorize.cli import main

    for folder in ("2019", "2020"):
        (tmp_path / "album" / folder).mkdir(parents=True)
        two_regions().save(tmp_path / "album" / folder / "a.png")
    monkeypatch.chdir(tmp_path / "album")
    red, blue = [{"x": 5, "y": 5, "color": "red"}], [{"x": 5, "y": 5, "color": "blue"}]
    for keys in ({"2019/a.png": red, "album/2020/a.png": blue}, {"album\\2019\\a.png": red, "./2020/a.png": blue},
                 {"../album/2019/a.png": red, "2020/a.png": blue}):
        (tmp_path / "h.json").write_text(json.dumps(keys))
        out = tmp_path / "out"
        assert main([str(tmp_path / "album"), "-o", str(out), "--model", str(tiny_model_file), "-q", "--overwrite",
                     "--hints", str(tmp_path / "h.json")]) == 0, (keys, capsys.readouterr().err)
        for folder, color in (("2019", "red"), ("2020", "blue")):
            hue = hue_deg(lab(Image.open(out / folder / "a.png"))[1:, 5, 5])
            assert hue_diff(hue, float(hue_deg(hint_ab([Hint(0, 0, color)])[0]))) < 10, (keys, folder, hue)
    (tmp_path / "h.json").write_text(json.dumps({"2021/a.png": red}))
    assert main([str(tmp_path / "album"), "-o", str(tmp_path / "out2"), "--model", str(tiny_model_file), "-q",
                 "--hints", str(tmp_path / "h.json")]) == 2
    assert "no input photo named 2021/a.png" in capsys.readouterr().err


def test_keep_color_and_tint_as_hints_are_refused_together(tiny_model_file, tmp_path, capsys):
    """Both act on photos already in color, and --keep-color won: with the pair (as the README showed it) a
    hand-tinted print was passed through unchanged and its tint never became hints. The pair is a usage error."""
    from colorize.cli import main

    two_regions().save(tmp_path / "p.png")
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "p.png"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_file),
              "--keep-color", "--tint-as-hints"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_hints_file_saved_with_a_bom_is_read(tmp_path):
    """Notepad and other Windows editors start UTF-8 with a byte-order mark: the file was refused
    ('Unexpected UTF-8 BOM'), a film's hints file too, though the web page loads it."""
    from colorize.video import load_video_hints

    hint = {"x": 1, "y": 2, "color": "red"}
    (tmp_path / "h.json").write_text(json.dumps([hint]), encoding="utf-8-sig")
    assert load_hints(tmp_path / "h.json") == [Hint(1, 2, "red")]
    (tmp_path / "v.json").write_text(json.dumps([{"frame": 3, **hint}]), encoding="utf-8-sig")
    assert load_video_hints(tmp_path / "v.json") == {3: [Hint(1, 2, "red")]}


def test_hints_file_that_is_not_text_names_the_file(tmp_path):
    """A hints file saved as UTF-16 (or a photo given by mistake) failed with only "'utf-8' codec can't decode"."""
    (tmp_path / "h.json").write_bytes('[{"x": 1, "y": 2, "color": "red"}]'.encode("utf-16"))
    with pytest.raises(ValueError, match=r"h\.json: cannot read hints"):
        load_hints(tmp_path / "h.json")


def test_hints_file_with_one_hint_not_in_a_list_says_so(tmp_path):
    """{"x": 20, "y": 20, "color": "red"} was read as photos named x, y, color: "'x': hints must be a JSON list"."""
    (tmp_path / "h.json").write_text(json.dumps({"x": 20, "y": 20, "color": "red"}))
    with pytest.raises(ValueError, match=r"h\.json: one hint must be in a list"):
        load_hints(tmp_path / "h.json")


def test_hints_file_for_several_photos_names_the_photo_with_the_error(tmp_path):
    """In {"a.jpg": [...], "b.jpg": [...]}, an error named only 'hint 0': which photo's hint 0 it did not say."""
    (tmp_path / "h.json").write_text(json.dumps({"a.jpg": [{"x": 1, "y": 2, "color": "red"}],
                                                 "b.jpg": [{"x": 1, "y": 2, "colour": "red"}]}))
    with pytest.raises(ValueError, match=r"h\.json: 'b\.jpg': hint 0: missing color"):
        load_hints(tmp_path / "h.json")
