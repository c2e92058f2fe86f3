"""Acceptance: egs/custom on a plant engineer's corpus (44.1 kHz stereo FLAC, 48 kHz WAV, mixed
lengths, one recording of a few minutes), stages 1-7; the packed model moved elsewhere with exp/
deleted scores the same clips as stage 5 (1e-6) through the asdlib-infer console script; the
false-alarm rate measured on held-out normals is near its target; bad input is one ERROR line.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import mirror_recipe

import asdlib
from asdlib.data.datadir import read_data_dir
from asdlib.io.ark import read_scores

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CUSTOM = REPO / "egs" / "custom"
TINY = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: downloads/hubert_tiny_random.pt}
finetune: {mode: lora, rank: 4}
model: {pooling_hidden: 16, embed_dim: 32}
optim: {epochs: 1, batch_size: 8, warmup_steps: 1}
data: {crop_seconds: 1.0, resample: true, channel: mean, window_seconds: 2.0, window_min_seconds: 1.0, min_seconds: 0.5}
"""
N_TRAIN = 40
FPR = 0.05


def _clip(
    rng: np.random.Generator, sr: int, seconds: float, hum: float, stereo: bool, anomaly: bool = False
) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * hum * t) + 0.05 * rng.standard_normal(t.size)
    if anomaly:
        x += 0.4 * np.sin(2 * np.pi * 3100 * t) * (rng.random(t.size) < 0.2)
    x = x.astype(np.float32)
    return np.stack([x, 0.8 * x], axis=1) if stereo else x


def make_corpus(root: Path) -> None:
    """pump: 44.1 kHz stereo FLAC; fan: 48 kHz mono WAV; 1-2 s clips, one 3-minute fan recording."""
    rng = np.random.default_rng(0)
    for machine, sr, fmt, stereo, hum in (("pump", 44100, "flac", True, 120.0), ("fan", 48000, "wav", False, 230.0)):
        for split, label, n in (("train", None, N_TRAIN), ("test/normal", "normal", 2), ("test/anomaly", "anomaly", 2)):
            d = root / machine / split
            d.mkdir(parents=True)
            for i in range(n):
                sf.write(
                    str(d / f"rec {i:02d}.{fmt}"),
                    _clip(rng, sr, 1.0 + (i % 3) * 0.5, hum, stereo, label == "anomaly"),
                    sr,
                )
    sf.write(str(root / "fan" / "test" / "normal" / "shift_long.wav"), _clip(rng, 48000, 180.0, 230.0, False), 48000)


def run(recipe: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, timeout=1200)
    if check:
        assert proc.returncode == 0, f"./run.sh {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def infer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["asdlib-infer", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("custom")
    recipe = root / "egs" / "custom"
    mirror_recipe(CUSTOM, recipe)
    (recipe / "conf" / "tiny.yaml").write_text(TINY)
    subprocess.run(
        [
            "python",
            "-m",
            "asdlib.bin.make_random_upstream",
            "--name",
            "hubert",
            "--out",
            str(recipe / "downloads" / "hubert_tiny_random.pt"),
            "--seed",
            "0",
        ],
        check=True,
        capture_output=True,
    )
    corpus = root / "plant recordings"
    make_corpus(corpus)
    proc = run(
        recipe,
        "--corpus",
        str(corpus),
        "--train_config",
        "conf/tiny.yaml",
        "--nj",
        "2",
        "--fpr",
        str(FPR),
        "--pack_tar",
        "true",
    )
    exp = recipe / "exp" / "tiny"
    # the model leaves: packed/ is moved elsewhere and exp/ deleted
    away = root / "plant" / "model"
    away.parent.mkdir()
    shutil.copytree(exp / "packed", away)
    shutil.copy2(exp / "packed.tar", root / "plant" / "model.tar")
    stage5 = {
        "windows": read_scores(exp / "scores" / "test" / "scores.scp"),
        "files": read_scores(exp / "scores" / "test" / "file_scores.scp"),
    }
    test_utts = read_data_dir(recipe / "data" / "test")
    shutil.rmtree(recipe / "exp")
    return {
        "recipe": recipe,
        "corpus": corpus,
        "packed": away,
        "tar": root / "plant" / "model.tar",
        "stage5": stage5,
        "utts": test_utts,
        "log": proc.stderr,
    }


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_data_dirs_hold_windows_of_the_recordings(done: dict) -> None:
    # test/normal/ and test/anomaly/ reuse file names ('rec 00.wav'): two recordings, two utt-ids
    reused = {p.name for p in (done["corpus"] / "fan" / "test" / "normal").iterdir()}
    assert reused & {p.name for p in (done["corpus"] / "fan" / "test" / "anomaly").iterdir()}
    recipe = done["recipe"]
    train = read_data_dir(recipe / "data" / "train")
    assert {u.machine for u in train} == {"pump", "fan"} and {u.section for u in train} == {"00"}
    assert {u.domain for u in train} == {"source"} and {u.label for u in train} == {"normal"}
    test = done["utts"]
    long = [u for u in test if u.rec_id == "fan-00-normal_shift_long"]
    assert len(long) == 90 and long[1].utt_id == "fan-00-normal_shift_long-w00002000"
    assert {u.label for u in test} == {"normal", "anomaly"}


