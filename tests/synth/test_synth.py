"""Tests of the synthetic DCASE 2023/2024-format corpus (asdlib.synth.corpus, asdlib.bin.make_synth)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import roc_auc_score

from asdlib.bin import make_synth
from asdlib.synth import corpus as synth
from asdlib.synth.corpus import SynthConfig, SynthError, generate_corpus

ATTR = r"(?P<attr>noAttribute|[A-Za-z]+_[A-Za-z0-9]+(?:_[A-Za-z]+_[A-Za-z0-9]+)*)"
TRAIN_RE = re.compile(rf"^section_00_(?P<domain>source|target)_train_normal_(?P<idx>\d{{4}})_{ATTR}\.wav$")
TEST_RE = re.compile(
    rf"^section_00_(?P<domain>source|target)_test_(?P<label>normal|anomaly)_(?P<idx>\d{{4}})_{ATTR}\.wav$"
)
BLIND_RE = re.compile(r"^section_00_(?P<idx>\d{4})\.wav$")

SMALL = SynthConfig(n_train_source=12, n_train_target=2, n_test=3, seconds=0.5)
SMALL_ARGS = ["--n_train_source", "12", "--n_train_target", "2", "--n_test", "3", "--seconds", "0.5"]


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small corpus written through the CLI (default machines and options except the sizes)."""
    root = tmp_path_factory.mktemp("synth") / "corpus"
    assert make_synth.main(["--root", str(root), *SMALL_ARGS]) == 0
    return root


def _machine_dirs(root: Path, cfg: SynthConfig):
    for dataset, machines in (("dev", cfg.dev_machines), ("eval", cfg.eval_machines)):
        for m in machines:
            yield dataset, m, root / f"{dataset}_data" / "raw" / m


def test_cli_defaults_match_config():
    args = make_synth.get_parser().parse_args(["--root", "x"])
    fields = {f.name for f in dataclasses.fields(SynthConfig)}
    assert {k: getattr(args, k) for k in fields} == dataclasses.asdict(SynthConfig())
    assert make_synth.get_parser().parse_args(["--root", "x", "--no_attribute", ""]).no_attribute == ()


def test_layout_names_and_audio(corpus: Path):
    for dataset, machine, mdir in _machine_dirs(corpus, SMALL):
        train = sorted(p.name for p in (mdir / "train").iterdir())
        test = sorted(p.name for p in (mdir / "test").iterdir())
        assert len(train) == SMALL.n_train_source + SMALL.n_train_target
        assert len(test) == 4 * SMALL.n_test
        groups: dict[tuple, list[int]] = {}
        for name in train:
            m = TRAIN_RE.match(name)
            assert m, f"{machine}/train/{name}"
            groups.setdefault(("train", m["domain"], "normal"), []).append(int(m["idx"]))
        for name in test:
            if dataset == "dev":
                m = TEST_RE.match(name)
                assert m, f"{machine}/test/{name}"
                groups.setdefault(("test", m["domain"], m["label"]), []).append(int(m["idx"]))
            else:
                assert BLIND_RE.match(name), f"{machine}/test/{name}"
        if dataset == "eval":
            assert sorted(int(BLIND_RE.match(n)["idx"]) for n in test) == list(range(4 * SMALL.n_test))
        for key, idx in groups.items():  # 0-based contiguous indices per (split, domain, label)
            assert sorted(idx) == list(range(len(idx))), (machine, key)
        info = sf.info(str(mdir / "train" / train[0]))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 8000)
    assert (corpus / synth.DONE_MARKER).is_file()


def test_no_attribute_naming_and_hidden_attributes(corpus: Path):
    meta = list(csv.DictReader(open(corpus / synth.METADATA_FILE, encoding="utf-8")))
    for dataset, machine, mdir in _machine_dirs(corpus, SMALL):
        names = [p.name for p in (mdir / "train").iterdir()]
        if dataset == "dev":
            names += [p.name for p in (mdir / "test").iterdir()]
        hidden = machine in SMALL.no_attribute
        assert all(n.endswith("_noAttribute.wav") == hidden for n in names), machine
        # hidden or not, the sound has attributes that vary between clips
        attrs = {r["attributes"] for r in meta if r["machine"] == machine and r["domain"] == "source"}
        assert len(attrs) >= 2, machine
    assert {"gearbox", "ToothBrush"} == set(SMALL.no_attribute)


