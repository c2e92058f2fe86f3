"""Bad input, end to end through the stage CLIs: every case stops with a message that names the
file and the fix (or, with --skip_bad true, is moved to bad.list with a warning), and nothing that
existed before is lost or overwritten.

Cases (docs/reliability.md lists them all):
  audio at stage 1 (validate_data): missing, empty, truncated header, corrupt header, not audio,
    wrong sample rate, stereo, all zero, NaN, Inf, too short; --skip_bad true; every file bad;
    bad.list kept across a rebuilt data dir; stage-2 files kept consistent
  audio at load time: extraction and training meet a file that went bad after stage 1
  data dirs: duplicate utt-id, unsorted file, keys that differ between files, a missing file
  corpus (prepare_dcase): unknown file-name pattern, eval list not matching the files, eval list of
    the wrong format, missing attributes_00.csv
  configs: unknown key, wrong type, out-of-range value, YAML with a Python tag, missing upstream
  models: missing model.pt, wrong architecture (keys; shapes), truncated model.pt, truncated
    training checkpoint, checkpoint that pickles objects (refused without the explicit opt-in)
  disk: full disk (file-size limit) while writing the ark
  security: zip path traversal in a downloaded archive; no eval/exec, YAML via safe_load,
    torch.load with weights_only everywhere
The corpus lives under a path with spaces and non-ASCII letters.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import re
import resource
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asdlib.bin import (
    download_dcase,
    extract,
    make_labels,
    make_random_upstream,
    prepare_dcase,
    train,
    validate_data,
)
from asdlib.config import UpstreamConfig, load_train_config
from asdlib.data import zenodo
from asdlib.data.audio import AudioError
from asdlib.data.datadir import read_data_dir, read_kv
from asdlib.data.download import mirror_url
from asdlib.data.validate import BAD_LIST
from asdlib.io.config import ConfigError, dump_config
from asdlib.models.upstream import build_upstream
from asdlib.synth.corpus import SynthConfig, generate_corpus
from asdlib.utils import EXPECTED_ERRORS

REPO = Path(__file__).resolve().parents[2]
SETS = ("dev_train", "dev_test", "eval_train", "eval_test")
CONFIG = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: UPSTREAM}
finetune: {mode: frozen}
model: {pooling_hidden: 8, embed_dim: 16}
optim: {epochs: 1, batch_size: 4, warmup_steps: 1}
data: {crop_seconds: 0.0, train_sets: [dev_train]}
"""


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: the "nothing lost or overwritten" check."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def prepare(corpus: Path, data: Path) -> int:
    return prepare_dcase.main(["--year", "2024", "--root", str(corpus), "--data_dir", str(data)])


def error_of(call: Callable[..., int], *args) -> str:
    """The message of the CLI's ERROR line: ``call(*args)`` must raise an error that run_main reports."""
    with pytest.raises(EXPECTED_ERRORS) as info:
        call(*args)
    return str(info.value)


@pytest.fixture(autouse=True)
def _cli_logging_to_caplog(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The CLIs call logging.basicConfig(force=True), which would drop pytest's capture handler
    (and leave handlers on closed streams): keep pytest's handlers, so caplog sees what a user
    would read on stderr."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(handler)
    real = logging.basicConfig
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: real(**{**kw, "force": False}))
    caplog.set_level(logging.INFO)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """``logs()``: the log lines (``LEVEL: message``) since the last call."""

    def read() -> str:
        text = "\n".join(f"{r.levelname}: {r.getMessage()}" for r in caplog.records)
        caplog.clear()
        return text

    return read


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("input") / "corpus with space ü"
    generate_corpus(
        root,
        SynthConfig(
            dev_machines=("fan", "gearbox"),
            eval_machines=("ToyDrone",),
            no_attribute=("gearbox",),
            n_train_source=3,
            n_train_target=1,
            n_test=1,
            seconds=1.0,
        ),
    )
    return root


