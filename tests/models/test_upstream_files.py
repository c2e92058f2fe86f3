"""The upstream checkpoint: a missing file stops asd.sh before stage 1 with one line; --download_upstream
fetches the official release through the resumable downloader and verifies it (offline here: a local
HTTP server stands in for the release host via --upstream_mirror)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import SERVED_DATA, RangeServer, mirror_recipe

from asdlib.bin import check_upstream
from asdlib.data.download import DownloadError
from asdlib.models import upstream_files
from asdlib.models.upstream_files import BEATS_PAGE, Release, ReleaseFile

REPO = Path(__file__).resolve().parents[2]
MINI = REPO / "egs" / "mini"
CMD_SH = 'export train_cmd="utils/local.sh" extract_cmd="utils/local.sh" score_cmd="utils/local.sh"\n'


def mirror_of(server: RangeServer) -> str:
    return server.url.split("/record/")[0]


def recipe_with(tmp_path: Path, upstream: dict) -> Path:
    recipe = tmp_path / "egs" / "mini"
    mirror_recipe(MINI, recipe, links=("asd.sh", "utils", "local", "db.sh"), cmd_sh=CMD_SH, copy_conf=False)
    (recipe / "conf" / "train.yaml").write_text(yaml.safe_dump({"upstream": upstream}))
    return recipe


def asd(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["./asd.sh", "--train_config", "conf/train.yaml", *args],
        cwd=recipe,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_checkpoint_stops_asd_sh_before_stage_1_and_download_fetches_it(tmp_path: Path) -> None:
    recipe = recipe_with(tmp_path, {"name": "beats", "path": "downloads/BEATs_iter3_plus_AS2M.pt"})
    proc = asd(recipe, "--stop_stage", "3")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert "downloads/BEATs_iter3_plus_AS2M.pt" in errors[0] and BEATS_PAGE in errors[0]
    assert "--download_upstream true" in errors[0]
    assert not (recipe / "data").exists()  # stage 1 never started
    # stages 1-2 alone do not need the checkpoint: the check is skipped (stage 1 then runs and is not tested here)
    server = RangeServer(SERVED_DATA)
    try:
        proc = asd(
            recipe,
            "--stage",
            "3",
            "--stop_stage",
            "2",
            "--download_upstream",
            "true",
            "--upstream_mirror",
            mirror_of(server),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        server.close()
    ckpt = recipe / "downloads" / "BEATs_iter3_plus_AS2M.pt"
    assert ckpt.read_bytes() == SERVED_DATA
    assert (
        recipe / "downloads" / "BEATs_iter3_plus_AS2M.pt.sha256"
    ).read_text() == f"{hashlib.sha256(SERVED_DATA).hexdigest()}  BEATs_iter3_plus_AS2M.pt\n"


def _config(tmp_path: Path, name: str = "BEATs_iter3.pt") -> tuple[Path, Path]:
    ckpt = tmp_path / "models" / name
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"upstream": {"name": "beats", "path": str(ckpt)}}))
    return config, ckpt


def test_first_download_records_the_sha256_and_later_runs_verify_it(tmp_path: Path) -> None:
    config, ckpt = _config(tmp_path)
    server = RangeServer(SERVED_DATA)
    try:
        argv = ["--config", str(config), "--download", "true", "--mirror", mirror_of(server)]
        assert check_upstream.main(argv) == 0
        assert ckpt.read_bytes() == SERVED_DATA and len(server.requests) == 1
        sidecar = ckpt.with_name(ckpt.name + ".sha256")
        assert sidecar.read_text().split()[0] == hashlib.sha256(SERVED_DATA).hexdigest()
        assert check_upstream.main(argv) == 0 and len(server.requests) == 1  # verified against the record
        ckpt.write_bytes(b"damaged")  # a damaged file is set aside and fetched again
        assert check_upstream.main(argv) == 0 and ckpt.read_bytes() == SERVED_DATA and len(server.requests) == 2
        server.data = SERVED_DATA[::-1]  # the host now serves other bytes than the recorded ones: refused
        ckpt.unlink()
        with pytest.raises(DownloadError, match=f"sha256 .* expected {hashlib.sha256(SERVED_DATA).hexdigest()}"):
            check_upstream.main(argv)
        assert not ckpt.exists()
    finally:
        server.close()


def test_published_size_and_checksum_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, ckpt = _config(tmp_path, "fake_release.pt")
    test_url = "https://example.invalid/test-only/fake_release.pt"
    monkeypatch.setitem(
        upstream_files.RELEASES,
        "fake_release.pt",
        Release(
            "fake_release.pt",
            "https://example.invalid/page",
            (ReleaseFile(test_url, size=len(SERVED_DATA), sha256="0" * 64),),
        ),
    )
    server = RangeServer(SERVED_DATA)
    try:
        argv = ["--config", str(config), "--download", "true", "--mirror", mirror_of(server)]
        with pytest.raises(DownloadError, match="sha256"):
            check_upstream.main(argv)
        assert not ckpt.exists() and not ckpt.with_name(ckpt.name + ".sha256").exists()
        monkeypatch.setitem(
            upstream_files.RELEASES,
            "fake_release.pt",
            Release(
                "fake_release.pt",
                "https://example.invalid/page",
                (ReleaseFile(test_url, size=len(SERVED_DATA), sha256=hashlib.sha256(SERVED_DATA).hexdigest()),),
            ),
        )
        assert check_upstream.main(argv) == 0 and ckpt.read_bytes() == SERVED_DATA
        assert not ckpt.with_name(ckpt.name + ".sha256").exists()  # a published checksum needs no record
    finally:
        server.close()


def test_unknown_file_cannot_be_downloaded_and_a_missing_one_is_named(tmp_path: Path) -> None:
    config, ckpt = _config(tmp_path, "my_own_model.pt")
    with pytest.raises(ValueError, match="no official download is known for my_own_model.pt"):
        check_upstream.main(["--config", str(config), "--download", "true"])
    with pytest.raises(
        FileNotFoundError, match=f"{ckpt} .*does not exist: download it from the links in docs/upstreams.md"
    ):
        check_upstream.main(["--config", str(config)])
