"""A packed model as ONNX plus numpy arrays (asdlib-export; docs/design.md §5, "Exported model").

The embedder (upstream, adapters, layer sum, pooling and projection, with the appended log-mel when
the back end reads it) is traced with the TorchScript exporter (``dynamo=False``) from a copy whose
LoRA adapters are merged into the weights (:func:`asdlib.models.lora.merge_lora`); inputs ``wavs``
(B, T) float32, ``lengths`` (B,) int64 and ``machines`` (B,) int64 (kept only when the model reads
them, MGA), batch and time dynamic; output ``embeddings`` (B, D). While exporting, the front ends
switch to ops ONNX has (asdlib/models/dft.py). The fitted back end becomes a JSON tree and arrays
through the hooks of asdlib/backends/portable.py. :func:`probe_errors` compares the result, run by
the reference scorer, with the packed model on seeded noise windows.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from asdlib.backends.packed import Packed
from asdlib.backends.portable import Arrays, export_backend
from asdlib.export.reference import Scorer
from asdlib.models.lora import merge_lora
from asdlib.models.upstream import S3PRL_NAMES

INPUTS = ("wavs", "lengths", "machines")
OUTPUT = "embeddings"
DEFAULT_OPSET = 17  # DFT-free graphs need nothing newer; onnxruntime 1.32 runs opsets up to 23
PROBE_SECONDS = 2.0  # probe window of a model scored on whole files (no data.window_seconds nor clip length)


def check_traceable(packed: Packed, where: str) -> None:
    """Refuse, in one line, an embedder the TorchScript exporter cannot trace (before minutes of work)."""
    cfg = packed.trained.cfg
    if cfg.embedder == "ssl" and cfg.upstream.name in S3PRL_NAMES:
        raise ValueError(
            f"{where}: upstream {cfg.upstream.name} (s3prl) cannot be exported yet: its encoder pads the "
            "sequence with Python arithmetic on the length, which a traced ONNX graph freezes; export a "
            "beats, eat or log-mel model, or score this one with asdlib-infer"
        )


def probe_seconds(packed: Packed) -> float:
    """The window length the model scores: its ``data.window_seconds``, else the training clips' median."""
    w = packed.manifest.windowing
    return w.window_seconds or w.clip_seconds or PROBE_SECONDS


def export_embedder(packed: Packed, path: Path, opset: int) -> None:
    """Write the LoRA-merged embedder of ``packed`` to ``path`` (see the module docstring)."""
    model = copy.deepcopy(packed.trained.model).cpu().eval()
    merge_lora(model)
    rate = packed.manifest.audio.sample_rate
    n = int(probe_seconds(packed) * rate)
    # two clips of different lengths, so that the traced graph is the one with padding masks
    wavs = torch.from_numpy(np.random.default_rng(0).standard_normal((2, n)).astype(np.float32) * 0.1)
    lengths = torch.tensor([n, n - rate // 10], dtype=torch.long)
    wavs[1, lengths[1] :] = 0.0
    machines = torch.zeros(2, dtype=torch.long)
    axes = {"wavs": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "machines": {0: "batch"}, OUTPUT: {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings of checks that are constant for one model
        torch.onnx.export(
            model,
            (wavs, lengths, machines),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_axes=axes,
        )


def export_scoring(packed: Packed) -> tuple[dict, dict[str, np.ndarray]]:
    """``backend.json``'s content and ``backend.npz``'s arrays: the back-end tree, thresholds,
    calibration, alarm rule, audio and windowing of the manifest, and the model's machine list."""
    arrays = Arrays()
    m = packed.manifest
    config = {
        "backend": export_backend(packed.backend, arrays),
        "thresholds": {machine: {s: t.threshold for s, t in secs.items()} for machine, secs in m.thresholds.items()},
        "domain_thresholds": {  # each domain's own threshold (a recording of known domain: --domain)
            machine: {s: {d: e.threshold for d, e in t.domains.items()} for s, t in secs.items()}
            for machine, secs in m.thresholds.items()
        },
        "calibration": {"target_fpr": m.calibration.target_fpr, "measured_fpr": m.calibration.measured_fpr},
        "alarm": asdict(m.alarm),
        "audio": asdict(m.audio),
        "windowing": asdict(m.windowing),
        "machines": list(packed.trained.machines),
    }
    return config, arrays.arrays


def quantize_int8(src: Path, dst: Path) -> None:
    """onnxruntime's dynamic quantisation of the float32 matrix products (the network's linear layers:
    int8 weights, activations quantised per call); the float64 front end stays as it is."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(
        max(level, logging.ERROR)
    )  # the quantiser logs lines per node (float64 ones skipped) on the root logger
    try:
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


@dataclass
class ProbeErrors:
    """Largest differences, reference scorer against the packed model, on the probe: absolute, and for
    scores also relative to ``max(1, |score|)``. Noise windows score tens of standard deviations above
    the normal range, where float32 rounding of the front end alone (torch's FFT against the exported
    DFT) moves a score by ~1e-4 in absolute terms; the relative error is what a tolerance can hold."""

    embedding: float
    score: float
    score_relative: float
    windows: int


def probe_errors(packed: Packed, scorer: Scorer) -> ProbeErrors:
    """Embed and score seeded noise windows of every known (machine, section) both ways: a batch of 3
    windows of the model's length, 2 shorter ones and a longer one (the time axis is dynamic: a
    length the trace froze shows up here)."""
    rate = packed.manifest.audio.sample_rate
    n = int(probe_seconds(packed) * rate)
    rng = np.random.default_rng(1)
    emb_err = score_err = rel_err = 0.0
    count = 0
    for machine, section in packed.known():
        shorter = max(n * 3 // 4, int(packed.manifest.audio.min_seconds * rate) + 1)
        for size, batch in ((n, 3), (shorter, 2), (n * 3 // 2, 1)):
            windows = list((rng.standard_normal((batch, size)) * 0.1).astype(np.float32))
            want = packed.embed(windows, machine, "cpu")
            got = scorer.embed(windows, machine)
            emb_err = max(emb_err, float(np.abs(got - want).max()))
            s_want = packed.score_embeddings(want, machine, section)
            s_got = scorer.score_embeddings(got, machine, section)
            score_err = max(score_err, float(np.abs(s_got - s_want).max()))
            rel_err = max(rel_err, float((np.abs(s_got - s_want) / np.maximum(1.0, np.abs(s_want))).max()))
            count += batch
    return ProbeErrors(emb_err, score_err, rel_err, count)
