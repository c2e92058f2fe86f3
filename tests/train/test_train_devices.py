"""Device and precision paths of training that a GPU run takes, checked on CPU: resuming across an
AMP on/off switch, the device each CLI picks, and the DDP backend that goes with it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from asdlib.config import load_train_config
from asdlib.train.trainer import Trainer

CONFIG = """\
embedder: ssl
seed: 0
upstream: {name: hubert, path: UPSTREAM}
finetune: {mode: lora, rank: 4}
model: {pooling_hidden: 16, embed_dim: 32}
optim: {epochs: 1, batch_size: 4, warmup_steps: 1}
data: {crop_seconds: 0.0}
"""


@pytest.fixture(scope="module")
def work(tiny_work: Path) -> Path:
    (tiny_work / "train.yaml").write_text(CONFIG.replace("UPSTREAM", str(tiny_work / "hubert.pt")))
    return tiny_work


def make_trainer(work: Path, exp: Path, amp: bool) -> Trainer:
    """A CPU trainer whose GradScaler is enabled or not, as a CUDA run with/without AMP has it
    (an enabled CUDA scaler cannot be built without a GPU; the CPU one has the same state_dict)."""
    trainer = Trainer(load_train_config(work / "train.yaml"), exp, work / "data")
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=amp)
    return trainer


@pytest.mark.parametrize("saved_amp, resumed_amp", [(False, True), (True, False)])
def test_resume_across_amp_switch(
    work: Path, tmp_path: Path, saved_amp: bool, resumed_amp: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A CPU (or amp: false) checkpoint resumed with AMP on, and the reverse: the disabled scaler
    saves ``{}``, which an enabled one refuses to load."""
    exp = tmp_path / "exp"
    first = make_trainer(work, exp, saved_amp)
    first.epoch = 1
    first.save_checkpoint()
    second = make_trainer(work, exp, resumed_amp)
    with caplog.at_level("INFO"):
        second.resume()
    assert second.epoch == 1
    if resumed_amp:
        assert second.scaler.is_enabled() and second.scaler.get_scale() == 2.0**16  # fresh AMP state
        assert "AMP loss scale starts afresh" in caplog.text


@pytest.mark.parametrize(
    "requested, cuda, expected",
    [
        ("cpu", True, "cpu"),
        ("cpu", False, "cpu"),
        ("cuda", True, "cuda"),
        ("cuda:1", True, "cuda:1"),
        ("auto", True, "cuda"),
        ("auto", False, "cpu"),
    ],
)
def test_resolve_device(monkeypatch: pytest.MonkeyPatch, requested: str, cuda: bool, expected: str) -> None:
    """``cpu`` stays CPU where a GPU is visible; only ``auto`` picks CUDA on its own."""
    from asdlib.utils import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device(requested) == expected


@pytest.mark.parametrize("requested", ["cuda", "cuda:0", "gpu", "cuda:x"])
def test_resolve_device_rejects(monkeypatch: pytest.MonkeyPatch, requested: str) -> None:
    from asdlib.utils import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=f"--device {requested}"):
        resolve_device(requested)


