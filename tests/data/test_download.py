"""Corpus download (--download true): the Zenodo table, resumable verified downloads, safe unzip,
and the whole path from a local mirror of fake archives to prepared data dirs. All offline."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import SERVED_DATA, RangeServer, real_metadata

from asdlib.bin import download_dcase
from asdlib.bin.prepare_dcase import prepare
from asdlib.data import download as dl
from asdlib.data import zenodo
from asdlib.data.download import (
    DownloadError,
    Expected,
    UnsafeArchiveError,
    safe_extract,
)
from asdlib.data.resources import METADATA_ENV, SOURCES, fetched_files
from asdlib.synth.years import YearSynthConfig, generate_year_corpus
from asdlib.years import YEARS

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# The table


def official_urls(year: int) -> dict[tuple[str, str], str]:
    """(kind, machine) -> URL from the baseline's download_path_*.yaml."""
    path = (
        real_metadata()
        / "baseline_ae"
        / "datasets"
        / ("download_path_legacy.yaml" if year <= 2022 else f"download_path_{year}.yaml")
    )
    block = yaml.safe_load(path.read_text())[f"DCASE{year}T2"]
    out = {}
    for machine, parts in block.items():
        for url in parts.get("dev", []):
            out[("dev", machine)] = url
        for url in parts.get("eval", []):
            out[("eval_test" if "_test" in url.rsplit("/", 1)[1] else "eval_train", machine)] = url
    return out


@pytest.mark.parametrize("year", YEARS)
def test_table_matches_the_official_download_lists(year):
    ours = {(a.kind, a.machine): a.url for a in zenodo.archives(year)}
    assert ours == official_urls(year)


def test_table_facts():
    a = zenodo.archive(2021, "eval_test", "fan")
    assert (a.part, a.file_name, a.record_id) == ("eval_data", "eval_data_fan_test.zip", 4884786)
    assert a.record_api_url == "https://zenodo.org/api/records/4884786"
    assert zenodo.kinds(2026) == ("dev", "eval_train")
    with pytest.raises(ValueError, match="no eval_test|publishes no 'eval_test'"):
        zenodo.archive(2026, "eval_test", "Sander")
    with pytest.raises(ValueError, match="ToyCircuit"):
        zenodo.archives(2023, machines_=("ToyCircuit",))
    assert {a.machine for a in zenodo.archives(2020, ("dev",), ("fan", "pump"))} == {"fan", "pump"}
    assert (
        zenodo.eval_list_url(2024).endswith("/datasets/eval_data_list_2024.csv") and zenodo.eval_list_url(2026) is None
    )


# ---------------------------------------------------------------------------------------------
# Safe extraction


def make_zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # S_IFLNK
            zf.writestr(info, target)
    return path


@pytest.mark.parametrize(
    "name", ["../evil.txt", "fan/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt", "fan\\..\\..\\evil.txt"]
)
def test_safe_extract_rejects_escaping_names(tmp_path, name):
    archive = make_zip(tmp_path / "a.zip", {"fan/train/ok.wav": b"x", name: b"evil"})
    target = tmp_path / "out" / "dev_data"
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, target)
    assert not (tmp_path / "evil.txt").exists() and not (target / "fan" / "train" / "ok.wav").exists()


def test_safe_extract_rejects_links_and_symlinked_dirs(tmp_path):
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(make_zip(tmp_path / "l.zip", {}, {"fan/link": "/etc/passwd"}), tmp_path / "t1")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "t2"
    target.mkdir()
    (target / "fan").symlink_to(outside)  # a link already in the target must not lead out of it
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(make_zip(tmp_path / "s.zip", {"fan/x.wav": b"x"}), target)
    assert not list(outside.iterdir())


def test_member_mapper_normalises_layouts(tmp_path):
    m = download_dcase.member_mapper("fan", "dev_fan.zip")
    assert m(("fan", "train", "a.wav")) == ("fan", "train", "a.wav")
    assert m(("dev_data", "raw", "fan", "test", "a.wav")) == ("fan", "test", "a.wav")
    assert m(("source_test", "a.wav")) == ("fan", "source_test", "a.wav")
    assert m(("attributes_00.csv",)) == ("fan", "attributes_00.csv")
    assert m(("__MACOSX", "fan", "._a.wav")) is None
    with pytest.raises(UnsafeArchiveError, match="not under 'fan/'"):
        m(("pump", "train", "a.wav"))


# ---------------------------------------------------------------------------------------------
# Downloads: resume and verification


