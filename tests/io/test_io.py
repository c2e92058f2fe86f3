"""asdlib.io.atomic and asdlib.io.ark: atomic replacement and ark/scp round trips."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

from asdlib.io import atomic
from asdlib.io.ark import (
    ArkError,
    read_scores,
    read_vectors,
    write_scores,
    write_vectors,
)
from asdlib.io.atomic import atomic_write, atomic_write_text


def _names(d) -> list[str]:
    return sorted(p.name for p in d.iterdir())


# -- atomic writes --------------------------------------------------------------------------


def test_atomic_write_replaces_content_on_success(tmp_path):
    p = tmp_path / "sub" / "out.txt"  # parent dirs are created
    atomic_write_text(p, "old\n")
    atomic_write_text(p, "new\n")
    assert p.read_text() == "new\n"
    assert _names(p.parent) == ["out.txt"]


def test_atomic_write_binary(tmp_path):
    p = tmp_path / "blob.bin"
    with atomic_write(p, "wb") as f:
        f.write(b"\x00\x01\xff")
    assert p.read_bytes() == b"\x00\x01\xff"


def test_exception_in_block_keeps_old_file_and_no_temp(tmp_path):
    p = tmp_path / "out.txt"
    p.write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(p) as f:
            f.write("partial")
            raise RuntimeError("boom")
    assert p.read_text() == "old\n"
    assert _names(tmp_path) == ["out.txt"]


def test_exception_on_new_file_leaves_nothing(tmp_path):
    p = tmp_path / "out.txt"
    with pytest.raises(KeyError):
        with atomic_write(p) as f:
            f.write("partial")
            raise KeyError("x")
    assert _names(tmp_path) == []


class _FullDisk:
    """File-object proxy whose write fails like a full disk."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_failing_writer_names_path_and_keeps_old(tmp_path, monkeypatch):
    p = tmp_path / "scores.txt"
    p.write_text("old\n")
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(OSError) as info:
        atomic_write_text(p, "new\n")
    assert info.value.errno == errno.ENOSPC
    assert str(p) in str(info.value)
    assert "disk space" in str(info.value)
    assert p.read_text() == "old\n"
    assert _names(tmp_path) == ["scores.txt"]


def test_failing_fsync_names_path(tmp_path, monkeypatch):
    p = tmp_path / "out.txt"

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    with pytest.raises(OSError, match="out.txt") as info:
        atomic_write_text(p, "x")
    assert info.value.errno == errno.ENOSPC
    assert _names(tmp_path) == []


def test_new_file_gets_umask_permissions_like_open(tmp_path):
    """mkstemp creates 0600 files; outputs must be readable like any other file (shared exp dirs)."""
    p = tmp_path / "out.txt"
    atomic_write_text(p, "x")
    ref = tmp_path / "ref.txt"
    ref.write_text("x")
    assert stat.S_IMODE(p.stat().st_mode) == stat.S_IMODE(ref.stat().st_mode)


# -- ark / scp ------------------------------------------------------------------------------


def _vectors(n: int = 4, dim: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    keys = ["fan-00-b", "ToyCar-01-a", "fan-00-a", "bearing-00-x"][:n]
    return {k: rng.standard_normal(dim) for k in keys}  # float64 on purpose


def test_ark_round_trip_float32_sorted(tmp_path):
    vecs = _vectors()
    write_vectors(tmp_path / "e.ark", tmp_path / "e.scp", vecs)
    got = read_vectors(tmp_path / "e.scp")
    assert list(got) == sorted(vecs)  # C locale: uppercase first
    assert list(got)[0] == "ToyCar-01-a"
    for k, v in vecs.items():
        assert got[k].dtype == np.float32 and got[k].shape == (5,)
        np.testing.assert_array_equal(got[k], v.astype(np.float32))
    assert _names(tmp_path) == ["e.ark", "e.scp"]  # no temp files left


def test_ark_accepts_pairs_and_2d_rows(tmp_path):
    write_vectors(tmp_path / "e.ark", tmp_path / "e.scp", [("b", np.ones((1, 3))), ("a", np.zeros(3))])
    got = read_vectors(tmp_path / "e.scp")
    assert list(got) == ["a", "b"] and got["b"].shape == (3,)


def test_scp_holds_absolute_ark_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_vectors("out/e.ark", "out/e.scp", _vectors(2))
    lines = (tmp_path / "out" / "e.scp").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        key, ref = line.split(" ", 1)
        ark, offset = ref.rsplit(":", 1)
        assert os.path.isabs(ark) and ark == str((tmp_path / "out" / "e.ark").resolve())
        assert int(offset) > 0
    monkeypatch.chdir("/")
    assert len(read_vectors(tmp_path / "out" / "e.scp")) == 2  # readable from anywhere


def test_duplicate_keys_rejected(tmp_path):
    pairs = [("a", np.ones(2)), ("b", np.ones(2)), ("a", np.zeros(2))]
    with pytest.raises(ArkError, match=r"e\.scp.*duplicate key 'a'"):
        write_vectors(tmp_path / "e.ark", tmp_path / "e.scp", pairs)
    assert not (tmp_path / "e.scp").exists()


@pytest.mark.parametrize("cut", [3, 4, 8, 20])
def test_truncated_ark_names_the_scp(tmp_path, cut):
    """Cutting a multiple of 4 bytes leaves a readable but shorter last vector: must still fail."""
    write_vectors(tmp_path / "e.ark", tmp_path / "e.scp", {"a": np.ones(3), "b": np.arange(5.0)})
    size = (tmp_path / "e.ark").stat().st_size
    with open(tmp_path / "e.ark", "r+b") as f:
        f.truncate(size - cut)
    with pytest.raises(ArkError, match=r"e\.scp"):
        read_vectors(tmp_path / "e.scp")


def test_missing_scp_and_missing_ark(tmp_path):
    with pytest.raises(ArkError, match=r"nope\.scp not found"):
        read_vectors(tmp_path / "nope.scp")
    write_vectors(tmp_path / "e.ark", tmp_path / "e.scp", {"a": np.ones(3)})
    (tmp_path / "e.ark").unlink()
    with pytest.raises(ArkError, match=r"e\.scp: unreadable"):
        read_vectors(tmp_path / "e.scp")


def test_scores_round_trip_and_length_check(tmp_path):
    scores = {"x-00-b": 0.25, "x-00-a": -1.5}
    write_scores(tmp_path / "s.ark", tmp_path / "s.scp", scores)
    got = read_scores(tmp_path / "s.scp")
    assert got == scores and list(got) == ["x-00-a", "x-00-b"]
    write_vectors(tmp_path / "v.ark", tmp_path / "v.scp", {"x-00-a": np.ones(1), "x-00-b": np.ones(2)})
    with pytest.raises(ArkError, match=r"v\.scp: score for 'x-00-b' has 2 values, expected 1"):
        read_scores(tmp_path / "v.scp")
