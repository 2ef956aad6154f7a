"""Runtime settings: device names, and glibc allocator tuning that stays out of the user's way."""

import pytest
import torch

from colorize import runtime
from colorize.runtime import pick_device


def test_pick_device(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="choose from: auto, cpu, cuda, mps"):
        pick_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for name in ("cuda", "cuda:1", "mps"):  # a GPU torch cannot use: said before any model is moved there
        with pytest.raises(ValueError, match=f"device '{name}': torch .*; --device cpu runs on the processor"):
            pick_device(name)
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("cuda", local_rank=3) == torch.device("cuda", 3)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device("auto") == torch.device("cuda", 0)


def test_allocator_tuning_respects_the_users_settings(monkeypatch):
    monkeypatch.setattr(runtime, "_allocator_tuned", False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # the user tunes glibc malloc themselves: hands off
    assert runtime.tune_allocator() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("COLORIZE_NO_MALLOC_TUNING", "1")
    assert runtime.tune_allocator() is False
    assert runtime._allocator_tuned is False
