"""Hostile packed models (issue 19): every tampered config, path, manifest field and tar member is
refused with one message naming the file, before anything is unpickled with ``weights_only=False``,
and a ``packed.tar`` is extracted into a temporary directory that is always removed."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from asdlib.backends import packed as packed_mod
from asdlib.backends.packed import MANIFEST, PackedError, file_table, load_packed, manifest_digest


def refresh(root: Path, drop: tuple[str, ...] = ()) -> None:
    """What an attacker does after an edit: recompute every file hash and the manifest digest."""
    m = json.loads((root / MANIFEST).read_text())
    m["files"] = {k: v for k, v in file_table(root).items() if k not in drop}
    m["digest"] = manifest_digest(m)
    (root / MANIFEST).write_text(json.dumps(m))


def edit_manifest(change: Callable[[dict], None], rehash: bool = True) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        m = json.loads((root / MANIFEST).read_text())
        change(m)
        if rehash:
            try:
                m["digest"] = manifest_digest(m)
            except ValueError:  # NaN: the canonical form refuses it
                pass
        (root / MANIFEST).write_text(json.dumps(m))

    return apply


def edit_config(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        cfg = yaml.safe_load((root / "config.yaml").read_text())
        change(cfg)
        (root / "config.yaml").write_text(yaml.safe_dump(cfg))
        refresh(root)

    return apply


class Payload:
    """A pickle that runs code when unpickled with weights_only=False: it creates MARKER."""

    marker = ""

    def __reduce__(self):  # noqa: D105
        return (os.mkdir, (self.marker,))


def payload_upstream(unsafe: bool) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        Payload.marker = str(root.parent / "PWNED")
        (root / "upstream").mkdir()
        torch.save({"model": Payload()}, root / "upstream" / "evil.pt")
        cfg = yaml.safe_load((root / "config.yaml").read_text())
        cfg["embedder"] = "ssl"
        cfg["upstream"].update(path="upstream/evil.pt", allow_unsafe_pickle=unsafe)
        (root / "config.yaml").write_text(yaml.safe_dump(cfg))
        refresh(root)

    return apply


def upstream_path(path: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        outside = root.parent / "outside.pt"
        torch.save({"w": torch.zeros(1)}, outside)
        if path.endswith("link.pt"):
            (root / "upstream").mkdir()
            (root / "upstream" / "link.pt").symlink_to(outside)
        edit_config(lambda c: c["upstream"].update(path=str(outside) if path == "abs" else path))(root)

    return apply


def set_threshold(value: object, rehash: bool = True) -> Callable[[Path], None]:
    return edit_manifest(lambda m: m["thresholds"]["fan"]["00"].update(threshold=value), rehash)


def garbage_bank(root: Path) -> None:
    (root / "bank.pt").write_bytes(b"PK\x03\x04 not a bank" * 10)
    refresh(root)


def stray_base(root: Path) -> None:
    text = (root / "config.yaml").read_text()
    (root / "config.yaml").write_text("base: ../../../etc/evil.yaml\n" + text)
    refresh(root)


DIR_CASES = {
    "unsafe pickle flag + payload": (payload_upstream(True), "allow_unsafe_pickle is true"),
    "payload upstream, flag off": (payload_upstream(False), "weights_only"),
    "upstream.path absolute": (upstream_path("abs"), "not a relative path inside"),
    "upstream.path ../..": (upstream_path("../../outside.pt"), "not a relative path inside"),
    "upstream.path symlink out": (upstream_path("upstream/link.pt"), "leads outside"),
    "config names a base": (stray_base, "names a base"),
    "config hop -1": (edit_config(lambda c: c["data"].update(window_hop_seconds=-1.0)), "must be >= 0"),
    "threshold 1e9, no rehash": (set_threshold(1e9, rehash=False), "digest does not match"),
    "threshold NaN": (set_threshold(float("nan")), "NaN is not a number"),
    "threshold string": (set_threshold("0.5"), "expected a number"),
    "threshold null": (set_threshold(None), "expected a number"),
    "files {}": (edit_manifest(lambda m: m.update(files={})), "config.yaml, model.pt, bank.pt not listed"),
    "config.yaml unlisted": (lambda r: refresh(r, drop=("config.yaml",)), "config.yaml not listed"),
    "files a list": (edit_manifest(lambda m: m.update(files=[])), "expected a mapping"),
    "files bad entry": (edit_manifest(lambda m: m["files"]["bank.pt"].update(sha256="x")), "64 hex"),
    "files ../ entry": (edit_manifest(lambda m: m["files"].update({"../x": m["files"]["bank.pt"]})), "not a relative"),
    "thresholds missing": (edit_manifest(lambda m: m.pop("thresholds")), "thresholds"),
    "windowing missing": (edit_manifest(lambda m: m.pop("windowing")), "windowing"),
    "hop -1 in manifest": (edit_manifest(lambda m: m["windowing"].update(hop_seconds=-1.0)), "differ from"),
    "aggregate bogus": (edit_manifest(lambda m: m["windowing"].update(aggregate="bogus")), "'bogus' is not one of"),
    "format 99": (edit_manifest(lambda m: m.update(format=99)), "format 99"),
    "unknown key": (edit_manifest(lambda m: m.update(extra=1)), "unknown key 'extra'"),
    "garbage bank.pt": (garbage_bank, "unreadable memory bank"),
    "unknown machine threshold": (edit_manifest(lambda m: m["thresholds"].update(pump=m["thresholds"]["fan"])), "pump"),
}


@pytest.mark.parametrize("case", list(DIR_CASES))
def test_hostile_packed_dir_is_refused(tiny_pack: Path, tmp_path: Path, case: str) -> None:
    change, message = DIR_CASES[case]
    root = tmp_path / "pack" / "packed"
    shutil.copytree(tiny_pack, root)
    change(root)
    with pytest.raises(PackedError, match=None) as e:
        load_packed(root)
    text = str(e.value)
    assert message in text and "\n" not in text, text
    assert not (tmp_path / "pack" / "PWNED").exists()


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


def hostile_tar(tiny_pack: Path, path: Path, extra: list[tarfile.TarInfo], raw: bytes = b"") -> None:
    with tarfile.open(path, "w") as tar:
        tar.add(tiny_pack, arcname="packed")
        for m in extra:
            tar.addfile(m, io.BytesIO(b"\0" * m.size) if m.isfile() else None)
        if raw:  # written as is, before the end-of-archive blocks
            tar.fileobj.write(raw)
            tar.offset += len(raw)


def huge_member() -> bytes:
    """A header that declares 1 TiB, followed by 512 bytes: tiny on disk, a bomb if extracted."""
    return _member("packed/huge.bin", size=2**40).tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 512


TAR_CASES = {
    "traversal": ([_member("packed/../../evil.txt")], b"", "not a relative path"),
    "absolute": ([_member("/tmp/evil.txt")], b"", "not a relative path"),
    "symlink": ([_member("packed/up", tarfile.SYMTYPE, link="/etc/passwd")], b"", "a symbolic link"),
    "hardlink": ([_member("packed/hl", tarfile.LNKTYPE, link="packed/model.pt")], b"", "a hard link"),
    "fifo": ([_member("packed/fifo", tarfile.FIFOTYPE)], b"", "special file"),
    "char device": ([_member("packed/dev", tarfile.CHRTYPE)], b"", "special file"),
    "block device": ([_member("packed/blk", tarfile.BLKTYPE)], b"", "special file"),
    "second top folder": ([_member("other/x.txt")], b"", "one packed directory"),
    "declared 1 TiB": ([], huge_member(), "bytes in all"),
}


@pytest.mark.parametrize("case", list(TAR_CASES))
def test_hostile_tar_is_refused(tiny_pack: Path, tmp_path: Path, case: str) -> None:
    extra, raw, message = TAR_CASES[case]
    path = tmp_path / "packed.tar"
    hostile_tar(tiny_pack, path, extra, raw)
    with pytest.raises(PackedError) as e:
        load_packed(path)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not Path("/tmp/evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_tar_with_too_many_members_and_truncated_tar(tiny_pack: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(packed_mod, "MAX_MEMBERS", 8)
    path = tmp_path / "many.tar"
    hostile_tar(tiny_pack, path, [_member(f"packed/f{i}") for i in range(8)])
    with pytest.raises(PackedError, match="more than 8 members"):
        load_packed(path)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(tiny_pack.with_suffix(".tar").read_bytes()[:3000])
    with pytest.raises(PackedError, match="not a readable packed archive|not a packed model|one packed directory"):
        load_packed(cut)


def test_tar_is_extracted_into_a_temporary_dir_that_is_removed(tiny_pack: Path, tmp_path: Path, monkeypatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    loaded = load_packed(tiny_pack.with_suffix(".tar"))
    assert loaded.known() == [("fan", "00")] and list(scratch.iterdir()) == []
    bad = tmp_path / "bad.tar"
    hostile_tar(tiny_pack, bad, [_member("packed/fifo", tarfile.FIFOTYPE)])
    with pytest.raises(PackedError):
        load_packed(bad)
    altered = tmp_path / "altered.tar"
    copy = tmp_path / "c" / "packed"
    shutil.copytree(tiny_pack, copy)
    (copy / "bank.pt").write_bytes(b"x")
    with tarfile.open(altered, "w") as tar:
        tar.add(copy, arcname="packed")
    with pytest.raises(PackedError, match="bank.pt: altered"):
        load_packed(altered)
    assert list(scratch.iterdir()) == []


def test_pack_is_relocatable_and_loading_writes_nothing_into_it(tiny_pack: Path, tmp_path: Path) -> None:
    root = tmp_path / "ro" / "packed"
    shutil.copytree(tiny_pack, root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    manifest = json.loads((root / MANIFEST).read_text())
    assert "source_exp" not in manifest and str(tiny_pack.parent) not in (root / MANIFEST).read_text()
    state = torch.load(root / "model.pt", weights_only=True)
    assert str(tiny_pack.parent) not in repr(state.get("upstream"))
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        load_packed(root)
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
