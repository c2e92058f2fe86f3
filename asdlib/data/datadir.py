"""Kaldi-style data directories for ASD (docs/design.md §4, a contract).

``data/<set>/`` holds one ``<utt-id> <value>`` file per field, sorted by utt-id in C locale and
sharing the same keys. Everything downstream (training, extraction, scoring, evaluation) reads
a set only through :func:`read_data_dir`, so every consumer gets the same validation.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asdlib.io.atomic import atomic_write_text

FIELD_FILES = {
    "path": "wav.scp",
    "machine": "utt2machine",
    "section": "utt2section",
    "domain": "utt2domain",
    "label": "utt2label",
    "attr": "utt2attr",
}
DOMAINS = ("source", "target", "unknown")
LABELS = ("normal", "anomaly", "unknown")
_SECTION_RE = re.compile(r"^\d{2}$")
_TOKEN_RE = re.compile(r"^\S+$")
#: optional: windows of long recordings, ``<utt-id> <recording-id> <start> <end>`` (docs/design.md §4)
SEG_FILE = "utt2seg"


class DataDirError(ValueError):
    """A data directory that breaks the contract; the message names the file and the fix."""


@dataclass(frozen=True)
class Utt:
    """One utterance of a data dir. ``domain``/``label`` may be ``unknown`` on a blind eval set."""

    utt_id: str
    path: str
    machine: str
    section: str
    domain: str
    label: str
    attr: str
    # A window of a long recording (optional utt2seg, docs/design.md §4): the recording's id
    # (the utt-id it would have whole) and the window in seconds; end < 0 = to the end of the file.
    rec: str = ""
    start: float = 0.0
    end: float = -1.0

    @property
    def rec_id(self) -> str:
        """The recording this utterance belongs to (its own id unless it is a window)."""
        return self.rec or self.utt_id

    @property
    def spk(self) -> str:
        return f"{self.machine}-{self.section}"

    @property
    def file_name(self) -> str:
        """The wav file name as distributed (what submission CSVs list)."""
        return Path(self.path).name


def make_utt_id(machine: str, section: str, stem: str) -> str:
    """``<machine>-<section>-<file stem>``: unique per set, speaker id as prefix."""
    return f"{machine}-{section}-{stem}"


def check_utt(utt: Utt, where: str) -> None:
    """Validate one utterance's values; ``where`` names the source for the error."""
    for name in ("utt_id", "machine", "attr"):
        value = getattr(utt, name)
        if not value or not _TOKEN_RE.match(value):
            raise DataDirError(
                f"{where}: {name} '{value}' of '{utt.utt_id}' must be a non-empty token without whitespace"
            )
    if not utt.path:
        raise DataDirError(f"{where}: empty wav path for '{utt.utt_id}'")
    if "\n" in utt.path:
        raise DataDirError(f"{where}: wav path of '{utt.utt_id}' contains a newline")
    if not _SECTION_RE.match(utt.section):
        raise DataDirError(f"{where}: section '{utt.section}' of '{utt.utt_id}' must be two digits (e.g. 00)")
    if utt.domain not in DOMAINS:
        raise DataDirError(f"{where}: domain '{utt.domain}' of '{utt.utt_id}' must be one of {DOMAINS}")
    if utt.label not in LABELS:
        raise DataDirError(f"{where}: label '{utt.label}' of '{utt.utt_id}' must be one of {LABELS}")
    if not utt.utt_id.startswith(utt.spk + "-"):
        raise DataDirError(f"{where}: utt-id '{utt.utt_id}' must start with its speaker id '{utt.spk}-'")


def write_data_dir(path: str | Path, utts: Iterable[Utt]) -> list[Utt]:
    """Validate and write a data dir (sorted, atomic per file); returns the sorted utterances."""
    path = Path(path)
    ordered = sorted(utts, key=lambda u: u.utt_id.encode("utf-8"))
    if not ordered:
        raise DataDirError(f"{path}: refusing to write an empty data dir (no utterances found)")
    for i, utt in enumerate(ordered):
        check_utt(utt, str(path))
        if i and ordered[i - 1].utt_id == utt.utt_id:
            raise DataDirError(f"{path}: duplicate utt-id '{utt.utt_id}' ({ordered[i - 1].path} and {utt.path})")
    path.mkdir(parents=True, exist_ok=True)
    for field, name in FIELD_FILES.items():
        write_kv(path / name, [(u.utt_id, getattr(u, field)) for u in ordered])
    write_kv(path / "utt2spk", [(u.utt_id, u.spk) for u in ordered])
    spk2utt: dict[str, list[str]] = collections.defaultdict(list)
    for u in ordered:
        spk2utt[u.spk].append(u.utt_id)
    write_kv(path / "spk2utt", [(spk, " ".join(ids)) for spk, ids in sorted(spk2utt.items())])
    if any(u.rec for u in ordered):
        write_kv(path / SEG_FILE, [(u.utt_id, seg_value(u)) for u in ordered])
    elif (path / SEG_FILE).exists():
        (path / SEG_FILE).unlink()
    return ordered


def seg_value(utt: Utt) -> str:
    """The utt2seg value ``<recording-id> <start> <end>`` (seconds, 3 decimals; end -1 = end of file)."""
    end = f"{utt.end:.3f}" if utt.end >= 0 else "-1"
    return f"{utt.rec_id} {utt.start:.3f} {end}"


