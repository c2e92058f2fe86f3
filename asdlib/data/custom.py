"""Stage 1 of egs/custom: Kaldi data dirs (docs/design.md §4) from a plant engineer's own recordings.

Two corpus layouts:

* a folder ``<root>/<machine>/train/`` of normal recordings (any format soundfile reads,
  sub-folders and symlinked folders allowed) per machine, optionally ``<root>/<machine>/test/`` with
  ``normal/`` and ``anomaly/`` sub-folders, or test files directly in ``test/`` labelled by
  ``test/labels.csv`` (``<path relative to test/>,<normal|anomaly>`` per row; files it does not list
  get the label ``unknown``);
* a list file: ``<path> <machine>`` per line (the path may contain spaces; relative paths are
  relative to the list file), all normal training recordings.

Every recording gets section ``00``, domain ``source`` and attribute ``noAttribute``; the utt-id is
``<machine>-00-<stem>`` (test clips ``<machine>-00-<label>_<stem>``), whitespace in names replaced
by ``_``. Sets: ``train`` and, when any machine has test recordings, ``test``.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import soundfile as sf

from asdlib.data.datadir import DataDirError, Utt, make_utt_id

#: every format soundfile reads, by file suffix (RAW needs its parameters given, so it is left out)
AUDIO_SUFFIXES = tuple(
    sorted(
        {f".{name.lower()}" for name in sf.available_formats() if name != "RAW"}
        | {".aif", ".aifc", ".wave", ".oga", ".opus"}
    )
)
SECTION = "00"
_MACHINE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def audio_files(folder: Path) -> list[Path]:
    """Every audio file below ``folder`` (any suffix of :data:`AUDIO_SUFFIXES`), sorted; symlinked
    folders are followed once each (a link back to a parent is not a loop). A name with a control
    character (a ``\\r`` from a Windows script) is an error: it could not stand in wav.scp."""
    found, seen = [], set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(top)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        for name in files:
            path = Path(top) / name
            if Path(name).suffix.lower() in AUDIO_SUFFIXES and path.is_file():
                if any(ord(c) < 32 for c in str(path)):
                    raise DataDirError(f"{path!r}: the path holds a control character (e.g. \\r); rename it")
                found.append(path)
    return sorted(found)


def _stem(path: Path, base: Path) -> str:
    rel = path.relative_to(base).with_suffix("")
    return re.sub(r"\s+", "_", "_".join(rel.parts))


def _check_machine(machine: str, where: str) -> str:
    if not _MACHINE_RE.match(machine):
        raise DataDirError(
            f"{where}: machine name '{machine}' must be letters, digits and _ . + - (no spaces); rename it"
        )
    return machine


def _utt(machine: str, stem: str, path: Path, label: str) -> Utt:
    return Utt(
        make_utt_id(machine, SECTION, stem), str(path.resolve()), machine, SECTION, "source", label, "noAttribute"
    )


def read_list(path: Path) -> dict[str, list[Utt]]:
    """A ``<path> <machine>`` list: the training recordings."""
    utts = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise DataDirError(f"{path}:{n}: expected '<path> <machine>', got {line!r}")
            audio, machine = Path(parts[0]), _check_machine(parts[1], f"{path}:{n}")
            audio = audio if audio.is_absolute() else path.parent / audio
            if not audio.is_file():
                raise DataDirError(f"{path}:{n}: {audio} not found")
            utts.append(_utt(machine, re.sub(r"\s+", "_", audio.stem), audio, "normal"))
    if not utts:
        raise DataDirError(f"{path}: the list names no recordings")
    return {"train": utts}


def read_labels(csv_path: Path) -> dict[str, str]:
    """``labels.csv``: ``<path relative to test/>,<normal|anomaly>`` rows (an optional header; a UTF-8
    BOM, as Excel writes it, is accepted). A path listed twice with different labels is an error."""
    labels: dict[str, str] = {}
    if not csv_path.is_file():
        return labels
    with open(csv_path, encoding="utf-8-sig", newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or (n == 1 and row[0].strip().lower() in ("file", "file_name", "filename", "path")):
                continue
            if len(row) < 2 or row[1].strip() not in ("normal", "anomaly"):
                raise DataDirError(
                    f"{csv_path}:{n}: expected '<path relative to test/>,<normal|anomaly>', got {','.join(row)!r}"
                )
            key, label = Path(row[0].strip()).as_posix(), row[1].strip()
            if labels.get(key, label) != label:
                raise DataDirError(f"{csv_path}:{n}: {key} is labelled both {labels[key]} and {label}; keep one row")
            labels[key] = label
    return labels


def _test_utts(machine: str, test: Path) -> list[Utt]:
    out = []
    sub = [test / lab for lab in ("normal", "anomaly") if (test / lab).is_dir()]
    for folder in sub:
        out += [_utt(machine, f"{folder.name}_{_stem(p, folder)}", p, folder.name) for p in audio_files(folder)]
    labels = read_labels(test / "labels.csv")
    loose = [p for p in audio_files(test) if not any(p.is_relative_to(s) for s in sub)]
    for p in loose:
        label = labels.get(p.relative_to(test).as_posix(), "unknown")
        out.append(_utt(machine, f"{label}_{_stem(p, test)}", p, label))
    csv_path = test / "labels.csv"
    unmatched = sorted(set(labels) - {p.relative_to(test).as_posix() for p in loose})
    if unmatched:
        raise DataDirError(f"{csv_path}: lists files that are not in {test}: {', '.join(unmatched[:3])}")
    return out


def read_folder(root: Path) -> dict[str, list[Utt]]:
    """``<root>/<machine>/train/`` (+ optional ``test/``): the training and test recordings."""
    machines = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not machines:
        raise DataDirError(
            f"{root}: no machine folders; expected <machine>/train/*.wav|*.flac (docs: README 'Your own machines')"
        )
    sets: dict[str, list[Utt]] = {"train": [], "test": []}
    for mdir in machines:
        machine = _check_machine(mdir.name, str(mdir))
        train = audio_files(mdir / "train") if (mdir / "train").is_dir() else []
        if not train:
            raise DataDirError(
                f"{mdir / 'train'}: no audio recordings (.wav, .flac, ...); every machine needs normal training recordings"
            )
        sets["train"] += [_utt(machine, _stem(p, mdir / "train"), p, "normal") for p in train]
        if (mdir / "test").is_dir():
            sets["test"] += _test_utts(machine, mdir / "test")
    return {name: utts for name, utts in sets.items() if utts}


def read_corpus(corpus: Path) -> dict[str, list[Utt]]:
    """The sets of a corpus folder or list file (see the module docstring)."""
    if corpus.is_file():
        return read_list(corpus)
    if corpus.is_dir():
        return read_folder(corpus)
    raise DataDirError(
        f"corpus {corpus} not found: pass --corpus <folder of <machine>/train/> or a list file '<path> <machine>'"
    )
