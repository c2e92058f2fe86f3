"""Acceptance: ./run.sh of every egs/dcase20XX recipe runs stages 1-6 on a synthetic corpus in that
year's official format, and writes that year's submission files and official score.

Each recipe is mirrored into tmp_path (symlinks to the committed scripts, a copy of conf/), db.sh's
variable points at the corpus through the environment, and a tiny random-init HuBERT replaces the
pre-trained upstream. The years run two at a time in the background (one per core), so all six take
the wall time of three; each test waits for its own year. The eval-test official score is
recomputed here from the submission CSVs and the corpus's eval list alone, which checks the whole
chain (blinded names, eval-list ground truth, year-specific CSVs and metric) end to end.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import mirror_recipe
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score

from asdlib.config import load_train_config
from asdlib.data.datadir import read_data_dir
from asdlib.synth.years import YearSynthConfig, generate_year_corpus
from asdlib.years import YEARS as TABLE
from asdlib.years import get_year

REPO = Path(__file__).resolve().parents[2]
ALL_YEARS = tuple(TABLE)
YEARS = tuple(y for y in ALL_YEARS if TABLE[y].eval_test)  # 2026: no released eval test set (dev_test only)
TINY = """\
embedder: ssl
seed: 0
upstream: {{name: hubert, path: {upstream}}}
finetune: {{mode: lora, rank: 4}}
model: {{pooling_hidden: 16, embed_dim: 32}}
optim: {{epochs: 1, batch_size: 4, warmup_steps: 1}}
data: {{crop_seconds: 0.0, channel: {channel}}}
"""
BLINDED = {
    2020: r"id_\d\d_\d{8}\.wav",
    2021: r"section_\d\d_(source|target)_test_\d{4}\.wav",
    2022: r"section_\d\d_\d{4}\.wav",
}
NO_ATTRIBUTE = {2024: ("ToyTrain",), 2025: ("ToyTrain",)}  # hidden-attribute machines, as in the real data


def mirror_year(year: int, dest: Path) -> Path:
    return mirror_recipe(REPO / "egs" / f"dcase{year}", dest)


def run_year(year: int, base: Path, upstream: Path) -> tuple[Path, Path, subprocess.CompletedProcess]:
    corpus = base / f"corpus {year}"  # a space in the path on purpose
    generate_year_corpus(
        corpus,
        YearSynthConfig(
            year=year,
            no_attribute=NO_ATTRIBUTE.get(year, ()),
            n_train_source=3,
            n_train_target=1,
            n_test=2,
            n_supplemental=2,
            seconds=1.0,
        ),
    )
    recipe = mirror_year(year, base / "egs" / f"dcase{year}")
    (recipe / "conf" / "tiny.yaml").write_text(TINY.format(upstream=upstream, channel=0 if year == 2026 else "null"))
    proc = subprocess.run(
        ["./run.sh", "--train_config", "conf/tiny.yaml", "--stop_stage", "6", "--nj", "1"],
        cwd=recipe,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, f"DCASE{year}": str(corpus)},
    )
    return recipe, corpus, proc


def selected_years(request: pytest.FixtureRequest) -> list[int]:
    """Years whose tests were selected (so that `-k 2021` runs one recipe, not six)."""
    years = {
        item.callspec.params["year"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "year" in item.callspec.params
    }
    return sorted(years)


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("years")
    upstream = base / "hubert_tiny.pt"
    subprocess.run(
        ["python", "-m", "asdlib.bin.make_random_upstream", "--name", "hubert", "--out", str(upstream)],
        check=True,
        capture_output=True,
    )
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(2, os.cpu_count() or 1)))
    futures = {year: pool.submit(run_year, year, base, upstream) for year in selected_years(request)}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def finished(runs, year: int) -> tuple[Path, Path]:
    recipe, corpus, proc = runs[year].result()
    assert proc.returncode == 0, f"dcase{year} ./run.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}"
    return recipe, corpus


def expected_csvs(year: int, utts) -> set[str]:
    names = set()
    for u in utts:
        if year == 2020:
            names.add(f"anomaly_score_{u.machine}_id_{u.section}.csv")
            continue
        stem = (
            f"{u.machine}_section_{u.section}_{u.domain}_test"
            if year == 2021
            else f"{u.machine}_section_{u.section}_test"
        )
        names |= {f"anomaly_score_{stem}.csv", f"decision_result_{stem}.csv"}
    return names


def read_eval_list(path: Path, year: int) -> dict[tuple[str, str], tuple[int, str]]:
    """(machine, blinded name) -> (label 0/1, domain), read independently of asdlib."""
    out, machine = {}, None
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) == 1:
                machine = row[0]
            elif row:
                label = int(row[2]) if year == 2020 else int("_anomaly_" in row[1])
                out[(machine, row[0])] = (label, "target" if "_target_" in row[1] else "source")
    return out


def official_from_csvs(year: int, scores_dir: Path, truth: dict[tuple[str, str], tuple[int, str]]) -> float:
    """The year's official score from submission CSVs + ground truth (docs/dcase.md rules)."""
    per_machine: dict[str, list[tuple[float, float]]] = {}
    pooled: list[float] = []
    for path in sorted(scores_dir.glob("anomaly_score_*.csv")):
        machine = path.name[len("anomaly_score_") :].split("_")[0]
        rows = sorted(csv.reader(open(path, newline="")))
        y = np.array([truth[(machine, r[0])][0] for r in rows])
        dom = np.array([truth[(machine, r[0])][1] for r in rows])
        s = np.array([float(r[1]) for r in rows])
        if year == 2020:
            per_machine.setdefault(machine, []).append((roc_auc_score(y, s), roc_auc_score(y, s, max_fpr=0.1)))
        elif year == 2021:  # one file per domain: AUC and pAUC on its own clips
            pooled += [roc_auc_score(y, s), roc_auc_score(y, s, max_fpr=0.1)]
        else:
            for d in ("source", "target"):
                m = (dom == d) | (y == 1)
                pooled.append(roc_auc_score(y[m], s[m]))
            pooled.append(roc_auc_score(y, s, max_fpr=0.1))
    if year == 2020:
        aucs = [np.mean([a for a, _ in v]) for v in per_machine.values()]
        paucs = [np.mean([p for _, p in v]) for v in per_machine.values()]
        return float((np.mean(aucs) + np.mean(paucs)) / 2)
    return float(hmean(np.maximum(pooled, np.finfo(float).eps)))


