"""asdlib.io.config and asdlib.config: strict typed YAML configs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from asdlib.config import HeadConfig, TrainConfig, load_train_config
from asdlib.io.config import ConfigError, dump_config, from_dict, load_config, to_dict

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    n: int = 1
    x: float = 0.5
    names: list[str] = field(default_factory=list)
    mode: Literal["a", "b"] = "a"
    opt: int | None = None
    table: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("inner.n must be >= 0")


@dataclass
class Outer:
    name: str = "x"
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def _yaml(tmp_path: Path, data, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults_and_values():
    cfg = from_dict(Outer, {"name": "y", "inner": {"n": 3, "names": ["p", "q"], "mode": "b", "table": {"k": 2}}})
    assert cfg == Outer("y", False, Inner(3, 0.5, ["p", "q"], "b", None, {"k": 2}))
    assert from_dict(Outer, {}) == Outer()


@pytest.mark.parametrize("data, key", [({"bogus": 1}, "bogus"), ({"inner": {"nn": 1}}, "nn")])
def test_unknown_keys_name_the_key(data, key):
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        from_dict(Outer, data)


def test_unknown_nested_key_in_train_config_names_file_section_and_key(tmp_path):
    path = _yaml(tmp_path, {"optim": {"lrr": 0.1}}, "my_train.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path, TrainConfig)
    msg = str(info.value)
    assert "my_train.yaml" in msg and "optim" in msg and "'lrr'" in msg and "lr_head" in msg  # lists valid keys


@pytest.mark.parametrize(
    "inner, where, what",
    [
        ({"n": "3"}, "inner:n", "expected an integer"),
        ({"n": True}, "inner:n", "expected an integer"),
        ({"n": 1.5}, "inner:n", "expected an integer"),
        ({"x": "0.5"}, "inner:x", "expected a number"),
        ({"x": False}, "inner:x", "expected a number"),
        ({"names": "a"}, "inner:names", "expected a list"),
        ({"names": ["a", 2]}, r"inner:names\[1\]", "expected str"),
        ({"mode": "c"}, "inner:mode", r"'c' is not one of \['a', 'b'\]"),
        ({"opt": "3"}, "inner:opt", "expected an integer"),
        ({"table": {"k": "v"}}, "inner:table.k", "expected an integer"),
    ],
)
def test_wrong_types_name_the_key(inner, where, what):
    with pytest.raises(ConfigError, match=f"{where}: {what}"):
        from_dict(Outer, {"inner": inner})


@pytest.mark.parametrize(
    "data, what",
    [
        ({"flag": 1}, "flag: expected bool"),
        ({"flag": "yes"}, "flag: expected bool"),
        ({"name": 5}, "name: expected str"),
        ({"inner": 5}, "expected a mapping for Inner"),
    ],
)
def test_wrong_types_top_level(data, what):
    with pytest.raises(ConfigError, match=what):
        from_dict(Outer, data)


def test_int_accepted_for_float_and_optional():
    cfg = from_dict(Outer, {"inner": {"x": 2, "opt": None}})
    assert cfg.inner.x == 2.0 and isinstance(cfg.inner.x, float)
    assert cfg.inner.opt is None
    assert from_dict(Outer, {"inner": {"opt": 7}}).inner.opt == 7


def test_post_init_errors_become_config_errors():
    with pytest.raises(ConfigError, match="inner.n must be >= 0"):
        from_dict(Outer, {"inner": {"n": -1}})


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*missing.yaml"):
        load_config(tmp_path / "missing.yaml", Outer)
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(_yaml(tmp_path, "a: [1, 2\n", "bad.yaml"), Outer)
    with pytest.raises(ConfigError, match="list.yaml: the top level must be a mapping"):
        load_config(_yaml(tmp_path, "- 1\n- 2\n", "list.yaml"), Outer)
    assert load_config(_yaml(tmp_path, "", "empty.yaml"), Outer) == Outer()


def test_overrides_with_dotted_keys(tmp_path):
    path = _yaml(tmp_path, {"inner": {"n": 2}})
    cfg = load_config(path, Outer, {"inner.x": 0.25, "inner.names": ["z"], "name": "o"})
    assert cfg == Outer("o", False, Inner(2, 0.25, ["z"]))
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_config(path, Outer, {"inner.nope": 1})
    with pytest.raises(ConfigError, match="inner:n: expected an integer, got dict"):
        load_config(path, Outer, {"inner.n.x": 1})


def test_base_merges_mappings_and_replaces_the_rest(tmp_path):
    """``base:`` is relative to the file naming it; a chain resolves; overrides come after the merge."""
    _yaml(
        tmp_path,
        {"name": "root", "inner": {"n": 2, "x": 0.25, "names": ["a", "b"], "opt": 3, "table": {"k": 1}}},
        "train.yaml",
    )
    (tmp_path / "tuning").mkdir()
    _yaml(tmp_path, "base: ../train.yaml\ninner: {names: [c], opt: null, table: {j: 2}}\n", "tuning/mid.yaml")
    child = _yaml(tmp_path, "base: mid.yaml\nflag: true\ninner: {n: 5}\n", "tuning/child.yaml")
    assert load_config(child, Outer) == Outer("root", True, Inner(5, 0.25, ["c"], "a", None, {"k": 1, "j": 2}))
    assert load_config(child, Outer, ["inner.n=7"]).inner.n == 7


def test_base_errors_name_the_files(tmp_path):
    _yaml(tmp_path, "base: b.yaml\n", "a.yaml")
    _yaml(tmp_path, "base: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match=r"a.yaml: base cycle .*a.yaml -> .*b.yaml -> .*a.yaml"):
        load_config(tmp_path / "a.yaml", Outer)
    with pytest.raises(ConfigError, match=r"c.yaml:base: .*nope.yaml not found"):
        load_config(_yaml(tmp_path, "base: nope.yaml\n", "c.yaml"), Outer)
    with pytest.raises(ConfigError, match=r"d.yaml:base: expected the path of a YAML file"):
        load_config(_yaml(tmp_path, "base: [a.yaml]\n", "d.yaml"), Outer)
    _yaml(tmp_path, "inner: {nn: 1}\n", "typo.yaml")
    with pytest.raises(ConfigError, match=r"e.yaml:inner: unknown key 'nn'"):
        load_config(_yaml(tmp_path, "base: typo.yaml\n", "e.yaml"), Outer)


@pytest.mark.parametrize(
    "child, backend, upstream",
    [
        # same kind (named or by default): the settings merge key by key
        ({"backend": {"conf": {"domain_wise": False}}}, {"k": 3, "domain_wise": False}, {"target_frames": 512}),
        ({"backend": {"kind": "knn", "conf": {"k": 2}}}, {"k": 2, "domain_wise": True}, {"target_frames": 512}),
        # another kind: the base's conf belongs to the old kind and is dropped
        ({"backend": {"kind": "mahalanobis"}}, {"domain_wise": True}, {"target_frames": 512}),
        (
            {"backend": {"kind": "mahalanobis", "conf": {"domain_wise": False}}},
            {"domain_wise": False},
            {"target_frames": 512},
        ),
        ({"upstream": {"name": "beats", "path": "b.pt"}}, {"k": 3, "domain_wise": True}, None),
    ],
)
def test_base_conf_belongs_to_its_kind(tmp_path, child, backend, upstream):
    _yaml(
        tmp_path,
        {
            "upstream": {"name": "eat", "path": "e.pt", "conf": {"target_frames": 512}},
            "backend": {"conf": {"k": 3, "domain_wise": True}},
        },
        "train.yaml",
    )
    cfg = load_train_config(_yaml(tmp_path, {"base": "train.yaml", **child}, "child.yaml"))
    assert to_dict(cfg.backend.conf) == backend
    assert to_dict(cfg.upstream.conf) == upstream


def test_a_diff_config_is_written_resolved(tmp_path):
    """Stage 3 dumps the loaded config: exp/<tag>/config.yaml is the merged config, no base left."""
    _yaml(tmp_path, {"upstream": {"path": "m.pt"}, "optim": {"epochs": 3, "lr": 0.5}}, "train.yaml")
    cfg = load_train_config(_yaml(tmp_path, {"base": "train.yaml", "optim": {"epochs": 4}}, "child.yaml"))
    dump_config(cfg, tmp_path / "exp" / "config.yaml")
    written = yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())
    assert "base" not in written and written["optim"]["epochs"] == 4 and written["optim"]["lr"] == 0.5
    assert load_train_config(tmp_path / "exp" / "config.yaml") == cfg


def test_train_config_overrides(tmp_path):
    path = _yaml(tmp_path, {"upstream": {"path": "m.pt"}})
    cfg = load_train_config(path, {"optim.lr": 0.5, "data.channel": 1, "head.kind": "adacos"})
    assert (cfg.optim.lr, cfg.data.channel, cfg.head.kind) == (0.5, 1, "adacos")
    assert cfg.optim.epochs == TrainConfig().optim.epochs


def test_train_sets_come_only_from_asd_sh(tmp_path):
    """With ``train_sets`` (asd.sh --train_sets) a data.train_sets in the YAML, its base or the
    overrides is an error instead of being silently replaced."""
    path = _yaml(tmp_path, {"upstream": {"path": "m.pt"}, "data": {"crop_seconds": 1.0}}, "train.yaml")
    cfg = load_train_config(path, ["optim.lr=0.5"], train_sets=["train"])
    assert (cfg.data.train_sets, cfg.data.crop_seconds, cfg.optim.lr) == (["train"], 1.0, 0.5)
    _yaml(tmp_path, {"upstream": {"path": "m.pt"}, "data": {"train_sets": ["dev_train"]}}, "sets.yaml")
    child = _yaml(tmp_path, {"base": "sets.yaml"}, "child.yaml")
    with pytest.raises(ConfigError, match=r"child.yaml: data.train_sets is given by asd.sh --train_sets .*delete it"):
        load_train_config(child, train_sets=["dev_train"])
    assert load_train_config(child).data.train_sets == ["dev_train"]  # exp/<tag>/config.yaml records them
    with pytest.raises(ConfigError, match="override data.train_sets: set the training sets with asd.sh --train_sets"):
        load_train_config(path, ["data.train_sets=[a]"], train_sets=["train"])


def test_train_cli_rejects_train_sets_in_the_yaml(tmp_path):
    from asdlib.bin import train

    path = _yaml(tmp_path, {"embedder": "logmel", "data": {"train_sets": ["dev_train"]}}, "t.yaml")
    with pytest.raises(ConfigError, match="t.yaml: data.train_sets is given by asd.sh --train_sets"):
        train.main(["--config", str(path), "--exp_dir", str(tmp_path / "exp"), "--train_sets", "dev_train"])


def test_train_config_dump_load_round_trip(tmp_path):
    cfg = TrainConfig()
    cfg.upstream.path = "/models/hubert base.pt"
    cfg.finetune.alpha = None
    cfg.finetune.target_modules = ["q_proj", "v_proj"]
    cfg.model.layers = [0, 3, -1]
    cfg.head = HeadConfig("subcluster_adacos", {"sub_centers": 2})
    cfg.optim.lr = 3.0e-5
    cfg.optim.amp = False
    cfg.data.train_sets = ["dev_train"]
    cfg.data.channel = 1
    cfg.specaug.time_width = 0.1
    cfg.backend.conf.k = 3
    out = tmp_path / "exp" / "config.yaml"
    dump_config(cfg, out)
    again = load_train_config(out)
    assert again == cfg
    assert dataclasses.asdict(again) == dataclasses.asdict(cfg)
    dump_config(again, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == out.read_text()


@pytest.mark.parametrize(
    "data, what",
    [
        ({"optim": {"epochs": -1}}, "epochs >= 0"),
        ({"optim": {"batch_size": 0}}, "batch_size >= 1"),
        ({"optim": {"grad_accum": 0}}, "grad_accum >= 1"),
        ({"optim": {"lr": 0.0}}, "learning rates must be positive"),
        ({"data": {"train_sets": []}}, "train_sets must name at least one set"),
        ({"data": {"sample_rate": 0}}, "sample_rate > 0"),
        ({"data": {"crop_seconds": -1.0}}, "crop_seconds >= 0"),
        ({"backend": {"k": 0}}, "key 'k' has moved to backend.conf.k"),
        ({"backend": {"kmeans_clusters": 4}}, "moved to backend.conf.clusters \\(kind kmeans\\)"),
        ({"backend": {"conf": {"k": 0}}}, "k must be >= 1"),
        ({"backend": {"kind": "lof"}}, "unknown backend 'lof'; known: knn, knn_smote"),
        ({"backend": {"kind": "kmeans", "conf": {"clusters": 0}}}, "clusters must be >= 1"),
        ({"backend": {"smote": 3}}, "unknown key 'smote'"),
        (
            {"backend": {"kind": "knn_smote", "conf": {"domain_wise": False}}},
            "unknown key 'domain_wise' for KnnSmoteSettings",
        ),
        ({"backend": {"kind": "fusion"}}, "at least 2 members"),
        ({"backend": {"kind": "fusion", "conf": {"members": [{"kind": "knn"}]}}}, "at least 2 members"),
        (
            {"backend": {"fusion": {"members": [{"kind": "knn"}, {"kind": "kmeans"}]}}},
            "moved to backend.conf \\(kind fusion",
        ),
        ({"backend": {"kind": "fusion", "conf": {"members": [{"kind": "fusion"}, {}]}}}, "cannot itself be a fusion"),
        ({"backend": {"kind": "fusion", "conf": {"members": [{}, {}], "combine": "sum"}}}, "'sum' is not one of"),
        ({"backend": {"kind": "fusion", "conf": {"members": [{"exp": "x"}, {}]}}}, "unknown key 'exp'"),
        (
            {"backend": {"kind": "fusion", "conf": {"members": [{"kind": "kmeans", "conf": {"clusters": 0}}, {}]}}},
            "clusters must be >= 1",
        ),
        ({"upstream": {"eat_target_frames": 64}}, "moved to upstream.conf.target_frames"),
        ({"head": {"sub_centers": 2}}, "moved to head.conf.sub_centers \\(kind subcluster_adacos\\)"),
        ({"head": {"kind": "adacos", "conf": {"scale": 2.0}}}, "head 'adacos' takes no settings"),
        ({"head": {"kind": "cosface"}}, "unknown head 'cosface'; known: arcface, adacos, subcluster_adacos"),
        ({"upstream": {"name": "beats", "conf": {"target_frames": 64}}}, "upstream 'beats' takes no settings"),
        ({"upstream": {"name": "eat", "conf": {"frames": 64}}}, "unknown key 'frames' for EatSettings"),
        ({"upstream": {"name": "hubert_base"}}, "unknown upstream 'hubert_base'; known: beats, eat, hubert"),
        ({"specaug": {"time_width": 2.0}}, "time_width in \\[0, 1\\]"),
        ({"specaug": {"time_masks": -1}}, "specaug"),
        ({"finetune": {"rank": 0}}, "finetune.rank must be >= 1"),
        ({"finetune": {"dropout": 1.0}}, "finetune.dropout"),
        ({"embedder": "mfcc"}, "'mfcc' is not one of"),
        ({"seed": 1.5}, "seed: expected an integer"),
        ({"data": {"noise_apply_prob": 1.5}}, "data.noise_apply_prob must be in \\[0, 1\\]"),
        ({"data": {"noise_db_range": [10, 0]}}, "data.noise_db_range must be \\[lo, hi\\] dB with lo <= hi"),
        ({"data": {"noise_db_range": [5]}}, "data.noise_db_range must be"),
        ({"data": {"noise_fallback": "section"}}, "'section' is not one of"),
        ({"data": {"noise_sets": ["dev_train"]}}, "dev_train is in both noise_sets and train_sets"),
    ],
)
def test_train_config_rejects_bad_values(tmp_path, data, what):
    path = _yaml(tmp_path, {"upstream": {"path": "m.pt"}, **data}, "bad_train.yaml")
    with pytest.raises(ConfigError, match=what) as info:
        load_train_config(path)
    assert "bad_train.yaml" in str(info.value)


def test_ssl_needs_an_upstream_path(tmp_path):
    with pytest.raises(ConfigError, match="t.yaml: upstream.path is empty"):
        load_train_config(_yaml(tmp_path, {"embedder": "ssl"}, "t.yaml"))
    assert load_train_config(_yaml(tmp_path, {"embedder": "logmel"}, "l.yaml")).embedder == "logmel"


def test_recipe_configs_load():
    """Every training config shipped with a recipe must load (typos in keys fail here, not on a cluster)."""
    paths = sorted(REPO.glob("egs/*/conf/train*.yaml")) + sorted(REPO.glob("egs/*/conf/tuning/*.yaml"))
    assert paths, "no recipe configs found under egs/*/conf"
    for path in paths:
        load_train_config(path)


def test_overrides_follow_the_kind_rule(tmp_path):
    """``--train_args "backend.kind=X"`` over a config with another kind's settings runs X with its own
    defaults (a new back end needs no tuning YAML), and later overrides set X's settings."""
    path = tmp_path / "c.yaml"
    path.write_text("embedder: logmel\nbackend: {kind: fusion, conf: {members: [{kind: knn}, {kind: mahalanobis}]}}\n")
    cfg = load_train_config(path, ["backend.kind=kmeans", "backend.conf.clusters=3"])
    assert cfg.backend.kind == "kmeans" and (cfg.backend.conf.k, cfg.backend.conf.clusters) == (1, 3)
    with pytest.raises(ConfigError, match="unknown key 'clusters' for KnnSettings"):
        load_train_config(path, ["backend.kind=knn", "backend.conf.clusters=3"])
