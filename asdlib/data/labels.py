"""Training labels (stage 2): class ids from machine x section x attribute, and durations.

The class set is built over *all* training sets together so that ``dev_train`` and
``eval_train`` share one id space, and written to each set as ``classes.txt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import soundfile as sf

from asdlib.data.datadir import DataDirError, Utt, read_kv, write_kv


def class_name(utt: Utt) -> str:
    """Class of a training clip; ``noAttribute`` machines get one class per section
    (pseudo-attributes are added during training by the VQ clustering)."""
    return f"{utt.machine}-{utt.section}-{utt.attr}"


def build_classes(utts: Sequence[Utt]) -> list[str]:
    """Sorted class names (C locale) so ids do not depend on set order."""
    return sorted({class_name(u) for u in utts}, key=lambda s: s.encode("utf-8"))


def write_labels(set_dir: Path, utts: Sequence[Utt], classes: Sequence[str]) -> None:
    """Write ``utt2class`` (class names) and ``classes.txt`` (``<name> <id>``)."""
    bad = [u for u in utts if u.label != "normal"]
    if bad:
        raise DataDirError(
            f"{set_dir}: training set contains non-normal clip '{bad[0].utt_id}' (label {bad[0].label}); "
            "ASD trains on normal clips only: fix utt2label or the set list in data.train_sets"
        )
    write_kv(set_dir / "utt2class", [(u.utt_id, class_name(u)) for u in utts])
    write_kv(set_dir / "classes.txt", [(name, str(i)) for i, name in enumerate(classes)])


def read_labels(set_dir: Path, utts: Sequence[Utt]) -> tuple[list[int], list[str]]:
    """Class id per utterance (in ``utts`` order) and the class names."""
    classes = read_kv(set_dir / "classes.txt")
    names = sorted(classes, key=lambda n: int(classes[n]))
    if [int(classes[n]) for n in names] != list(range(len(names))):
        raise DataDirError(f"{set_dir / 'classes.txt'}: ids must be 0..N-1; rerun stage 2")
    utt2class = read_kv(set_dir / "utt2class")
    missing = [u.utt_id for u in utts if u.utt_id not in utt2class]
    if missing or len(utt2class) != len(utts):
        raise DataDirError(
            f"{set_dir / 'utt2class'}: does not cover the data dir (first missing: {missing[:3]}); rerun stage 2"
        )
    unknown = sorted({utt2class[u.utt_id] for u in utts} - set(classes))
    if unknown:
        raise DataDirError(f"{set_dir / 'utt2class'}: classes {unknown[:3]} not in classes.txt; rerun stage 2")
    return [int(classes[utt2class[u.utt_id]]) for u in utts], names


def write_durations(set_dir: Path, utts: Sequence[Utt]) -> None:
    """``utt2dur`` in seconds from the wav headers (no decoding)."""
    rows = []
    for u in utts:
        try:
            info = sf.info(u.path)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise DataDirError(f"{set_dir}: cannot read the header of {u.utt_id} ({u.path}): {e}") from e
        dur = info.frames / info.samplerate
        if u.rec:  # a window of a long recording (utt2seg)
            dur = (min(u.end, dur) if u.end >= 0 else dur) - u.start
        rows.append((u.utt_id, f"{dur:.3f}"))
    write_kv(set_dir / "utt2dur", rows)