@pytest.fixture
def fresh(corpus: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the corpus and its four data dirs (stage 1 data preparation done)."""
    mine = tmp_path / "corpus ü"
    shutil.copytree(corpus, mine)
    data = tmp_path / "data"
    assert prepare(mine, data) == 0
    return mine, data


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained experiment (stages 1-3, trained on dev_train), built once for the model cases."""
    root = tmp_path_factory.mktemp("trained")
    data = root / "data"
    assert prepare(corpus, data) == 0
    assert make_labels.main(["--train_sets", str(data / "dev_train")]) == 0
    upstream = root / "hubert tiny.pt"
    assert make_random_upstream.main(["--name", "hubert", "--out", str(upstream)]) == 0
    config = root / "train.yaml"
    config.write_text(CONFIG.replace("UPSTREAM", json.dumps(str(upstream))))
    exp = root / "exp"
    assert (
        train.main(["--config", str(config), "--data_root", str(data), "--exp_dir", str(exp), "--device", "cpu"]) == 0
    )
    return {"data": data, "exp": exp, "config": config, "upstream": upstream}


def copy_exp(trained: dict[str, Path], tmp_path: Path) -> Path:
    exp = tmp_path / "exp"
    shutil.copytree(trained["exp"], exp)
    return exp


def extract_argv(exp: Path, data_dir: Path, out: Path) -> list[str]:
    return [
        "--exp_dir",
        str(exp),
        "--data_dir",
        str(data_dir),
        "--out_ark",
        str(out / "embeddings.ark"),
        "--out_scp",
        str(out / "embeddings.scp"),
        "--device",
        "cpu",
    ]


# ---------------------------------------------------------------------------------------------
# Audio files: stage-1 validation


def _write(samples: np.ndarray, sr: int = 16000, subtype: str = "PCM_16"):
    return lambda p: sf.write(str(p), samples, sr, subtype=subtype)


def _noise(n: int = 16000, channels: int = 1) -> np.ndarray:
    shape = (n, channels) if channels > 1 else (n,)
    return np.random.default_rng(0).uniform(-0.5, 0.5, shape).astype(np.float32)


def _with(value: float) -> np.ndarray:
    x = _noise()
    x[100] = value
    return x


AUDIO_CASES = {
    "missing": (lambda p: p.unlink(), "file not found"),
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "truncated header": (lambda p: p.write_bytes(p.read_bytes()[:20]), "not a readable audio file"),
    "corrupt header": (lambda p: p.write_bytes(b"\x00" * 44 + p.read_bytes()[44:]), "not a readable audio file"),
    "not audio": (lambda p: p.write_text("fan noise, recorded on a Tuesday\n" * 50), "not a readable audio file"),
    "wrong sample rate": (_write(_noise(8000), sr=8000), "sample rate 8000 Hz, expected 16000 Hz"),
    "stereo": (_write(_noise(channels=2)), "2 channels, expected mono"),
    "all zero": (_write(np.zeros(16000, np.float32)), "all samples are zero"),
    "NaN": (_write(_with(np.nan), subtype="FLOAT"), "contains NaN/Inf samples"),
    "Inf": (_write(_with(np.inf), subtype="FLOAT"), "contains NaN/Inf samples"),
    "too short": (_write(_noise(800)), "800 samples, shorter than the model's minimum of 1600"),
}


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_bad_audio_fails_stage_1_or_moves_to_bad_list(
    case: str, fresh: tuple[Path, Path], logs: Callable[[], str]
) -> None:
    corpus, data = fresh
    set_dir = data / "dev_train"
    ids = [u.utt_id for u in read_data_dir(set_dir)]
    victim = read_data_dir(set_dir)[1]
    damage, reason = AUDIO_CASES[case]
    damage(Path(victim.path))
    before, corpus_before = snapshot(data), snapshot(corpus)

    err = error_of(validate_data.main, [str(set_dir), str(data / "dev_test")])
    assert f"{victim.utt_id} ({victim.path}): {reason}" in err
    assert "1 of 8 audio files are unusable" in err and "--skip_bad true" in err and str(set_dir / BAD_LIST) in err
    assert snapshot(data) == before and snapshot(corpus) == corpus_before

    assert validate_data.main([str(set_dir), "--skip_bad", "true"]) == 0
    err = logs()
    assert "WARNING" in err and "removed 1 of 8 files as unusable" in err
    line = (set_dir / BAD_LIST).read_text()
    assert line.startswith(f"{victim.utt_id} {victim.path} {reason}") and line.count("\n") == 1
    assert [u.utt_id for u in read_data_dir(set_dir)] == [i for i in ids if i != victim.utt_id]  # all files consistent
    assert victim.utt_id not in (set_dir / "spk2utt").read_text()
    assert snapshot(corpus) == corpus_before  # the bad file itself is kept


def test_skip_bad_keeps_stage_2_files_consistent_and_bad_list_across_reruns(
    fresh: tuple[Path, Path], logs: Callable[[], str]
) -> None:
    corpus, data = fresh
    set_dir = data / "dev_train"
    assert make_labels.main(["--train_sets", str(set_dir)]) == 0  # stage 2 ran before a stage-1 rerun
    victim = read_data_dir(set_dir)[0]
    Path(victim.path).write_bytes(b"")
    assert validate_data.main([str(set_dir), "--skip_bad", "true"]) == 0
    for name in ("utt2dur", "utt2class"):
        assert victim.utt_id not in read_kv(set_dir / name) and len(read_kv(set_dir / name)) == 7
    assert "rerun stage 2" in logs()
    first = (set_dir / BAD_LIST).read_text()
    # A rerun finds the data dir unchanged (marker) and keeps the list.
    assert validate_data.main([str(set_dir), "--skip_bad", "true"]) == 0
    assert "already validated" in logs() and (set_dir / BAD_LIST).read_text() == first
    # Stage 1 rebuilds the data dir with the bad file in it: it is found and listed again.
    assert prepare(corpus, data) == 0
    assert validate_data.main([str(set_dir), "--skip_bad", "true"]) == 0
    assert (set_dir / BAD_LIST).read_text() == first
    # Fixed by re-copying: the next rebuild keeps it and the list is removed.
    sf.write(victim.path, _noise(), 16000)
    assert prepare(corpus, data) == 0
    assert validate_data.main([str(set_dir), "--skip_bad", "true"]) == 0
    assert not (set_dir / BAD_LIST).exists() and len(read_data_dir(set_dir)) == 8


def test_skip_bad_refuses_to_drop_every_file(fresh: tuple[Path, Path]) -> None:
    _, data = fresh
    before = snapshot(data)
    err = error_of(validate_data.main, [str(data / "dev_test"), "--sample_rate", "8000", "--skip_bad", "true"])
    assert "8 of 8 audio files are unusable" in err and "sample rate 16000 Hz, expected 8000 Hz" in err
    assert "Every clip of the set is bad" in err and "sample rate and channel settings" in err
    assert snapshot(data) == before


# ---------------------------------------------------------------------------------------------
# Audio files that go bad after stage 1: caught at load time


def test_extraction_names_a_file_that_went_bad_and_keeps_old_outputs(trained: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    out = tmp_path / "embed"
    assert extract.main(extract_argv(trained["exp"], data / "dev_test", out)) == 0
    before = snapshot(out)
    utt = read_data_dir(data / "dev_test")[2]
    bad = tmp_path / "copy of clip.wav"
    bad.write_bytes(Path(utt.path).read_bytes()[:30])
    (data / "dev_test" / "wav.scp").write_text((data / "dev_test" / "wav.scp").read_text().replace(utt.path, str(bad)))
    with pytest.raises(
        AudioError, match=re.escape(f"{utt.utt_id} ({bad}): not a readable audio file") + ".*--skip_bad true"
    ):
        extract.main(extract_argv(trained["exp"], data / "dev_test", out))
    assert snapshot(out) == before


def test_training_names_a_file_that_went_bad_and_keeps_its_checkpoints(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    exp = copy_exp(trained, tmp_path)
    utt = read_data_dir(data / "dev_train")[0]
    bad = tmp_path / "silent.wav"
    sf.write(str(bad), np.zeros(16000, np.float32), 16000)
    (data / "dev_train" / "wav.scp").write_text(
        (data / "dev_train" / "wav.scp").read_text().replace(utt.path, str(bad))
    )
    config = tmp_path / "train.yaml"
    config.write_text(trained["config"].read_text().replace("epochs: 1", "epochs: 2"))
    before = snapshot(exp)
    with pytest.raises(AudioError, match=re.escape(f"{utt.utt_id} ({bad}): all samples are zero")):
        train.main(["--config", str(config), "--data_root", str(data), "--exp_dir", str(exp), "--device", "cpu"])
    after = snapshot(exp)  # config.yaml is the resolved config of the new run; everything else is kept
    assert {k: after[k] for k in before if k != "config.yaml"} == {k: before[k] for k in before if k != "config.yaml"}
    assert (exp / "checkpoints" / "latest").read_text().strip() == "epoch_1.pt"


# ---------------------------------------------------------------------------------------------
# Data dirs


def _duplicate_line(d: Path) -> None:
    lines = (d / "wav.scp").read_text().splitlines(keepends=True)
    (d / "wav.scp").write_text("".join(lines[:2] + lines[1:]))


def _swap_lines(d: Path) -> None:
    lines = (d / "utt2label").read_text().splitlines(keepends=True)
    (d / "utt2label").write_text("".join([lines[1], lines[0]] + lines[2:]))


def _drop_line(d: Path) -> None:
    lines = (d / "utt2domain").read_text().splitlines(keepends=True)
    (d / "utt2domain").write_text("".join(lines[:3] + lines[4:]))


DATADIR_CASES = {
    "duplicate utt-id": (_duplicate_line, r"wav.scp:3: duplicate key"),
    "unsorted file": (_swap_lines, r"utt2label:2: not sorted \(C locale\) .* sort it with 'LC_ALL=C sort'"),
    "inconsistent files": (
        _drop_line,
        r"utt2domain: keys differ from .*wav.scp \(missing \[.*\], extra \[\]\);.*regenerate",
    ),
    "missing file": (
        lambda d: (d / "utt2label").unlink(),
        r"utt2label is missing: regenerate the data dir with stage 1",
    ),
}


@pytest.mark.parametrize("case", list(DATADIR_CASES))
def test_bad_data_dir_is_named_with_the_fix(case: str, fresh: tuple[Path, Path]) -> None:
    _, data = fresh
    damage, message = DATADIR_CASES[case]
    damage(data / "dev_test")
    before = snapshot(data)
    assert re.search(message, error_of(validate_data.main, [str(data / "dev_test"), "--skip_bad", "true"]))
    assert snapshot(data) == before


# ---------------------------------------------------------------------------------------------
# Corpus metadata (prepare_dcase): nothing is written unless every set builds


def test_unknown_file_name_pattern(fresh: tuple[Path, Path]) -> None:
    corpus, data = fresh
    before = snapshot(data)
    odd = corpus / "dev_data" / "raw" / "fan" / "train" / "recording_01.wav"
    sf.write(str(odd), _noise(), 16000)
    err = error_of(prepare, corpus, data)
    assert "recording_01.wav" in err and str(odd.parent) in err
    assert snapshot(data) == before


def test_eval_list_that_does_not_match_the_files(fresh: tuple[Path, Path]) -> None:
    corpus, data = fresh
    before = snapshot(data)
    (corpus / "eval_data" / "raw" / "ToyDrone" / "test" / "section_00_0002.wav").unlink()
    err = error_of(prepare, corpus, data)
    assert f"eval list {corpus / 'eval_data_list_2024.csv'} does not match" in err
    assert "ToyDrone: 1 listed files missing on disk, e.g. section_00_0002.wav" in err
    assert "Use the list of the same year as the corpus" in err and "--eval_list none" in err
    assert snapshot(data) == before


def test_eval_list_of_the_wrong_format(fresh: tuple[Path, Path]) -> None:
    corpus, data = fresh
    before = snapshot(data)
    eval_list = corpus / "eval_data_list_2024.csv"
    eval_list.write_text("ToyDrone\nsection_00_0000.wav,section_00_source_test_normal_0000_a.wav,0\n")
    err = error_of(prepare, corpus, data)
    assert f"{eval_list}:2: expected a machine-type line or 2 comma-separated fields" in err
    assert "is this the eval list of 2024?" in err
    assert snapshot(data) == before


def test_missing_attributes_csv_is_reported(fresh: tuple[Path, Path], logs: Callable[[], str]) -> None:
    corpus, data = fresh
    (corpus / "dev_data" / "raw" / "fan" / "attributes_00.csv").unlink()
    code, err = prepare(corpus, data), logs()
    assert code == 0
    assert f"{corpus / 'dev_data' / 'raw' / 'fan'}: no attributes_XX.csv" in err and "restore the csv" in err
    attrs = {u.attr for u in read_data_dir(data / "dev_train") if u.machine == "fan"}
    assert attrs and "noAttribute" not in attrs  # the names still carry them


# ---------------------------------------------------------------------------------------------
# Configs


CONFIG_CASES = {
    "unknown key": (
        "optim: {epochs: 1, epoch: 3}",
        r":optim: unknown key 'epoch' for OptimConfig; valid keys: .*epochs",
    ),
    "wrong type": ("optim: {lr: fast}", r":optim:lr: expected a number, got str 'fast'"),
    "out of range": ("optim: {batch_size: 0}", r":optim: optim: epochs >= 0, batch_size >= 1"),
    "Python tag": (
        "seed: !!python/object/apply:os.system ['touch PWNED']",
        r": not valid YAML: could not determine a constructor",
    ),
    "missing upstream": (
        "upstream: {name: hubert, path: /nowhere/hubert.pt}",
        r"upstream checkpoint not found: /nowhere/hubert.pt; download .*make_random_upstream",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_is_named_and_the_experiment_is_untouched(
    case: str, trained: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text, message = CONFIG_CASES[case]
    config = tmp_path / "bad config.yaml"
    base = trained["config"].read_text()
    key = text.split(":", 1)[0]
    config.write_text(
        "\n".join(line for line in base.splitlines() if not line.startswith(key + ":")) + "\n" + text + "\n"
    )
    exp = copy_exp(trained, tmp_path)
    before = snapshot(exp)
    monkeypatch.chdir(tmp_path)
    names = "" if case == "missing upstream" else re.escape(str(config))
    with pytest.raises((ConfigError, FileNotFoundError), match=names + message):
        train.main(
            ["--config", str(config), "--data_root", str(trained["data"]), "--exp_dir", str(exp), "--device", "cpu"]
        )
    assert snapshot(exp) == before and not (tmp_path / "PWNED").exists()


# ---------------------------------------------------------------------------------------------
# Models and checkpoints


def test_missing_model_file(trained: dict[str, Path], tmp_path: Path) -> None:
    exp = copy_exp(trained, tmp_path)
    (exp / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{exp / 'model.pt'} not found: run stage 3")):
        extract.main(extract_argv(exp, trained["data"] / "dev_test", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (("finetune: {mode: frozen}", "finetune: {mode: lora, rank: 2}"), r"first missing keys: \['upstream\..*lora_"),
        (
            ("embed_dim: 16", "embed_dim: 8"),
            r"first shape mismatches \(checkpoint vs model\): \['proj.bias \(16,\) vs \(8,\)'",
        ),
    ],
    ids=["other keys", "other shapes"],
)
def test_checkpoint_of_another_architecture(trained: dict[str, Path], tmp_path: Path, change, message) -> None:
    exp = copy_exp(trained, tmp_path)
    cfg = trained["config"].read_text().replace(*change)
    assert cfg != trained["config"].read_text()
    config = tmp_path / "other.yaml"
    config.write_text(cfg)
    dump_config(load_train_config(config), exp / "config.yaml")
    with pytest.raises(
        RuntimeError,
        match=re.escape(f"{exp / 'model.pt'}: checkpoint does not match the model built from the config")
        + ".*"
        + message,
    ):
        extract.main(extract_argv(exp, trained["data"] / "dev_test", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_truncated_model_file(trained: dict[str, Path], tmp_path: Path) -> None:
    exp = copy_exp(trained, tmp_path)
    data = (exp / "model.pt").read_bytes()
    (exp / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        RuntimeError, match=re.escape(f"{exp / 'model.pt'}: unreadable model file") + "(?s:.*)rerun stage 3"
    ):
        extract.main(extract_argv(exp, trained["data"] / "dev_test", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_truncated_training_checkpoint(trained: dict[str, Path], tmp_path: Path) -> None:
    exp = copy_exp(trained, tmp_path)
    ckpt = exp / "checkpoints" / "epoch_1.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    config = tmp_path / "train.yaml"
    config.write_text(trained["config"].read_text().replace("epochs: 1", "epochs: 2"))
    before = snapshot(exp)
    with pytest.raises(
        RuntimeError,
        match=re.escape(f"{ckpt}: unreadable checkpoint")
        + "(?s:.*)"
        + re.escape(f"delete it and point {exp / 'checkpoints' / 'latest'} at the previous epoch"),
    ):
        train.main(
            ["--config", str(config), "--data_root", str(trained["data"]), "--exp_dir", str(exp), "--device", "cpu"]
        )
    after = snapshot(exp)
    assert {k: v for k, v in after.items() if k != "config.yaml"} == {
        k: v for k, v in before.items() if k != "config.yaml"
    }


def test_checkpoint_with_pickled_objects_needs_the_explicit_opt_in(trained: dict[str, Path], tmp_path: Path) -> None:
    state = torch.load(trained["upstream"], weights_only=True)
    state["args"] = argparse.Namespace(note="fairseq-style config object")
    ckpt = tmp_path / "with objects.pt"
    torch.save(state, ckpt)
    with pytest.raises(
        ValueError,
        match=re.escape(f"{ckpt}: torch.load(weights_only=True) refused it")
        + "(?s:.*)argparse.Namespace(?s:.*)upstream.allow_unsafe_pickle: true",
    ):
        build_upstream(UpstreamConfig(name="hubert", path=str(ckpt)))
    opted_in = build_upstream(UpstreamConfig(name="hubert", path=str(ckpt), allow_unsafe_pickle=True))
    plain = build_upstream(UpstreamConfig(name="hubert", path=str(trained["upstream"])))
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in opted_in.state_dict().items())


# ---------------------------------------------------------------------------------------------
# Disk


def test_full_disk_while_writing_embeddings(trained: dict[str, Path], tmp_path: Path) -> None:
    """A file-size limit makes the ark write fail as a full disk would (EFBIG instead of ENOSPC)."""
    out = tmp_path / "out dir ü"
    assert extract.main(extract_argv(trained["exp"], trained["data"] / "dev_test", out)) == 0
    before = snapshot(out)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256, 256))

    proc = subprocess.run(
        [sys.executable, "-m", "asdlib.bin.extract", *extract_argv(trained["exp"], trained["data"] / "dev_test", out)],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert (
        f"could not write {(out / 'embeddings.ark').resolve()}: File too large (check free disk space and permissions)"
        in proc.stderr
    )
    assert snapshot(out) == before  # old outputs intact, no temp files left


# ---------------------------------------------------------------------------------------------
# Security


def test_downloaded_archive_with_path_traversal_is_refused(tmp_path: Path) -> None:
    arc = zenodo.archive(2024, "dev", "fan")
    mirror = tmp_path / "mirror"
    zpath = mirror / mirror_url(arc.url, "x")[2:]
    zpath.parent.mkdir(parents=True)
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("fan/train/section_00_source_train_normal_0000_a_1.wav", b"RIFF")
        zf.writestr("fan/../../../evil.sh", b"echo owned\n")
    root = tmp_path / "corpus"
    argv = [
        "--year",
        "2024",
        "--root",
        str(root),
        "--mirror",
        mirror.as_uri(),
        "--kinds",
        "dev",
        "--machines",
        "fan",
        "--zenodo_checksums",
        "false",
        "--eval_list",
        "false",
        "--retries",
        "0",
    ]
    err = error_of(download_dcase.main, argv)
    assert f"{arc.file_name}: member 'fan/../../../evil.sh' contains '..'" in err
    assert not list(tmp_path.rglob("evil.sh")) and not (root / "dev_data" / "fan").exists()


def _library_calls() -> list[tuple[str, ast.Call, set[str]]]:
    """Every call in asdlib with its location and the parameter names of its enclosing function."""
    out = []
    for path in sorted((REPO / "asdlib").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        params: dict[int, set[str]] = {}
        for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            names = {a.arg for a in func.args.args + func.args.kwonlyargs}
            for node in ast.walk(func):
                params.setdefault(id(node), set()).update(names)
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            out.append((f"{path.relative_to(REPO)}:{call.lineno}", call, params.get(id(call), set())))
    return out


def test_no_eval_exec_unsafe_yaml_or_unguarded_unpickling_in_the_library() -> None:
    problems = []
    for where, call, params in _library_calls():
        f = call.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        if isinstance(f, ast.Name) and name in ("eval", "exec", "compile", "__import__"):
            problems.append(f"{where}: {name}()")
        if owner == "yaml" and name in ("load", "load_all", "full_load", "unsafe_load", "unsafe_load_all"):
            problems.append(f"{where}: yaml.{name} (use yaml.safe_load)")
        if owner == "pickle" and name in ("load", "loads"):
            problems.append(f"{where}: pickle.{name}")
        if owner == "torch" and name == "load":
            flag = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
            safe = isinstance(flag, ast.Constant) and flag.value is True
            if not safe and "allow_unsafe_pickle" not in params:  # unsafe only behind the user's explicit flag
                problems.append(f"{where}: torch.load without weights_only=True")
    assert not problems, "\n".join(problems)
