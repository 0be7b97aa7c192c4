"""A timing cache is a hint: whatever is at its path gives a warning and a fresh cache, never
a traceback or a hang, and another device's cache is left as it is (issue 17, item 5)."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import edge_infer
from edge_infer._version import __version__
from edge_infer.engine.tactics.autotune import TimingCache
from edge_infer.engine.tactics.timing_cache import device_path
from tests.engine.test_memory import branchy

DEVICE = {"kind": "cpu", "arch": "x86_64", "model": "test", "isa": []}
OTHER = {**DEVICE, "model": "Jetson Orin"}


def cache_file(path: Path, entries: Any, device: dict[str, Any] = DEVICE) -> Path:
    data = {"format": 1, "edge_infer_version": __version__, "device": device,
            "entries": entries}  # fmt: skip
    path.write_text(json.dumps(data))
    return path


BAD_ENTRIES = {
    "text time": {"conv": {"tactic": "a", "times_us": {"a": "fast"}}},
    "list time": {"conv": {"tactic": "a", "times_us": {"a": [1.0]}}},
    "negative time": {"conv": {"tactic": "a", "times_us": {"a": -1.0}}},
    "times not a dict": {"conv": {"tactic": "a", "times_us": [1, 2]}},
    "tactic not a name": {"conv": {"tactic": 3, "times_us": {}}},
    "entry not a dict": {"conv": "a"},
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_malformed_entries_give_a_fresh_cache(tmp_path, caplog, case) -> None:
    path = cache_file(tmp_path / "t.json", BAD_ENTRIES[case])
    with caplog.at_level(logging.WARNING):
        cache = TimingCache(DEVICE, path)
    assert cache.entries == {} and "numeric times" in caplog.text
    cache.put("conv", "b", {"b": 2.0})
    cache.save()
    assert json.loads(path.read_text())["entries"] == {
        "conv": {"tactic": "b", "times_us": {"b": 2.0}}
    }


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        '{"format": 1, "entries": {"a": NaN}}',
        "\udcff".encode("utf-8", "surrogatepass").decode("latin-1"),
    ],
)
def test_unparsable_files_give_a_fresh_cache(tmp_path, caplog, text) -> None:
    path = tmp_path / "t.json"
    path.write_text(text, encoding="latin-1")
    with caplog.at_level(logging.WARNING):
        assert TimingCache(DEVICE, path).entries == {}
    assert "unreadable" in caplog.text


def test_a_directory_at_the_path_is_a_warning_on_load_and_save(tmp_path, caplog) -> None:
    path = tmp_path / "t.json"
    path.mkdir()
    with caplog.at_level(logging.WARNING):
        cache = TimingCache(DEVICE, path)
        cache.put("conv", "a", {"a": 1.0})
        cache.save()
    assert cache.entries and path.is_dir()
    assert "not a regular file; ignoring it" in caplog.text and "not saved" in caplog.text


def test_a_fifo_at_the_path_neither_hangs_nor_is_replaced(tmp_path, caplog) -> None:
    path = tmp_path / "t.json"
    os.mkfifo(path)
    done: list[TimingCache] = []
    with caplog.at_level(logging.WARNING):
        reader = threading.Thread(target=lambda: done.append(TimingCache(DEVICE, path)),
                                  daemon=True)  # fmt: skip
        reader.start()
        reader.join(timeout=10)
        assert done, "opening the FIFO blocked, waiting for a writer"
        done[0].save()
    assert path.is_fifo() and "not a regular file" in caplog.text


def test_another_devices_cache_is_left_and_this_devices_written_beside(tmp_path, caplog) -> None:
    path = cache_file(tmp_path / "timing.json", {"conv": {"tactic": "x", "times_us": {}}}, OTHER)
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        cache = TimingCache(DEVICE, path)
    beside = device_path(path, DEVICE)
    assert cache.entries == {} and cache.path == beside and str(beside) in caplog.text
    assert beside.name.startswith("timing.cpu-") and beside.suffix == ".json"
    cache.put("conv", "a", {"a": 1.0, "b": 2.0})
    cache.save()
    assert path.read_bytes() == before, "the other device's cache was overwritten"
    again = TimingCache(DEVICE, path)
    assert again.get("conv", ["a", "b"]) is not None and again.hits == 1


def test_a_build_with_a_directory_as_timing_cache_succeeds(tmp_path, caplog) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    with caplog.at_level(logging.WARNING):
        edge_infer.build(branchy(), timing_cache=str(folder))
    assert "not saved" in caplog.text


def test_a_cache_of_other_kernels_is_ignored_and_rewritten(tmp_path: Path, caplog) -> None:
    """Timings are of one kernel build: a cache another build wrote (a kernel source edited,
    another compiler) would choose tactics by timings these kernels never had."""
    path = tmp_path / "timing.json"
    first = TimingCache(DEVICE, path, kernels="build-a")
    first.put("conv", "fast", {"fast": 1.0, "slow": 2.0})
    first.save()
    assert TimingCache(DEVICE, path, kernels="build-a").get("conv", ["fast", "slow"])
    with caplog.at_level(logging.WARNING):
        other = TimingCache(DEVICE, path, kernels="build-b")
    assert other.entries == {} and "timed other kernels (build-a; these are build-b)" in (
        caplog.text
    )
    other.put("conv", "slow", {"fast": 3.0, "slow": 2.0})
    other.save()
    data = json.loads(path.read_text())
    assert data["kernels"] == "build-b" and data["entries"]["conv"]["tactic"] == "slow"


def test_the_cpu_backend_names_its_kernel_library() -> None:
    from edge_infer.engine.backends import get_backend
    from edge_infer.engine.backends.cpu import native

    lib = native.library()
    if lib is None:
        pytest.skip("no native kernels here")
    key = get_backend("cpu").kernels_identity()
    assert key and Path(lib._name).name == f"kernels-{key}.so"
