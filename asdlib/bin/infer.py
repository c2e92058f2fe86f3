"""Score new recordings with a packed model (stage 7): a yes/no decision per recording.

    asdlib-infer --packed packed/ --machine pump new/*.flac > decisions.csv
    asdlib-infer --packed packed.tar --list recordings.list --format json --out decisions.json

Inputs are files, folders (every .wav/.flac below them) or, with ``--list``, a file of
``<path> [<machine> [<section>]]`` lines. The machine comes from ``--machine`` or the list; the
section from ``--section`` or, when the machine has one, from the model. Recordings are read as in
training (resampled, channel, windows of long recordings), embedded in batches and scored against
the packed kNN banks. Output (stdout or ``--out``): CSV with a header, or JSON; one ``file`` row per
recording (its score aggregates its windows') and, for a recording of several windows, one
``window`` row per window. ``decision`` is ``anomaly`` when the score exceeds the threshold
calibrated at the packed false-alarm rate, else ``normal``. ``--report report.png``: histogram of
the scores with the thresholds, and the window scores over time of the long recordings.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from asdlib.backends.packed import Packed, load_packed
from asdlib.data.audio import AudioError, load_wav
from asdlib.data.custom import AUDIO_SUFFIXES
from asdlib.data.datadir import Utt, make_utt_id
from asdlib.data.windows import aggregate, window_bounds
from asdlib.devices import resolve_device
from asdlib.io.atomic import atomic_write_text
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)
COLUMNS = ("file", "kind", "machine", "section", "start", "end", "score", "threshold", "decision")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asdlib-infer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--packed", type=Path, required=True, help="exp/<tag>/packed (a copy of it) or packed.tar")
    p.add_argument("inputs", nargs="*", type=Path, help="recordings (.wav, .flac) or folders of them")
    p.add_argument("--list", type=Path, help="file of '<path> [<machine> [<section>]]' lines")
    p.add_argument("--machine", help="machine of the inputs, as named in training (the list's column wins)")
    p.add_argument("--section", help="section (default: the machine's only section in the model)")
    p.add_argument("--out", type=Path, help="write here instead of stdout (written only when every input was scored)")
    p.add_argument("--format", choices=("csv", "json"), default="csv")
    p.add_argument("--batch_size", type=int, default=8, help="windows embedded per forward pass")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, or auto")
    p.add_argument(
        "--report", type=Path, help="PNG: score histogram with the thresholds, window scores of long recordings"
    )
    p.add_argument("--verbose", type=int, default=0)
    return p


@dataclass
class Recording:
    path: Path
    machine: str
    section: str
    windows: list[tuple[float, float]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def collect(args: argparse.Namespace) -> list[tuple[Path, str | None, str | None]]:
    """(path, machine, section) of every input, in the order given (folders sorted)."""
    items: list[tuple[Path, str | None, str | None]] = []
    for p in args.inputs:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise ValueError(f"{p}: no .wav or .flac files in this folder")
            items += [(f, args.machine, args.section) for f in found]
        else:
            items.append((p, args.machine, args.section))
    if args.list:
        with open(args.list, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                path, machine, section = Path(line), args.machine, args.section
                parts = line.rsplit(maxsplit=2)
                # '<path> <machine> [<section>]': the trailing tokens, if the path alone is not a file
                if not path.is_file() and not (args.list.parent / path).is_file():
                    if len(parts) == 3 and parts[2].isdigit() and len(parts[2]) == 2:
                        path, machine, section = Path(parts[0]), parts[1], parts[2]
                    else:
                        path, machine = Path(line.rsplit(maxsplit=1)[0]), line.rsplit(maxsplit=1)[-1]
                if not path.is_absolute() and not path.exists():
                    path = args.list.parent / path
                items.append((path, machine, section))
    if not items:
        raise ValueError("no recordings given: pass files, folders or --list FILE")
    return items


def resolve(packed: Packed, items: list[tuple[Path, str | None, str | None]]) -> list[Recording]:
    """Machine and section of every input, checked against the model (no silent default)."""
    known = packed.known()
    sections = defaultdict(list)
    for m, s in known:
        sections[m].append(s)
    listing = ", ".join(f"{m}/{s}" for m, s in known)
    out = []
    for path, machine, section in items:
        if machine is None:
            raise ValueError(
                f"{path}: no machine given; pass --machine or a list with '<path> <machine>' (the model knows {listing})"
            )
        if machine not in sections:
            raise ValueError(f"unknown machine '{machine}' for {path}: the packed model knows {listing}")
        if section is None:
            if len(sections[machine]) > 1:
                raise ValueError(
                    f"{path}: machine '{machine}' has sections {', '.join(sections[machine])}; pass --section"
                )
            section = sections[machine][0]
        if section not in sections[machine]:
            raise ValueError(
                f"unknown section '{section}' of machine '{machine}' for {path}: the packed model knows {listing}"
            )
        out.append(Recording(path, machine, section))
    return out


def plan_windows(packed: Packed, recs: list[Recording]) -> None:
    """Window bounds of every recording from its header, checked before any work is done."""
    win = packed.manifest["windowing"]
    audio = packed.manifest["audio"]
    for rec in recs:
        if not rec.path.is_file():
            raise AudioError(f"{rec.path}: file not found")
        try:
            info = sf.info(str(rec.path))
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(f"{rec.path}: not a readable audio file ({e})") from e
        duration = info.frames / info.samplerate
        if duration < audio["min_seconds"]:
            raise AudioError(
                f"{rec.path}: {duration:.3f} s long, shorter than the model's minimum of {audio['min_seconds']} s"
            )
        if win["window_seconds"]:
            rec.windows = window_bounds(duration, win["window_seconds"], win["hop_seconds"], win["min_seconds"])
        else:
            rec.windows = [(0.0, -1.0)]


@torch.no_grad()
def score(packed: Packed, recs: list[Recording], device: str, batch_size: int) -> None:
    """Embed every window (batches of equal-length windows, no padding) and score it."""
    trained, data = packed.trained, packed.trained.cfg.data
    machine_ids = {m: i for i, m in enumerate(trained.machines)}
    min_samples = int(data.min_seconds * data.sample_rate)
    total = sum(len(r.windows) for r in recs)
    with tqdm(total=total, desc="asdlib-infer", unit="window", file=sys.stderr, disable=None) as bar:
        for rec in recs:
            whole = rec.windows == [(0.0, -1.0)]
            wavs = []
            for start, end in rec.windows:
                wavs.append(
                    load_wav(
                        rec.path,
                        data.sample_rate,
                        "",
                        min_samples,
                        data.channel,
                        data.resample,
                        start,
                        None if whole else end,
                    )
                )
            embs: list[np.ndarray | None] = [None] * len(wavs)
            by_len: dict[int, list[int]] = defaultdict(list)
            for i, w in enumerate(wavs):
                by_len[w.size].append(i)
            for size, idx in by_len.items():
                for b in range(0, len(idx), batch_size):
                    chunk = idx[b : b + batch_size]
                    x = torch.from_numpy(np.stack([wavs[i] for i in chunk])).to(device)
                    lengths = torch.full((len(chunk),), size, dtype=torch.long, device=device)
                    machines = torch.full(
                        (len(chunk),), machine_ids.get(rec.machine, -1), dtype=torch.long, device=device
                    )
                    out = trained.model(x, lengths, machines).float().cpu().numpy()
                    for i, e in zip(chunk, out):
                        embs[i] = e
                    bar.update(len(chunk))
            utts = [
                Utt(
                    make_utt_id(rec.machine, rec.section, f"w{i}"),
                    str(rec.path),
                    rec.machine,
                    rec.section,
                    "unknown",
                    "unknown",
                    "noAttribute",
                )
                for i in range(len(wavs))
            ]
            rec.scores = [float(s) for s in packed.backend.score(utts, np.stack(embs))]
            if whole:
                rec.windows = [(0.0, wavs[0].size / data.sample_rate)]


def rows(packed: Packed, recs: list[Recording]) -> list[dict]:
    how = packed.manifest["windowing"]["aggregate"]
    out = []
    for rec in recs:
        thr = packed.threshold(rec.machine, rec.section)
        out.append(_row(rec, thr, "file", rec.windows[0][0], rec.windows[-1][1], aggregate(rec.scores, how)))
        if len(rec.windows) > 1:
            out += [_row(rec, thr, "window", s, e, v) for (s, e), v in zip(rec.windows, rec.scores)]
    return out


def _row(rec: Recording, thr: float, kind: str, start: float, end: float, s: float) -> dict:
    return {
        "file": str(rec.path),
        "kind": kind,
        "machine": rec.machine,
        "section": rec.section,
        "start": round(start, 3),
        "end": round(end, 3),
        "score": s,
        "threshold": thr,
        "decision": "anomaly" if s > thr else "normal",
    }


def render(table: list[dict], fmt: str, packed: Packed) -> str:
    if fmt == "json":
        cal = packed.manifest["calibration"]
        return (
            json.dumps({"target_fpr": cal["target_fpr"], "measured_fpr": cal["measured_fpr"], "rows": table}, indent=1)
            + "\n"
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in table:
        writer.writerow({**r, "score": f"{r['score']:.6f}", "threshold": f"{r['threshold']:.6f}"})
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


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    device = resolve_device(args.device)
    packed = load_packed(args.packed, device)
    recs = resolve(packed, collect(args))
    plan_windows(packed, recs)
    score(packed, recs, device, args.batch_size)
    table = rows(packed, recs)
    text = render(table, args.format, packed)
    if args.report:
        report(args.report, table, recs)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text)
    else:
        sys.stdout.write(text)
    flagged = sum(r["decision"] == "anomaly" for r in table if r["kind"] == "file")
    log.info("%d recordings scored, %d flagged as anomalous", len(recs), flagged)
    return 0


def cli() -> None:
    """Console script ``asdlib-infer``."""
    raise SystemExit(run_main(main))


if __name__ == "__main__":
    cli()