@pytest.mark.parametrize("year", ALL_YEARS)
@pytest.mark.slow
def test_run_sh_through_stage_6(runs, year):
    recipe, corpus = finished(runs, year)
    exp = recipe / "exp" / "tiny"
    if year == 2026:  # dev sets only, scored with the 2022-2025 rule and file names
        assert sorted(p.name for p in (recipe / "data").iterdir()) == ["dev_test", "dev_train", "eval_train"]
        assert sorted(p.name for p in (exp / "results").iterdir()) == ["dev_test"]
    else:
        blinded = BLINDED.get(year, BLINDED[2022])  # 2021 keeps the domain visible, 2022+ hides it
        assert all(re.fullmatch(blinded, Path(u.path).name) for u in read_data_dir(recipe / "data" / "eval_test"))
    for name in ("dev_test",) if year == 2026 else ("dev_test", "eval_test"):
        utts = read_data_dir(recipe / "data" / name)
        assert {u.label for u in utts} == {"normal", "anomaly"}, f"{name}: ground truth missing"
        got = {p.name for p in (exp / "scores" / name).glob("*.csv")}
        assert got == expected_csvs(min(year, 2025), utts), name
        for path in (exp / "scores" / name).glob("*.csv"):  # rows carry the distributed file names
            machine = path.name.split("_")[2]
            rows = [r.split(",") for r in path.read_text().splitlines()]
            on_disk = {Path(u.path).name for u in utts if u.machine == machine}
            assert all(len(r) == 2 and r[0] in on_disk for r in rows)
        result = json.loads((exp / "results" / name / "results.json").read_text())
        assert 0.0 <= result["official_score"] <= 1.0
        assert result["metric"].startswith(f"dcase{year}" if year <= 2021 else "dcase2022-2025")
        assert {(m, s) for m, secs in result["per_machine"].items() for s in secs} == {
            (u.machine, u.section) for u in utts
        }
    if year == 2026:
        return
    if year == 2020:
        assert not list((exp / "scores" / "eval_test").glob("decision_result_*"))
        assert {u.domain for u in read_data_dir(recipe / "data" / "dev_test")} == {"source"}
    truth = read_eval_list(corpus / f"eval_data_list_{year}.csv", year)
    result = json.loads((exp / "results" / "eval_test" / "results.json").read_text())
    assert result["official_score"] == pytest.approx(
        official_from_csvs(year, exp / "scores" / "eval_test", truth), abs=1e-9
    )