@pytest.mark.parametrize("module", ["asdlib.bin.train", "asdlib.bin.extract", "asdlib.bin.infer"])
def test_cli_device_defaults_to_cpu(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """A visible GPU must not change the default: the recipe's ``--ngpu 0`` means CPU."""
    import importlib

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    parser = importlib.import_module(module).get_parser()
    assert parser.get_default("device") == "cpu"


def test_process_device_and_backend() -> None:
    from asdlib.train.trainer import ddp_backend, process_device

    assert process_device("cpu", 2, 1) == "cpu" and ddp_backend("cpu") == "gloo"
    assert process_device("cuda", 2, 1) == "cuda:1" and ddp_backend("cuda") == "nccl"
    assert process_device("cuda", 1, 0) == "cuda"


FAKE_CMD = """\
#!/usr/bin/env bash
# Records the launcher call and runs nothing.
echo "$*" >> "$(dirname "$0")/calls.txt"
"""


@pytest.mark.parametrize(
    "opts, device, gpu, extract_gpu",
    [
        ([], "cpu", 0, 0),
        (["--nproc", "2"], "cpu", 0, 0),
        (["--ngpu", "1"], "cuda", 1, 1),
        (["--ngpu", "2"], "cuda", 2, 1),
    ],
)
def test_recipe_passes_the_device_from_ngpu(
    tmp_path: Path, opts: list[str], device: str, gpu: int, extract_gpu: int
) -> None:
    """Stages 3 and 4 through a launcher that only records its calls: ``--device`` follows
    ``--ngpu``, and the extraction jobs ask the launcher for a GPU when there is one."""
    repo = Path(__file__).resolve().parents[2]
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    for name in ("asd.sh", "utils"):
        (recipe / name).symlink_to(repo / "egs" / "TEMPLATE" / name)
    (recipe / "path.sh").write_text(f'. "{repo}/path.sh"\n')
    fake = recipe / "fake_cmd.sh"
    fake.write_text(FAKE_CMD)
    fake.chmod(0o755)
    (recipe / "cmd.sh").write_text(f"export train_cmd={fake} extract_cmd={fake} score_cmd={fake}\n")
    (recipe / "data" / "dev_train").mkdir(parents=True)
    (recipe / "data" / "dev_train" / "wav.scp").write_text("a /x/a.wav\nb /x/b.wav\n")
    (recipe / "conf").mkdir()
    (recipe / "conf" / "train.yaml").write_text("embedder: logmel\n")  # no upstream file to check before stage 3
    (recipe / "exp" / "train").mkdir(parents=True)  # what the (fake) training would leave for stage 4's checks
    (recipe / "exp" / "train" / "config.yaml").write_text("embedder: logmel\n")
    proc = subprocess.run(
        [
            "./asd.sh",
            "--stage",
            "3",
            "--stop_stage",
            "4",
            "--nj",
            "1",
            "--train_sets",
            "dev_train",
            "--test_sets",
            "",
            *opts,
        ],
        cwd=recipe,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # stage 4 then fails in the merge (the fake launcher wrote no embeddings); the calls are recorded
    assert (recipe / "calls.txt").is_file(), proc.stderr[-3000:]
    train_call, extract_call = (recipe / "calls.txt").read_text().splitlines()
    assert train_call.startswith(f"--gpu {gpu} ") and f"--device {device}" in train_call
    assert extract_call.startswith(f"--gpu {extract_gpu} JOB=1:1 ")
    assert extract_call.endswith(
        f"--device {device} --keys exp/train/embed/dev_train/split1/keys.JOB "
        f"--out_ark exp/train/embed/dev_train/split1/embeddings.JOB.ark "
        f"--out_scp exp/train/embed/dev_train/split1/embeddings.JOB.scp"
    )


def test_lr_schedule_waits_for_a_step_that_amp_skipped(work: Path, tmp_path: Path) -> None:
    """GradScaler skips the optimiser step on inf/NaN gradients (and lowers its scale): the LR
    schedule must not advance then, or warm-up and decay shift against the real updates."""
    trainer = make_trainer(work, tmp_path / "exp", amp=True)
    batch_terms = trainer.batch_terms
    calls = []

    def first_overflows(batch):  # type: ignore[no-untyped-def]
        calls.append(1)
        terms = batch_terms(batch)
        return {k: v * float("inf") for k, v in terms.items()} if len(calls) == 1 else terms

    trainer.batch_terms = first_overflows  # type: ignore[method-assign]
    trainer.train_epoch()
    assert trainer.steps_per_epoch > 1 and trainer.scaler.get_scale() == 2.0**15
    assert trainer.scheduler.last_epoch == trainer.steps_per_epoch - 1