def test_http_download_resumes_a_part_file(tmp_path):
    server = RangeServer(SERVED_DATA)
    try:
        dest = tmp_path / "x.zip"
        (tmp_path / "x.zip.part").write_bytes(SERVED_DATA[:300_000])
        dl.download(server.url, dest, Expected(size=len(SERVED_DATA), md5=hashlib.md5(SERVED_DATA).hexdigest()))
        assert dest.read_bytes() == SERVED_DATA and not (tmp_path / "x.zip.part").exists()
        assert server.requests == ["bytes=300000-"]
        dl.download(server.url, dest, Expected(size=len(SERVED_DATA)))  # already there: no request
        assert len(server.requests) == 1
    finally:
        server.close()


def test_http_download_resumes_after_a_dropped_connection(tmp_path, monkeypatch):
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)
    server = RangeServer(SERVED_DATA, drop_first=True)
    try:
        dest = dl.download(server.url, tmp_path / "x.zip", Expected(sha256=hashlib.sha256(SERVED_DATA).hexdigest()))
        assert dest.read_bytes() == SERVED_DATA
        assert server.requests[0] is None and server.requests[1] == f"bytes={len(SERVED_DATA) // 3}-"
    finally:
        server.close()


def test_checksum_mismatch_fails_and_leaves_no_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(SERVED_DATA)
    dest = tmp_path / "out" / "x.zip"
    with pytest.raises(DownloadError, match="md5"):
        dl.download(src.as_uri(), dest, Expected(md5="0" * 32))
    assert not dest.exists() and not dest.with_name("x.zip.part").exists()
    with pytest.raises(DownloadError, match="size"):
        dl.download(src.as_uri(), dest, Expected(size=5))
    # a corrupt existing file is moved aside and fetched again
    dest.write_bytes(b"corrupt")
    dl.download(src.as_uri(), dest, Expected(md5=hashlib.md5(SERVED_DATA).hexdigest()))
    assert dest.read_bytes() == SERVED_DATA and dest.with_name("x.zip.bad").read_bytes() == b"corrupt"


def test_file_url_resume_and_missing_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(SERVED_DATA)
    dest = tmp_path / "x.zip"
    dest.with_name("x.zip.part").write_bytes(b"\xff" * 1000)  # resumed, not re-fetched: the prefix stays
    dl.download(src.as_uri(), dest)
    assert dest.read_bytes() == b"\xff" * 1000 + SERVED_DATA[1000:]
    with pytest.raises(DownloadError, match="not found"):
        dl.download((tmp_path / "missing.zip").as_uri(), tmp_path / "m.zip", retries=0)


def test_zenodo_record_formats():
    legacy = {"files": [{"key": "dev_fan.zip", "size": 10, "checksum": "md5:abc"}]}
    rdm = {"files": {"entries": {"dev_fan.zip": {"key": "dev_fan.zip", "size": 10, "checksum": "md5:abc"}}}}
    for record in (legacy, rdm):
        assert dl.zenodo_file_info(record, "dev_fan.zip") == Expected(size=10, md5="abc")
    assert dl.zenodo_file_info(legacy, "other.zip") == Expected()
    assert (
        dl.mirror_url("https://zenodo.org/record/1/files/a.zip", "file:///m/")
        == "file:///m/zenodo.org/record/1/files/a.zip"
    )


# ---------------------------------------------------------------------------------------------
# The whole path: a file:// mirror of fake archives -> corpus layout -> data dirs


def build_mirror(year: int, tmp_path: Path, corrupt: str | None = None) -> tuple[Path, Path, tuple[str, ...]]:
    """A synthetic corpus of ``year``, packed into the official archives of its machines, in a mirror tree."""
    corpus = tmp_path / "orig"
    cfg = generate_year_corpus(
        corpus, YearSynthConfig(year=year, n_train_source=2, n_train_target=1, n_test=1, sections=2, seconds=0.5)
    )
    mirror = tmp_path / "mirror"
    machines = tuple(dict.fromkeys(cfg.dev_machines + cfg.eval_machines))
    records: dict[int, list[dict]] = {}
    for arc in zenodo.archives(year, machines_=machines):
        mdir = corpus / arc.part / arc.machine
        if not mdir.is_dir():
            continue
        if arc.kind == "eval_test":
            wanted = [p for p in mdir.rglob("*") if p.is_file() and "test" in p.parent.name]
        elif arc.kind == "eval_train":
            wanted = [p for p in mdir.rglob("*") if p.is_file() and "test" not in p.parent.name]
        else:
            wanted = [p for p in mdir.rglob("*") if p.is_file()]
        zpath = mirror / dl.mirror_url(arc.url, "x")[2:]
        prefix = "dev_data/" if year == 2020 and arc.kind == "dev" else ""  # some zips carry a top folder
        make_zip(zpath, {prefix + str(p.relative_to(mdir.parent)): p.read_bytes() for p in wanted})
        data = zpath.read_bytes()
        md5 = "0" * 32 if corrupt == arc.file_name else hashlib.md5(data).hexdigest()
        records.setdefault(arc.record_id, []).append(
            {"key": arc.file_name, "size": len(data), "checksum": f"md5:{md5}"}
        )
    for record_id, files in records.items():
        api = mirror / "zenodo.org" / "api" / "records" / str(record_id)
        api.parent.mkdir(parents=True, exist_ok=True)
        api.write_text(json.dumps({"files": files}))
    eval_list = mirror / dl.mirror_url(zenodo.eval_list_url(year), "x")[2:]
    eval_list.parent.mkdir(parents=True, exist_ok=True)
    eval_list.write_bytes((corpus / f"eval_data_list_{year}.csv").read_bytes())
    return corpus, mirror, machines


