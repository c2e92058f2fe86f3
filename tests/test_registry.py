"""The component registries: names, errors, plug-ins through ``ASDLIB_PLUGINS`` and entry points, and the
docs tables generated from them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from asdlib.backends.bank import make_backend
from asdlib.bin import registry_tables
from asdlib.config import BackendConfig, UpstreamConfig
from asdlib.io.config import ConfigError, from_dict
from asdlib.registry import BACKENDS, HEADS, OBJECTIVES, UPSTREAMS, Entry, Registry, RegistryError

REPO = Path(__file__).resolve().parents[1]


def test_builtin_names_in_table_order():
    assert BACKENDS.names() == (
        "knn",
        "knn_smote",
        "kmeans",
        "knn_rescaled",
        "knn_zscore",
        "knn_centred",
        "knn_memmixup",
        "knn_density",
        "knn_routed",
        "mahalanobis",
        "fusion",
    )
    assert UPSTREAMS.names()[:2] == ("beats", "eat")
    assert "hubert" in UPSTREAMS and "hubert_base" not in UPSTREAMS
    assert HEADS.names() == ("arcface", "adacos", "subcluster_adacos")
    assert OBJECTIVES.names() == ("margin", "vq", "mixup", "eat_pretrain")  # the order the trainer sums their terms


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(RegistryError, match=r"unknown backend 'lof'; known: knn, knn_smote, .*ASDLIB_PLUGINS"):
        BACKENDS.get("lof")


def test_register_get_names_and_contains():
    reg: Registry = Registry("widget")

    @dataclass
    class Settings:
        size: int = 1

    @reg.register("b", Settings)
    class B:
        pass

    @reg.register("a")
    class A:
        pass

    assert reg.names() == ("b", "a")  # registration order after the (here empty) built-in table
    assert reg.get("b") == Entry("b", B, Settings) and reg.get("a").settings is None
    assert "a" in reg and "c" not in reg
    with pytest.raises(RegistryError, match=r"^unknown widget 'c'; known: b, a \(a plug-in"):
        reg.get("c")


def test_twice_registered_name_is_an_error():
    reg: Registry = Registry("thing", {})

    @dataclass
    class S:
        x: int = 1

    reg.register("a", S)(int)
    reg.register("a", S)(int)  # the same object again (a module imported twice) is fine
    with pytest.raises(RegistryError, match="'a' is registered twice"):
        reg.register("a", S)(float)
    with pytest.raises(RegistryError, match="settings must be a dataclass"):
        reg.register("b", dict)(float)


def test_settings_are_the_kinds_own_and_resolved():
    cfg = from_dict(BackendConfig, {"kind": "kmeans", "conf": {"clusters": 4}})
    assert (cfg.conf.k, cfg.conf.clusters, cfg.conf.seed) == (1, 4, 0)
    assert from_dict(UpstreamConfig, {"name": "eat", "path": "x"}).conf.target_frames == 1024
    with pytest.raises(ConfigError, match="unknown key 'clusters' for KnnSettings"):
        from_dict(BackendConfig, {"kind": "knn", "conf": {"clusters": 4}})


PLUGIN = """
from dataclasses import dataclass
import numpy as np
from asdlib.registry import BACKENDS

@dataclass
class ConstantSettings:
    value: float = 1.0

@BACKENDS.register("constant_{tag}", ConstantSettings)
class ConstantBackend:
    def __init__(self, value: float = 1.0) -> None:
        self.value = value
    def fit(self, utts, embeddings):
        return self
    def score(self, utts, embeddings, exclude_self=False):
        return np.full(len(utts), self.value)
