"""asdlib-enroll: recordings of a new normal condition join a packed model's bank as a domain bank,
the machine's threshold is calibrated again, and a new pack is written beside the parent, which stays
byte for byte as it was. The pack is a real one (the training-free log-mel embedder, banks of noise
clips of two machines), so a strong tone is an anomaly until clips with the tone are enrolled."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_logmel_pack, make_tiny_pack

from asdlib.backends.packed import FORMAT, PackedError, load_packed
from asdlib.bin import enroll, infer
from asdlib.data.audio import AudioError
from asdlib.registry import BACKENDS

SR = 16000


def clip(path: Path, seed: int, tone: bool = False, seconds: float = 1.0) -> Path:
    """White noise; ``tone``: with a loud 3 kHz tone (the new condition)."""
    rng = np.random.default_rng(seed)
    x = 0.05 * rng.standard_normal(int(seconds * SR))
    if tone:
        x += 0.3 * np.sin(2 * np.pi * 3000 * np.arange(x.size) / SR)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(x, -1, 1).astype(np.float32), SR)
    return path


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A packed log-mel kNN model of machines ``fan`` and ``pump`` (section 00), 16 noise clips of 1 s
    each in the bank, thresholds at 5 % FPR over 4 folds."""
    root = tmp_path_factory.mktemp("enroll_pack")
    wavs = {
        m: [clip(root / "wav" / f"{m}{i:02d}.wav", seed) for i, seed in enumerate(range(base, base + 16))]
        for m, base in (("fan", 100), ("pump", 200))
    }
    return make_logmel_pack(root, wavs, fpr=0.05)


def digests(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def scores(packed_dir: Path, files: list[Path], machine: str = "fan") -> tuple[list[float], float]:
    """asdlib-infer's file scores of ``files`` on ``packed_dir`` and the machine's threshold."""
    out = packed_dir.parent / "scores.csv"
    assert infer.main(["--packed", str(packed_dir), "--machine", machine, "--out", str(out), *map(str, files)]) == 0
    rows = [r for r in csv.DictReader(io.StringIO(out.read_text())) if r["kind"] == "file"]
    return [float(r["score"]) for r in rows], float(rows[0]["threshold"])


@pytest.fixture(scope="module")
def enrolled(pack: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes], dict]:
    """(new pack, the parent's files before enrolment, the parent's manifest): 8 tone clips of fan
    enrolled in a new domain ``line2``."""
    root = tmp_path_factory.mktemp("enrolled")
    before = digests(pack)
    for i in range(8):
        clip(root / "normals" / f"t{i}.wav", 300 + i, tone=True)
    out = root / "packed_line2"
    code = enroll.main(
        ["--packed", str(pack), "--machine", "fan", "--domain", "line2", "--out", str(out), str(root / "normals")]
        + ["--verbose", "0"]
    )
    assert code == 0
    return out, before, json.loads((pack / "manifest.json").read_text())


def test_enrolled_condition_scores_below_the_new_threshold(pack, enrolled, tmp_path) -> None:
    new, _, _ = enrolled
    tones = [clip(tmp_path / f"tone{i}.wav", 400 + i, tone=True) for i in range(4)]
    noises = [clip(tmp_path / f"noise{i}.wav", 500 + i) for i in range(4)]
    before, thr_before = scores(pack, tones)
    assert min(before) > thr_before  # the new condition is an anomaly to the parent
    after, thr_after = scores(new, tones)
    assert max(after) <= thr_after  # and normal once enrolled
    still, _ = scores(new, noises)
    assert sum(s > thr_after for s in still) <= 1  # the old condition stays normal


def test_parent_untouched_and_manifest_records_lineage(pack, enrolled) -> None:
    new, before, parent = enrolled
    assert digests(pack) == before  # byte-identical, and nothing added to it
    manifest = json.loads((new / "manifest.json").read_text())
    assert manifest["format"] == FORMAT
    assert manifest["parent"] == {"digest": parent["digest"], "path": str(pack.resolve())}
    (entry,) = manifest["enrolled"]
    assert {k: entry[k] for k in ("machine", "section", "domain", "recordings", "windows")} == {
        "machine": "fan",
        "section": "00",
        "domain": "line2",
        "recordings": 8,
        "windows": 8,
    }
    assert manifest["thresholds"]["pump"] == parent["thresholds"]["pump"]  # other machines unchanged
    fan = manifest["thresholds"]["fan"]["00"]
    assert fan["n_heldout"] == parent["thresholds"]["fan"]["00"]["n_heldout"] + 8 and fan["folds"] == 4
    # the new condition is a domain of its own, with its own threshold; the section's is the maximum
    assert fan["domains"]["line2"]["n_heldout"] == 8
    assert fan["threshold"] == max(d["threshold"] for d in fan["domains"].values())
    assert manifest["calibration"]["n_heldout"] == parent["calibration"]["n_heldout"] + 8
    assert manifest["calibration"]["target_fpr"] == parent["calibration"]["target_fpr"]
    loaded = load_packed(new)
    assert loaded.manifest.enrolled[0].domain == "line2" and loaded.manifest.parent.digest == parent["digest"]
    assert load_packed(pack).manifest.parent is None and load_packed(pack).manifest.enrolled == []