def test_packed_model_scores_equal_stage_5_after_exp_is_gone(done: dict) -> None:
    corpus, stage5 = done["corpus"], done["stage5"]
    rec_of = {u.rec_id: u for u in done["utts"]}
    proc = infer("--packed", str(done["packed"]), "--machine", "fan", str(corpus / "fan" / "test"), "--batch_size", "4")
    assert proc.returncode == 0, proc.stderr
    rows = _csv(proc.stdout)
    assert set(rows[0]) >= {"file", "score", "threshold", "decision"}
    path2rec = {u.path: rec for rec, u in rec_of.items()}
    files = [r for r in rows if r["kind"] == "file"]
    assert len(files) == 5 and len([r for r in rows if r["kind"] == "window"]) == 90
    for r in files:
        assert abs(float(r["score"]) - stage5["files"][path2rec[str(Path(r["file"]).resolve())]]) < 1e-6
        assert r["decision"] == ("anomaly" if float(r["score"]) > float(r["threshold"]) else "normal")
    for r in rows:
        if r["kind"] == "window":
            utt = f"fan-00-normal_shift_long-w{int(round(float(r['start']) * 1000)):08d}"
            assert abs(float(r["score"]) - stage5["windows"][utt]) < 1e-6
    # a list file with machines, JSON output, from the .tar, written to --out, with a report
    lst = done["packed"].parent / "new.list"
    pumps = sorted((corpus / "pump" / "test").rglob("*.flac"))
    lst.write_text("".join(f"{p} pump\n" for p in pumps))
    out, png = done["packed"].parent / "out.json", done["packed"].parent / "report.png"
    proc = infer(
        "--packed",
        str(done["tar"]),
        "--list",
        str(lst),
        "--format",
        "json",
        "--out",
        str(out),
        "--report",
        str(png),
        str(corpus / "fan" / "test" / "normal" / "shift_long.wav"),
        "--machine",
        "fan",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["target_fpr"] == FPR and png.stat().st_size > 0
    for r in result["rows"]:
        if r["kind"] == "file":
            assert abs(r["score"] - stage5["files"][path2rec[str(Path(r["file"]).resolve())]]) < 1e-6


def test_thresholds_are_calibrated_on_held_out_normals(done: dict) -> None:
    manifest = json.loads((done["packed"] / "manifest.json").read_text())
    cal = manifest["calibration"]
    assert cal["target_fpr"] == FPR and cal["n_heldout"] == 2 * N_TRAIN
    assert abs(cal["measured_fpr"] - FPR) <= 0.05, cal
    assert set(manifest["thresholds"]) == {"pump", "fan"}
    assert "FPR measured on held-out normals" in done["log"]
    assert manifest["audio"]["sample_rate"] == 16000 and manifest["windowing"]["window_seconds"] == 2.0
    assert (
        all(not Path(f).is_absolute() for f in manifest["files"])
        and "upstream/hubert_tiny_random.pt" in manifest["files"]
    )
    print(f"measured FPR on held-out normals: {cal['measured_fpr']:.4f} (target {FPR})")


def _error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ERROR: "), proc.stderr
    return last


def test_bad_input_is_one_error_line_and_nothing_is_lost(done: dict, tmp_path: Path) -> None:
    clip = str(next((done["corpus"] / "fan" / "test" / "normal").glob("rec*.wav")))
    out = tmp_path / "keep.csv"
    out.write_text("previous results\n")
    # an altered packed file
    bad = tmp_path / "altered"
    shutil.copytree(done["packed"], bad)
    with open(bad / "bank.pt", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    assert "bank.pt: altered" in _error(infer("--packed", str(bad), "--machine", "fan", clip, "--out", str(out)))
    shutil.rmtree(bad)
    shutil.copytree(done["packed"], bad)
    (bad / "model.pt").unlink()
    assert "model.pt: missing" in _error(infer("--packed", str(bad), "--machine", "fan", clip))
    # an unknown machine names the known ones
    msg = _error(infer("--packed", str(done["packed"]), "--machine", "compressor", clip, "--out", str(out)))
    assert "unknown machine 'compressor'" in msg and "fan/00" in msg and "pump/00" in msg
    assert "no machine given" in _error(infer("--packed", str(done["packed"]), clip))
    # an unreadable and a too-short recording
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio\n" * 10)
    assert "not a readable audio file" in _error(
        infer("--packed", str(done["packed"]), "--machine", "fan", clip, str(junk))
    )
    short = tmp_path / "short.flac"
    sf.write(str(short), np.full(4410, 0.1, np.float32), 44100)
    # a bad recording among good ones: an error row with the reason, the good one scored and written (exit 3)
    proc = infer("--packed", str(done["packed"]), "--machine", "pump", str(short), "--out", str(out))
    assert proc.returncode == 3 and "shorter than the model's minimum" in _error(proc)
    rows = _csv(out.read_text())
    assert [r["kind"] for r in rows] == ["error"] and "shorter than" in rows[0]["error"]
    # --strict: the first bad file stops the run and --out keeps its previous content
    out.write_text("previous results\n")
    proc = infer("--packed", str(done["packed"]), "--machine", "pump", str(short), "--out", str(out), "--strict")
    assert proc.returncode == 1 and "--strict" in _error(proc)
    assert out.read_text() == "previous results\n"
    # run.sh --help from another folder
    help_proc = subprocess.run([str(CUSTOM / "run.sh"), "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert help_proc.returncode == 0 and "--corpus" in help_proc.stdout + help_proc.stderr
    # an override of an unknown key: stage 3 refuses before touching anything
    recipe = done["recipe"]
    before = sorted(p.relative_to(recipe).as_posix() for p in recipe.rglob("*"))
    proc = run(
        recipe,
        "--corpus",
        str(done["corpus"]),
        "--train_config",
        "conf/tiny.yaml",
        "--stage",
        "3",
        "--stop_stage",
        "3",
        "--tag",
        "typo",
        "--train_args",
        "optim.lrr=1e-4",
        check=False,
    )
    assert proc.returncode != 0 and "unknown key 'optim.lrr'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (recipe / "exp" / "typo" / "config.yaml").exists()
    assert {p for p in before} <= {p.relative_to(recipe).as_posix() for p in recipe.rglob("*")}


def test_wheel_installs_and_scores_outside_the_checkout(done: dict, wheel: Path, tmp_path: Path) -> None:
    """The built wheel in a fresh venv (the lock's packages made visible through a .pth, not reinstalled:
    seconds, not minutes) runs envcheck and asdlib-infer from outside the checkout, without PYTHONPATH,
    importing its own asdlib, and scores the packed model as stage 5 did."""
    import os
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # a plain path line: it is appended after the venv's own site-packages, and the lock venv's own .pth
    # files (the editable install's finder among them) are not run, so the wheel's asdlib wins
    (site / "zz_lock_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", str(wheel)]
    proc = subprocess.run(pip, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    def in_venv(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)

    proc = in_venv(str(py), "-c", "import asdlib; print(asdlib.__file__, asdlib.__version__)")
    assert proc.returncode == 0, proc.stderr
    where, version = proc.stdout.split()
    assert Path(where).is_relative_to(site) and version == asdlib.__version__
    proc = in_venv(str(py), "-m", "asdlib.envcheck")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    clip = done["corpus"] / "fan" / "test" / "anomaly" / "rec 00.wav"
    proc = in_venv(str(venv / "bin" / "asdlib-infer"), "--packed", str(done["packed"]), "--machine", "fan", str(clip))
    assert proc.returncode == 0, proc.stderr
    (row,) = [r for r in _csv(proc.stdout) if r["kind"] == "file"]
    rec = {u.path: u.rec_id for u in done["utts"]}[str(clip.resolve())]
    assert abs(float(row["score"]) - done["stage5"]["files"][rec]) < 1e-6
