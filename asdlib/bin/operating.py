"""Stage 6: operating figures of the scored test sets at the thresholds stage 7 will pack.

The thresholds are calibrated exactly as stage 7 calibrates them (:func:`asdlib.backends.calibration.
calibrate`, same ``--fpr`` and ``--folds``, deterministic), per machine/section and per domain. For
each test set with ground truth, the false-alarm rate on its normals is reported per domain against
the rate promised, with false alarms per hour (from ``utt2dur``) and precision, recall and F1, with
the domain unknown and known (:mod:`asdlib.metrics.operating`):
``exp/<tag>/results/<set>/operating.{md,json}``, next to the thresholds (``thresholds.json``). Sets
without ground truth are skipped; with none at all, nothing is calibrated or written.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from asdlib.backends.bank import bank_features, noise_features, noise_projection
from asdlib.backends.calibration import calibrate, describe
from asdlib.config import load_train_config
from asdlib.data.datadir import read_data_dir, read_kv
from asdlib.io.ark import read_scores
from asdlib.io.atomic import atomic_write_text
from asdlib.metrics.operating import SectionThresholds, operating_dicts, operating_points, render_operating_md
from asdlib.metrics.records import scored_utts
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", type=Path, required=True, help="experiment dir after stage 5 (exp/<tag>)")
    p.add_argument("--data_root", type=Path, default=Path("data"))
    p.add_argument("--test_sets", nargs="+", required=True, help="scored sets to report (exp/<tag>/scores/<set>)")
    p.add_argument("--fpr", type=float, default=0.05, help="false-alarm rate the thresholds aim at (stage 7's --fpr)")
    p.add_argument("--folds", type=int, default=5, help="calibration folds over the training normals (stage 7's)")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if not 0.0 < args.fpr < 1.0 or args.folds < 2:
        raise ValueError(f"--fpr must be in (0, 1) and --folds >= 2, got {args.fpr} and {args.folds}")
    scps = [args.exp_dir / "scores" / s / "scores.scp" for s in args.test_sets]
    missing = [scp for scp in scps if not scp.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no scores; run stage 5 for this set first")
    labelled = {}
    for name, scp in zip(args.test_sets, scps):
        data_dir = args.data_root / name
        records = scored_utts(
            read_data_dir(data_dir), read_scores(scp), scores_source=str(scp), data_source=str(data_dir)
        )
        if any(r.label in ("normal", "anomaly") for r in records):
            labelled[name] = records
        else:
            log.warning("%s: no ground truth, no operating figures", data_dir)
    if not labelled:  # blind sets only (--skip_unlabelled true): nothing to measure, nothing calibrated
        return 0
    cfg = load_train_config(args.exp_dir / "config.yaml")
    embed_dir = args.exp_dir / "embed"
    utts, embeddings, widths = bank_features(cfg, args.data_root, embed_dir)
    projection = noise_projection(cfg.backend, widths, noise_features(cfg, args.data_root, embed_dir))
    calibration = calibrate(utts, embeddings, cfg.backend, widths, args.fpr, args.folds, projection)
    for machine, sections in calibration.items():
        for section, entry in sections.items():
            log.info("%s", describe(machine, section, entry, args.fpr))
    thresholds = {(m, s): SectionThresholds.from_entry(e) for m, secs in calibration.items() for s, e in secs.items()}
    body = {"target_fpr": args.fpr, "folds": args.folds, "thresholds": calibration}
    for name, records in labelled.items():
        data_dir = args.data_root / name
        durations = (
            {k: float(v) for k, v in read_kv(data_dir / "utt2dur").items()} if (data_dir / "utt2dur").is_file() else {}
        )
        points = operating_points(records, thresholds, durations)
        out = args.exp_dir / "results" / name
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "thresholds.json", json.dumps(body, indent=1, allow_nan=False) + "\n")
        title = f"Operating figures of {name} at target FPR {100 * args.fpr:.1f}%"
        atomic_write_text(out / "operating.md", render_operating_md(points, title))
        atomic_write_text(out / "operating.json", json.dumps(operating_dicts(points), indent=1, allow_nan=False) + "\n")
        for rule in ("unknown", "known"):
            broken = [p for p in points if p.rule == rule and p.machine != "all" and p.domain != "all" and not p.kept]
            log.info(
                "%s, domain %s: the false-alarm promise %s (%s)",
                name,
                rule,
                "holds in every machine/section and domain" if not broken else "is broken",
                ", ".join(
                    f"{p.machine}/{p.section} {p.domain} {100 * p.fpr:.1f}% > {100 * p.promised_fpr:.1f}%"
                    for p in broken
                )
                or "see operating.md",
            )
        log.info("%s: operating figures in %s", name, out / "operating.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
