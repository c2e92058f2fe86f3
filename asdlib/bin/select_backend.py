"""Rank back ends on a labelled set without retraining, to choose a system on a dev set.

For each experiment (stage 4 done), every ``--kinds`` back end on its own embeddings and on the
clips' mean log-mel (taken from a log-mel experiment's stage-4 embeddings, which is what
``features: logmel`` appends), and every label-free fusion of up to ``--max_members`` of them, is
fitted on the training sets and scored with the year's official metric on ``--set``. Choose on a
dev set and report the choice on the eval set: ranking on the set you report overfits it.

With ``--family TAG=DATA_ROOT:EXP_ROOT`` (repeated), the experiments and ``--logmel_exp`` are names
under each family's EXP_ROOT, and candidates are ranked by their worst family's official score: the
written protocol that chose the mini's default on the dev sets of two corpus families (a default that
wins on one family by losing on another is not chosen). The choice is the best row whose back end
reads the experiment's own embedding (a row on the log-mel alone is a training-free baseline, not a
back end for a trained model). With ``--untrained NAME`` (an experiment of the same pipeline with
the untrained upstream), each row also says whether it meets the rule: on every family, it beats
the log-mel kNN (``knn on logmel``), NAME with the same back end, and its own log-mel member alone.
The rule is reported, not used to rank: ranking its rows first chose, on 2026-12-07 and again on
2026-12-08, a back end whose worst family was 2-5 points below the best row's and which lost to the
then default on every family's eval set (egs/mini/RESULTS.md). The untrained experiment's own rows
cannot meet it.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asdlib.backends.bank import bank_sets, embeddings_for, make_backend, own_widths
from asdlib.backends.fusion import FusionMember, FusionSettings
from asdlib.config import BackendConfig, TrainConfig, load_train_config
from asdlib.data.datadir import Utt, read_data_dir
from asdlib.io.atomic import atomic_write_text
from asdlib.metrics.official import official_score
from asdlib.metrics.records import scored_utts
from asdlib.registry import BACKENDS
from asdlib.utils import run_main, setup_logging
from asdlib.years import metric_years

log = logging.getLogger(__name__)

#: every registered back end that scores one stream (the fusion combines them)
KINDS = tuple(k for k in BACKENDS.names() if k != "fusion")
Member = tuple[str, str]  # (kind, features): features "model" (the experiment's embedder) or "logmel"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp_dirs", nargs="+", type=Path, help="experiments whose stage-4 embeddings are ranked")
    p.add_argument(
        "--logmel_exp",
        type=Path,
        required=True,
        help="an experiment with embedder: logmel (stage 4 done): the log-mel stream of the candidates",
    )
    p.add_argument("--data_root", type=Path, default=Path("data"))
    p.add_argument(
        "--family",
        action="append",
        default=[],
        metavar="TAG=DATA_ROOT:EXP_ROOT",
        help="rank on several corpus families by the worst one (exp_dirs and --logmel_exp are then names "
        "under each EXP_ROOT; --data_root is ignored)",
    )
    p.add_argument("--set", required=True, help="the labelled set to rank on (a dev set, e.g. dev_test)")
    p.add_argument(
        "--year", type=int, required=True, choices=metric_years(), help="challenge year whose official metric ranks"
    )
    p.add_argument(
        "--untrained",
        help="the untrained-upstream experiment (one of exp_dirs): rank rows that beat it, the log-mel kNN "
        "and their own log-mel member on every family first",
    )
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated back-end kinds to combine")
    p.add_argument("--max_members", type=int, default=2, help="largest fusion (1: single back ends only)")
    p.add_argument("--out", type=Path, help="also write the ranking (Markdown) here")
    p.add_argument("--verbose", type=int, default=1)
    return p


def candidates(kinds: list[str], max_members: int) -> list[list[Member]]:
    """Single back ends on either stream, then fusions of 2..max_members distinct ones."""
    singles = [(k, f) for f in ("model", "logmel") for k in kinds]
    out = [[s] for s in singles]
    for n in range(2, max_members + 1):
        out += [list(c) for c in itertools.combinations(singles, n)]
    return out


def backend_config(base: BackendConfig, members: list[Member]) -> BackendConfig:
    """A single kind, or a fusion of these members, each with its kind's default settings; a fusion
    combines as ``base`` does when ``base`` is one (else by the mean)."""
    if len(members) == 1:
        return BackendConfig(kind=members[0][0])
    combine = getattr(base.conf, "combine", "mean")
    return BackendConfig(
        kind="fusion", conf=FusionSettings([FusionMember(kind=k, features=f) for k, f in members], combine)
    )


def describe(members: list[Member]) -> str:
    return " + ".join(f"{k}" if f == "model" else f"{k} on logmel" for k, f in members)


def _check_same_logmel(cfg: TrainConfig, exp: Path, logmel_cfg: TrainConfig, logmel_exp: Path) -> None:
    if logmel_cfg.embedder != "logmel":
        raise ValueError(f"--logmel_exp {logmel_exp}: embedder is {logmel_cfg.embedder}, not logmel")
    if (cfg.logmel, cfg.data.sample_rate) != (logmel_cfg.logmel, logmel_cfg.data.sample_rate):
        raise ValueError(
            f"{exp}: its logmel section or data.sample_rate differ from those of --logmel_exp {logmel_exp}; "
            "features: logmel would not be those embeddings (align the configs)"
        )


def rank(
    exp: Path, logmel_exp: Path, data_root: Path, set_name: str, year: int, cands: list[list[Member]]
) -> list[tuple[float, float, str]]:
    """Official score and h-mean AUC(target) of every candidate on ``set_name`` for one experiment, best first."""
    cfg, logmel_cfg = load_train_config(exp / "config.yaml"), load_train_config(logmel_exp / "config.yaml")
    _check_same_logmel(cfg, exp, logmel_cfg, logmel_exp)

    def stack(utts: list[Utt], name: str) -> tuple[np.ndarray, int]:
        """The embedder's columns (without an appended log-mel), then the log-mel's; and the former's width."""
        own = embeddings_for(utts, exp / "embed" / name / "embeddings.scp")
        own = own[:, : own_widths(cfg, own.shape[1])[0]]
        return np.concatenate(
            [own, embeddings_for(utts, logmel_exp / "embed" / name / "embeddings.scp")], axis=1
        ), own.shape[1]

    sets = {name: read_data_dir(data_root / name) for name in bank_sets(cfg)}
    train_utts = [u for utts in sets.values() for u in utts]
    train = np.concatenate([stack(utts, name)[0] for name, utts in sets.items()])
    test_utts = read_data_dir(data_root / set_name)
    test, n_model = stack(test_utts, set_name)
    n_logmel = test.shape[1] - n_model
    out = []
    for members in tqdm(cands, desc=f"rank {exp.name}", file=sys.stderr, mininterval=30.0, ascii=True):
        bcfg = backend_config(cfg.backend, members)
        # the columns make_backend expects: one stream for a single back end; for a fusion the
        # model's, then the log-mel's when a member reads it (as stage 4 appends them)
        if len(members) == 1:
            c, widths = (
                (slice(0, n_model), [n_model]) if members[0][1] == "model" else (slice(n_model, None), [n_logmel])
            )
        else:
            c, widths = (slice(None), [n_model, n_logmel]) if bcfg.uses_logmel else (slice(0, n_model), [n_model])
        scores = make_backend(bcfg, widths).fit(train_utts, train[:, c]).score(test_utts, test[:, c])
        ev = official_score(year, scored_utts(test_utts, {u.utt_id: float(s) for u, s in zip(test_utts, scores)}))
        out.append((ev.official_score, ev.summary.get("hmean_auc_target", float("nan")), describe(members)))
    return sorted(out, key=lambda r: -r[0])


