"""Reference scorer of an exported model (asdlib-export): numpy, onnxruntime and the standard library only.

asdlib-export copies this file into the export directory, so a machine without torch or asdlib
scores recordings with it::

    python reference.py --model export/ --machine fan a.wav b.wav          # CSV on stdout
    python reference.py --model export/ --machine fan --int8 a.wav         # the int8 embedder

or from Python: ``Scorer("export/").score(windows, "fan", "00")``. It reproduces asdlib-infer's scores
(``Packed.score_embeddings(Packed.embed(...))``) within 1e-4; asdlib-export checks that on a probe
before it writes a directory, and tests/bin/test_export.py on a packed model. The files are
verified against ``manifest.json`` (size and sha256) before anything is loaded.

The back end is the JSON tree of ``backend.json`` with its arrays in ``backend.npz``; each node names
the function of :data:`SCORERS` that scores it (asdlib/backends/portable.py writes them). WAV files
are read with the ``wave`` module (PCM 8/16/24/32-bit, at the model's sample rate; other formats:
convert them first, e.g. ``sox in.flac -r 16000 out.wav``) and cut into the windows the manifest
gives, as asdlib-infer cuts them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import wave
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

MANIFEST = "manifest.json"
BACKEND_JSON = "backend.json"
BACKEND_NPZ = "backend.npz"
EMBEDDER = "embedder.onnx"
EMBEDDER_INT8 = "embedder.int8.onnx"
FORMAT = 1


class ExportError(ValueError):
    """An export directory that is incomplete or altered, or input it cannot score; the message names it."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(root: Path) -> dict:
    """The manifest of ``root`` after checking the size and sha256 of every file it lists."""
    path = root / MANIFEST
    if not path.is_file():
        raise ExportError(f"{path}: missing; {root} is not an exported model (asdlib-export writes one)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: format {manifest.get('format')!r}, this scorer reads {FORMAT}; export again")
    for rel, info in manifest["files"].items():
        f = root / rel
        if not f.is_file() or f.stat().st_size != info["bytes"] or sha256(f) != info["sha256"]:
            raise ExportError(f"{f}: missing or altered (size or sha256 differs from {MANIFEST}); export again")
    return manifest


# ------------------------------------------------------------------------------------------------
# Back-end scorers: one per node type, each the numpy twin of a back end's ``score``


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.sqrt(np.sum(x * x, axis=-1, keepdims=True)), 1e-12)


def _group(node: dict, machine: str, section: str) -> dict:
    for g in node["groups"]:
        if (g["machine"], g["section"]) == (machine, section):
            return g
    known = ", ".join(f"{g['machine']}/{g['section']}" for g in node["groups"])
    raise ExportError(f"no bank for machine '{machine}' section '{section}': the exported model knows {known}")


def score_knn(node: dict, arrays: dict, emb: np.ndarray, machine: str, section: str) -> np.ndarray:
    """Smallest over the banks of the mean cosine distance (divided by the bank entry's scale when
    rescaled) to the ``k`` nearest entries, in float32 like asdlib/backends/knn.py."""
    query = normalize(emb.astype(np.float64)).astype(np.float32)
    per_bank = []
    for bank in _group(node, machine, section)["banks"]:
        dist = 1.0 - query @ arrays[bank["emb"]].T
        if bank["scale"] is not None:
            dist = dist / arrays[bank["scale"]]
        per_bank.append(_mean_of_k_nearest(dist, node["k"]))
    return np.min(np.stack(per_bank), axis=0)


def _mean_of_k_nearest(dist: np.ndarray, k: int) -> np.ndarray:
    """Per query row, the mean of its ``k`` smallest distances (all of them for a smaller bank), summed
    in ascending order in float64 as asdlib/backends/knn.py does."""
    k = min(k, dist.shape[1])
    return np.sort(np.partition(dist, k - 1, axis=1)[:, :k], axis=1).astype(np.float64).mean(1)


def score_mahalanobis(node: dict, arrays: dict, emb: np.ndarray, machine: str, section: str) -> np.ndarray:
    """Smallest over the domains of the whitened distance to the domain mean, in float64."""
    x = normalize(emb.astype(np.float64))
    dists = [
        np.sqrt((((x - arrays[d["mean"]]) @ arrays[d["whiten"]]) ** 2).sum(1))
        for d in _group(node, machine, section)["domains"]
    ]
    return np.min(np.stack(dists), axis=0)


