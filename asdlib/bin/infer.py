"""Score new recordings with a packed model (stage 7): a yes/no decision per recording.

    asdlib-infer --packed packed/ --machine pump new/*.flac > decisions.csv
    asdlib-infer --packed packed.tar --list recordings.list --format json --out decisions.json

Inputs are files, folders (every file soundfile reads below them, symlinked folders followed once)
or, with ``--list``, a file of ``<path> [<machine> [<section>]]`` lines (relative to the list's
folder). The machine comes from ``--machine`` or the list; the
section from ``--section`` or, when the machine has one, from the model. Recordings are read as in
training (resampled, channel, windows of long recordings), embedded in batches and scored against
the packed kNN banks. Output (stdout or ``--out``): CSV with a header, or JSON; one ``file`` row per
recording (its score aggregates its windows') and, for a recording of several windows, one
``window`` row per window; a recording that cannot be scored gets an ``error`` row with the reason,
the others are still scored and written (exit code 3; ``--strict`` stops at the first instead).
Text cells that a spreadsheet would run as a formula (``= + - @``) get a leading apostrophe. ``decision`` is ``anomaly`` when the score exceeds the threshold
calibrated at the packed false-alarm rate, else ``normal``. ``--report report.png``: histogram of
the scores with the thresholds, and the window scores over time of the long recordings.
``--explain DIR``: why each recording scored as it did (:mod:`asdlib.explain`): per recording a PNG
of its spectrogram with the attribution map (``--explain_grid`` time segments x mel bands; the
window scores over time for a long recording) and a JSON of its ``--explain_top`` regions (time
span, band in Hz, contribution to the score).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asdlib.backends.packed import Packed, load_packed
from asdlib.data.audio import AudioError, load_wav
from asdlib.data.custom import AUDIO_SUFFIXES, audio_files
from asdlib.data.stream import SKIP_HINT, iter_windows, plan
from asdlib.data.windows import aggregate
from asdlib.devices import resolve_device
from asdlib.explain import ExplainError, Explanation, Grid, Scorer, explain
from asdlib.io.atomic import atomic_write, atomic_write_text, check_writable
from asdlib.metrics.operating import (
    OperatingPoint,
    SectionThresholds,
    operating_dicts,
    operating_points,
    render_operating_md,
)
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)
COLUMNS = ("file", "kind", "machine", "section", "start", "end", "score", "threshold", "decision", "error")
#: exit codes (docs/design.md §5): 1 nothing written (bad input, a refused pack, --strict), 2 a bad
#: command line (argparse), 3 some recordings failed, 4 the report failed, 130 interrupted
EXIT_SOME_FAILED = 3
TRUTH = ("normal", "anomaly")  # the labels of --labels
EXIT_REPORT_FAILED = 4


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asdlib-infer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--packed", type=Path, required=True, help="exp/<tag>/packed (a copy of it) or packed.tar")
    p.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        help="recordings (any format soundfile reads) or folders of them; after --, "
        "names that start with - (asdlib-infer --packed p --machine fan -- -dash.wav)",
    )
    p.add_argument("--list", type=Path, help="file of '<path> [<machine> [<section>]]' lines")
    p.add_argument("--machine", help="machine of the inputs, as named in training (the list's column wins)")
    p.add_argument("--section", help="section (default: the machine's only section in the model)")
    p.add_argument(
        "--domain",
        help="domain of every input, when known (source, target, or a domain asdlib-enroll added): decide with "
        "that domain's threshold instead of the domain-unknown one (the maximum over the domains)",
    )
    p.add_argument(
        "--labels",
        type=Path,
        help="file of '<path> <normal|anomaly> [<domain>]' lines (paths as in --list): log the operating figures "
        "(false-alarm rate per domain against the promise, false alarms per hour, precision, recall, F1)",
    )
    p.add_argument("--operating", type=Path, help="with --labels: write the operating figures here (JSON)")
    p.add_argument("--out", type=Path, help="write here instead of stdout (checked writable before scoring)")
    p.add_argument(
        "--strict", action="store_true", help="stop at the first recording that cannot be scored (nothing written)"
    )
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--batch_size", type=int, default=8, help="windows embedded per forward pass")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, or auto")
    p.add_argument(
        "--report", type=Path, help="PNG: score histogram with the thresholds, window scores of long recordings"
    )
    p.add_argument(
        "--explain",
        type=Path,
        help="folder: per recording a PNG of its spectrogram with the map of what raised its score, and a JSON of the top regions",
    )
    p.add_argument("--explain_grid", default="10x8", help="explanation map: <time segments>x<mel bands>")
    p.add_argument("--explain_top", type=int, default=5, help="regions listed per recording in the explanation JSON")
    p.add_argument("--verbose", type=int, default=0)
    return p


@dataclass
class Recording:
    path: Path
    machine: str
    section: str
    windows: list[tuple[float, float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    error: str = ""  # why it could not be scored (its row says so; the others are still scored)
    label: str = "unknown"  # ground truth from --labels (normal or anomaly)
    domain: str = "unknown"  # its domain, from --labels or --domain
    score: float = float("nan")  # the recording's score: its windows' aggregated

    @property
    def utt_id(self) -> str:
        return str(self.path)


def collect(args: argparse.Namespace) -> list[tuple[Path, str | None, str | None]]:
    """(path, machine, section) of every input, in the order given (folders sorted)."""
    items: list[tuple[Path, str | None, str | None]] = []
    for p in args.inputs:
        if p.is_dir():
            found = audio_files(p)
            if not found:
                raise ValueError(f"{p}: no audio files in this folder ({', '.join(AUDIO_SUFFIXES[:6])}, ...)")
            items += [(f, args.machine, args.section) for f in found]
        else:
            items.append((p, args.machine, args.section))
    if args.list:
        items += read_infer_list(args.list, args.machine, args.section)
    if not items:
        raise ValueError("no recordings given: pass files, folders or --list FILE")
    return items


def read_infer_list(path: Path, machine: str | None, section: str | None) -> list[tuple[Path, str | None, str | None]]:
    """``<path> [<machine> [<section>]]`` lines; a relative path is relative to the list's folder, as in
    training (asdlib.data.custom.read_list). The path may contain spaces: the trailing tokens are a
    machine (and a two-digit section) only when the whole line is not a file."""
    items = []
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue

            def here(p: str) -> Path:
                return Path(p) if Path(p).is_absolute() else path.parent / p

            audio, m, s = here(line), machine, section
            parts = line.rsplit(maxsplit=2)
            if not audio.is_file() and len(parts) > 1:
                if len(parts) == 3 and parts[2].isdigit() and len(parts[2]) == 2:
                    audio, m, s = here(parts[0]), parts[1], parts[2]
                else:
                    audio, m = here(line.rsplit(maxsplit=1)[0]), line.rsplit(maxsplit=1)[-1]
            items.append((audio, m, s))
    return items


def resolve(
    packed: Packed, items: list[tuple[Path, str | None, str | None]], domain: str | None = None
) -> list[Recording]:
    """Machine and section of every input, checked against the model (no silent default machine),
    and ``domain`` (--domain) against the domains calibrated for them."""
    out = []
    for path, machine, section in items:
        if machine is None:
            listing = ", ".join(f"{m}/{s}" for m, s in packed.known())
            raise ValueError(
                f"{path}: no machine given; pass --machine or a list with '<path> <machine>' (the model knows {listing})"
            )
        rec = Recording(path, machine, packed.section_of(machine, section, str(path)))
        if domain is not None:
            packed.threshold(rec.machine, rec.section, domain)  # an unknown domain names the known ones
            rec.domain = domain
        out.append(rec)
    return out


def read_labels(path: Path, recs: list[Recording]) -> None:
    """Set ``label`` (and ``domain``, when given) of the recordings that ``path`` lists
    (``<path> <normal|anomaly> [<domain>]`` lines, paths relative to its folder as in --list)."""
    by_path = {r.path.resolve(): r for r in recs}
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            text = line.strip()
            parts = text.rsplit(maxsplit=2)
            if len(parts) == 3 and parts[1] in TRUTH:
                name, label, domain = parts
            elif len(parts) >= 2 and parts[-1] in TRUTH:
                name, label, domain = text.rsplit(maxsplit=1)[0], parts[-1], None
            else:
                raise ValueError(f"{path}:{n}: expected '<path> <normal|anomaly> [<domain>]', got {text!r}")
            audio = Path(name) if Path(name).is_absolute() else path.parent / name
            rec = by_path.get(audio.resolve())
            if rec is None:
                raise ValueError(f"{path}:{n}: {audio} is not among the recordings scored; list only inputs")
            rec.label = label
            rec.domain = domain or rec.domain


def embed_recording(
    packed: Packed, path: Path, machine: str, device: str, batch_size: int, bar: tqdm
) -> tuple[list[tuple[float, float]], np.ndarray]:
    """(start, end) and embedding of every window of ``path``, read as in training and embedded as they
    are read (batches of equal-length windows, no padding): memory holds one batch of audio, whatever
    the recording's length. asdlib-enroll embeds the recordings it adds this way too."""
    windows, embs, batch = [], [], []

    def flush() -> None:
        embs.append(packed.embed([w.samples for w in batch], machine, device))
        bar.update(len(batch))
        batch.clear()

    for w in iter_windows(path, packed.trained.cfg.data):
        if batch and (len(batch) == batch_size or batch[0].samples.size != w.samples.size):
            flush()
        batch.append(w)
        windows.append((w.start, w.end))
    flush()
    return windows, np.concatenate(embs)


