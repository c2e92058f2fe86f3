"""DDP training (torchrun, 2 CPU processes, gloo) against one process, and resume under DDP.

Equivalence: with the same global batch (``optim.batch_size`` is global; each of the 2 ranks takes
half of every global batch, see ``BalancedSampler``) a DDP run must train the same model as one
process. That holds only when nothing in the forward pass draws per-process random numbers, so
this config switches off dropout (upstream and LoRA) and SpecAugment; it keeps LoRA, the
Machine-aware Group Adapter and gradient accumulation. Tolerances, because the float reduction
order differs (per-rank means averaged by all-reduce instead of one batch mean):

* per-epoch losses (``exp/<tag>/train_losses.json``): rtol 1e-4 (observed < 1e-7);
* final weights (``model.pt``, and the head in the last checkpoint): per tensor
  ``max|a - b| <= 1e-4 * max|a|`` (observed <= 1.7e-5), except the attention-pooling output bias:
  the softmax over time is invariant to it, so its gradient is rounding noise that AdamW turns
  into +-lr steps of arbitrary sign; it is only checked to be finite.

Only rank 0 may write: ranks > 0 run under a guard that fails the run on any write, rename,
unlink or mkdir inside the experiment directory, and their log must hold no INFO line.

Resume: an uninterrupted 2-epoch DDP run against one interrupted after epoch 1 (its epoch-2
checkpoint and model.pt removed, ``latest`` back at epoch 1, epoch 2's loss record corrupted) and
continued under DDP; here with full fine-tuning (trainable parameters without gradient, which plain
DDP rejects), dropout and SpecAugment on, and 7 batches per epoch for grad_accum 2 (a trailing
partial accumulation must not leak into the next epoch): the result must be bit-identical.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LOSS_RTOL = 1e-4
WEIGHT_RTOL = 1e-4
ZERO_GRAD_BY_CONSTRUCTION = ("pooling.attention.2.bias",)

EQUIV_CONFIG = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: UPSTREAM_NO_DROPOUT}
finetune: {mode: lora, rank: 4, dropout: 0.0}
mga: {enabled: true, bottleneck: 8}
model: {pooling_hidden: 16, embed_dim: 32}
specaug: {enabled: false}
optim: {epochs: 2, batch_size: 4, grad_accum: 2, warmup_steps: 1}
data: {crop_seconds: 0.0}
"""
RESUME_CONFIG = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: UPSTREAM}
finetune: {mode: full}
model: {pooling_hidden: 16, embed_dim: 32}
optim: {epochs: 2, batch_size: 4, grad_accum: 2, warmup_steps: 1}
data: {crop_seconds: 0.0}
"""

# Ranks > 0 run asdlib.bin.train through this guard: any write into the experiment dir fails the run.
RANK_GUARD = """\
import builtins, io, os, runpy, sys
if os.environ.get("RANK", "0") != "0":
    root = os.path.realpath(os.environ["GUARD_DIR"])

    def inside(path):
        return isinstance(path, (str, bytes, os.PathLike)) and \\
            os.path.realpath(os.fsdecode(path)).startswith(root + os.sep)

    def deny(what, path):
        raise PermissionError(f"rank {os.environ['RANK']} tried to {what} {path}")

    def guard_open(orig):
        def wrapped(file, mode="r", *args, **kwargs):
            if inside(file) and any(c in mode for c in "wax+"):
                deny("write", file)
            return orig(file, mode, *args, **kwargs)
        return wrapped

    def guard_os_open(orig):
        def wrapped(path, flags, *args, **kwargs):
            if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                deny("write", path)
            return orig(path, flags, *args, **kwargs)
        return wrapped

    def guard_path_op(name, orig):
        def wrapped(path, *args, **kwargs):
            if inside(path) or (args and inside(args[0])):
                deny(name, path)
            return orig(path, *args, **kwargs)
        return wrapped

    builtins.open = io.open = guard_open(io.open)
    os.open = guard_os_open(os.open)
    for name in ("replace", "rename", "unlink", "remove", "mkdir", "rmdir"):
        setattr(os, name, guard_path_op(name, getattr(os, name)))