def summary(built):
    return {
        name: sorted((u.machine, u.section, u.domain, u.label, u.attr, Path(u.path).name) for u in utts)
        for name, utts in built.items()
    }


@pytest.mark.parametrize("year", [2020, 2021, 2022, 2025])
def test_download_from_a_mirror_gives_the_same_data_dirs(tmp_path, year):
    corpus, mirror, machines = build_mirror(year, tmp_path)
    root = tmp_path / "downloaded"
    argv = ["--year", str(year), "--root", str(root), "--mirror", mirror.as_uri(), "--machines", ",".join(machines)]
    assert download_dcase.main(argv) == 0
    assert not list((root / download_dcase.CACHE_DIR).glob("*.zip"))  # archives removed after unpacking
    assert (root / f"eval_data_list_{year}.csv").is_file()
    assert summary(prepare(year, root, tmp_path / "d1")) == summary(prepare(year, corpus, tmp_path / "d2"))
    if year == 2025:
        assert list(root.glob("eval_data/*/supplemental/*.wav"))
    # a rerun finds every archive unpacked and needs no network (the mirror is gone)
    os.rename(mirror, tmp_path / "gone")
    assert download_dcase.main(argv) == 0


def test_corrupt_archive_is_rejected(tmp_path):
    arc = zenodo.archive(2021, "eval_test", "ToyCar")
    _, mirror, machines = build_mirror(2021, tmp_path, corrupt=arc.file_name)
    root = tmp_path / "downloaded"
    argv = [
        "--year",
        "2021",
        "--root",
        str(root),
        "--mirror",
        mirror.as_uri(),
        "--machines",
        ",".join(machines),
        "--retries",
        "0",
    ]
    with pytest.raises(DownloadError):
        download_dcase.main(argv)
    assert not (root / "eval_data" / "ToyCar" / "source_test").exists()
    assert (root / "dev_data" / "ToyCar" / "train").is_dir()  # archives before it were kept
    # without the Zenodo lookup the (unverified) archive is accepted
    assert download_dcase.main(argv + ["--zenodo_checksums", "false"]) == 0


def test_recipe_stage_1_downloads_only_when_asked(tmp_path):
    """egs/dcase2022/local/data.sh: error without a corpus; --download true fills the root from the mirror."""
    _, mirror, machines = build_mirror(2022, tmp_path)
    recipe = tmp_path / "egs" / "dcase2022"
    recipe.mkdir(parents=True)
    for name in ("local", "utils", "db.sh"):
        (recipe / name).symlink_to((REPO / "egs" / "dcase2022" / name).resolve())
    (recipe / "path.sh").write_text(f'. "{REPO}/path.sh"\n')
    env = {**os.environ, "DCASE2022": str(tmp_path / "corpus")}
    real = os.environ.get(METADATA_ENV)
    if real:  # --download true also fetches the DCASE metadata: serve the real files from the mirror
        env.pop(METADATA_ENV)
        for rel in fetched_files():
            src = SOURCES[rel.split("/", 1)[0]]
            dest = mirror / "raw.githubusercontent.com" / src.repo / src.commit / rel.split("/", 1)[1]
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(real) / rel, dest)
    else:  # no real files to serve: a (here unused) metadata directory turns the metadata fetch off
        env[METADATA_ENV] = str(tmp_path)

    def data_sh(*args):
        return subprocess.run(["local/data.sh", *args], cwd=recipe, env=env, capture_output=True, text=True)

    proc = data_sh()
    assert proc.returncode != 0 and "--download true" in proc.stderr
    proc = data_sh("--download", "true", "--mirror", mirror.as_uri(), "--machines", ",".join(machines))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in (recipe / "data").iterdir()} == {"dev_train", "dev_test", "eval_train", "eval_test"}
    labels = (recipe / "data" / "eval_test" / "utt2label").read_text()
    assert "unknown" not in labels and "anomaly" in labels  # the eval list came with the download
    if real:
        assert (
            recipe / "downloads" / "dcase_metadata" / "baseline_ae" / "datasets" / "eval_data_list_2022.csv"
        ).is_file()