def score_recording(packed: Packed, rec: Recording, device: str, batch_size: int, bar: tqdm) -> None:
    """Embed the windows of ``rec`` (:func:`embed_recording`) and score them against the packed bank."""
    windows, embs = embed_recording(packed, rec.path, rec.machine, device, batch_size, bar)
    rec.scores = [float(s) for s in packed.score_embeddings(embs, rec.machine, rec.section, str(rec.path))]
    rec.score = aggregate(rec.scores, packed.trained.cfg.data.window_aggregate)
    rec.windows = windows


def operating(packed: Packed, recs: list[Recording]) -> list[OperatingPoint]:
    """Operating figures of the labelled recordings at the packed thresholds (:mod:`asdlib.metrics.operating`)."""
    labelled = [r for r in recs if not r.error and r.label in TRUTH]
    if not labelled:
        raise ValueError("--labels: none of the recordings scored has a label; list them with normal or anomaly")
    thresholds = {
        (m, s): SectionThresholds.from_entry(dataclasses.asdict(t))
        for m, secs in packed.manifest.thresholds.items()
        for s, t in secs.items()
    }
    return operating_points(labelled, thresholds, {r.utt_id: r.windows[-1][1] - r.windows[0][0] for r in labelled})


def score(packed: Packed, recs: list[Recording], device: str, batch_size: int, strict: bool) -> None:
    """Score every recording; one that cannot be read or is too short gets its reason in ``error``
    (with ``strict``, it stops the run instead)."""
    with tqdm(desc="asdlib-infer", unit="window", file=sys.stderr, disable=None) as bar:
        for rec in recs:
            try:
                score_recording(packed, rec, device, batch_size, bar)
            except (AudioError, OSError) as e:
                if strict:
                    raise AudioError(f"{' '.join(str(e).split())} (--strict: nothing was written)") from e
                rec.error = " ".join(str(e).split())
                log.warning("%s", rec.error)


