"""asdlib-export (issue 22): the ONNX embedder plus the numpy back end reproduce the packed model's
embeddings and scores within 1e-4, the reference scorer needs only numpy, onnxruntime and the
standard library, and a tampered pack, a tampered export or a back end without a numpy scorer is
refused with one line. On the tiny log-mel pack and a tiny random BEATs with LoRA (merged on export),
a fusion of knn_rescaled on the model and mahalanobis on the appended log-mel, and the noise projection."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import make_tiny_pack, make_utt

from asdlib.backends.base import BackendError
from asdlib.backends.packed import PackedError, load_packed
from asdlib.bin import export, infer, make_random_upstream
from asdlib.config import LogMelConfig
from asdlib.data.windows import window_bounds
from asdlib.export import reference
from asdlib.models.fbank import BEATS_FBANK, EAT_FBANK, batch_fbank, exported_fbank
from asdlib.models.logmel import LogMelMean

FUSION = {
    "kind": "fusion",
    "conf": {
        "members": [
            {"kind": "knn_rescaled", "features": "model"},
            {"kind": "mahalanobis", "features": "logmel"},
        ]
    },
    "noise": {"sets": ["noise"], "rank": 2},
}
BEATS_SIZE = ["layers=1", "dim=16", "ffn_dim=32", "heads=2", "patch_dim=8", "conv_pos=4", "conv_pos_groups=2"]


@pytest.fixture(scope="module")
def beats_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(pack, export) of a tiny random BEATs with LoRA and the fusion of :data:`FUSION`, with --int8."""
    root = tmp_path_factory.mktemp("beats_export")
    ckpt = root / "beats.pt"
    sizes = [a for s in BEATS_SIZE for a in ("--size", s)]
    assert make_random_upstream.main(["--name", "beats", "--out", str(ckpt), *sizes, "--verbose", "0"]) == 0
    pack = make_tiny_pack(root, FUSION, ("noise",), beats=ckpt)
    out = root / "onnx"
    assert export.main(["--packed", str(pack), "--out", str(out), "--int8", "--verbose", "0"]) == 0
    return pack, out


def wav(path: Path, seconds: float, seed: int) -> Path:
    """A 16-bit PCM tone with noise at 16 kHz (what reference.py reads with the wave module)."""
    t = np.arange(int(16000 * seconds)) / 16000
    x = 0.3 * np.sin(2 * np.pi * (300 + 100 * seed) * t) + 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    sf.write(str(path), x.astype(np.float32), 16000, subtype="PCM_16")
    return path


def test_exported_front_ends_match_torch() -> None:
    """The fbank and log-mel that exporting switches to (asdlib/models/dft.py) equal the originals."""
    gen = torch.Generator().manual_seed(0)
    wavs = 0.1 * torch.randn(3, 16000, generator=gen)
    lengths = torch.tensor([16000, 9000, 15500])
    wavs[1, 9000:] = wavs[2, 15500:] = 0.0
    for spec, total in ((BEATS_FBANK, None), (EAT_FBANK, 128)):
        want, frames = batch_fbank(wavs, lengths, spec, total)
        got, got_frames = exported_fbank(wavs, lengths, spec, total)
        assert torch.equal(frames, got_frames) and got.shape == want.shape
        torch.testing.assert_close(got, want, atol=2e-4, rtol=0)
    logmel = LogMelMean(LogMelConfig(n_mels=16), 16000)
    want = torch.log(logmel.mel(wavs).transpose(1, 2) + 1e-10)
    torch.testing.assert_close(torch.log(logmel.exported_power(wavs) + 1e-10), want, atol=1e-5, rtol=0)


def test_onnx_reproduces_the_packed_model(beats_export, tmp_path) -> None:
    """Embeddings and scores of recordings (two window lengths) and of a padded batch within 1e-4."""
    pack, out = beats_export
    packed = load_packed(pack)
    scorer = reference.Scorer(out)
    manifest = json.loads((out / reference.MANIFEST).read_text())
    assert manifest["probe"]["embedding"] < 1e-4 and manifest["probe"]["score_relative"] < 1e-4
    assert max(manifest["probe_int8"]["embedding"], manifest["probe_int8"]["score"]) >= 0  # measured, not gated
    for seed, seconds in enumerate((1.5, 2.2)):
        cut = scorer.windows(wav(tmp_path / f"r{seed}.wav", seconds, seed))
        want = packed.embed([w for _, _, w in cut[:-1]], "fan", "cpu")
        want = np.concatenate([want, packed.embed([cut[-1][2]], "fan", "cpu")])
        got = scorer.embed([w for _, _, w in cut], "fan")
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
        np.testing.assert_allclose(
            scorer.score([w for _, _, w in cut], "fan"), packed.score_embeddings(want, "fan", "00"), atol=1e-4, rtol=0
        )
    # lengths honoured as torch honours them: a zero-padded batch
    clip = np.random.default_rng(3).standard_normal(12000).astype(np.float32) * 0.1
    batch = np.zeros((2, 16000), np.float32)
    batch[0], batch[1, :12000] = np.random.default_rng(4).standard_normal(16000) * 0.1, clip
    lengths = np.array([16000, 12000])
    got = scorer.session.run(None, {"wavs": batch, "lengths": lengths})[0]
    with torch.no_grad():
        want = packed.trained.model(
            torch.from_numpy(batch), torch.from_numpy(lengths), torch.zeros(2, dtype=torch.long)
        )
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got[1, :8], packed.embed([clip], "fan", "cpu")[0, :8], atol=1e-4, rtol=0)  # BEATs masks
    int8 = reference.Scorer(out, int8=True).score([clip], "fan")
    assert int8.shape == (1,) and np.isfinite(int8).all()
    # the thresholds are the pack's: domain unknown, and each domain's own
    assert scorer.threshold("fan", "00") == packed.threshold("fan", "00")
    assert scorer.threshold("fan", "00", "source") == packed.threshold("fan", "00", "source")
    with pytest.raises(reference.ExportError, match="unknown domain 'line9' of fan/00"):
        scorer.threshold("fan", "00", "line9")


