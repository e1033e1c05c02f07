"""The training process keeps the memory it frees (glibc's mallopt), unless the environment sets
the allocator itself."""
from __future__ import annotations

import sys

import pytest

from distill.engine.allocator import (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, MMAP_THRESHOLD,
                                      TRIM_THRESHOLD, keep_freed_memory)


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_thresholds_are_set_unless_the_environment_sets_them(monkeypatch):
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(key, raising=False)
    libc = FakeLibc()
    assert keep_freed_memory(libc)
    assert libc.calls == [(M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)]
    assert keep_freed_memory()  # the real glibc of this machine takes them
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    libc = FakeLibc()
    assert not keep_freed_memory(libc) and libc.calls == []


def test_an_allocator_without_mallopt_is_left_alone():
    assert not keep_freed_memory(object())
