"""fetch_metadata: the official DCASE metadata from a local HTTP mirror in the official repositories'
layout, every file checked against the shipped sha256 table; the lookup order and stage 1's error."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import real_metadata

from asdlib.bin import fetch_metadata
from asdlib.data import resources
from asdlib.data.download import DownloadError
from asdlib.data.resources import METADATA_ENV, SOURCES, fetched_files, metadata_dir, metadata_file
from asdlib.synth.years import YearSynthConfig, generate_year_corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1 (port 0): (directory, base URL)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def mirror(src: Path, served: Path, corrupt: str | None = None) -> None:
    """Lay the files of the sha256 table out as raw.githubusercontent.com does: <owner>/<repo>/<commit>/<path>."""
    for rel in fetched_files():
        src_file = src / rel
        src_repo = SOURCES[rel.split("/", 1)[0]]
        dest = served / src_repo.repo / src_repo.commit / rel.split("/", 1)[1]
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = src_file.read_bytes()
        dest.write_bytes(data.replace(b",", b";", 1) if rel == corrupt else data)


@pytest.fixture
def generated_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Generated metadata files in the official layout (a synthetic 2021 eval list, a 2023 evaluator file)
    and their sha256 table in place of the shipped one: the fetch logic without the real files."""
    src = tmp_path / "generated"
    corpus = tmp_path / "corpus"
    generate_year_corpus(corpus, YearSynthConfig(year=2021, n_train_source=1, n_train_target=1, n_test=1, seconds=0.5))
    files = {
        "baseline_ae/datasets/eval_data_list_2021.csv": (corpus / "eval_data_list_2021.csv").read_bytes(),
        "evaluator2023/ground_truth_data/ground_truth_fan_section_00_test.csv": b"section_00_0000.wav,1\n",
    }
    lines = ["# generated"]
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {rel}")
    table = tmp_path / "fetched.sha256"
    table.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(resources, "FETCHED_SHA256", table)
    return src


def test_fetch_checks_every_file_and_refuses_a_corrupt_one(generated_table, http_root, tmp_path, capsys):
    served, url = http_root
    bad = "baseline_ae/datasets/eval_data_list_2021.csv"
    mirror(generated_table, served, corrupt=bad)
    dest = tmp_path / "meta"
    with pytest.raises(DownloadError, match="1 of 2 DCASE metadata files refused"):
        fetch_metadata.main(["--dest", str(dest), "--base_url", url, "--retries", "0"])
    assert not (dest / bad).exists() and not list(dest.rglob("*.part"))  # refused, nothing half-written
    assert (dest / "evaluator2023/ground_truth_data/ground_truth_fan_section_00_test.csv").is_file()
    out = capsys.readouterr().out
    assert "baseline_ae/: nttcslab/dcase2023_task2_baseline_ae at 9b64dc4, licence: NTT Software License" in out
    mirror(generated_table, served)  # the mirror repaired: a rerun fetches the missing file
    assert fetch_metadata.main(["--dest", str(dest), "--base_url", url]) == 0
    assert (dest / bad).read_bytes() == (generated_table / bad).read_bytes()
    assert "do not redistribute" in capsys.readouterr().out
    assert fetch_metadata.main(["--check", str(dest)]) == 0
    (dest / bad).write_bytes(b"x")
    with pytest.raises(DownloadError, match="not the published ones, e.g. baseline_ae/datasets/eval_data_list_2021"):
        fetch_metadata.main(["--check", str(dest)])


def test_urls_are_the_pinned_commits():
    rel = "baseline_ae/datasets/eval_data_list_2023.csv"
    assert rel in fetched_files()
    assert fetch_metadata.file_url(rel) == (
        "https://raw.githubusercontent.com/nttcslab/dcase2023_task2_baseline_ae/"
        "9b64dc42276a64f65b7cbf2761d3c9ec525cff94/datasets/eval_data_list_2023.csv"
    )
    assert all(len(s.commit) == 40 for s in SOURCES.values() if not s.shipped)  # fetched at a full commit id
    assert all(not SOURCES[rel.split("/")[0]].shipped for rel in fetched_files())


