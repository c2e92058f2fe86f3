"""Shared test fixtures: tiny wav files, Utt records, tiny s3prl checkpoints, the Slurm test cluster,
the official DCASE metadata (when ASDLIB_DCASE_METADATA names a copy)."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asdlib.data.datadir import Utt, make_utt_id


@pytest.fixture
def write_wav(tmp_path: Path) -> Callable[..., Path]:
    """``write_wav(name, samples=None, sr=16000, subtype="PCM_16", n=8000, seed=0)`` -> path under tmp_path.

    Without ``samples`` a seeded noise clip of ``n`` samples is written (never all-zero).
    """

    def make(
        name: str,
        samples: np.ndarray | None = None,
        sr: int = 16000,
        subtype: str = "PCM_16",
        n: int = 8000,
        seed: int = 0,
    ) -> Path:
        if samples is None:
            samples = np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)
        path = tmp_path / "wav" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), samples, sr, subtype=subtype)
        return path

    return make


def make_utt(
    machine: str,
    section: str,
    stem: str,
    domain: str = "source",
    label: str = "normal",
    attr: str = "noAttribute",
    path: str | Path | None = None,
) -> Utt:
    """An Utt with the contract's id scheme; ``path`` defaults to a fake absolute path."""
    return Utt(
        make_utt_id(machine, section, stem),
        str(path or f"/corpus/{machine}/{stem}.wav"),
        machine,
        section,
        domain,
        label,
        attr,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: end-to-end recipe runs, DDP and Slurm (most of the suite's time); "
        "deselect with -m 'not slow' for a quick loop, CI runs everything",
    )


RECIPE_LINKS = ("run.sh", "asd.sh", "utils", "local", "cmd.sh", "db.sh")


def mirror_recipe(
    src: Path, dest: Path, links: tuple[str, ...] = RECIPE_LINKS, cmd_sh: str | None = None, copy_conf: bool = True
) -> Path:
    """A copy of recipe ``src`` at ``dest`` that runs the committed scripts (symlinks) without writing
    into the repository: its own path.sh (sourcing the top-level one), conf/ (copied) and, with
    ``cmd_sh``, its own cmd.sh."""
    dest.mkdir(parents=True)
    for name in links:
        if not (cmd_sh is not None and name == "cmd.sh"):
            (dest / name).symlink_to((src / name).resolve())
    (dest / "path.sh").write_text(f'. "{Path(__file__).resolve().parents[1]}/path.sh"\n')
    if cmd_sh is not None:
        (dest / "cmd.sh").write_text(cmd_sh)
    if copy_conf:
        shutil.copytree(src / "conf", dest / "conf")
    else:
        (dest / "conf").mkdir()
    return dest


@pytest.fixture(name="make_utt")
def make_utt_fixture() -> Callable[..., Utt]:
    return make_utt


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny random-init s3prl checkpoints (default RandomModelSize), one per upstream family."""
    import torch

    from asdlib.synth.checkpoints import RandomModelSize, random_checkpoint

    root = tmp_path_factory.mktemp("upstreams")
    paths = {}
    for family in ("hubert", "wav2vec2", "data2vec", "wavlm"):
        paths[family] = str(root / f"{family}.pt")
        torch.save(random_checkpoint(family, seed=0, size=RandomModelSize()), paths[family])
    return paths


SLURM_CLUSTER = Path(__file__).resolve().parents[1] / "tools" / "slurm" / "cluster.sh"
HOW_TO_RUN_SLURM_TESTS = (
    "start the test cluster with 'tools/slurm/cluster.sh start' (root, Debian) and set ASDLIB_TEST_SLURM=1"
)


def sinfo_ok() -> bool:
    """A Slurm cluster answers and has a usable node (sinfo may be absent: no Slurm installed)."""
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return proc.returncode == 0 and any(s in proc.stdout for s in ("idle", "mix", "alloc"))


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[None]:
    """The real single-node test cluster (never a mocked sbatch).

    ASDLIB_TEST_SLURM=1 asks for the Slurm tests: a cluster that is not running is then started
    with tools/slurm/cluster.sh (left running for other sessions), and one that cannot start fails
    the tests. Without it, the tests run on a cluster that already answers, else they skip, saying how
    to run them.
    """
    if not sinfo_ok():
        if os.environ.get("ASDLIB_TEST_SLURM") != "1":
            pytest.skip(f"no Slurm cluster answers (sinfo); to run the Slurm tests, {HOW_TO_RUN_SLURM_TESTS}")
        proc = subprocess.run([str(SLURM_CLUSTER), "start"], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not sinfo_ok():
            pytest.fail(f"ASDLIB_TEST_SLURM=1 but tools/slurm/cluster.sh start failed:\n{proc.stdout}\n{proc.stderr}")
    yield


@pytest.fixture(scope="session")
def tiny_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny mini-format corpus through stages 1-2 (``data/``; gearbox without attributes, so VQ has
    clips to cluster) and a tiny random HuBERT (``hubert.pt``), for in-process training tests.
    Shared by the session: tests write their configs and exp dirs under their own names."""
    work = tmp_path_factory.mktemp("tiny_work")
    for args in (
        [
            "asdlib.bin.make_synth",
            "--root",
            "corpus",
            "--dev_machines",
            "fan,gearbox",
            "--eval_machines",
            "ToyDrone",
            "--no_attribute",
            "gearbox",
            "--n_train_source",
            "8",
            "--n_train_target",
            "2",
            "--n_test",
            "1",
            "--seconds",
            "1.0",
        ],
        ["asdlib.bin.make_random_upstream", "--name", "hubert", "--out", "hubert.pt"],
        ["asdlib.bin.prepare_dcase", "--year", "2024", "--root", "corpus", "--data_dir", "data"],
        [
            "asdlib.bin.make_labels",
            "--train_sets",
            "data/dev_train",
            "data/eval_train",
            "--other_sets",
            "data/dev_test",
            "data/eval_test",
        ],
    ):
        subprocess.run([sys.executable, "-m", *args], cwd=work, check=True, capture_output=True)
    return work


class RangeServer:
    """A local HTTP server with Range support; ``drop_first`` cuts the first response short."""

    def __init__(self, data: bytes, drop_first: bool = False):
        self.data, self.requests = data, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.data) - 1}/{len(outer.data)}")
                body = outer.data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if drop_first and len(outer.requests) == 1:
                    self.wfile.write(body[: len(body) // 3])
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/record/1/files/x.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


SERVED_DATA = bytes(range(256)) * 4000  # ~1 MB: what a RangeServer serves in the download tests


HOW_TO_RUN_METADATA_TESTS = (
    "set ASDLIB_DCASE_METADATA to a copy of the official DCASE metadata "
    "(python -m asdlib.bin.fetch_metadata --dest DIR) to run the tests on the real files"
)


def real_metadata() -> Path:
    """The official DCASE metadata directory named by ASDLIB_DCASE_METADATA; else the test skips, saying how to run it.

    Why not fetch: asdlib may not redistribute these files, and the tests run offline. For tests
    whose parameters need the files at collection time, call this inside the test body.
    """
    from asdlib.data.resources import METADATA_ENV

    value = os.environ.get(METADATA_ENV)
    if not value:
        pytest.skip(f"needs the official DCASE metadata: {HOW_TO_RUN_METADATA_TESTS}")
    path = Path(value)
    if not (path / "baseline_ae").is_dir():
        pytest.fail(f"{METADATA_ENV}={value} has no baseline_ae/: {HOW_TO_RUN_METADATA_TESTS}")
    return path


@pytest.fixture(name="dcase_metadata")
def dcase_metadata_fixture() -> Path:
    """The official DCASE metadata directory (:func:`real_metadata`)."""
    return real_metadata()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """asdlib's wheel, built from the files git knows (a copy, so the checkout gets no build/ or egg-info).

    ``python -m build --wheel --no-isolation`` where the ``build`` package is installed, else
    ``pip wheel --no-deps --no-build-isolation``: both use the venv's setuptools, offline.
    """
    import importlib.util

    repo = Path(__file__).resolve().parents[1]
    src = tmp_path_factory.mktemp("wheel_src") / "asdlib"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        if (repo / rel).is_file() and not (repo / rel).is_symlink():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, src / rel)
    out = src.parent / "dist"
    if importlib.util.find_spec("build") is not None:
        cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (found,) = out.glob("asdlib-*.whl")
    return found


def make_logmel_pack(root: Path, wavs: dict[str, list[Path]], fpr: float, folds: int = 4) -> Path:
    """Pack (stage 7, in-process) a real log-mel kNN model (32 bins, section 00 of each machine of
    ``wavs``) whose bank is the embeddings of those recordings, extracted as stage 4 does: a pack
    whose scores mean something, for the live-monitor and enrolment tests."""
    import torch

    from asdlib.bin import extract, pack
    from asdlib.config import TrainConfig
    from asdlib.data.datadir import write_data_dir
    from asdlib.data.labels import write_durations
    from asdlib.io.config import dump_config, from_dict
    from asdlib.models.asd_model import build_model, trainable_state

    utts = [make_utt(m, "00", f"n{i:02d}", path=path) for m, paths in wavs.items() for i, path in enumerate(paths)]
    write_data_dir(root / "data" / "train", utts)
    write_durations(root / "data" / "train", utts)
    cfg = from_dict(TrainConfig, {"embedder": "logmel", "logmel": {"n_mels": 32}, "data": {"train_sets": ["train"]}})
    exp = root / "exp"
    exp.mkdir()
    dump_config(cfg, exp / "config.yaml")
    machines = list(wavs)
    state = {
        "epoch": 0,
        "model": trainable_state(build_model(cfg, len(machines))),
        "classes": [f"{m}-00" for m in machines],
        "machines": machines,
    }
    torch.save(state, exp / "model.pt")
    emb = exp / "embed" / "train"
    emb.mkdir(parents=True)
    inputs = ["--exp_dir", str(exp), "--model_file", str(exp / "model.pt"), "--data_dir", str(root / "data" / "train")]
    outputs = ["--out_ark", str(emb / "embeddings.ark"), "--out_scp", str(emb / "embeddings.scp")]
    assert extract.main([*inputs, *outputs, "--verbose", "0"]) == 0
    args = ["--exp_dir", str(exp), "--data_root", str(root / "data"), "--train_sets", "train", "--folds", str(folds)]
    assert pack.main([*args, "--fpr", str(fpr), "--out_dir", str(exp / "packed"), "--verbose", "0"]) == 0
    return exp / "packed"


def make_tiny_pack(
    root: Path, backend: dict | None = None, noise_sets: tuple[str, ...] = (), beats: Path | None = None
) -> Path:
    """Pack (stage 7, in-process) the experiment of :func:`tiny_pack` under ``root``, with ``backend``
    as its back-end section; each of ``noise_sets`` gets 6 random noise clips of ``fan`` ``00`` in
    ``data/<set>`` and their embeddings in ``exp/embed/noise_<set>``. ``beats``: a random-init BEATs
    checkpoint (asdlib-make_random_upstream) that replaces the log-mel embedder, with LoRA rank 2 and
    8-dim embeddings (the bank's width grows by the appended log-mel when the back end reads it)."""
    import torch

    from asdlib.backends.bank import noise_embed_name
    from asdlib.bin import pack
    from asdlib.config import TrainConfig
    from asdlib.data.datadir import write_data_dir
    from asdlib.io.ark import write_vectors
    from asdlib.io.config import dump_config, from_dict
    from asdlib.models.asd_model import build_model, trainable_state

    data = {"train_sets": ["train"], "resample": True, "channel": "mean", "window_seconds": 1.0}
    embedder: dict = {"embedder": "logmel"}
    if beats is not None:
        embedder = {
            "embedder": "ssl",
            "upstream": {"name": "beats", "path": str(beats)},
            "finetune": {"mode": "lora", "rank": 2, "dropout": 0.0},
            "model": {"embed_dim": 8, "pooling_hidden": 8},
        }
    cfg = from_dict(
        TrainConfig,
        {
            **embedder,
            "logmel": {"n_mels": 8},
            "data": {**data, "window_min_seconds": 0.5},
            "backend": backend or {},
        },
    )
    width = 8 + (8 if beats is not None and cfg.backend.uses_logmel else 0)
    exp = root / "exp"
    rng = np.random.default_rng(0)
    sets = [("train", "train", [make_utt("fan", "00", f"n{i:02d}", path=root / "x.wav") for i in range(12)])]
    sets += [
        (name, noise_embed_name(name), [make_utt("fan", "00", f"{name}{i:02d}", path=root / "x.wav") for i in range(6)])
        for name in noise_sets
    ]
    for name, embed_name, utts in sets:
        write_data_dir(root / "data" / name, utts)
        (exp / "embed" / embed_name).mkdir(parents=True)
        write_vectors(
            exp / "embed" / embed_name / "embeddings.ark",
            exp / "embed" / embed_name / "embeddings.scp",
            {u.utt_id: rng.standard_normal(width).astype(np.float32) for u in utts},
        )
    dump_config(cfg, exp / "config.yaml")
    weights = trainable_state(build_model(cfg, 1))
    gen = torch.Generator().manual_seed(0)
    for name in [n for n in weights if "lora_B" in n]:  # trained adapters are not zero: merging them must count
        weights[name] = 0.1 * torch.randn(weights[name].shape, generator=gen)
    state = {"epoch": 0, "model": weights, "classes": ["fan-00"], "machines": ["fan"]}
    torch.save(state, exp / "model.pt")
    args = ["--exp_dir", str(exp), "--data_root", str(root / "data"), "--train_sets", "train"]
    assert pack.main([*args, "--out_dir", str(exp / "packed"), "--tar", "true", "--folds", "3", "--verbose", "0"]) == 0
    return exp / "packed"


@pytest.fixture(scope="session")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A packed model made in-process in about a second: the training-free log-mel embedder (8 bins),
    one machine ``fan`` section ``00``, 1 s windows (hop 1 s, last window >= 0.5 s), a kNN bank of 12
    random vectors; ``<pack>.tar`` beside it. Tests copy it before changing anything."""
    return make_tiny_pack(tmp_path_factory.mktemp("tiny_pack"))
