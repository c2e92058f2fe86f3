"""asdlib-enroll under a hard domain shift: does enrolling a few target-domain normals fix the target?

For every machine of the packed model that the corpus family has: N target-domain normal clips
(``--counts``, default 5, 10 and 50) are drawn from the family's sound model
(:func:`asdlib.synth.streams.stream_clips`, one clip per episode, so each has an operating condition
of its own like the test clips; these are new draws, never test clips), written as WAV files and
enrolled with ``asdlib-enroll --domain target`` into a new pack. On the machine's test clips of the
corpus (``<corpus>/{dev,eval}_data/raw/<machine>/test/``, domain and label from
``synth_metadata.csv``, which also maps the blinded eval names) it reports, before and after:

- AUC(target): target-domain normals against all anomalies (both domains), as DCASE scores it;
- FA(target): the share of target-domain normals above the pack's domain-unknown threshold, next to
  the rate it promises (its ``bound``: the largest domain's, asdlib.backends.calibration), and
  FA(source) likewise.

The test clips are embedded once: an enrolled pack holds the parent's model.pt byte for byte, so
only the bank and the threshold change. The enrolled packs are kept under ``--work_dir``.
Run: ``python benchmarks/bench_enroll.py --packed egs/mini/exp/<tag>/packed --corpus <root> --family d``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from asdlib.backends.packed import Packed, load_packed
from asdlib.bin import enroll
from asdlib.bin.infer import embed_recording
from asdlib.data.windows import aggregate
from asdlib.metrics.official import auc
from asdlib.synth.corpus import METADATA_FILE
from asdlib.synth.streams import stream_clips, stream_config


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packed", type=Path, required=True, help="packed model trained on the corpus")
    p.add_argument("--corpus", type=Path, required=True, help="the corpus root (holds synth_metadata.csv)")
    p.add_argument("--family", default="d", help="corpus family of the corpus (its sound model draws the clips)")
    p.add_argument("--counts", type=int, nargs="+", default=[5, 10, 50], help="target clips enrolled (N)")
    p.add_argument("--machines", nargs="*", help="only these machines (default: every machine of pack and family)")
    p.add_argument("--work_dir", type=Path, default=Path("/tmp/asdlib_bench/enroll"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the results here (JSON)")
    return p


def test_clips(corpus: Path, machine: str) -> list[tuple[Path, str, str]]:
    """(path, domain, label) of the machine's test clips, from the corpus's metadata."""
    with open(corpus / METADATA_FILE, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["machine"] == machine and r["split"] == "test"]
    if not rows:
        raise SystemExit(f"{corpus / METADATA_FILE}: no test clips of machine {machine}")
    return [
        (corpus / f"{r['dataset']}_data" / "raw" / machine / "test" / r["file_name"], r["domain"], r["label"])
        for r in rows
    ]


def metrics(packed: Packed, machine: str, section: str, embs: list[np.ndarray], truth: list[tuple[str, str]]) -> dict:
    how = packed.trained.cfg.data.window_aggregate
    scores = np.array([aggregate(packed.score_embeddings(e, machine, section), how) for e in embs])
    domain = np.array([d for d, _ in truth])
    anomaly = np.array([lab == "anomaly" for _, lab in truth])
    thr = packed.threshold(machine, section)
    keep = anomaly | (domain == "target")
    bound = packed.manifest.thresholds[machine][section].bound  # the rate the threshold promises
    out = {"threshold": thr, "bound": bound, "auc_target": auc(anomaly[keep].astype(int), scores[keep])}
    for d in ("target", "source"):
        normal = ~anomaly & (domain == d)
        out[f"fa_{d}"] = float(np.mean(scores[normal] > thr))
    return out


def enrol(parent: Path, machine: str, section: str, family: str, n: int, out: Path) -> Packed:
    """A new pack at ``out`` with ``n`` fresh target-domain clips of ``machine`` enrolled."""
    cfg = stream_config(family)
    with tempfile.TemporaryDirectory(prefix="bench-enroll-") as tmp:
        wavs = []
        for episode in range(n):
            samples = next(stream_clips(family, machine, "target", cfg.seconds, episode=episode))
            wavs.append(Path(tmp) / f"target_{episode:03d}.wav")
            sf.write(str(wavs[-1]), samples.astype(np.float32), cfg.sample_rate)
        argv = ["--packed", str(parent), "--machine", machine, "--section", section, "--domain", "target"]
        enroll.main([*argv, "--out", str(out), "--force", "--verbose", "0", *map(str, wavs)])
    return load_packed(out)


def main() -> int:
    args = get_parser().parse_args()
    torch.set_num_threads(args.threads)
    packed = load_packed(args.packed)
    cfg = stream_config(args.family)
    family_machines = set(cfg.dev_machines + cfg.eval_machines)
    wanted = set(args.machines or family_machines)
    results = []
    for machine, section in packed.known():
        if machine not in family_machines or machine not in wanted:
            continue
        clips = test_clips(args.corpus, machine)
        with tqdm(desc=f"embed {machine}", unit="window", file=sys.stderr, disable=None) as bar:
            embs = [embed_recording(packed, path, machine, "cpu", 8, bar)[1] for path, _, _ in clips]
        truth = [(d, lab) for _, d, lab in clips]
        before = metrics(packed, machine, section, embs, truth)
        for n in args.counts:
            out = args.work_dir / f"{machine}_{section}_n{n}"
            after = metrics(enrol(args.packed, machine, section, args.family, n, out), machine, section, embs, truth)
            results.append({"machine": machine, "section": section, "n": n, "before": before, "after": after})
    if not results:
        raise SystemExit(f"{args.packed}: no machine of family {args.family} (of {sorted(wanted)}) in the pack")
    print(
        "| machine | N | AUC(target) before | after | promised FA before | after | FA(target) before | after "
        "| FA(source) before | after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        b, a = r["before"], r["after"]
        print(
            f"| {r['machine']}/{r['section']} | {r['n']} | {100 * b['auc_target']:.1f} | {100 * a['auc_target']:.1f} "
            f"| {100 * b['bound']:.1f} | {100 * a['bound']:.1f} "
            f"| {100 * b['fa_target']:.1f} | {100 * a['fa_target']:.1f} "
            f"| {100 * b['fa_source']:.1f} | {100 * a['fa_source']:.1f} |"
        )
    print(
        f"\ntarget FPR of the thresholds: {100 * packed.manifest.calibration.target_fpr:.1f} %; promised FA: the "
        "conformal bound of the domain-unknown threshold (the largest of the domains'); percent throughout"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"packed": str(args.packed), "family": args.family, "results": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
