"""CONTRIBUTING.md's recipes, each done the way a contributor would: a new back end, a new upstream and
a new year written in a temporary directory, registered through the public extension point only (a
plug-in module named in ``ASDLIB_PLUGINS``), and run end to end through stages 1-6 (egs/mini's for the
components, a recipe made by egs/TEMPLATE/setup.sh for the year)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import mirror_recipe

from asdlib.data.datadir import read_data_dir
from asdlib.io.ark import read_scores

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

TOY_BACKEND = '''
"""A back end that scores a clip by its cosine distance to its section's mean training embedding."""
from dataclasses import dataclass

import numpy as np

from asdlib.registry import BACKENDS


@dataclass
class CentroidSettings:
    power: float = 1.0  # the distance is raised to this power


@BACKENDS.register("centroid", CentroidSettings)
class CentroidBackend:
    def __init__(self, power: float = 1.0) -> None:
        self.power, self.means = power, {}

    @staticmethod
    def _unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def fit(self, utts, embeddings):
        x = self._unit(embeddings)
        for key in {(u.machine, u.section) for u in utts}:
            rows = [i for i, u in enumerate(utts) if (u.machine, u.section) == key]
            self.means[key] = x[rows].mean(0)
        return self

    def score(self, utts, embeddings, exclude_self=False):
        x = self._unit(embeddings)
        return np.array([(1 - x[i] @ self.means[(u.machine, u.section)]) ** self.power for i, u in enumerate(utts)])
'''

TOY_UPSTREAM = '''
"""A toy upstream: framed waveform -> linear projection -> residual MLP blocks (the Upstream contract)."""
from dataclasses import dataclass

import torch
from torch import nn

from asdlib.config import UpstreamConfig
from asdlib.models.upstream import Upstream
from asdlib.registry import UPSTREAMS


@dataclass
class ToySettings:
    gain: float = 1.0  # the waveform is scaled by this before framing


class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(x)))


