"""Stage-1 audio validation of a data dir: every wav is read once, as the model will read it.

Why at stage 1: a corrupt, silent or wrongly sampled clip otherwise stops training hours later
(or, worse, a blind eval set is scored without it). Each file goes through :func:`~asdlib.data.audio.load_utt`
with the model's sample rate, channel and minimum length, so stage 1 and the data loaders
agree on what "usable" means. Bad files either stop the run with a list naming the utterance,
the path, the reason and the fix, or (``skip_bad``) are removed from every data-dir file and
recorded in ``<set>/bad.list`` (``<utt-id> <path> <reason>``) — never dropped silently.

A ``.validate.done`` marker records what was checked (audio settings, wav.scp, each file's size
and mtime), so a rerun of stage 1 over unchanged files does not read the corpus again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from asdlib.data.audio import AudioError, load_utt
from asdlib.data.datadir import (
    FIELD_FILES,
    DataDirError,
    Utt,
    read_data_dir,
    read_kv,
    write_data_dir,
    write_kv,
)
from asdlib.data.regions import read_anomaly_regions
from asdlib.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

BAD_LIST = "bad.list"
DONE_MARKER = ".validate.done"
#: bad files listed in an error message (all of them go to bad.list with skip_bad)
SHOWN = 20
#: per-utterance files rewritten by write_data_dir itself; other utt2* files are filtered here
_OWN_FILES = set(FIELD_FILES.values()) | {"utt2spk"}


class BadAudioError(DataDirError):
    """A data dir with unusable audio files; the message lists them and the fix."""


@dataclass(frozen=True)
class AudioSpec:
    """What the model needs from every clip (the ``data`` section of the training config)."""

    sample_rate: int = 16000
    min_samples: int = 1
    channel: int | str | None = None
    resample: bool = False  # any rate is resampled to sample_rate (data.resample)


@dataclass(frozen=True)
class BadFile:
    """One unusable file and why (the reason ends with the fix)."""

    utt_id: str
    path: str
    reason: str

    def line(self) -> str:
        """``<utt-id> <path> <reason>``: the bad.list line (the path is wav.scp's value)."""
        return f"{self.utt_id} {self.path} {self.reason}"


@dataclass(frozen=True)
class Report:
    """Outcome of validating one data dir."""

    set_dir: Path
    total: int
    bad: tuple[BadFile, ...]
    cached: bool  # True when the marker showed the files were already validated


def check_utt_audio(utt: Utt, spec: AudioSpec) -> BadFile | None:
    """Read one clip like the data loaders do; a :class:`BadFile` if it is unusable."""
    try:
        load_utt(utt, spec.sample_rate, spec.min_samples, spec.channel, spec.resample)
    except AudioError as e:
        reason = str(e).removeprefix(f"{utt.utt_id} ({utt.path}): ")
        return BadFile(utt.utt_id, utt.path, " ".join(reason.split()))
    return None


def find_bad_audio(utts: Sequence[Utt], spec: AudioSpec, nj: int = 1) -> list[BadFile]:
    """Every unusable clip of ``utts`` in data-dir order; ``nj`` threads read files concurrently."""
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        results = list(pool.map(lambda u: check_utt_audio(u, spec), utts))
    return [b for b in results if b is not None]


def fingerprint(set_dir: Path, utts: Sequence[Utt], spec: AudioSpec) -> str:
    """Digest of what validation depends on: settings, wav.scp and each file's size and mtime."""
    settings = asdict(spec)
    if not spec.resample:  # markers written before the option existed stay valid
        del settings["resample"]
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update((set_dir / FIELD_FILES["path"]).read_bytes())
    for utt in utts:
        try:
            st = os.stat(utt.path)
            h.update(f"{st.st_size} {st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(b"missing\n")
    return h.hexdigest()


def validate_data_dir(set_dir: str | Path, spec: AudioSpec, skip_bad: bool = False, nj: int = 1) -> Report:
    """Validate ``set_dir`` (contract files and audio); with ``skip_bad`` remove the bad clips.

    Raises :class:`BadAudioError` listing the bad files when ``skip_bad`` is false (the data dir
    is left as it was), and also when every clip is bad (nothing would be left to use).
    """
    set_dir = Path(set_dir)
    utts = read_data_dir(set_dir)
    read_anomaly_regions(set_dir, utts)  # its format and keys: a bad line stops stage 1, not the explanations
    digest = fingerprint(set_dir, utts, spec)
    marker = set_dir / DONE_MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == digest:
        return Report(set_dir, len(utts), (), cached=True)
    bad = find_bad_audio(utts, spec, nj)
    if bad and (not skip_bad or len(bad) == len(utts)):
        raise BadAudioError(_failure_message(set_dir, len(utts), bad, skip_bad))
    if bad:
        remove_bad(set_dir, utts, bad)
        digest = fingerprint(set_dir, read_data_dir(set_dir), spec)
    else:
        _update_bad_list(set_dir, {u.utt_id for u in utts}, [])
    atomic_write_text(marker, digest + "\n")
    return Report(set_dir, len(utts), tuple(bad), cached=False)


def _failure_message(set_dir: Path, total: int, bad: Sequence[BadFile], skip_bad: bool) -> str:
    lines = [f"{set_dir}: {len(bad)} of {total} audio files are unusable:"]
    lines += [f"  {b.utt_id} ({b.path}): {b.reason}" for b in bad[:SHOWN]]
    if len(bad) > SHOWN:
        lines.append(f"  ... and {len(bad) - SHOWN} more")
    if skip_bad:
        lines.append(
            "Every clip of the set is bad, so --skip_bad true would leave nothing: check the corpus "
            "path, the sample rate and channel settings, or re-copy the corpus."
        )
    else:
        lines.append(
            f"Fix or re-copy these files and rerun stage 1, or rerun with --skip_bad true to move them "
            f"into {set_dir / BAD_LIST} and continue without them."
        )
    return "\n".join(lines)


def remove_bad(set_dir: Path, utts: Sequence[Utt], bad: Sequence[BadFile]) -> list[Utt]:
    """Drop ``bad`` from every per-utterance file of ``set_dir``; returns the kept utterances.

    bad.list is written first, so a kill half-way never loses track of a removed clip (the data
    dir would then fail its consistency check and stage 1 rebuilds it). The wav files are kept.
    """
    drop = {b.utt_id for b in bad}
    kept = [u for u in utts if u.utt_id not in drop]
    _update_bad_list(set_dir, {u.utt_id for u in utts}, bad)
    extra = sorted(p for p in set_dir.glob("utt2*") if p.is_file() and p.name not in _OWN_FILES)
    tables = {p: read_kv(p) for p in extra}
    write_data_dir(set_dir, kept)
    for path, table in tables.items():
        write_kv(path, [(k, v) for k, v in table.items() if k not in drop])
    if any(p.name == "utt2class" for p in extra):
        logger.warning("%s: removed clips may have been the only ones of a class: rerun stage 2", set_dir)
    return kept


def _update_bad_list(set_dir: Path, current: set[str], bad: Sequence[BadFile]) -> None:
    """Write ``bad`` plus the earlier entries whose clips are no longer in the data dir.

    Entries of clips that are in the data dir again (a rebuilt set) were checked afresh just
    now and are replaced; entries of clips removed earlier are kept, since nothing else records
    them. An empty result removes the file.
    """
    path = set_dir / BAD_LIST
    lines: dict[str, str] = {}
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            old = (line.rstrip("\n") for line in f if line.strip())
            lines = {line.split(" ", 1)[0]: line for line in old}
        lines = {k: v for k, v in lines.items() if k not in current}
    lines.update({b.utt_id: b.line() for b in bad})
    if lines:
        atomic_write_text(path, "".join(lines[k] + "\n" for k in sorted(lines, key=lambda k: k.encode("utf-8"))))
    elif path.exists():
        path.unlink()