def test_attributes_csv(corpus: Path):
    for dataset, machine, mdir in _machine_dirs(corpus, SMALL):
        with open(mdir / "attributes_00.csv", encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        header, body = rows[0], rows[1:]
        assert header[0] == "file_name"
        npairs = (len(header) - 1) // 2
        assert header[1:] == [x for i in range(1, npairs + 1) for x in (f"d{i}p", f"d{i}v")]
        listed = [r[0] for r in body]
        expected = [f"{machine}/train/{p.name}" for p in (mdir / "train").iterdir()]
        if dataset == "dev":
            expected += [f"{machine}/test/{p.name}" for p in (mdir / "test").iterdir()]
        assert sorted(listed) == sorted(expected), (
            f"{dataset}/{machine}: attributes_00.csv must list exactly the {'train+test' if dataset == 'dev' else 'train'} files"
        )
        for row in body:
            assert len(row) == len(header)
            attr = TRAIN_RE.match(Path(row[0]).name) or TEST_RE.match(Path(row[0]).name)
            if machine in SMALL.no_attribute:
                assert header == ["file_name", "d1p", "d1v"] and row[1:] == ["noAttribute", ""]
            else:
                assert "_".join(row[1:]) == attr["attr"]


def test_eval_list(corpus: Path):
    raw = (corpus / "eval_data_list_2024.csv").read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n"), "CRLF line endings expected"
    lines = raw.decode("utf-8").split("\r\n")[:-1]
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in lines:
        if "," not in line:
            current = line
            sections[current] = []
        else:
            blinded, labelled = line.split(",")
            sections[current].append((blinded, labelled))
    assert list(sections) == list(SMALL.eval_machines)
    for machine, rows in sections.items():
        files = {p.name for p in (corpus / "eval_data" / "raw" / machine / "test").iterdir()}
        assert sorted(b for b, _ in rows) == sorted(files), "one row per blinded file"
        parsed = [TEST_RE.match(lab) for _, lab in rows]
        assert all(parsed)
        assert Counter((m["domain"], m["label"]) for m in parsed) == {
            (d, lab): SMALL.n_test for d in synth.DOMAINS for lab in synth.LABELS
        }
        assert len({lab for _, lab in rows}) == len(rows)
        assert all((m["attr"] == "noAttribute") == (machine in SMALL.no_attribute) for m in parsed)
        # the blinded index must not reveal the group: labels in blinded order are not grouped
        in_blind_order = [m["domain"] + m["label"] for _, m in sorted(zip([b for b, _ in rows], parsed))]
        assert in_blind_order != sorted(in_blind_order)


def test_eval_list_year_and_label_truth(tmp_path: Path):
    cfg = dataclasses.replace(
        SMALL,
        year=2023,
        dev_machines=("fan",),
        eval_machines=("ToyDrone",),
        no_attribute=(),
        n_train_source=2,
        n_test=2,
    )
    generate_corpus(tmp_path / "c", cfg)
    assert (tmp_path / "c" / "eval_data_list_2023.csv").is_file()
    assert not (tmp_path / "c" / "eval_data_list_2024.csv").exists()
    # the labelled name of each blinded file is the truth recorded for that very audio
    meta = {
        r["file_name"]: r
        for r in csv.DictReader(open(tmp_path / "c" / synth.METADATA_FILE, encoding="utf-8"))
        if r["dataset"] == "eval"
    }
    lines = (tmp_path / "c" / "eval_data_list_2023.csv").read_text(encoding="utf-8").split()
    for line in lines[1:]:
        blinded, labelled = line.split(",")
        m = TEST_RE.match(labelled)
        assert (meta[blinded]["domain"], meta[blinded]["label"], meta[blinded]["attributes"]) == (
            m["domain"],
            m["label"],
            m["attr"],
        )


def test_target_ratio_and_unseen_target_conditions(corpus: Path):
    cfg = SynthConfig()
    for machine in cfg.dev_machines + cfg.eval_machines:
        train = synth.split_specs("dev", machine, "train", cfg)
        n_target = sum(s.domain == "target" for s in train)
        assert n_target / len(train) == pytest.approx(0.01)
    names = [p.name for p in (corpus / "dev_data" / "raw" / "fan" / "train").iterdir()]
    src = {TRAIN_RE.match(n)["attr"] for n in names if "_source_" in n}
    tgt = {TRAIN_RE.match(n)["attr"] for n in names if "_target_" in n}
    assert len(tgt) >= 1 and not src & tgt, "target attribute values must be unseen in the source domain"


def test_events_and_anomaly_kinds_are_balanced():
    cfg = SynthConfig()
    specs = [
        s
        for m in cfg.dev_machines + cfg.eval_machines
        for split in ("train", "test")
        for s in synth.split_specs("dev", m, split, cfg)
    ]
    assert {s.anomaly_kind(cfg.seed) for s in specs if s.label == "anomaly"} == set(synth.ANOMALY_KINDS)
    assert all(s.anomaly_kind(cfg.seed) == "" for s in specs if s.label == "normal")
    for label in synth.LABELS:
        share = np.mean([s.events for s in specs if s.split == "test" and s.label == label])
        assert share == pytest.approx(synth.EVENT_PROB, abs=0.05)


def test_determinism(corpus: Path, tmp_path: Path):
    same = tmp_path / "same"
    generate_corpus(same, SMALL)
    assert _tree_digest(same) == _tree_digest(corpus)
    other = tmp_path / "other"
    generate_corpus(other, dataclasses.replace(SMALL, seed=1))
    a, b = _tree_digest(corpus), _tree_digest(other)
    wavs = [k for k in a if k.endswith(".wav")]
    assert sum(a[k] != b.get(k) for k in wavs) > 0.9 * len(wavs)
    # a clip rendered alone equals the one in the corpus: independent of generation order
    spec = synth.split_specs("dev", "valve", "test", SMALL)[-1]
    buf = io.BytesIO()
    sf.write(buf, synth.synthesize_clip(spec, SMALL), SMALL.sample_rate, subtype="PCM_16", format="WAV")
    assert (
        buf.getvalue()
        == (corpus / "dev_data" / "raw" / "valve" / "test" / synth.labelled_name(spec, SMALL)).read_bytes()
    )


def test_done_marker(corpus: Path, tmp_path: Path):
    assert json.loads((corpus / synth.DONE_MARKER).read_text()) == SMALL.to_json_dict()
    before = _tree_digest(corpus)
    generate_corpus(corpus, SMALL)  # same options: nothing to do
    assert _tree_digest(corpus) == before
    with pytest.raises(SynthError, match="other options.*seed"):
        generate_corpus(corpus, dataclasses.replace(SMALL, seed=5))
    with pytest.raises(SynthError, match="other options"):
        make_synth.main(["--root", str(corpus), *SMALL_ARGS, "--seed", "5"])
    partial = tmp_path / "partial"
    (partial / "dev_data").mkdir(parents=True)
    with pytest.raises(SynthError, match="no .done marker"):
        generate_corpus(partial, SMALL)
    (tmp_path / "empty").mkdir()  # an existing empty directory is fine
    generate_corpus(
        tmp_path / "empty",
        dataclasses.replace(SMALL, dev_machines=("fan",), eval_machines=("HairDryer",), no_attribute=()),
    )
    assert (tmp_path / "empty" / synth.DONE_MARKER).is_file()


@pytest.mark.parametrize(
    "change",
    [
        {"dev_machines": ("fan-1",)},
        {"eval_machines": ("fan",)},
        {"no_attribute": ("pump",)},
        {"seed": -1},
        {"n_test": 0},
        {"year": 2022},
        {"n_supplemental_machine": -1, "year": 2025},
        {"n_supplemental_noise": 2},  # supplemental clips only for 2025
    ],
)
def test_config_validation(change, tmp_path: Path):
    with pytest.raises(SynthError):
        generate_corpus(tmp_path / "c", dataclasses.replace(SynthConfig(), **change))
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------------------------------------
# 2025 (supplemental clips) and 2026 (stereo) in the mini layout

TINY = SynthConfig(
    dev_machines=("fan",),
    eval_machines=("ToyDrone",),
    no_attribute=(),
    n_train_source=3,
    n_train_target=1,
    n_test=1,
    seconds=0.5,
)


def _clips(root: Path) -> dict[str, str]:
    """Digests of the train/test wavs (what every year shares)."""
    return {k: v for k, v in _tree_digest(root).items() if k.endswith(".wav") and "/supplemental/" not in k}


@pytest.fixture(scope="module")
def tiny_2024(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("y2024") / "c"
    generate_corpus(root, TINY)
    return root


def test_year_2025_adds_supplemental_clips(tiny_2024: Path, tmp_path: Path):
    root = tmp_path / "c"
    args = ["--root", str(root), "--dev_machines", "fan", "--eval_machines", "ToyDrone", "--no_attribute", ""]
    args += ["--n_train_source", "3", "--n_train_target", "1", "--n_test", "1", "--seconds", "0.5", "--year", "2025"]
    assert make_synth.main([*args, "--n_supplemental_machine", "2", "--n_supplemental_noise", "3"]) == 0
    cfg = dataclasses.replace(TINY, year=2025, n_supplemental_machine=2, n_supplemental_noise=3)
    assert _clips(root) == _clips(tiny_2024)  # train/test names and audio as in 2024
    assert (root / "eval_data_list_2025.csv").read_bytes() == (tiny_2024 / "eval_data_list_2024.csv").read_bytes()
    marker = json.loads((root / synth.DONE_MARKER).read_text())
    assert (marker["n_supplemental_machine"], marker["n_supplemental_noise"]) == (2, 3)
    meta = [
        r for r in csv.DictReader(open(root / synth.METADATA_FILE, encoding="utf-8")) if r["split"] == "supplemental"
    ]
    for dataset, machine in (("dev", "fan"), ("eval", "ToyDrone")):
        sup = root / f"{dataset}_data" / "raw" / machine / "supplemental"
        names = sorted(p.name for p in sup.iterdir())
        assert names == [f"section_00_machine_{i:04d}_.wav" for i in range(2)] + [
            f"section_00_noise_{i:04d}_.wav" for i in range(3)
        ]
        rows = {r["file_name"]: r for r in meta if r["machine"] == machine}
        assert [rows[n]["part"] for n in names] == ["machine"] * 2 + ["noise"] * 3
        assert [rows[n]["domain"] for n in names] == ["source"] * 4 + ["target"]
        assert all(rows[n]["label"] == "normal" and rows[n]["anomaly"] == "" for n in names)
        assert "supplemental" not in (sup.parent / "attributes_00.csv").read_text()
        # the clips are the parts of their own clips, unlike any train clip
        clips = synth.supplemental_clips(dataset, machine, cfg)
        for name, part, spec in clips:
            x, _ = sf.read(str(sup / name))
            np.testing.assert_allclose(x, synth.synthesize_clip(spec, cfg, part), atol=1 / 32768)
        train = synth.split_specs(dataset, machine, "train", cfg)
        train_x = [synth.synthesize_clip(s, cfg, "machine") for s in train]
        assert not any(np.allclose(synth.synthesize_clip(clips[0][2], cfg, "machine"), x) for x in train_x)
    assert TINY.to_json_dict().keys().isdisjoint({"n_supplemental_machine", "n_supplemental_noise"})


def test_year_2026_is_stereo_with_a_far_microphone(tiny_2024: Path, tmp_path: Path):
    cfg = dataclasses.replace(TINY, year=2026)
    root = tmp_path / "c"
    generate_corpus(root, cfg)
    wavs = sorted(k for k in _clips(tiny_2024))
    assert sorted(_clips(root)) == wavs  # the same names
    for rel in wavs:
        stereo, sr = sf.read(str(root / rel), dtype="int16")
        mono, _ = sf.read(str(tiny_2024 / rel), dtype="int16")
        assert stereo.shape == (mono.size, 2) and sr == cfg.sample_rate
        np.testing.assert_array_equal(stereo[:, 0], mono)  # channel 0: the 2024 clip exactly
    # channel 1: the same noise part, the machine part about FAR_DB weaker
    for spec in synth.split_specs("dev", "fan", "train", cfg)[:2]:
        far = synth.clip_samples(spec, cfg, synth.DEFAULT_MODEL)[:, 1]
        machine, noise = (synth.synthesize_clip(spec, cfg, part) for part in ("machine", "noise"))
        drop_db = 20 * np.log10(np.std(far - noise) / np.std(machine))
        assert abs(drop_db + synth.FAR_DB) < 0.5, drop_db


# ---------------------------------------------------------------------------------------------
# Calibration: a "mean log-mel (64 bins) + cosine 1-NN to the machine's train clips" baseline
# must stay far from perfect at the default strength, yet see the anomalies at strength 3, and
# the loud background events must be a main reason for its failure.


def _mel_fb(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    def hz2mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    pts = 700.0 * (10 ** (np.linspace(0.0, hz2mel(sr / 2), n_mels + 2) / 2595.0) - 1.0)
    fr = np.fft.rfftfreq(n_fft, 1.0 / sr)
    return np.stack(
        [
            np.clip(np.minimum((fr - lo) / (c - lo), (hi - fr) / (hi - c)), 0.0, None)
            for lo, c, hi in zip(pts, pts[1:], pts[2:])
        ]
    )


MEL = _mel_fb(16000, 1024, 64)


def _mean_logmel(x: np.ndarray) -> np.ndarray:
    x = np.round(x * 32767) / 32768  # what a reader of the 16-bit file gets
    nf = 1 + (x.size - 1024) // 512
    frames = x[np.arange(1024)[None, :] + 512 * np.arange(nf)[:, None]] * np.hanning(1024)
    return np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 @ MEL.T + 1e-10).mean(0)


def family_probe(
    model: synth.SoundModel, cfg: synth.SynthConfig, machines: list[tuple[str, str]]
) -> tuple[list[float], list[float]]:
    """Per (dataset, machine): AUC(source) of a mean-log-mel cosine 1-NN to the source training clips,
    and the AUC of target against source normals under the same score (is the domain shift real?)."""
    auc_src, auc_dom = [], []
    for dataset, machine in machines:
        train = [s for s in synth.split_specs(dataset, machine, "train", cfg, model) if s.domain == "source"]
        test = synth.split_specs(dataset, machine, "test", cfg, model)
        bank = np.stack([_mean_logmel(model.render(s, cfg)) for s in train])
        feats = np.stack([_mean_logmel(model.render(s, cfg)) for s in test])
        bank /= np.linalg.norm(bank, axis=1, keepdims=True)
        score = 1.0 - (feats / np.linalg.norm(feats, axis=1, keepdims=True) @ bank.T).max(1)
        src = np.array([s.domain == "source" for s in test])
        anomaly = np.array([s.label == "anomaly" for s in test])
        auc_src.append(roc_auc_score(anomaly[src], score[src]))
        auc_dom.append(roc_auc_score(~src[~anomaly], score[~anomaly]))
    return auc_src, auc_dom


def _knn_auc(train: np.ndarray, test: np.ndarray, domain: np.ndarray, anomaly: np.ndarray) -> float:
    """Cosine 1-NN distance as score; DCASE AUC(source) and AUC(target) (normals of the domain vs.
    all anomalies), averaged over the two domains."""
    a = train / np.linalg.norm(train, axis=1, keepdims=True)
    b = test / np.linalg.norm(test, axis=1, keepdims=True)
    score = 1.0 - (b @ a.T).max(1)
    return float(
        np.mean([roc_auc_score(anomaly[m], score[m]) for m in ((domain == d) | anomaly for d in synth.DOMAINS)])
    )


def _feats(specs, cfg) -> np.ndarray:
    return np.stack([_mean_logmel(synth.synthesize_clip(s, cfg)) for s in specs])


def test_calibration():
    """Default corpus (in memory): per-machine AUC of the baseline at strength 1 and 3, and with
    background events removed. Normal clips do not depend on the strength, so they are shared."""
    cfg, strong = SynthConfig(), SynthConfig(anomaly_strength=3.0)
    result: dict[str, dict[str, float]] = {}
    for dataset, machines in (("dev", cfg.dev_machines), ("eval", cfg.eval_machines)):
        for machine in machines:
            train = synth.split_specs(dataset, machine, "train", cfg)
            test = synth.split_specs(dataset, machine, "test", cfg)
            domain = np.array([s.domain for s in test])
            anomaly = np.array([s.label == "anomaly" for s in test])
            f_train, f_test = _feats(train, cfg), _feats(test, cfg)
            f_strong = f_test.copy()
            f_strong[anomaly] = _feats([s for s in test if s.label == "anomaly"], strong)
            f_quiet = np.concatenate([f_train, f_test])
            loud = np.array([s.events for s in train + test])
            f_quiet[loud] = _feats([dataclasses.replace(s, events=False) for s in train + test if s.events], cfg)
            result[machine] = {
                "s1": _knn_auc(f_train, f_test, domain, anomaly),
                "s3": _knn_auc(f_train, f_strong, domain, anomaly),
                "s1_no_events": _knn_auc(f_quiet[: len(train)], f_quiet[len(train) :], domain, anomaly),
            }
    print("\nmean-log-mel cosine 1-NN AUC, mean over domains:")
    for machine, r in result.items():
        print(f"  {machine:12s} " + "  ".join(f"{k}={v:.3f}" for k, v in r.items()))
    mean = {k: float(np.mean([r[k] for r in result.values()])) for k in ("s1", "s3", "s1_no_events")}
    print("  " + "  ".join(f"{k}={v:.3f}" for k, v in mean.items()))
    assert all(0.5 <= r["s1"] <= 0.85 for r in result.values()), result
    assert 0.6 <= mean["s1"] <= 0.76, mean
    assert mean["s3"] >= 0.75 and mean["s3"] >= mean["s1"] + 0.08, mean
    assert mean["s1_no_events"] >= mean["s1"] + 0.08, "background events must be a main reason the baseline fails"