runpy.run_module("asdlib.bin.train", run_name="__main__", alter_sys=True)
"""


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, logs: Path | None = None) -> None:
    """Run a command; on failure show its output and, for torchrun, every rank's stderr under ``logs``."""
    proc = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )
    if proc.returncode != 0:
        ranks = [f"--- {p}:\n{p.read_text()[-4000:]}" for p in sorted(logs.rglob("stderr.log"))] if logs else []
        pytest.fail("\n".join([f"{' '.join(args)} failed:", proc.stdout[-3000:], proc.stderr[-4000:], *ranks]))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny corpus (stages 1-2), a tiny random HuBERT and a copy of it without dropout."""
    work = tmp_path_factory.mktemp("ddp")
    py = sys.executable
    run(
        [
            py,
            "-m",
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
        work,
    )
    run([py, "-m", "asdlib.bin.make_random_upstream", "--name", "hubert", "--out", "hubert.pt"], work)
    state = torch.load(work / "hubert.pt", weights_only=False)
    for key in ("dropout", "attention_dropout", "activation_dropout"):
        state["model_cfg"][key] = 0.0
    torch.save(state, work / "hubert_no_dropout.pt")
    run([py, "-m", "asdlib.bin.prepare_dcase", "--year", "2024", "--root", "corpus", "--data_dir", "data"], work)
    run(
        [
            py,
            "-m",
            "asdlib.bin.make_labels",
            "--train_sets",
            "data/dev_train",
            "data/eval_train",
            "--other_sets",
            "data/dev_test",
            "data/eval_test",
        ],
        work,
    )
    (work / "equiv.yaml").write_text(EQUIV_CONFIG.replace("UPSTREAM_NO_DROPOUT", str(work / "hubert_no_dropout.pt")))
    (work / "resume.yaml").write_text(RESUME_CONFIG.replace("UPSTREAM", str(work / "hubert.pt")))
    (work / "rank_guard.py").write_text(RANK_GUARD)
    return work


def train(work: Path, config: str, exp: str, nproc: int) -> Path:
    """Train in one process or under torchrun; returns the torchrun log dir (per-rank stderr)."""
    args = ["--config", config, "--data_root", "data", "--exp_dir", exp]
    logs = work / f"torchrun_logs_{exp.replace('/', '_')}"
    if nproc == 1:
        run([sys.executable, "-m", "asdlib.bin.train", *args], work)
    else:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        run(
            [
                torchrun,
                "--standalone",
                "--nproc_per_node",
                str(nproc),
                "--log-dir",
                str(logs),
                "--redirects",
                "3",
                "rank_guard.py",
                *args,
            ],
            work,
            env={"GUARD_DIR": str(work / exp)},
            logs=logs,
        )
    return logs


def losses(exp: Path) -> list[dict[str, float]]:
    return json.loads((exp / "train_losses.json").read_text())


def assert_weights_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name, x in a.items():
        y = b[name]
        if name in ZERO_GRAD_BY_CONSTRUCTION:
            assert torch.isfinite(y).all()
            continue
        err = (x.float() - y.float()).abs().max().item()
        assert err <= WEIGHT_RTOL * x.float().abs().max().item() + 1e-8, f"{name}: max abs difference {err:.3g}"


@pytest.fixture(scope="module")
def equivalence_runs(work: Path) -> tuple[Path, Path, Path]:
    train(work, "equiv.yaml", "exp/single", 1)
    logs = train(work, "equiv.yaml", "exp/ddp", 2)
    return work / "exp" / "single", work / "exp" / "ddp", logs


def test_ddp_matches_single_process(equivalence_runs: tuple[Path, Path, Path]) -> None:
    single, ddp, _ = equivalence_runs
    ref, got = losses(single), losses(ddp)
    assert [r["epoch"] for r in ref] == [r["epoch"] for r in got] == [1, 2]
    for r, g in zip(ref, got):
        assert g["loss"] == pytest.approx(r["loss"], rel=LOSS_RTOL)
        assert g["lr"] == pytest.approx(r["lr"], rel=1e-12, abs=1e-15)
    ref_model = torch.load(single / "model.pt", weights_only=True)
    got_model = torch.load(ddp / "model.pt", weights_only=True)
    assert any("down_weight" in k for k in ref_model["model"])  # MGA is trained
    assert set(ZERO_GRAD_BY_CONSTRUCTION) <= set(ref_model["model"]), "update ZERO_GRAD_BY_CONSTRUCTION"
    assert_weights_close(ref_model["model"], got_model["model"])
    ref_ckpt = torch.load(single / "checkpoints" / "epoch_2.pt", weights_only=True)
    got_ckpt = torch.load(ddp / "checkpoints" / "epoch_2.pt", weights_only=True)
    assert_weights_close(ref_ckpt["head"], got_ckpt["head"])


def test_only_rank_0_writes_and_logs(equivalence_runs: tuple[Path, Path, Path]) -> None:
    _, ddp, logs = equivalence_runs
    assert {p.relative_to(ddp).as_posix() for p in ddp.rglob("*")} == {
        "config.yaml",
        "model.pt",
        "train_losses.json",
        "checkpoints",
        "checkpoints/latest",
        "checkpoints/epoch_1.pt",
        "checkpoints/epoch_2.pt",
    }
    stderr = {p.parent.name: p.read_text() for p in logs.rglob("stderr.log")}
    assert set(stderr) == {"0", "1"}, f"per-rank logs not found under {logs}"
    assert "epoch 2/2: loss" in stderr["0"]
    assert " INFO: " not in stderr["1"] and "epoch 1:" not in stderr["1"]


def test_resume_under_ddp_is_exact(work: Path) -> None:
    train(work, "resume.yaml", "exp/full", 2)
    full = work / "exp" / "full"
    cut = work / "exp" / "cut"
    shutil.copytree(full, cut)
    (cut / "checkpoints" / "epoch_2.pt").unlink()
    (cut / "model.pt").unlink()
    (cut / "checkpoints" / "latest").write_text("epoch_1.pt\n")
    record = losses(cut)
    record[-1]["loss"] = -1.0  # a record written after the checkpoint that resume must drop
    (cut / "train_losses.json").write_text(json.dumps(record))
    train(work, "resume.yaml", "exp/cut", 2)
    assert_same_run(full, cut)


def resume_cut(work: Path, config: str, full_tag: str, cut_tag: str) -> tuple[Path, Path]:
    """An uninterrupted 2-epoch DDP run and a copy cut back to epoch 1 and continued under DDP."""
    train(work, config, f"exp/{full_tag}", 2)
    full, cut = work / "exp" / full_tag, work / "exp" / cut_tag
    shutil.copytree(full, cut)
    (cut / "checkpoints" / "epoch_2.pt").unlink()
    (cut / "model.pt").unlink()
    (cut / "checkpoints" / "latest").write_text("epoch_1.pt\n")
    train(work, config, f"exp/{cut_tag}", 2)
    return full, cut


def assert_same_run(full: Path, cut: Path) -> None:
    assert losses(cut) == losses(full)
    a = torch.load(full / "model.pt", weights_only=True)["model"]
    b = torch.load(cut / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha = torch.load(full / "checkpoints" / "epoch_2.pt", weights_only=True)["head"]
    hb = torch.load(cut / "checkpoints" / "epoch_2.pt", weights_only=True)["head"]
    assert all(torch.equal(ha[k], hb[k]) for k in ha)


def test_resume_under_ddp_is_exact_with_adacos(work: Path) -> None:
    """The adaptive scale is a buffer that only rank 0 checkpoints: unless every rank computes it
    from the global batch, rank 1 resumes with rank 0's scale and the runs part."""
    config = (
        RESUME_CONFIG.replace("UPSTREAM", str(work / "hubert.pt"))
        + "head: {kind: subcluster_adacos, conf: {sub_centers: 2}}\n"
    )
    (work / "adacos.yaml").write_text(config)
    assert_same_run(*resume_cut(work, "adacos.yaml", "adacos_full", "adacos_cut"))


