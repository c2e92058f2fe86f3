"""Diagnostic plots of an evaluation: ROC curves per machine/section and score histograms per machine.

Figures are drawn on matplotlib's Agg canvas without pyplot (no global backend state, safe in batch
jobs), saved without the version metadata so the same scores give byte-identical PNGs, and written
atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from asdlib.io.atomic import atomic_write
from asdlib.metrics.official import auc, domain_mask, metric_of
from asdlib.metrics.records import ScoredUtt
from asdlib.years import get_year

HIST_BINS = 30


def roc_plot_name(machine: str, section: str) -> str:
    return f"roc_{machine}_section_{section}.png"


def hist_plot_name(machine: str) -> str:
    return f"hist_{machine}.png"


def plot_roc(year: int, machine: str, section: str, records: Sequence[ScoredUtt], path: Path) -> None:
    """ROC curves of one machine/section: one per domain, on the clips the year's AUC(domain) uses."""
    y = np.array([1 if r.label == "anomaly" else 0 for r in records])
    s = np.array([r.score for r in records], dtype=float)
    d = np.array([r.domain for r in records])
    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    by_domain = get_year(year).has_domains
    domains = ("source", "target") if by_domain else ("source",)
    for domain in domains:
        mask = domain_mask(year, y, d, domain)
        if not ((y[mask] == 0).any() and (y[mask] == 1).any()):
            continue
        fpr, tpr, _ = roc_curve(y[mask], s[mask])
        label = domain if by_domain else "all clips"
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc(y[mask], s[mask]):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    max_fpr = metric_of(year).max_fpr
    ax.axvline(max_fpr, color="grey", linestyle="--", linewidth=1, label=f"pAUC limit (FPR {max_fpr})")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=f"{machine} section {section}",
    )
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    _save(fig, path)


def plot_score_histogram(machine: str, records: Sequence[ScoredUtt], path: Path) -> None:
    """Histogram of the machine's test scores, normal vs anomaly, on shared bins."""
    scores = np.array([r.score for r in records], dtype=float)
    bins = np.histogram_bin_edges(scores, bins=HIST_BINS)
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, color in (("normal", "tab:blue"), ("anomaly", "tab:red")):
        values = [r.score for r in records if r.label == label]
        if values:
            ax.hist(values, bins=bins, alpha=0.6, color=color, label=f"{label} ({len(values)})")
    ax.set(xlabel="anomaly score", ylabel="clips", title=f"{machine}: test scores")
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)


def write_plots(year: int, records: Sequence[ScoredUtt], out_dir: Path) -> list[Path]:
    """All plots of a labelled set: ROC per machine/section, histogram per machine; returns the paths."""
    by_section: dict[tuple[str, str], list[ScoredUtt]] = {}
    by_machine: dict[str, list[ScoredUtt]] = {}
    for r in records:
        if r.label == "unknown":
            continue
        by_section.setdefault((r.machine, r.section), []).append(r)
        by_machine.setdefault(r.machine, []).append(r)
    written = []
    for (machine, section), utts in by_section.items():
        path = Path(out_dir) / roc_plot_name(machine, section)
        plot_roc(year, machine, section, utts, path)
        written.append(path)
    for machine, utts in by_machine.items():
        path = Path(out_dir) / hist_plot_name(machine)
        plot_score_histogram(machine, utts, path)
        written.append(path)
    return written


def plot_families(set_name: str, scores: dict[str, tuple[float, float]], families: tuple[str, str], path: Path) -> None:
    """Official score of every system on one corpus family against another: a default that
    generalises sits above and to the right of the baselines, not only on one axis."""
    fig = Figure(figsize=(6.5, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs, ys = (np.array([100 * v[i] for v in scores.values()]) for i in (0, 1))
    ax.scatter(xs, ys, color="tab:blue")
    for name, x, y in zip(scores, xs, ys):
        ax.annotate(name, (x, y), xytext=(3, 3), textcoords="offset points", fontsize="x-small")
    lo, hi = min(xs.min(), ys.min()) - 2, max(xs.max(), ys.max()) + 2
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", linewidth=1)
    ax.set(
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel=f"family {families[0]}: official score (%)",
        ylabel=f"family {families[1]}: official score (%)",
        title=f"{set_name}: every system on two corpus families",
    )
    fig.tight_layout()
    _save(fig, path)


def plot_losses(runs: dict[str, Sequence[dict]], path: Path) -> Figure:
    """Training loss per epoch (``train_losses.json`` records), one panel per loss term, one line per
    run, log scale: a continued run (domain-adaptive pre-training) is drawn after the run it
    continues when the caller offsets its epochs."""
    terms = sorted({t for records in runs.values() for r in records for t in r["terms"]})
    fig = Figure(figsize=(4.5 * max(1, len(terms)), 4), dpi=100)
    FigureCanvasAgg(fig)
    for i, term in enumerate(terms):
        ax = fig.add_subplot(1, len(terms), i + 1)
        for name, records in runs.items():
            points = [(r["epoch"], r["terms"][term]) for r in records if term in r["terms"]]
            if points:
                ax.plot(*zip(*points), marker="o", label=name)
        ax.set(yscale="log", xlabel="epoch", ylabel=f"{term} loss", title=term)
        ax.legend(fontsize="x-small")
    fig.tight_layout()
    _save(fig, path)
    return fig


def _save(fig: Figure, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", metadata={"Software": None})