def score_fusion(node: dict, arrays: dict, emb: np.ndarray, machine: str, section: str) -> np.ndarray:
    """Each member's score on its columns, standardised by its section's training statistics, then
    their mean or max."""
    z = []
    for m in node["members"]:
        a, b = m["columns"]
        s = score_node(m["backend"], arrays, emb[:, a:b], machine, section)
        mean, sd = next(
            ((t["mean"], t["sd"]) for t in m["stats"] if (t["machine"], t["section"]) == (machine, section)), (0.0, 1.0)
        )
        z.append((s - mean) / sd)
    return np.mean(z, axis=0) if node["combine"] == "mean" else np.max(z, axis=0)


def score_noise_projected(node: dict, arrays: dict, emb: np.ndarray, machine: str, section: str) -> np.ndarray:
    """The inner scorer on ``x - V V^T x`` in every column group, with the directions ``V`` of the
    clip's level: its (machine, section), else its machine, else all."""
    levels = {tuple(level["key"]): level["directions"] for level in node["levels"]}
    key = next(k for k in ((machine, section), (machine,), ()) if k in levels)
    out = emb.astype(np.float64)
    for (a, b), name in zip(node["columns"], levels[key]):
        v = arrays[name]
        block = out[:, a:b]
        out[:, a:b] = block - (block @ v.T) @ v
    return score_node(node["inner"], arrays, out.astype(emb.dtype), machine, section)


def _standardised(d: np.ndarray, bank: dict, statistic: str, arrays: dict) -> np.ndarray:
    """A bank's distances in its own units, as asdlib/backends/domain_norm.py's ``_standardise``."""
    if statistic == "none" or bank["mean"] is None:
        return d
    mean, sd, loo = bank["mean"], bank["sd"], arrays[bank["loo"]]
    if statistic == "zscore" or not len(loo):
        return (d - mean) / sd
    below = np.searchsorted(loo, d, side="left")
    equal = np.searchsorted(loo, d, side="right") - below
    rank = (below + 0.5 * equal) / len(loo)
    return rank + np.maximum(d - loo[-1], 0.0) / sd - np.maximum(loo[0] - d, 0.0) / sd


def score_routed(node: dict, arrays: dict, emb: np.ndarray, machine: str, section: str) -> np.ndarray:
    """Each bank's standardised k-NN distance (on per-dimension scaled rows when standardised); the
    score is that of the bank the domain classifier picks (the smallest when the section has one domain)."""
    group = _group(node, machine, section)
    query = normalize(emb.astype(np.float64)).astype(np.float32)
    per_bank = []
    for bank in group["banks"]:
        q = query if bank["scale"] is None else normalize(query * arrays[bank["scale"]]).astype(np.float32)
        dist = 1.0 - q @ arrays[bank["emb"]].T
        per_bank.append(_standardised(_mean_of_k_nearest(dist, node["k"]), bank, node["statistic"], arrays))
    scores = np.stack(per_bank)
    router = group["router"]
    if router is None:
        return np.min(scores, axis=0)
    x = (query.astype(np.float64) - arrays[router["mean"]]) / arrays[router["scale"]]
    logits = x @ arrays[router["coef"]].T + arrays[router["intercept"]]
    pick = (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else np.argmax(logits, axis=1)
    return scores[pick, np.arange(len(pick))]


NodeScorer = Callable[[dict, dict, np.ndarray, str, str], np.ndarray]
SCORERS: dict[str, NodeScorer] = {
    "knn": score_knn,
    "mahalanobis": score_mahalanobis,
    "fusion": score_fusion,
    "noise_projected": score_noise_projected,
    "routed": score_routed,
}


def score_node(node: dict, arrays: dict, emb: np.ndarray, machine: str, section: str) -> np.ndarray:
    if node["scorer"] not in SCORERS:
        raise ExportError(f"{BACKEND_JSON}: scorer {node['scorer']!r} unknown to this reference.py; export again")
    return SCORERS[node["scorer"]](node, arrays, emb, machine, section)


# ------------------------------------------------------------------------------------------------
# Audio: WAV files read and windowed as asdlib-infer reads them


def read_wav(path: Path, sample_rate: int, channel: int | str | None) -> np.ndarray:
    """Mono float32 in [-1, 1] of a PCM WAV at ``sample_rate``; ``channel``: the manifest's (an index,
    ``mean``, or None for mono files only)."""
    try:
        with wave.open(str(path), "rb") as f:
            rate, width, channels = f.getframerate(), f.getsampwidth(), f.getnchannels()
            raw = f.readframes(f.getnframes())
    except (wave.Error, EOFError) as e:
        raise ExportError(f"{path}: not a PCM WAV file ({e}); convert it, e.g. sox in.flac out.wav") from e
    if rate != sample_rate:
        raise ExportError(
            f"{path}: {rate} Hz, the model reads {sample_rate} Hz; resample it, e.g. sox in.wav -r {sample_rate} out.wav"
        )
    if width == 3:  # 24-bit: widen to int32 little-endian
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        data = (np.pad(b, ((0, 0), (1, 0))).view("<i4")[:, 0] / 2.0**31).astype(np.float32)
    else:
        kind = {1: np.uint8, 2: np.dtype("<i2"), 4: np.dtype("<i4")}[width]
        ints = np.frombuffer(raw, dtype=kind).astype(np.float64)
        data = ((ints - 128) / 128.0 if width == 1 else ints / 2.0 ** (8 * width - 1)).astype(np.float32)
    data = data.reshape(-1, channels)
    if channels == 1:
        return np.ascontiguousarray(data[:, 0])
    if channel is None:
        raise ExportError(f"{path}: {channels} channels, the model reads mono files (its data.channel is unset)")
    if channel == "mean":
        return np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))
    if not 0 <= int(channel) < channels:
        raise ExportError(f"{path}: channel {channel} requested but the file has {channels} channels")
    return np.ascontiguousarray(data[:, int(channel)])