def _adacos_rank(rank: int, init: str, out: str) -> None:
    """One gloo rank: a training step of sub-cluster AdaCos on this rank's half of a global batch."""
    import torch.distributed as dist

    from asdlib.models.heads import AdaCos

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        head = AdaCos(8, 3, 2).train()
        emb, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2])
        head(emb[3 * rank : 3 * rank + 3], labels[3 * rank : 3 * rank + 3])
        torch.save(head.scale, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_adacos_scale_is_the_same_on_all_ranks(tmp_path: Path) -> None:
    """The scale after a DDP step is identical on both ranks and equals one process's on the whole batch."""
    import torch.multiprocessing as mp

    from asdlib.models.heads import AdaCos

    out = str(tmp_path / "scale")
    mp.spawn(_adacos_rank, args=(f"file://{tmp_path / 'rdzv'}", out), nprocs=2)
    s0, s1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    torch.manual_seed(0)
    head = AdaCos(8, 3, 2).train()
    head(torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert torch.equal(s0, s1)
    assert torch.allclose(s0, head.scale, rtol=1e-6)


BEATS_LAYERDROP_CONFIG = """\
embedder: ssl
seed: 0
upstream: {name: beats, path: UPSTREAM}
finetune: {mode: lora, rank: 4, dropout: 0.0}
model: {pooling_hidden: 16, embed_dim: 32}
specaug: {enabled: false}
optim: {epochs: 2, batch_size: 4, grad_accum: 2, warmup_steps: 1}
data: {crop_seconds: 0.0}
"""


def test_ddp_with_beats_layerdrop_resumes_exactly(work: Path) -> None:
    """BEATs' encoder_layerdrop skips whole layers (their LoRA weights get no gradient): every rank
    must skip the same layers, and DDP must accept a graph that changes from step to step."""
    from asdlib.synth.checkpoints import save_random_beats

    save_random_beats(
        work / "beats_ld.pt",
        encoder_layers=4,
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_attention_heads=4,
        embed_dim=32,
        conv_pos=16,
        conv_pos_groups=4,
        dropout=0.0,
        attention_dropout=0.0,
        encoder_layerdrop=0.3,
    )
    (work / "beats_ld.yaml").write_text(BEATS_LAYERDROP_CONFIG.replace("UPSTREAM", str(work / "beats_ld.pt")))
    full, cut = resume_cut(work, "beats_ld.yaml", "beats_ld_full", "beats_ld_cut")
    assert_same_run(full, cut)
    # and the same layers as one process skips: DDP trains the same model (dropout is off here)
    train(work, "beats_ld.yaml", "exp/beats_ld_single", 1)
    single = work / "exp" / "beats_ld_single"
    for r, g in zip(losses(single), losses(full), strict=True):
        assert g["loss"] == pytest.approx(r["loss"], rel=LOSS_RTOL)
    assert_weights_close(
        torch.load(single / "model.pt", weights_only=True)["model"],
        torch.load(full / "model.pt", weights_only=True)["model"],
    )


def test_vq_refresh_under_ddp_matches_single_process(work: Path) -> None:
    """The eval-mode refresh pass is split over the ranks and gathered in clip order, so the k-means
    (and everything after it) is the same as in one process."""
    config = EQUIV_CONFIG.replace("upstream:", "vq: {enabled: true, num_codes: 2, kmeans_iters: 3}\nupstream:")
    (work / "equiv_vq.yaml").write_text(config.replace("UPSTREAM_NO_DROPOUT", str(work / "hubert_no_dropout.pt")))
    train(work, "equiv_vq.yaml", "exp/vq_single", 1)
    train(work, "equiv_vq.yaml", "exp/vq_ddp", 2)
    a = torch.load(work / "exp" / "vq_single" / "checkpoints" / "epoch_2.pt", weights_only=True)
    b = torch.load(work / "exp" / "vq_ddp" / "checkpoints" / "epoch_2.pt", weights_only=True)
    assert any(k.endswith("codes") for k in a["vq"])
    assert a["vq"].keys() == b["vq"].keys()
    for k, v in a["vq"].items():  # the same assignments; codes equal up to the runs' float differences
        torch.testing.assert_close(b["vq"][k], v, rtol=1e-3, atol=1e-4, msg=k)
    # (the weights are not compared: level-1 SupCon runs over each rank's share of the batch, so VQ
    # training under DDP differs slightly from one process by design)


PRETRAIN_CONFIG = """\
embedder: ssl
seed: 0
upstream: {name: eat, path: UPSTREAM, conf: {target_frames: 96}}
finetune: {mode: full}
pretrain: {enabled: true, clone_batch: 2, average_top_k_layers: 2, decoder_dim: 16, decoder_groups: 4,
           decoder_layers: 2, ema_decay: 0.9, ema_end_decay: 0.99, ema_anneal_end_step: 4}
optim: {epochs: 2, batch_size: 4, grad_accum: 2, warmup_steps: 1, amp: false}
data: {crop_seconds: 0.0}
"""


def test_eat_pretraining_under_ddp_resumes_exactly(work: Path) -> None:
    """EAT pre-training (egs/TEMPLATE/ssl.sh --nproc 2): the EMA teacher, its update count and every
    rank's mask stream survive an interruption, so the continued run is bit-identical; the teacher
    really moved, and only rank 0 wrote."""
    run([sys.executable, "-m", "asdlib.bin.make_random_upstream", "--name", "eat", "--out", "eat_init"], work)
    (work / "pretrain.yaml").write_text(PRETRAIN_CONFIG.replace("UPSTREAM", str(work / "eat_init")))
    full, cut = resume_cut(work, "pretrain.yaml", "pretrain_full", "pretrain_cut")
    assert [r["epoch"] for r in losses(full)] == [1, 2]
    assert losses(cut) == losses(full)
    a = torch.load(full / "checkpoints" / "epoch_2.pt", weights_only=True)["model"]
    b = torch.load(cut / "checkpoints" / "epoch_2.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["num_updates"]) > 0
    start = torch.load(full / "checkpoints" / "epoch_1.pt", weights_only=True)["model"]
    teacher = [k for k in a if k.startswith("teacher.")]
    assert teacher and any(not torch.equal(a[k], start[k]) for k in teacher)