"""


def _run(code: str, env_extra: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{REPO}", **env_extra}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )


CHECK = """
from asdlib.backends.bank import make_backend
from asdlib.config import BackendConfig
from asdlib.io.config import from_dict
from asdlib.registry import BACKENDS
cfg = from_dict(BackendConfig, {"kind": "constant_TAG", "conf": {"value": 2.5}})
print(BACKENDS.names()[-1], make_backend(cfg, [4]).fit([], None).score([1, 2], None).tolist())
"""


def test_plugin_module_from_the_environment(tmp_path):
    (tmp_path / "my_plugin.py").write_text(PLUGIN.replace("{tag}", "env"))
    proc = _run(CHECK.replace("TAG", "env"), {"ASDLIB_PLUGINS": "my_plugin"}, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["constant_env", "[2.5,", "2.5]"]
    bad = _run(CHECK.replace("TAG", "env"), {"ASDLIB_PLUGINS": "no_such_plugin"}, tmp_path)
    assert "asdlib plug-in 'no_such_plugin'" in bad.stderr and "does not import" in bad.stderr


def test_plugin_installed_as_an_entry_point(tmp_path):
    """An installed distribution that names its module under the ``asdlib.plugins`` entry-point group."""
    (tmp_path / "ep_plugin.py").write_text(PLUGIN.replace("{tag}", "ep"))
    info = tmp_path / "asdlib_constant-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: asdlib-constant\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[asdlib.plugins]\nconstant = ep_plugin\n")
    proc = _run(CHECK.replace("TAG", "ep"), {}, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "constant_ep"


def test_docs_tables_are_current():
    pages = sorted((REPO / "docs").glob("*.md"))
    assert registry_tables.main([*map(str, pages), "--check"]) == 0, (
        "run python -m asdlib.bin.registry_tables docs/*.md"
    )
    assert (
        "| `knn_smote` | `asdlib.backends.knn_variants` | `k: 1`, `smote_k: 5`, `seed: 0` |"
        in (REPO / "docs" / "method.md").read_text()
    )


def test_stale_docs_table_is_found(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("x\n<!-- registry: backend -->\n| old |\n<!-- /registry -->\n")
    assert registry_tables.main([str(page), "--check"]) == 1
    assert registry_tables.main([str(page)]) == 0
    assert "| `fusion` |" in page.read_text() and registry_tables.main([str(page), "--check"]) == 0


def test_fusion_member_takes_its_own_settings():
    cfg = from_dict(
        BackendConfig,
        {
            "kind": "fusion",
            "conf": {
                "members": [
                    {"kind": "knn", "conf": {"k": 2}},
                    {"kind": "kmeans", "features": "logmel", "conf": {"clusters": 3}},
                ]
            },
        },
    )
    fused = make_backend(cfg, [4, 2])
    (knn, knn_cols), (km, km_cols) = fused.members
    assert (knn.k, knn_cols, km.n_clusters, km_cols) == (2, slice(0, 4), 3, slice(4, 6))
    assert cfg.uses_logmel and fused.stats == []


@pytest.mark.parametrize("name", UPSTREAMS.names())
def test_every_upstream_has_a_random_writer_whose_file_loads(name: str, tmp_path: Path) -> None:
    import torch

    from asdlib.bin import make_random_upstream
    from asdlib.models.upstream import build_upstream
    from asdlib.registry import RANDOM_UPSTREAMS

    assert name in RANDOM_UPSTREAMS
    out = tmp_path / name
    assert make_random_upstream.main(["--name", name, "--out", str(out), "--size", "layers=1", "--verbose", "0"]) == 0
    upstream = build_upstream(UpstreamConfig(name=name, path=str(out))).eval()
    with torch.no_grad():
        hidden, lengths = upstream(torch.zeros(1, 16000), torch.tensor([16000]))
    assert len(hidden) == upstream.num_layers == 2 and hidden[-1].shape[-1] == upstream.hidden_size


def test_random_writer_size_errors_name_the_key(tmp_path: Path) -> None:
    from asdlib.bin import make_random_upstream

    with pytest.raises(ConfigError, match="unknown key 'depth'"):
        make_random_upstream.main(["--name", "eat", "--out", str(tmp_path / "x"), "--size", "depth=2"])