def test_enrolling_again_from_an_enrolled_pack_extends_the_lineage(enrolled, tmp_path) -> None:
    new, _, _ = enrolled
    out = tmp_path / "again"
    rec = clip(tmp_path / "t.wav", 600, tone=True, seconds=2.5)  # 2.5 s: one window (no windowing configured)
    assert enroll.main(["--packed", str(new), "--machine", "fan", "--out", str(out), str(rec), "--verbose", "0"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["domain"] for e in manifest["enrolled"]] == ["line2", "target"]
    assert manifest["parent"]["digest"] == json.loads((new / "manifest.json").read_text())["digest"]


def test_tampered_parent_is_refused(pack, tmp_path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(pack, bad)
    with (bad / "bank.pt").open("r+b") as f:
        f.seek(200)
        f.write(b"\0\0\0\0")
    rec = clip(tmp_path / "t.wav", 1, tone=True)
    with pytest.raises(PackedError, match=r"bank\.pt: altered"):
        enroll.main(["--packed", str(bad), "--machine", "fan", "--out", str(tmp_path / "new"), str(rec)])
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.tmp").exists()


def test_bad_options_are_one_line_errors(pack, tmp_path) -> None:
    rec = clip(tmp_path / "t.wav", 1, tone=True)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio\n")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("")
    out = str(tmp_path / "new")
    cases = [
        (["--out", str(pack)], ValueError, "overlaps the parent pack"),
        (["--out", str(pack / "sub")], ValueError, "overlaps the parent pack"),
        (["--out", str(full)], ValueError, "exists and is not empty; choose another or pass --force"),
        (["--out", out, "--machine", "valve"], ValueError, "unknown machine 'valve'.*knows fan/00, pump/00"),
        (["--out", out, "--section", "01"], ValueError, "unknown section '01'"),
        (["--out", out, "--domain", "unknown"], ValueError, "--domain 'unknown'"),
        (["--out", out, "--domain", "line 2"], ValueError, "--domain 'line 2'"),
        (["--out", out, "--fpr", "0.01"], ValueError, "--fpr 0.01 differs from the pack's"),
        (["--out", out, "--folds", "1"], ValueError, "--folds >= 2"),
    ]
    for extra, kind, message in cases:
        argv = ["--packed", str(pack), "--machine", "fan", *extra, str(rec)]
        with pytest.raises(kind, match=message):
            enroll.main(argv)
    with pytest.raises(AudioError, match=f"{junk}: not a readable audio file.*it cannot be enrolled") as e:
        enroll.main(["--packed", str(pack), "--machine", "fan", "--out", out, str(rec), str(junk)])
    assert "\n" not in str(e.value)
    assert not (tmp_path / "new").exists() and (full / "x").exists()


@pytest.mark.parametrize(
    "backend",
    [{"kind": kind} for kind in BACKENDS.names() if kind != "fusion"]
    + [
        {"kind": "knn", "conf": {"domain_wise": False}},
        {"kind": "fusion", "conf": {"members": [{"kind": "knn"}, {"kind": "mahalanobis"}]}},
    ],
    ids=lambda b: b["kind"] + ("_pooled" if b.get("conf", {}).get("domain_wise") is False else ""),
)
def test_every_back_end_takes_a_new_domain_bank(backend, tmp_path) -> None:
    """A new domain name is one more bank of the section (or joins the one bank when not domain-wise):
    the pack loads, and an enrolled recording scores lower than before."""
    pack = make_tiny_pack(tmp_path / "tiny", backend)
    recs = [clip(tmp_path / "new" / f"r{i}.wav", 700 + i, tone=True, seconds=1.5) for i in range(3)]
    out = tmp_path / "enrolled"
    assert (
        enroll.main(
            ["--packed", str(pack), "--machine", "fan", "--domain", "line2", "--out", str(out)]
            + [str(r) for r in recs]
            + ["--verbose", "0"]
        )
        == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["enrolled"][0]["windows"] == 6  # 1 s windows: [0, 1) and the 0.5 s tail
    before, _ = scores(pack, recs[:1])
    after, _ = scores(out, recs[:1])
    assert after[0] < before[0]