def rows(packed: Packed, recs: list[Recording], domain: str | None = None) -> list[dict]:
    """The output rows; ``domain`` (--domain): decide with that domain's thresholds."""
    out = []
    for rec in recs:
        thr = packed.threshold(rec.machine, rec.section, domain)
        if rec.error:
            out.append({**_row(rec, thr, "error", None, None, None), "error": rec.error})
            continue
        out.append(_row(rec, thr, "file", rec.windows[0][0], rec.windows[-1][1], rec.score))
        if len(rec.windows) > 1:
            out += [_row(rec, thr, "window", s, e, v) for (s, e), v in zip(rec.windows, rec.scores)]
    return out


def _row(rec: Recording, thr: float, kind: str, start: float | None, end: float | None, s: float | None) -> dict:
    return {
        "file": str(rec.path),
        "kind": kind,
        "machine": rec.machine,
        "section": rec.section,
        "start": None if start is None else round(start, 3),
        "end": None if end is None else round(end, 3),
        "score": s,
        "threshold": thr,
        "decision": None if s is None else "anomaly" if s > thr else "normal",
        "error": "",
    }


def spreadsheet_safe(text: str) -> str:
    """A text cell a spreadsheet will not run as a formula: one starting with ``= + - @`` (or a tab or
    carriage return) gets a leading apostrophe (the OWASP rule for CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render(table: list[dict], fmt: str, packed: Packed) -> str:
    if fmt == "json":
        cal = packed.manifest.calibration
        body = {"target_fpr": cal.target_fpr, "measured_fpr": cal.measured_fpr, "rows": table}
        return json.dumps(body, indent=1, allow_nan=False) + "\n"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in table:
        cells = {k: spreadsheet_safe(v) if isinstance(v, str) else "" if v is None else v for k, v in r.items()}
        if r["score"] is not None:
            cells["score"] = f"{r['score']:.6f}"
        cells["threshold"] = f"{r['threshold']:.6f}"
        writer.writerow(cells)
    return buf.getvalue()


def report(path: Path, table: list[dict], recs: list[Recording]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    long = [r for r in recs if len(r.windows) > 1]
    fig = Figure(figsize=(8, 3 + 2.5 * len(long)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1 + len(long), 1, squeeze=False)[:, 0]
    files = [r for r in table if r["kind"] == "file"]
    for m, s in sorted({(r["machine"], r["section"]) for r in files}):
        vals = [r["score"] for r in files if (r["machine"], r["section"]) == (m, s)]
        thr = next(r["threshold"] for r in files if (r["machine"], r["section"]) == (m, s))
        line = axes[0].axvline(thr, linestyle="--")
        axes[0].hist(vals, bins=20, alpha=0.6, color=line.get_color(), label=f"{m}/{s} (threshold {thr:.3f})")
    axes[0].set(title="anomaly scores per recording", xlabel="score", ylabel="recordings")
    axes[0].legend(fontsize=7)
    for ax, rec in zip(axes[1:], long):
        thr = next(r["threshold"] for r in files if r["file"] == str(rec.path))
        ax.plot([(s + e) / 2 for s, e in rec.windows], rec.scores, marker=".")
        ax.axhline(thr, linestyle="--", color="red", label="threshold")
        ax.set(title=f"{rec.path.name} ({rec.machine}/{rec.section})", xlabel="time (s)", ylabel="window score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(path), format="png", metadata={"Software": None})


def packed_scorer(
    packed: Packed, machine: str, section: str, device: str, bounds: list[tuple[float, float]], batch_size: int
) -> Scorer:
    """Scores of whole (perturbed) recordings as asdlib-infer scores them: each cut into the windows
    ``bounds`` (seconds), embedded in batches, scored, and its window scores aggregated."""
    sr = packed.trained.cfg.data.sample_rate
    how = packed.trained.cfg.data.window_aggregate

    def score_batch(waves: np.ndarray) -> np.ndarray:
        cuts = [(int(round(s * sr)), min(waves.shape[1], int(round(e * sr)))) for s, e in bounds]
        windows = [w[a:b] for w in waves for a, b in cuts]
        embs = [
            packed.embed(group, machine, device)
            for size in sorted({b - a for a, b in cuts})
            for same in [[x for x in windows if x.size == size]]
            for group in (same[i : i + batch_size] for i in range(0, len(same), batch_size))
        ]
        order = sorted(range(len(windows)), key=lambda i: windows[i].size)  # the order embs were made in
        scores = np.empty(len(windows))
        scores[order] = packed.score_embeddings(np.concatenate(embs), machine, section)
        return np.array([aggregate(list(row), how) for row in scores.reshape(len(waves), len(cuts))])

    return score_batch


def write_explanation(
    out: Path, rec: Recording, exp: Explanation, wav: np.ndarray, sr: int, thr: float, top: int
) -> None:
    """``out``.json (score, threshold, top regions, the map, window scores) and ``out``.png."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    body = {
        "file": str(rec.path),
        "machine": rec.machine,
        "section": rec.section,
        "score": exp.score,
        "threshold": thr,
        "decision": "anomaly" if exp.score > thr else "normal",
        "prominence": exp.prominence(),
        "stands_out": exp.stands_out(),
        "top": [r.as_dict() for r in exp.top(top)],
        "times": [round(float(t), 3) for t in exp.times],
        "band_edges_hz": [round(float(f), 1) for f in exp.edges],
        "map": exp.attribution.round(6).tolist(),
        "windows": [{"start": s, "end": e, "score": v} for (s, e), v in zip(rec.windows, rec.scores)],
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(body, indent=1, allow_nan=False) + "\n")
    long = len(rec.windows) > 1
    fig = Figure(figsize=(8, 6 if long else 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if long else 1, 1, squeeze=False, sharex=True)[:, 0]
    ax = axes[0]
    ax.specgram(wav, Fs=sr, NFFT=512, noverlap=384, cmap="gray_r")
    lim = float(np.abs(exp.attribution).max()) or 1.0
    mesh = ax.pcolormesh(exp.times, exp.edges, exp.attribution.T, cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.55)
    fig.colorbar(mesh, ax=ax, label="score drop when removed")
    for rank, r in enumerate(exp.top(top), 1):
        ax.add_patch(Rectangle((r.start, r.f_low), r.end - r.start, r.f_high - r.f_low, fill=False, edgecolor="yellow"))
        ax.text(r.start, r.f_high, str(rank), color="yellow", fontsize=8, va="top")
    ax.set_yscale("symlog", linthresh=1000.0)
    ax.set(ylabel="Hz", ylim=(0, exp.edges[-1]))
    ax.set_title(f"{rec.path.name}: score {exp.score:.3f} (threshold {thr:.3f})", fontsize=9)
    if long:
        axes[1].plot([(s + e) / 2 for s, e in rec.windows], rec.scores, marker=".")
        axes[1].axhline(thr, linestyle="--", color="red", label="threshold")
        axes[1].set(ylabel="window score", xlabel="time (s)")
        axes[1].legend(fontsize=7)
    else:
        ax.set_xlabel("time (s)")
    fig.tight_layout()
    with atomic_write(out.with_suffix(".png"), "wb", encoding=None) as f:
        fig.savefig(f, format="png", metadata={"Software": None})


def explain_all(args: argparse.Namespace, packed: Packed, recs: list[Recording], grid: Grid, device: str) -> None:
    """Write the explanation of every scored recording under ``args.explain`` (names: ``<machine>-<file
    stem>``, numbered when two recordings share one)."""
    seen: dict[str, int] = {}
    data = packed.trained.cfg.data
    for rec in tqdm(recs, desc="explain", unit="recording", file=sys.stderr, disable=None):
        stem = f"{rec.machine}-{rec.path.stem}"
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"
        wav = load_wav(rec.path, data.sample_rate, "", 1, data.channel, data.resample, skip_hint=SKIP_HINT)
        scorer = packed_scorer(packed, rec.machine, rec.section, device, plan(rec.path, data), args.batch_size)
        exp = explain(wav, data.sample_rate, scorer, grid, args.batch_size)
        thr = packed.threshold(rec.machine, rec.section, args.domain)
        write_explanation(args.explain / name, rec, exp, wav, data.sample_rate, thr, args.explain_top)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.operating and not args.labels:
        raise ValueError("--operating needs --labels (the ground truth the figures are measured against)")
    grid = Grid.parse(args.explain_grid)
    if args.explain_top < 1:
        raise ExplainError(f"--explain_top must be >= 1, got {args.explain_top}")
    if args.explain is not None:
        if args.explain.exists() and not args.explain.is_dir():
            raise ExplainError(
                f"--explain {args.explain}: exists and is not a folder; give a folder for the explanations"
            )
        args.explain.mkdir(parents=True, exist_ok=True)
        check_writable(args.explain / "probe.json")
    for path in (args.out, args.report, args.operating):  # before any scoring: a typo costs seconds, not the run
        if path is not None:
            check_writable(path)
    device = resolve_device(args.device)
    packed = load_packed(args.packed, device)
    recs = resolve(packed, collect(args), args.domain)
    if args.labels:  # before scoring: a bad line costs seconds, not the run
        read_labels(args.labels, recs)
    score(packed, recs, device, args.batch_size, args.strict)
    table = rows(packed, recs, args.domain)
    text = render(table, args.format, packed)
    if args.out:
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    failed = [r for r in recs if r.error]
    flagged = sum(r["decision"] == "anomaly" for r in table if r["kind"] == "file")
    log.info("%d recordings scored, %d flagged as anomalous", len(recs) - len(failed), flagged)
    code = EXIT_SOME_FAILED if failed else 0
    if args.labels:
        points = operating(packed, recs)
        print(render_operating_md(points, f"Operating figures of {args.labels}"), file=sys.stderr)
        if args.operating:
            atomic_write_text(args.operating, json.dumps(operating_dicts(points), indent=1, allow_nan=False) + "\n")
    if failed:
        print(
            f"ERROR: {len(failed)} of {len(recs)} recordings could not be scored (their 'error' rows say why; "
            f"the others were scored and written); first: {failed[0].error}",
            file=sys.stderr,
        )
    if args.explain is not None:
        explain_all(args, packed, [r for r in recs if not r.error], grid, device)
    if args.report:
        try:
            report(args.report, table, [r for r in recs if not r.error])
        except (OSError, ValueError, RuntimeError) as e:
            print(
                f"ERROR: {args.report}: the report could not be written ({e}); the scores were written", file=sys.stderr
            )
            return code or EXIT_REPORT_FAILED
    return code


def cli() -> None:
    """Console script ``asdlib-infer``."""
    raise SystemExit(run_main(main))


if __name__ == "__main__":
    cli()
