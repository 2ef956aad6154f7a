"""The wheel carries what ``colorize photo.jpg`` needs: the shipped weights, their card and the recipes;
installed without the repository, it colorizes from any folder, offline."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import make_photo

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build the wheel from a copy of the sources (the checkout stays clean), without network."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE", "src", "weights", "configs"):
        if (REPO / name).is_dir():  # symlinks kept: src/colorize/weights points at ../../weights
            shutil.copytree(REPO / name, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "--no-index", "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (whl,) = out.glob("colorize-*.whl")
    return whl


def test_wheel_carries_weights_card_and_recipes(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (REPO / "weights").iterdir() if p.suffix in (".safetensors", ".onnx", ".md")}
    recipes = {p.name for p in (REPO / "configs").glob("*.yaml")}
    assert shipped and recipes
    assert {f"colorize/weights/{n}" for n in shipped} <= names
    assert {f"colorize/configs/{n}" for n in recipes} <= names
    graphs = {f"colorize/graphs/{p.name}" for p in (REPO / "src" / "colorize" / "graphs").glob("*.onnx")}
    assert graphs and graphs <= names  # the light engine's steps
    for n in shipped:  # whole files, not links or stubs
        assert zipfile.ZipFile(wheel).getinfo(f"colorize/weights/{n}").file_size == (REPO / "weights" / n).stat().st_size
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode().splitlines()
    assert "License-Expression: MIT" in metadata and any(n.endswith("/licenses/LICENSE") for n in names)
    requires = [ln for ln in metadata if ln.startswith("Requires-Dist:")]
    base = [ln for ln in requires if "extra ==" not in ln]
    extras_only = ("yaml", "efficientnet", "webdataset", "torch", "timm")  # never the base (light) install
    assert not any(name in ln.lower() for ln in base for name in extras_only), base


def test_installed_wheel_colorizes_from_any_folder(wheel, tmp_path):
    """Installed (not editable) into a fresh folder: the shipped model is found inside the package."""
    target, work = tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                          "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    make_photo(40, 32).convert("L").save(work / "photo.jpg")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COLORIZE_WEIGHTS")}
    env.update(PYTHONPATH=str(target), OMP_NUM_THREADS="1", COLORIZE_NO_PROGRESS="1")
    script = ("import sys, colorize.shipped as h; from colorize.cli import main; "
              "print('weights:', h.weights_dir()); print('recipe:', h.package_dir('configs')); sys.exit(main())")
    res = subprocess.run([sys.executable, "-c", script, "photo.jpg", "-q"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"weights: {target}" in res.stdout and f"recipe: {target}" in res.stdout
    assert (work / "colorized" / "photo.jpg").is_file()