def window_bounds(duration: float, window: float, hop: float, min_len: float) -> list[tuple[float, float]]:
    """The windows of a ``duration``-second file: asdlib.data.windows.window_bounds, restated here
    (tests check they agree) so that this file needs no asdlib."""
    dur_ms = int(np.floor(duration * 1000 + 1e-6))
    win_ms, hop_ms, min_ms = (int(round(x * 1000)) for x in (window, hop or window, min_len))
    if win_ms <= 0 or dur_ms <= win_ms:
        return [(0.0, dur_ms / 1000)]
    out: list[tuple[float, float]] = []
    start = 0
    while True:
        end = min(start + win_ms, dur_ms)
        if end - start == win_ms or not out or end - start >= min_ms:
            out.append((start / 1000, end / 1000))
        else:
            out.append(((dur_ms - win_ms) / 1000, dur_ms / 1000))
        if end >= dur_ms:
            return out
        start += hop_ms


# ------------------------------------------------------------------------------------------------


class Scorer:
    """An exported model: ONNX embedder plus numpy back end, thresholds and windowing."""

    def __init__(self, root: str | Path, int8: bool = False, threads: int = 0) -> None:
        self.root = Path(root)
        self.manifest = verify(self.root)
        self.config = json.loads((self.root / BACKEND_JSON).read_text(encoding="utf-8"))
        with np.load(self.root / BACKEND_NPZ, allow_pickle=False) as npz:
            self.arrays = {k: npz[k] for k in npz.files}
        model = self.root / (EMBEDDER_INT8 if int8 else EMBEDDER)
        if not model.is_file():
            raise ExportError(f"{model}: missing; export with --int8 to get the int8 embedder")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def section_of(self, machine: str, section: str | None) -> str:
        """``section``, or the machine's only one; errors list what the model knows."""
        thresholds = self.config["thresholds"]
        known = ", ".join(f"{m}/{s}" for m in sorted(thresholds) for s in sorted(thresholds[m]))
        if machine not in thresholds:
            raise ExportError(f"unknown machine '{machine}': the exported model knows {known}")
        sections = sorted(thresholds[machine])
        if section is None:
            if len(sections) > 1:
                raise ExportError(f"machine '{machine}' has sections {', '.join(sections)}; pass --section")
            return sections[0]
        if section not in sections:
            raise ExportError(f"unknown section '{section}' of machine '{machine}': the exported model knows {known}")
        return section

    def embed(self, windows: Sequence[np.ndarray], machine: str, batch_size: int = 8) -> np.ndarray:
        """Embeddings of mono float32 windows at the model's rate, in batches of equal-length windows."""
        machines = self.config["machines"]
        index = machines.index(machine) if machine in machines else -1
        out, start = [], 0
        while start < len(windows):
            stop = start + 1
            while stop < len(windows) and stop - start < batch_size and windows[stop].size == windows[start].size:
                stop += 1
            x = np.stack([np.asarray(w, dtype=np.float32) for w in windows[start:stop]])
            feeds = {
                "wavs": x,
                "lengths": np.full(len(x), x.shape[1], dtype=np.int64),
                "machines": np.full(len(x), index, dtype=np.int64),
            }
            out.append(self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0])
            start = stop
        return np.concatenate(out)

    def score_embeddings(self, emb: np.ndarray, machine: str, section: str) -> np.ndarray:
        return score_node(self.config["backend"], self.arrays, emb, machine, section).astype(np.float64)

    def score(self, windows: Sequence[np.ndarray], machine: str, section: str | None = None) -> np.ndarray:
        """Anomaly score of every window (higher = more anomalous) of ``machine``/``section``."""
        section = self.section_of(machine, section)
        return self.score_embeddings(self.embed(windows, machine), machine, section)

    def windows(self, path: Path) -> list[tuple[float, float, np.ndarray]]:
        """``(start, end, samples)`` of every window of a WAV file, as asdlib-infer cuts them."""
        audio, win = self.config["audio"], self.config["windowing"]
        rate = audio["sample_rate"]
        wav = read_wav(path, rate, audio["channel"])
        if wav.size / rate < audio["min_seconds"]:
            raise ExportError(
                f"{path}: {wav.size / rate:.3f} s long, shorter than the model's minimum of {audio['min_seconds']} s"
            )
        if not win["window_seconds"]:
            return [(0.0, wav.size / rate, wav)]
        bounds = window_bounds(wav.size / rate, win["window_seconds"], win["hop_seconds"], win["min_seconds"])
        return [(s, e, wav[int(round(s * rate)) : int(round(e * rate))]) for s, e in bounds]

    def threshold(self, machine: str, section: str, domain: str | None = None) -> float:
        """The domain-unknown threshold (the maximum over the domains), or ``domain``'s own."""
        if domain is None:
            return float(self.config["thresholds"][machine][section])
        own = self.config["domain_thresholds"][machine][section]
        if domain not in own:
            raise ExportError(f"unknown domain '{domain}' of {machine}/{section}: the model knows {', '.join(own)}")
        return float(own[domain])

    def score_file(self, path: Path, machine: str, section: str | None = None, domain: str | None = None) -> dict:
        """One recording's row: its windows' scores aggregated as the manifest says, threshold, decision."""
        section = self.section_of(machine, section)
        threshold = self.threshold(machine, section, domain)
        cut = self.windows(path)
        scores = self.score([w for _, _, w in cut], machine, section)
        how = self.config["windowing"]["aggregate"]
        value = float(scores.max() if how == "max" else scores.mean())
        return {
            "file": str(path),
            "machine": machine,
            "section": section,
            "score": value,
            "threshold": threshold,
            "decision": "anomaly" if value > threshold else "normal",
            "windows": [[s, e, float(v)] for (s, e, _), v in zip(cut, scores)],
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="reference.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model", type=Path, default=Path(__file__).resolve().parent, help="export directory (default: this file's)"
    )
    p.add_argument("--machine", required=True)
    p.add_argument("--section", help="default: the machine's only section")
    p.add_argument("--domain", help="the recordings' domain when known: its own threshold (default: the maximum)")
    p.add_argument("--int8", action="store_true", help="score with the int8 embedder")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    p.add_argument("wavs", nargs="+", type=Path)
    args = p.parse_args(argv)
    try:
        scorer = Scorer(args.model, args.int8, args.threads)
        rows = [scorer.score_file(w, args.machine, args.section, args.domain) for w in args.wavs]
    except (ExportError, OSError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["file", "machine", "section", "score", "threshold", "decision"])
    for r in rows:
        out.writerow(
            [r["file"], r["machine"], r["section"], f"{r['score']:.6f}", f"{r['threshold']:.6f}", r["decision"]]
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
