"""Every command in the README's code blocks runs as written (or, for the heavy ones, is accepted by its
parser), in a folder of tiny self-made photos, with a tiny model standing in for the shipped one."""

import argparse
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from colorize import shipped
from colorize.checkpoint import load_model, save_checkpoint
from colorize.cli import main
from helpers import make_photo

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"serve", "video", "eval", "train"}  # a server, a film, a scoring run, training: parsed, not run


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def _commands() -> list[list[str]]:
    lines = [ln for block in _blocks("sh") for ln in block.splitlines()]
    return [argv for argv in (shlex.split(ln, comments=True) for ln in lines) if argv]


class _Parsed(Exception):
    pass


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_bins_model_file, tiny_model_file):
    """The files the README's commands name, and an untrained model of the shipped kind (classification,
    so --confidence works) as the shipped default."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(shipped.SHIPPED, shipped.DEFAULT_MODEL,
                        shipped.ShippedWeights(tiny_bins_model_file.name, None, 32, "test", "none.md"))
    monkeypatch.setenv("COLORIZE_WEIGHTS", str(tiny_bins_model_file.parent))
    for i, name in enumerate(["grandma.jpg", "photo.jpg", "old.jpg", "album/a.jpg", "album/trip/b.png",
                              "scans/s.png", "my_scans/m.jpg", "photos/p.jpg"]):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        size = (320, 240) if name in ("grandma.jpg", "photo.jpg") else (48, 40)  # the README's hints fit
        make_photo(*size, seed=i).convert("L").save(tmp_path / name)
    make_photo(48, 40, seed=9).save(tmp_path / "scans" / "tinted.png")  # in color: --tint-as-hints has work
    (tmp_path / "hints.json").write_text(json.dumps([{"x": 120, "y": 80, "color": "#2a6fdb", "radius": 60}]))
    (tmp_path / "album_hints.json").write_text(json.dumps({"a.jpg": [{"x": 10, "y": 10, "color": "red"}],
                                                           "b.png": [{"x": 30, "y": 20, "color": "navy"}]}))
    for folder in ("my_photos", "my_val"):
        shutil.copytree(tmp_path / "album", tmp_path / folder)
    (tmp_path / "film.mp4").write_bytes(b"")  # parsed only
    save_checkpoint(tmp_path / "runs" / "mine" / "best.pt", load_model(tiny_model_file))  # what training leaves
    return tmp_path


def test_the_readme_shows_commands():
    names = {argv[1] if len(argv) > 1 else "" for argv in _commands() if argv[0] == "colorize"}
    assert {"grandma.jpg", "models", "serve", "video", "train", "export"} <= names


def test_every_readme_command_runs(workdir, monkeypatch, capsys):
    ran, parsed = [], []
    for argv in _commands():
        if argv[0] == "make":  # the Makefile has the target
            assert re.search(rf"^{argv[1]}:", (REPO / "Makefile").read_text(), flags=re.M), argv
            continue
        if argv[0] == "pip":  # the extras it names exist
            extras = re.findall(r"\[([\w,]+)\]", " ".join(argv))
            optional = (REPO / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1]
            assert all(re.search(rf"^{e} = ", optional, flags=re.M) for x in extras for e in x.split(",")), argv
            continue
        if argv[0] != "colorize":  # a script of the repository
            script = next(a for a in argv if "/" in a)
            assert (REPO / script).is_file(), argv
            continue
        args = argv[1:]
        if args[0] in HEAVY:
            def stop_after_parsing(self, a=None, namespace=None, _orig=argparse.ArgumentParser.parse_args):
                raise _Parsed(_orig(self, a, namespace))

            with monkeypatch.context() as m:
                m.setattr(argparse.ArgumentParser, "parse_args", stop_after_parsing)
                with pytest.raises(_Parsed):
                    main(args)
            parsed.append(argv)
            continue
        code = main(args + ["-q"] if args[0] != "models" and args[0] != "export" else args)
        assert code == 0, (argv, capsys.readouterr())
        ran.append(argv)
    assert (workdir / "colorized" / "grandma.jpg").is_file() and (workdir / "old_color.png").is_file()
    assert (workdir / "album_color" / "trip" / "b.png").is_file()
    assert (workdir / "weights" / "mine.safetensors").is_file() and (workdir / "web" / "s.webp").is_file()
    assert (workdir / "hinted.jpg").is_file() and (workdir / "hinted.png").is_file()
    assert (workdir / "out" / "photo.confidence.png").is_file() and (workdir / "out" / "trip" / "b.png").is_file()
    assert (workdir / "colorized" / "tinted.png").is_file()  # colorized with its own colors as hints
    assert len(ran) >= 6 and len(parsed) >= 5


def test_readme_python_runs(workdir):
    for block in _blocks("python"):
        namespace: dict = {}
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
        assert namespace["color"].size == namespace["Image"].open("grandma.jpg").size