@pytest.mark.parametrize("year", YEARS)
def test_synthetic_corpus_has_the_year_format(tmp_path, year):
    """Names, directories, eval-list columns and line endings of each year; stage 1 reads it."""
    from asdlib.bin.prepare_dcase import prepare
    from asdlib.synth.corpus import SynthError

    cfg = YearSynthConfig(year=year, n_train_source=2, n_train_target=1, n_test=1, seconds=0.5)
    generate_year_corpus(tmp_path / "c", cfg)
    listing = (tmp_path / "c" / f"eval_data_list_{year}.csv").read_bytes()
    assert listing.count(b"\r\n") == (listing.count(b"\n") if get_year(year).eval_list_crlf else 0)
    rows = [r.split(",") for r in listing.decode().split()]
    assert {len(r) for r in rows} == ({1, 3} if year == 2020 else {1, 2})
    built = prepare(year, tmp_path / "c", tmp_path / "data")
    for name in ("dev_test", "eval_test"):
        assert {u.label for u in built[name]} == {"normal", "anomaly"}
        assert {u.domain for u in built[name]} == ({"source"} if year == 2020 else {"source", "target"})
    assert len({u.section for u in built["dev_train"]}) == (2 if year <= 2022 else 1)
    if year == 2021:
        assert {Path(u.path).parent.name for u in built["eval_test"]} == {"source_test", "target_test"}
    if year >= 2022:
        assert all((Path(u.path).parents[1] / f"attributes_{u.section}.csv").is_file() for u in built["dev_train"])
    supplemental = list((tmp_path / "c").rglob("supplemental/*.wav"))
    assert bool(supplemental) == (year == 2025)
    generate_year_corpus(tmp_path / "c", cfg)  # same options: a no-op
    with pytest.raises(SynthError):
        generate_year_corpus(
            tmp_path / "c", YearSynthConfig(year=year, n_train_source=3, n_train_target=1, n_test=1, seconds=0.5)
        )


def test_synthetic_2026_is_stereo(tmp_path):
    import soundfile as sf

    generate_year_corpus(
        tmp_path / "c", YearSynthConfig(year=2026, n_train_source=2, n_train_target=1, n_test=1, seconds=0.5)
    )
    wavs = sorted((tmp_path / "c" / "dev_data").rglob("*.wav"))
    data, sr = sf.read(str(wavs[0]))
    assert data.shape == (8000, 2) and sr == 16000 and not np.allclose(data[:, 0], data[:, 1])
    assert all(
        re.fullmatch(r"section_00_(source|target)_(train|test)_(normal|anomaly)_\d{4}_\S+_noise_[12]\.wav", w.name)
        for w in wavs
    )
    from asdlib.bin.prepare_dcase import prepare

    built = prepare(2026, tmp_path / "c", tmp_path / "data", sets=("dev_train", "dev_test", "eval_train"))
    assert {u.machine for u in built["eval_train"]} == {"ToyDrone", "ToothBrush"}
    assert all(u.attr.endswith(("noise_1", "noise_2")) for u in built["dev_train"])