def test_reference_scorer_runs_without_torch_or_asdlib(tiny_pack, tmp_path) -> None:
    """reference.py imports only numpy, onnxruntime and the standard library, and its CLI, run from the
    export directory with torch and asdlib unimportable, gives asdlib-infer's scores and decisions."""
    tree = ast.parse(Path(reference.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert imported - set(sys.stdlib_module_names) == {"numpy", "onnxruntime"}
    out = tmp_path / "onnx"
    assert export.main(["--packed", str(tiny_pack), "--out", str(out), "--verbose", "0"]) == 0
    files = [wav(tmp_path / f"c{i}.wav", s, i) for i, s in enumerate((1.0, 2.7))]
    block = "import sys, runpy; sys.modules.update(torch=None, asdlib=None); sys.argv = sys.argv[1:]; "
    block += "runpy.run_path(sys.argv[0], run_name='__main__')"
    args = [sys.executable, "-c", block, "reference.py", "--machine", "fan", *map(str, files)]
    proc = subprocess.run(args, cwd=out, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    got = {Path(r.split(",")[0]).name: r.split(",") for r in proc.stdout.splitlines()[1:]}
    assert (
        infer.main(
            [
                "--packed",
                str(tiny_pack),
                "--machine",
                "fan",
                "--format",
                "json",
                "--out",
                str(tmp_path / "i.json"),
                *map(str, files),
            ]
        )
        == 0
    )
    rows = [r for r in json.loads((tmp_path / "i.json").read_text())["rows"] if r["kind"] == "file"]
    assert len(rows) == len(got) == 2
    for r in rows:
        mine = got[Path(r["file"]).name]
        assert abs(float(mine[3]) - r["score"]) < 1e-4 and mine[5] == r["decision"]


def test_window_bounds_restated_exactly() -> None:
    for duration in np.arange(0.3, 4.0, 0.137):
        for window, hop, min_len in ((1.0, 1.0, 0.5), (1.0, 0.5, 0.2), (2.0, 0.0, 1.0), (0.0, 0.0, 1.0)):
            assert reference.window_bounds(duration, window, hop, min_len) == window_bounds(
                duration, window, hop, min_len
            )


def test_refusals(tiny_pack, beats_export, tmp_path) -> None:
    """A kind without a numpy scorer, a tampered pack and a tampered export: one line each, nothing written."""
    zscore = make_tiny_pack(tmp_path / "z", {"kind": "knn_zscore"})
    with pytest.raises(BackendError, match=r"backend kind knn_zscore has no numpy scorer.*exportable kinds: knn,"):
        export.main(["--packed", str(zscore), "--out", str(tmp_path / "z_onnx"), "--verbose", "0"])
    assert not (tmp_path / "z_onnx").exists()
    altered = tmp_path / "altered"
    shutil.copytree(tiny_pack, altered)
    with open(altered / "bank.pt", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    with pytest.raises(PackedError, match="bank.pt: altered"):
        export.main(["--packed", str(altered), "--out", str(tmp_path / "a_onnx"), "--verbose", "0"])
    copy = tmp_path / "export_copy"
    shutil.copytree(beats_export[1], copy)
    data = json.loads((copy / reference.BACKEND_JSON).read_text())
    data["thresholds"]["fan"]["00"] = -1.0
    (copy / reference.BACKEND_JSON).write_text(json.dumps(data))
    with pytest.raises(reference.ExportError, match="backend.json: missing or altered"):
        reference.Scorer(copy)


@pytest.mark.parametrize(
    "conf", [{}, {"standardise": False}, {"statistic": "rank", "k": 3}, {"statistic": "none"}], ids=str
)
def test_reference_scores_knn_routed_as_asdlib_does(conf) -> None:
    """knn_routed's export (banks, scale, calibration, domain classifier) scored by reference.py equals
    the back end's own scores, in a section with two domains and in one with a single domain."""
    from asdlib.backends.bank import make_backend
    from asdlib.backends.portable import Arrays, export_backend
    from asdlib.config import BackendConfig
    from asdlib.io.config import from_dict

    rng = np.random.default_rng(0)
    utts, rows = [], []
    for machine, domains in (("fan", ("source", "target")), ("pump", ("source",))):
        for domain in domains:
            n, shift = (40, 0.0) if domain == "source" else (6, 1.5)
            for i in range(n):
                utts.append(make_utt(machine, "00", f"{machine}_{domain}_{i:02d}", domain))
                rows.append(rng.standard_normal(12) + shift * (np.arange(12) == 3) + 4.0 * (np.arange(12) == 0))
    train = np.array(rows)
    backend = make_backend(from_dict(BackendConfig, {"kind": "knn_routed", "conf": conf}), [12]).fit(utts, train)
    arrays = Arrays()
    node = export_backend(backend, arrays)
    query = train + 0.3 * rng.standard_normal(train.shape)
    want = backend.score(utts, query)
    for machine in ("fan", "pump"):
        idx = [i for i, u in enumerate(utts) if u.machine == machine]
        got = reference.score_node(node, arrays.arrays, query[idx].astype(np.float32), machine, "00")
        np.testing.assert_allclose(got, want[idx], atol=1e-4, rtol=0)
    assert node["groups"][0]["router"] is not None and node["groups"][1]["router"] is None
