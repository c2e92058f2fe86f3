"""asdlib-infer loses nothing (issue 19): a bad recording becomes an ``error`` row and the others are
still scored and written (exit 3, ``--strict`` stops), outputs are checked before scoring, the
tail of a long recording is scored, folders yield every format soundfile reads (symlinked folders
once), ``--list`` is relative to its folder, ``--`` passes names that start with ``-``, and CSV
text cells cannot run as spreadsheet formulas. All in-process on the tiny packed model."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asdlib.bin import infer


def tone(path: Path, seconds: float, sr: int = 16000, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    sf.write(str(path), x, sr, format=fmt)
    return path


def run(capsys, *args: str) -> tuple[int, list[dict], str]:
    code = infer.main(list(args))
    out, err = capsys.readouterr()
    return code, list(csv.DictReader(io.StringIO(out))), err


def test_bad_files_become_error_rows_and_good_files_are_written(tiny_pack, tmp_path, capsys) -> None:
    good = tone(tmp_path / "good.wav", 1.5)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio\n" * 10)
    short = tone(tmp_path / "short.wav", 0.05)
    out = tmp_path / "o" / "scores.csv"
    pack = str(tiny_pack)
    code = infer.main(["--packed", pack, "--machine", "fan", str(junk), str(good), str(short), "--out", str(out)])
    assert code == infer.EXIT_SOME_FAILED
    rows = list(csv.DictReader(out.open()))
    by_kind = {(Path(r["file"]).name, r["kind"]) for r in rows}
    assert {("junk.wav", "error"), ("short.wav", "error"), ("good.wav", "file")} <= by_kind
    errors = {Path(r["file"]).name: r["error"] for r in rows if r["kind"] == "error"}
    assert "not a readable audio file" in errors["junk.wav"] and "shorter than" in errors["short.wav"]
    assert all(r["score"] == "" for r in rows if r["kind"] == "error")
    err = capsys.readouterr().err
    assert "ERROR: 2 of 3 recordings could not be scored" in err and "Traceback" not in err
    # --strict: the first bad file stops the run, nothing is written
    out.unlink()
    with pytest.raises(ValueError, match="--strict"):
        infer.main(["--packed", pack, "--machine", "fan", str(good), str(junk), "--out", str(out), "--strict"])
    assert not out.exists()


def test_outputs_are_checked_before_scoring_and_a_failed_report_keeps_the_csv(
    tiny_pack, tmp_path, capsys, monkeypatch
) -> None:
    good = tone(tmp_path / "good.wav", 1.0)
    blocker = tmp_path / "file"
    blocker.write_text("")
    called = []
    monkeypatch.setattr(infer, "load_packed", lambda *a: called.append(a))
    for bad in (["--out", str(blocker / "x.csv")], ["--out", str(tmp_path)], ["--report", str(blocker / "r.png")]):
        with pytest.raises(OSError):
            infer.main(["--packed", str(tiny_pack), "--machine", "fan", str(good), *bad])
    assert called == []  # refused before the model was even loaded
    monkeypatch.undo()

    def broken(*a) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(infer, "report", broken)
    out = tmp_path / "s.json"
    code = infer.main(
        ["--packed", str(tiny_pack), "--machine", "fan", str(good), "--out", str(out), "--format", "json"]
        + ["--report", str(tmp_path / "r.png")]
    )
    assert code == infer.EXIT_REPORT_FAILED and json.loads(out.read_text())["rows"][0]["kind"] == "file"
    assert "ERROR: " in capsys.readouterr().err


def test_the_tail_of_a_long_recording_is_scored(tiny_pack, tmp_path, capsys) -> None:
    # windows of 1 s (last window >= 0.5 s): a 3.3 s file ends in a 0.3 s tail, scored by a window aligned to the end
    code, rows, _ = run(capsys, "--packed", str(tiny_pack), "--machine", "fan", str(tone(tmp_path / "l.wav", 3.3)))
    windows = [(float(r["start"]), float(r["end"])) for r in rows if r["kind"] == "window"]
    assert code == 0 and windows == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (2.3, 3.3)]


def test_folders_hold_every_format_and_symlinked_folders(tiny_pack, tmp_path, capsys) -> None:
    root = tmp_path / "in"
    tone(root / "a.ogg", 1.0, fmt="OGG")
    tone(root / "b.aiff", 1.0, fmt="AIFF")
    tone(tmp_path / "elsewhere" / "c.flac", 1.0)
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    (root / "linked" / "loop").symlink_to(root)  # a link back up: followed once, no endless walk
    code, rows, _ = run(capsys, "--packed", str(tiny_pack), "--machine", "fan", str(root))
    assert code == 0 and sorted(Path(r["file"]).name for r in rows if r["kind"] == "file") == [
        "a.ogg",
        "b.aiff",
        "c.flac",
    ]


def test_list_paths_are_relative_to_the_list_and_dash_names_follow_double_dash(
    tiny_pack, tmp_path, capsys, monkeypatch
) -> None:
    lists = tmp_path / "lists"
    tone(lists / "a.wav", 1.0)
    (lists / "new.list").write_text("a.wav fan\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.wav").write_text("a different file of the same name in the current folder\n")
    code, rows, _ = run(capsys, "--packed", str(tiny_pack), "--list", str(lists / "new.list"))
    assert code == 0 and rows[0]["file"] == str(lists / "a.wav") and rows[0]["kind"] == "file"
    # names a spreadsheet would run, and a name that starts with '-'
    tone(tmp_path / "=HYPERLINK(1).wav", 1.0)
    tone(tmp_path / "-dash.wav", 1.0)
    code, rows, _ = run(capsys, "--packed", str(tiny_pack), "--machine", "fan", "--", "=HYPERLINK(1).wav", "-dash.wav")
    assert code == 0 and [r["file"] for r in rows] == ["'=HYPERLINK(1).wav", "'-dash.wav"]
    assert all(not r["score"].startswith("'") for r in rows)


def test_a_hostile_pack_is_one_error_line(tiny_pack, tmp_path) -> None:
    bad = tmp_path / "packed"
    shutil.copytree(tiny_pack, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["thresholds"]["fan"]["00"]["threshold"] = 1e9
    (bad / "manifest.json").write_text(json.dumps(manifest))
    wav = tone(tmp_path / "x.wav", 1.0)
    proc = subprocess.run(
        ["python", "-m", "asdlib.bin.infer", "--packed", str(bad), "--machine", "fan", str(wav)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("ERROR: ") and "altered" in lines[0]


def test_labels_give_operating_figures_and_domain_picks_its_threshold(tiny_pack, tmp_path, capsys) -> None:
    a, b = tone(tmp_path / "a.wav", 1.0), tone(tmp_path / "b b.wav", 2.0)
    labels = tmp_path / "truth.txt"
    labels.write_text("a.wav normal source\nb b.wav anomaly\n")
    out = tmp_path / "op.json"
    pack = ["--packed", str(tiny_pack), "--machine", "fan"]
    code, rows, err = run(capsys, *pack, str(a), str(b), "--labels", str(labels), "--operating", str(out))
    assert code == 0 and "## Decisions with the domain unknown" in err
    points = {(p["rule"], p["domain"]): p for p in json.loads(out.read_text())}
    assert points[("unknown", "all")]["n_normal"] == 1 and points[("unknown", "all")]["n_anomaly"] == 1
    assert points[("known", "source")]["n_normal"] == 1 and ("unknown", "unknown") in points
    normal = next(r for r in rows if r["file"] == str(a))
    assert (points[("unknown", "all")]["fpr"] == 1.0) == (normal["decision"] == "anomaly")
    # --domain: that domain's threshold (the tiny pack knows only source); an unknown one is refused
    code, rows, _ = run(capsys, *pack, "--domain", "source", str(a))
    assert code == 0 and float(rows[0]["threshold"]) > 0
    with pytest.raises(ValueError, match="unknown domain 'line9' of fan/00: the packed model knows source"):
        infer.main([*pack, "--domain", "line9", str(a)])
    labels.write_text("a.wav broken\n")
    with pytest.raises(ValueError, match=r"truth.txt:1: expected '<path> <normal\|anomaly> \[<domain>\]'"):
        infer.main([*pack, str(a), "--labels", str(labels)])
    with pytest.raises(ValueError, match="--operating needs --labels"):
        infer.main([*pack, str(a), "--operating", str(out)])