def test_lookup_order(tmp_path, monkeypatch):
    """--metadata_dir, then $ASDLIB_DCASE_METADATA, then the recipe cache; shipped (MIT) files from the package."""
    a, b = tmp_path / "a", tmp_path / "b"
    cache = tmp_path / "recipe" / "downloads" / "dcase_metadata"
    for d in (a, b, cache):
        (d / "baseline_ae" / "datasets").mkdir(parents=True)
        (d / "baseline_ae" / "datasets" / "eval_data_list_2023.csv").write_text(d.name)
    monkeypatch.chdir(tmp_path / "recipe")
    monkeypatch.setenv(METADATA_ENV, str(b))
    assert metadata_dir(a) == a and metadata_dir() == b
    monkeypatch.delenv(METADATA_ENV)
    assert metadata_dir() == cache.resolve()
    rel = "baseline_ae/datasets/eval_data_list_2023.csv"
    assert metadata_file(rel).read_text() == "dcase_metadata"
    shipped = "evaluator2022/ground_truth_data/ground_truth_fan_section_03_test.csv"
    assert metadata_file(shipped) == resources.DCASE_RESOURCES / shipped  # the cache lacks it: the package's
    monkeypatch.chdir(tmp_path)
    assert metadata_dir() is None and metadata_file(rel) is None
    with pytest.raises(resources.MetadataMissingError) as e:
        metadata_file(rel, required=True)
    assert "python -m asdlib.bin.fetch_metadata" in str(e.value) and METADATA_ENV in str(e.value)
    monkeypatch.setenv(METADATA_ENV, str(tmp_path / "typo"))
    with pytest.raises(resources.MetadataMissingError, match="typo: not a directory"):
        metadata_dir()


def test_stage_1_without_metadata_is_one_line(tmp_path):
    """prepare_dcase without the year's eval list anywhere: one ERROR line naming the fetch command and
    the variable; with --metadata_dir or the recipe cache holding a list in the official layout, it runs."""
    corpus = tmp_path / "corpus"
    generate_year_corpus(corpus, YearSynthConfig(year=2021, n_train_source=1, n_train_target=1, n_test=1, seconds=0.5))
    meta = tmp_path / "meta" / "baseline_ae" / "datasets"
    meta.mkdir(parents=True)
    shutil.move(corpus / "eval_data_list_2021.csv", meta / "eval_data_list_2021.csv")
    env = {k: v for k, v in os.environ.items() if k != METADATA_ENV}
    cmd = [sys.executable, "-m", "asdlib.bin.prepare_dcase", "--year", "2021", "--root", str(corpus), "--data_dir"]
    work = tmp_path / "recipe"
    work.mkdir()
    proc = subprocess.run([*cmd, "data"], cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("ERROR: stage 1 (eval_test) needs the official DCASE file baseline_ae/datasets/")
    assert "python -m asdlib.bin.fetch_metadata" in proc.stderr and METADATA_ENV in proc.stderr
    proc = subprocess.run(
        [*cmd, "d1", "--metadata_dir", str(tmp_path / "meta")], cwd=work, env=env, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr
    shutil.copytree(tmp_path / "meta", work / "downloads" / "dcase_metadata")
    proc = subprocess.run([*cmd, "d2"], cwd=work, env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert (work / "d1" / "eval_test" / "utt2label").read_text() == (
        work / "d2" / "eval_test" / "utt2label"
    ).read_text()
    assert "anomaly" in (work / "d2" / "eval_test" / "utt2label").read_text()


def test_fetch_the_real_metadata_from_a_mirror(http_root, tmp_path):
    """The real files (ASDLIB_DCASE_METADATA) served in the official layout: all pass their sha256, and a
    corrupted one is refused."""
    served, url = http_root
    bad = "evaluator2024/ground_truth_domain/ground_truth_Scanner_section_00_test.csv"
    assert bad in fetched_files()
    mirror(real_metadata(), served, corrupt=bad)
    dest = tmp_path / "meta"
    with pytest.raises(DownloadError, match=f"1 of {len(fetched_files())} DCASE metadata files refused"):
        fetch_metadata.fetch(dest, url, retries=0)
    mirror(real_metadata(), served)
    assert len(fetch_metadata.fetch(dest, url)) == len(fetched_files())
    assert fetch_metadata.check(dest) == sorted(fetched_files())