def meets_rule(table: dict[tuple[str, str], list[tuple[float, float]]], key: tuple[str, str], untrained: str) -> bool:
    """Whether a row beats, on every family, the log-mel kNN, the untrained experiment with the same
    back end, and its own log-mel member alone (a fusion's first member on the log-mel)."""
    exp, what = key
    if exp == untrained or (untrained, what) not in table:
        return False
    members = what.split(" + ")
    own_logmel = [m for m in members if m.endswith(" on logmel")]
    rivals = [(exp, "knn on logmel"), (untrained, what)]
    if len(members) > 1 and own_logmel:
        rivals.append((exp, own_logmel[0]))
    return all(
        table[key][i][0] > table[rival][i][0]
        for rival in rivals
        if rival != key and rival in table
        for i in range(len(table[key]))
    )


def parse_family(text: str) -> tuple[str, Path, Path]:
    """``TAG=DATA_ROOT:EXP_ROOT`` -> (tag, data root, exp root)."""
    tag, sep, roots = text.partition("=")
    data_root, sep2, exp_root = roots.partition(":")
    if not (sep and sep2 and tag and data_root and exp_root):
        raise ValueError(f"--family {text!r}: expected TAG=DATA_ROOT:EXP_ROOT, e.g. d=data_d:exp_d")
    return tag, Path(data_root), Path(exp_root)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"--kinds: unknown {unknown or 'empty list'}; choose from {','.join(KINDS)}")
    if args.max_members < 1:
        raise ValueError(f"--max_members must be >= 1, got {args.max_members}")
    cands = candidates(kinds, args.max_members)
    families = [parse_family(f) for f in args.family] or [("", args.data_root, Path())]
    # per (experiment, back end): (official, AUC(target)) of each family
    table: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _, data_root, exp_root in families:
        for exp in args.exp_dirs:
            for score, target, what in rank(
                exp_root / exp, exp_root / args.logmel_exp, data_root, args.set, args.year, cands
            ):
                table.setdefault((exp.name, what), []).append((score, target))
    meets = {key: meets_rule(table, key, args.untrained) for key in table} if args.untrained else {}
    rows = sorted(((min(s for s, _ in v), exp, what, v) for (exp, what), v in table.items()), key=lambda r: -r[0])
    chosen = next((r for r in rows if reads_model(r[2]) and r[1] != args.untrained), rows[0])
    tags = [tag for tag, _, _ in families]
    per_family = "".join(f" {t}: official (AUC target) |" for t in tags) if args.family else ""
    lines = [
        f"Back ends ranked on {args.set} ({len(cands)} candidates per experiment; official score, %"
        + (f"; ranked by the worst of families {', '.join(tags)}" if args.family else "")
        + "):",
        "",
        f"| rank | experiment | back end | {'worst official' if args.family else 'official score'} |{per_family}"
        + (" meets the rule |" if meets else ""),
        "|---:|---|---|---:|" + "---:|" * (len(tags) if args.family else 0) + ("---|" if meets else ""),
    ]
    for i, (worst, exp, what, v) in enumerate(rows, 1):
        cells = "".join(f" {100 * s:.2f} ({100 * t:.2f}) |" for s, t in v) if args.family else ""
        rule = (" yes |" if meets[(exp, what)] else " no |") if meets else ""
        lines.append(f"| {i} | {exp} | {what} | {100 * worst:.2f} |{cells}{rule}")
    lines += ["", f"Chosen: {chosen[1]} with {chosen[2]} ({100 * chosen[0]:.2f} %)."]
    text = "\n".join(lines) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    print(text, end="")
    log.info("chosen on %s: %s with %s (%.2f %%)", args.set, chosen[1], chosen[2], 100 * chosen[0])
    return 0


def reads_model(what: str) -> bool:
    """Whether a back end (as :func:`describe` writes it) has a member on the experiment's own embedding."""
    return any(not m.endswith(" on logmel") for m in what.split(" + "))


if __name__ == "__main__":
    raise SystemExit(run_main(main))
