"""results.json (docs/design.md §5 contract) and RESULTS.md (the papers' table layout) for an evaluation."""

from __future__ import annotations

import json
from pathlib import Path

from asdlib.io.atomic import atomic_write
from asdlib.metrics.official import Evaluation, metric_of

COLUMNS_2021 = (
    ("auc_source", "AUC (source)"),
    ("auc_target", "AUC (target)"),
    ("pauc_source", "pAUC (source)"),
    ("pauc_target", "pAUC (target)"),
)
COLUMNS_2022 = (("auc_source", "AUC (source)"), ("auc_target", "AUC (target)"), ("pauc", "pAUC"))


def results_dict(ev: Evaluation) -> dict:
    """The results.json object: the contract keys first, then year, means and skipped groups."""
    return {
        "official_score": ev.official_score,
        "metric": ev.metric,
        "per_machine": ev.per_machine,
        "year": ev.year,
        "machine_means": ev.machine_means,
        "summary": ev.summary,
        "skipped": list(ev.skipped),
    }


def write_results_json(ev: Evaluation, path: Path) -> None:
    with atomic_write(path) as f:
        json.dump(results_dict(ev), f, indent=2)
        f.write("\n")


def load_results_json(path: Path) -> Evaluation:
    """Read back a results.json written by :func:`write_results_json` (e.g. to tabulate many runs)."""
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    try:
        return Evaluation(
            year=d["year"],
            metric=d["metric"],
            official_score=d["official_score"],
            per_machine=d["per_machine"],
            machine_means=d["machine_means"],
            summary=d["summary"],
            skipped=tuple(d.get("skipped", ())),
        )
    except KeyError as e:
        raise ValueError(f"{path}: not an asdlib results.json (missing key {e})") from None


def render_results_md(ev: Evaluation, title: str) -> str:
    """Markdown tables in the papers' layout; metric values in percent."""
    lines = [
        f"# {title}",
        "",
        f"- metric: {ev.metric}",
        f"- official score: **{_pct(ev.official_score)}** ({ev.official_score:.6f})",
    ]
    if ev.skipped:
        lines.append(f"- not evaluated (no ground truth): {', '.join(ev.skipped)}")
    lines.append("")
    rule = metric_of(ev.year).rule
    if rule == "amean_per_type":
        lines += _table_2020(ev)
    else:
        columns = COLUMNS_2021 if rule == "hmean_per_domain" else COLUMNS_2022
        lines += _table_sections(ev, columns)
    return "\n".join(lines) + "\n"


def write_results_md(ev: Evaluation, path: Path, title: str) -> None:
    with atomic_write(path) as f:
        f.write(render_results_md(ev, title))


def _table_sections(ev: Evaluation, columns: tuple[tuple[str, str], ...]) -> list[str]:
    per_domain = metric_of(ev.year).rule == "hmean_per_domain"
    lines = [
        "Values in %. "
        + (
            "AUC and pAUC per domain on that domain's clips."
            if per_domain
            else "AUC(domain): that domain's normals vs all anomalies of the section; pAUC on the whole section."
        ),
        "",
        "| machine | section | " + " | ".join(label for _, label in columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for machine, sections in ev.per_machine.items():
        for section, metrics in sections.items():
            cells = [_pct(metrics[key]) if key in metrics else "-" for key, _ in columns]
            lines.append(f"| {machine} | {section} | " + " | ".join(cells) + " |")
    for stat in ("hmean", "amean"):
        cells = [_pct(ev.summary[f"{stat}_{key}"]) if f"{stat}_{key}" in ev.summary else "-" for key, _ in columns]
        lines.append(f"| **{stat[0]}-mean** | | " + " | ".join(cells) + " |")
    lines.append("")
    if per_domain:
        lines.append(
            f"h-mean over both domains: AUC {_pct(ev.summary['hmean_auc'])}, "
            f"pAUC {_pct(ev.summary['hmean_pauc'])}; official score (h-mean of all AUC and pAUC): "
            f"**{_pct(ev.official_score)}**"
        )
    else:
        lines.append(
            f"a-mean of all values: {_pct(ev.summary['amean_total'])}; official score "
            f"(h-mean of all AUC(source), AUC(target), pAUC): **{_pct(ev.official_score)}**"
        )
    return lines


def _table_2020(ev: Evaluation) -> list[str]:
    lines = ["Values in %. AUC and pAUC per machine ID.", "", "| machine | ID | AUC | pAUC |", "|---|---|---:|---:|"]
    for machine, sections in ev.per_machine.items():
        for section, metrics in sections.items():
            lines.append(f"| {machine} | {section} | {_pct(metrics['auc'])} | {_pct(metrics['pauc'])} |")
    lines += ["", "Per machine type (arithmetic mean over IDs):", "", "| machine | AUC | pAUC |", "|---|---:|---:|"]
    for machine, means in ev.machine_means.items():
        lines.append(f"| {machine} | {_pct(means['auc'])} | {_pct(means['pauc'])} |")
    lines.append(f"| **a-mean** | {_pct(ev.summary['amean_auc'])} | {_pct(ev.summary['amean_pauc'])} |")
    lines += ["", f"official score ((a-mean AUC + a-mean pAUC) / 2): **{_pct(ev.official_score)}**"]
    return lines


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"
