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
    from asdlib import devices
    from asdlib.devices import CudaState, Gpu, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    gpus = (Gpu(0, "H100", (9, 0)), Gpu(1, "H100", (9, 0)))
    monkeypatch.setattr(devices, "probe", lambda: CudaState("2.11.0", "13.0", ("sm_90",), None, gpus, 2))
    assert resolve_device(requested) == expected


@pytest.mark.parametrize("requested", ["cuda", "cuda:0", "gpu", "cuda:x"])
def test_resolve_device_rejects(monkeypatch: pytest.MonkeyPatch, requested: str) -> None:
    from asdlib.devices import resolve_device

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


def test_process_device_and_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from asdlib.train.trainer import ddp_backend, process_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert process_device("cpu", 2, 1, 2) == "cpu" and ddp_backend("cpu") == "gloo"
    assert process_device("cuda", 2, 1, 2) == "cuda:1" and ddp_backend("cuda") == "nccl"
    assert process_device("cuda", 1, 0) == "cuda"


def test_ngpu_beyond_the_visible_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--ngpu 4`` where CUDA_VISIBLE_DEVICES shows 2: one line naming both, not "invalid device ordinal"."""
    from asdlib.train.trainer import process_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(ValueError, match=r"^--ngpu 4: only 2 GPU\(s\) are visible .*CUDA_VISIBLE_DEVICES=0,1") as err:
        process_device("cuda", 4, 0, 4)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "device_type, capability, native, expected",
    [
        ("cuda", (9, 0), True, "native"),
        ("cuda", (8, 0), True, "native"),
        ("cuda", (7, 5), False, "unsupported"),  # T4: torch would emulate bf16 through float32
        ("cuda", (7, 0), False, "unsupported"),
        ("cpu", None, True, "native"),
        ("cpu", None, False, "emulated"),
    ],
)
def test_bf16_decision(device_type: str, capability: tuple[int, int] | None, native: bool, expected: str) -> None:
    from asdlib.train.trainer import bf16_decision

    assert bf16_decision(device_type, capability, native) == expected


def test_bf16_below_sm80_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from asdlib.config import OptimConfig
    from asdlib.train import trainer

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(trainer, "bf16_native", lambda device: False)
    with pytest.raises(
        ValueError, match=r"^optim.amp_dtype bfloat16: cuda:0 is sm_75, .*set optim.amp_dtype: float16$"
    ):
        trainer.autocast_dtype(OptimConfig(amp=True, amp_dtype="bfloat16"), torch.device("cuda", 0))


def test_ddp_binds_the_rank_to_its_gpu(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CUDA rank passes ``device_id=cuda:<LOCAL_RANK>`` to init_process_group (checked before any GPU use)."""
    from asdlib.train import trainer

    calls: list[tuple[tuple, dict]] = []

    class Stop(Exception):
        pass

    def fake_init(*args: object, **kwargs: object) -> None:
        calls.append((args, kwargs))
        raise Stop

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(trainer.dist, "init_process_group", fake_init)
    with pytest.raises(Stop):
        Trainer(load_train_config(work / "train.yaml"), tmp_path / "exp", work / "data", "cuda")
    assert calls == [(("nccl",), {"device_id": torch.device("cuda", 1)})]


def test_resume_loads_on_cpu_first(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint is read with ``map_location="cpu"``; load_state_dict places the tensors, and the
    resumed optimiser state equals the saved one bit for bit (AdamW's ``step`` stays on CPU)."""
    from asdlib.train import trainer

    exp = tmp_path / "exp"
    first = make_trainer(work, exp, amp=False)
    first.train_epoch()
    first.epoch = 1
    first.save_checkpoint()
    seen: list[tuple[object, object]] = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        seen.append((args[0], kwargs.get("map_location")))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(trainer.torch, "load", spy)
    second = make_trainer(work, exp, amp=False)
    second.resume()
    assert [where for path, where in seen if "checkpoints" in str(path)] == ["cpu"]
    saved, resumed = first.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    assert saved.keys() == resumed.keys() and saved
    for key, entry in saved.items():
        for name, value in entry.items():
            assert torch.equal(value, resumed[key][name]) and value.dtype == resumed[key][name].dtype
            assert resumed[key][name].device.type == "cpu"


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