class ToyUpstream(Upstream):
    def __init__(self, dim: int, layers: int, hop: int, gain: float = 1.0) -> None:
        super().__init__()
        self.hidden_size, self.num_layers, self.hop, self.min_samples = dim, layers + 1, hop, hop
        self.gain = gain
        self.proj = nn.Linear(hop, dim)
        self.layers = nn.ModuleList(Block(dim) for _ in range(layers))

    def blocks(self) -> nn.ModuleList:
        return self.layers

    def forward(self, wavs, lengths):
        frames = wavs.shape[1] // self.hop
        frame_lengths = torch.clamp(lengths // self.hop, min=1)
        framed = self.gain * wavs[:, : frames * self.hop].reshape(len(wavs), frames, self.hop)
        x = self._augment(self.proj(framed), frame_lengths)
        hidden = [x]
        for block in self.layers:
            hidden.append(block(hidden[-1]))
        return hidden, frame_lengths


def save_random(path: str, dim: int = 16, layers: int = 2, hop: int = 400) -> None:
    torch.manual_seed(0)
    torch.save({"dim": dim, "layers": layers, "hop": hop, "model": ToyUpstream(dim, layers, hop).state_dict()}, path)


@UPSTREAMS.register("toy", ToySettings)
def build_toy(cfg: UpstreamConfig) -> ToyUpstream:
    state = torch.load(cfg.path, map_location="cpu", weights_only=True)
    upstream = ToyUpstream(state["dim"], state["layers"], state["hop"], cfg.conf.gain)
    upstream.load_state_dict(state["model"])
    return upstream
'''


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("extend_corpus")
    subprocess.run(
        [
            "python",
            "-m",
            "asdlib.bin.make_synth",
            "--root",
            str(root),
            "--dev_machines",
            "fan",
            "--eval_machines",
            "ToyDrone",
            "--no_attribute",
            "ToyDrone",
            "--n_train_source",
            "8",
            "--n_train_target",
            "2",
            "--n_test",
            "3",
            "--seconds",
            "1.0",
        ],
        check=True,
        capture_output=True,
    )
    return root


def run_recipe(tmp_path: Path, corpus: Path, plugin: str, code: str, config: str) -> Path:
    """egs/mini mirrored into ``tmp_path`` with the plug-in module on PYTHONPATH; stages 1-6 of ``config``."""
    env = {**plugin_env(tmp_path, plugin, code), "MINI": str(corpus)}
    recipe = mirror_recipe(REPO / "egs" / "mini", tmp_path / "egs" / "mini")
    (recipe / "conf" / "tuning" / "toy.yaml").write_text(config)
    if plugin == "toy_upstream":
        (recipe / "downloads").mkdir()
        subprocess.run(
            ["python", "-c", f"import toy_upstream; toy_upstream.save_random('{recipe}/downloads/toy.pt')"],
            check=True,
            env=env,
        )
    return run_stages(recipe, env)


def plugin_env(tmp_path: Path, module: str, code: str) -> dict[str, str]:
    """The environment of a process that has plug-in ``module`` (source ``code``, written under
    ``tmp_path/plugins``) on its PYTHONPATH and named in ASDLIB_PLUGINS."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / f"{module}.py").write_text(code)
    pythonpath = f"{tmp_path / 'plugins'}:{os.environ.get('PYTHONPATH', '')}"
    return {**os.environ, "ASDLIB_PLUGINS": module, "PYTHONPATH": pythonpath}


def run_stages(recipe: Path, env: dict[str, str], *args: str) -> Path:
    """Stages 1-6 of the recipe's conf/tuning/toy.yaml; its experiment directory."""
    proc = subprocess.run(
        ["./run.sh", "--train_config", "conf/tuning/toy.yaml", "--stop_stage", "6", *args],
        cwd=recipe,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return recipe / "exp" / "toy"


def check_scored(exp: Path, recipe_data: Path) -> dict:
    utts = read_data_dir(recipe_data / "eval_test")
    assert set(read_scores(exp / "scores" / "eval_test" / "scores.scp")) == {u.utt_id for u in utts}
    result = json.loads((exp / "results" / "eval_test" / "results.json").read_text())
    assert 0.0 <= result["official_score"] <= 1.0
    return result


def test_add_a_back_end(tmp_path: Path, corpus: Path) -> None:
    exp = run_recipe(
        tmp_path,
        corpus,
        "toy_backend",
        TOY_BACKEND,
        "embedder: logmel\nbackend: {kind: centroid, conf: {power: 2.0}}\n",
    )
    check_scored(exp, exp.parents[1] / "data")
    resolved = (exp / "config.yaml").read_text()
    assert "kind: centroid" in resolved and "power: 2.0" in resolved


def test_add_an_upstream(tmp_path: Path, corpus: Path) -> None:
    exp = run_recipe(
        tmp_path,
        corpus,
        "toy_upstream",
        TOY_UPSTREAM,
        """\
embedder: ssl
upstream: {name: toy, path: downloads/toy.pt, conf: {gain: 2.0}}
finetune: {mode: lora, rank: 2}
mga: {enabled: true, bottleneck: 4}
model: {pooling_hidden: 8, embed_dim: 16}
optim: {epochs: 1, batch_size: 4, warmup_steps: 1}
data: {crop_seconds: 0.0}
backend: {kind: knn}
""",
    )
    check_scored(exp, exp.parents[1] / "data")
    assert "gain: 2.0" in (exp / "config.yaml").read_text()
    log = (exp / "train.log").read_text()
    assert re.search(r"LoRA r=2 alpha=\S+ dropout=0.05 on 4 Linear modules \(fc1, fc2\)", log), log  # both blocks


YEAR_PLUGIN = '''
"""DCASE 2027 as a plug-in: the 2025 row with another year (its files, names and downloads)."""
import dataclasses

from asdlib.years import get_year, register_year

register_year(dataclasses.replace(get_year(2025), year=2027, description="a year from a plug-in."))
'''


def test_add_a_year(tmp_path: Path) -> None:
    """One row (a plug-in's register_year), setup.sh, and the recipe runs stages 1-6 on a synthetic corpus
    in that year's format."""
    env = plugin_env(tmp_path, "year_2027", YEAR_PLUGIN)
    corpus, recipe = tmp_path / "corpus", tmp_path / "egs" / "dcase2027"
    subprocess.run(
        [
            "python",
            "-c",
            "from asdlib.synth.years import YearSynthConfig, generate_year_corpus; "
            f"generate_year_corpus('{corpus}', YearSynthConfig(year=2027, n_train_source=4, n_train_target=2, "
            "n_test=2, seconds=1.0))",
        ],
        check=True,
        env=env,
    )
    assert (corpus / "eval_data_list_2027.csv").is_file()
    subprocess.run(
        [str(REPO / "egs" / "TEMPLATE" / "setup.sh"), str(recipe), "--year", "2027"],
        check=True,
        env=env,
        capture_output=True,
    )
    (recipe / "conf" / "tuning").mkdir()
    (recipe / "conf" / "tuning" / "toy.yaml").write_text("embedder: logmel\nbackend: {kind: knn}\n")
    exp = run_stages(recipe, {**env, "DCASE2027": str(corpus)}, "--nj", "1")
    result = check_scored(exp, recipe / "data")
    assert result["metric"].startswith("dcase2022-2025")  # the scoring rule the row inherits
    machines = {u.machine for u in read_data_dir(recipe / "data" / "eval_test")}
    assert machines and all(
        (exp / "scores" / "eval_test" / f"anomaly_score_{m}_section_00_test.csv").is_file() for m in machines
    )