def _read_segments(path: Path, keys: list[str]) -> dict[str, tuple[str, float, float]]:
    """``utt2seg`` of a windowed data dir: every utt-id with ``<recording-id> <start> <end>``."""
    table = read_kv(path / SEG_FILE)
    if list(table) != keys:
        raise DataDirError(
            f"{path / SEG_FILE}: keys differ from {path / 'wav.scp'}; regenerate the data dir with stage 1"
        )
    out = {}
    for key, value in table.items():
        parts = value.split()
        try:
            rec, start, end = parts[0], float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise DataDirError(
                f"{path / SEG_FILE}: '{key} {value}' is not '<utt-id> <recording-id> <start> <end>'"
            ) from None
        if len(parts) != 3 or start < 0 or (0 <= end <= start):
            raise DataDirError(
                f"{path / SEG_FILE}: '{key} {value}' is not '<utt-id> <recording-id> <start> <end>' "
                "with 0 <= start < end (end -1 = end of file)"
            )
        out[key] = (rec, start, end)
    return out


def read_data_dir(path: str | Path) -> list[Utt]:
    """Read and validate a data dir; raises :class:`DataDirError` naming the offending file."""
    path = Path(path)
    if not path.is_dir():
        raise DataDirError(f"data dir {path} not found: run stage 1 (data preparation) first")
    columns = {field: read_kv(path / name) for field, name in FIELD_FILES.items()}
    keys = list(columns["path"])
    if not keys:
        raise DataDirError(f"{path / 'wav.scp'}: no utterances (empty data dir); regenerate the data dir with stage 1")
    for field, name in FIELD_FILES.items():
        if list(columns[field]) != keys:
            missing = sorted(set(keys) - set(columns[field]))[:3]
            extra = sorted(set(columns[field]) - set(keys))[:3]
            raise DataDirError(
                f"{path / name}: keys differ from {path / 'wav.scp'} (missing {missing}, extra {extra}); "
                "every file must list the same utt-ids in the same order: regenerate the data dir with stage 1"
            )
    utts = [Utt(k, *(columns[f][k] for f in list(FIELD_FILES))) for k in keys]
    if (path / SEG_FILE).is_file():
        segs = _read_segments(path, keys)
        utts = [
            dataclasses.replace(u, rec=segs[u.utt_id][0], start=segs[u.utt_id][1], end=segs[u.utt_id][2]) for u in utts
        ]
    for utt in utts:
        check_utt(utt, str(path))
    spk = read_kv(path / "utt2spk")
    bad = next((u.utt_id for u in utts if spk.get(u.utt_id) != u.spk), None)
    if bad is not None or len(spk) != len(utts):
        raise DataDirError(
            f"{path / 'utt2spk'}: must map every utt-id to '<machine>-<section>' (first mismatch: {bad})"
        )
    return utts


def read_kv(path: str | Path) -> dict[str, str]:
    """Read a sorted, unique ``<key> <value>`` file (value may contain spaces)."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path} is missing: regenerate the data dir with stage 1")
    out: dict[str, str] = {}
    prev: bytes | None = None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            parts = line.split(" ", 1)
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise DataDirError(f"{path}:{n}: expected '<key> <value>', got {line!r}")
            key, value = parts
            bkey = key.encode("utf-8")
            if key in out:
                raise DataDirError(f"{path}:{n}: duplicate key '{key}'")
            if prev is not None and bkey < prev:
                raise DataDirError(f"{path}:{n}: not sorted (C locale) at '{key}'; sort it with 'LC_ALL=C sort'")
            prev = bkey
            out[key] = value
    return out


def write_kv(path: str | Path, pairs: Sequence[tuple[str, str]]) -> None:
    """Write ``<key> <value>`` lines atomically (caller passes sorted pairs)."""
    atomic_write_text(path, "".join(f"{k} {v}\n" for k, v in pairs))


def summary_table(utts: Sequence[Utt]) -> str:
    """Counts per machine x section x domain x label, as printed after data preparation."""
    counts = collections.Counter((u.machine, u.section, u.domain, u.label) for u in utts)
    labels = [lab for lab in LABELS if any(k[3] == lab for k in counts)]
    domains = [d for d in DOMAINS if any(k[2] == d for k in counts)]
    cols = [(d, lab) for d in domains for lab in labels]
    header = ["machine", "section"] + [f"{d}/{lab}" for d, lab in cols] + ["total"]
    rows = []
    for machine, section in sorted({(k[0], k[1]) for k in counts}):
        cells = [counts[(machine, section, d, lab)] for d, lab in cols]
        rows.append([machine, section] + [str(c) for c in cells] + [str(sum(cells))])
    rows.append(
        ["total", ""]
        + [str(sum(counts[(m, s, d, lab)] for m, s in {(k[0], k[1]) for k in counts})) for d, lab in cols]
        + [str(len(utts))]
    )
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths]] + rows
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines)


def read_keys(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.split(maxsplit=1)[0] for line in f if line.strip()]


def select_keys(utts: list[Utt], keys: Path, data_dir: Path) -> list[Utt]:
    """The utts whose ids ``keys`` lists (one job's split); an id not in the data dir is an error,
    since it means the split and the data dir are out of step (a stale split from another set)."""
    wanted = set(read_keys(keys))
    unknown = sorted(wanted - {u.utt_id for u in utts})
    if unknown:
        raise DataDirError(
            f"{keys}: {len(unknown)} utt-ids not in {data_dir} (first: {', '.join(unknown[:3])}); "
            f"split the set's wav.scp again (utils/split_scp.sh)"
        )
    return [u for u in utts if u.utt_id in wanted]