DEFAULT_PLUS = ("train", "far_mic", "supplemental_noise", "noise_projection", "far_noise_projection")


@pytest.mark.parametrize("year", ALL_YEARS)
def test_recipe_configs_load(year):
    """Every committed config (default and paper-table rows) loads and says what its name says."""
    conf = REPO / "egs" / f"dcase{year}" / "conf"
    paths = [conf / "train.yaml", *sorted((conf / "tuning").glob("*.yaml"))]
    assert len(paths) > (1 if year == 2026 else 10)
    for path in paths:
        cfg = load_train_config(path)
        name = path.stem
        if name.startswith("upstream_"):
            assert (
                cfg.upstream.name == name.split("_", 1)[1] and cfg.finetune.mode == "lora" and cfg.finetune.rank == 64
            )
        elif name.startswith("lora_r"):
            assert cfg.finetune.mode == "lora" and cfg.finetune.rank == int(name[len("lora_r") :])
        elif name.startswith("finetune_"):
            assert cfg.finetune.mode == name.split("_", 1)[1]
        # far_mic: the default system on the other channel; backend_<kind>: the default with another back end;
        # supplemental_noise: the default with the 2025 supplemental clips (noise mixed into training crops);
        # noise_projection / far_noise_projection: the default with the 2025 noise clips / the 2026 far
        # microphone projected out of the embeddings
        assert bool(cfg.data.noise_sets) == (name == "supplemental_noise"), name
        assert bool(cfg.backend.noise.sets) == name.endswith("noise_projection"), name
        if name not in DEFAULT_PLUS and not name.startswith("backend_"):
            assert cfg.mga.enabled == (name in ("mga", "mga_vq")) and cfg.vq.enabled == (name in ("vq", "mga_vq")), name
        assert cfg.backend.kind == (name[len("backend_") :] if name.startswith("backend_") else "knn"), name
        assert cfg.head.kind == "arcface"
        assert cfg.data.channel == ((1 if name == "far_mic" else 0) if year == 2026 else None), name  # 2026 is stereo
    default = load_train_config(conf / "train.yaml")
    assert default.upstream.name == "beats" and default.finetune.rank == 64 and default.mga.enabled


@pytest.fixture(scope="module")
def tiny_upstreams(tmp_path_factory: pytest.TempPathFactory):
    """One tiny random-init upstream per family, built on first use."""
    from asdlib.config import UpstreamConfig
    from asdlib.models.upstream import build_upstream

    base, cache = tmp_path_factory.mktemp("upstreams"), {}

    def get(name: str):
        if name not in cache:
            out = base / name
            subprocess.run(
                ["python", "-m", "asdlib.bin.make_random_upstream", "--name", name, "--out", str(out)],
                check=True,
                capture_output=True,
            )
            cache[name] = build_upstream(UpstreamConfig(name=name, path=str(out)))
        return cache[name]

    return get


@pytest.mark.parametrize("year", ALL_YEARS)
def test_lora_targets_exist_in_each_upstream(year, tiny_upstreams):
    """finetune.target_modules of every config names Linear layers that its upstream family has."""
    from asdlib.models.lora import lora_targets

    for path in sorted((REPO / "egs" / f"dcase{year}" / "conf").rglob("*.yaml")):
        if path.name == "slurm.conf":
            continue
        cfg = load_train_config(path)
        if cfg.finetune.mode == "lora":
            targets = lora_targets(tiny_upstreams(cfg.upstream.name), cfg.finetune)
            leaves = {t.rsplit(".", 1)[-1] for t in targets}
            assert leaves == set(cfg.finetune.target_modules or leaves) and "grep_linear" not in leaves, path
