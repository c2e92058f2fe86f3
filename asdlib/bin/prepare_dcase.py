"""Stage 1: Kaldi data dirs (docs/design.md §4) for a DCASE Task 2 corpus of 2020-2026.

Writes ``dev_train``, ``dev_test``, ``eval_train`` and ``eval_test`` under ``--data_dir`` from
``<root>/{dev_data,eval_data}/<machine>/...`` (Zenodo layout) or ``.../raw/<machine>/...``
(official-baseline layout). Every wav name is parsed with the year's rules
(:mod:`asdlib.data.dcase`); an unknown name, a missing set or an eval list that does not match
the files stops the run before anything is written.

Decisions (see docs of the functions below):

* eval_test label/domain come from an eval list, chosen by :func:`resolve_eval_list`:
  ``--eval_list PATH``; ``--eval_list none`` for none; else ``<root>/eval_data_list_<year>.csv``
  when present (synthetic corpora put theirs there); else the official list of the DCASE metadata
  (2020-2025; none for 2026), which asdlib does not ship but fetches (:mod:`asdlib.data.resources`:
  ``--metadata_dir``, $ASDLIB_DCASE_METADATA or the recipe's ``downloads/dcase_metadata/``); a
  year with a published list and none of these is an error saying how to get it. For DCASE 2022 ToyCar/ToyTrain, label and domain come from the
  official evaluator instead (:func:`asdlib.data.evallist.correct_2022_toy_truth`). Without a
  list the label is ``unknown`` and the domain is what the name shows (2020: ``source``; 2021:
  in the name) or ``unknown`` for the blinded 2022-2025 names. Listed machine types without
  eval-test files on disk (a partial download) are ignored.
* utt2attr comes from the file name, else from the machine's ``attributes_XX.csv``, else
  ``noAttribute``; the eval list's labelled name never feeds it (docs/design.md §4).
* a synthetic corpus's ``anomaly_regions.csv`` (where each inserted anomaly is) becomes the test
  sets' ``utt2anomaly_region`` (:mod:`asdlib.data.regions`).
* 2025 ``supplemental/`` clips (clean machine or noise-only recordings, not ordinary normal
  training clips) are kept out of ``dev_train``/``eval_train``; ask for them as the extra sets
  ``dev_supplemental``/``eval_supplemental`` (label ``normal``, domain ``source``), or for one kind
  of them as ``{dev,eval}_supplemental_machine`` (clean machine) and ``{dev,eval}_supplemental_noise``
  (noise only), so that a recipe can use the two kinds differently.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from asdlib.data.datadir import (
    DataDirError,
    Utt,
    check_utt,
    make_utt_id,
    read_data_dir,
    summary_table,
    write_data_dir,
)
from asdlib.data.dcase import (
    NO_ATTRIBUTE,
    ParsedName,
    parse_name,
    parse_supplemental_name,
)
from asdlib.data.evallist import (
    EvalEntry,
    check_eval_list,
    correct_2022_toy_truth,
    default_eval_list,
    read_eval_list,
)
from asdlib.data.regions import CORPUS_FILE, AnomalyTruth, parse_truth, write_anomaly_regions
from asdlib.data.resources import MetadataMissingError, official_eval_list
from asdlib.utils import run_main, setup_logging
from asdlib.years import YEARS, get_year

logger = logging.getLogger(__name__)

SETS = ("dev_train", "dev_test", "eval_train", "eval_test")
SUPPLEMENTAL_KINDS = ("machine", "noise")  # the kinds a 2025 supplemental clip's name tells
SUPPLEMENTAL_DIR = "supplemental"
_RENAMED_TEST_DIR = "test_rename"  # written by the baseline's tools/rename_eval_wav.py: a labelled copy of test/


class PrepError(ValueError):
    """A corpus that cannot be prepared as asked (missing directories, wrong layout, bad names)."""


@dataclass(frozen=True)
class SetSpec:
    part: str  # dev_data | eval_data
    kind: str  # train | test | supplemental
    supplemental_kind: str | None = None  # only supplemental clips of this kind (machine | noise); None: all


_SET_SPECS = {
    "dev_train": SetSpec("dev_data", "train"),
    "dev_test": SetSpec("dev_data", "test"),
    "eval_train": SetSpec("eval_data", "train"),
    "eval_test": SetSpec("eval_data", "test"),
    "dev_supplemental": SetSpec("dev_data", "supplemental"),
    "eval_supplemental": SetSpec("eval_data", "supplemental"),
    **{
        f"{dataset}_supplemental_{kind}": SetSpec(f"{dataset}_data", "supplemental", kind)
        for dataset in ("dev", "eval")
        for kind in SUPPLEMENTAL_KINDS
    },
}
SUPPLEMENTAL_SETS = tuple(name for name, spec in _SET_SPECS.items() if spec.kind == "supplemental")


def clip_dirs(year: int, kind: str) -> tuple[str, ...]:
    """Sub-directories of a machine dir that hold one kind of clip (2021 splits test by domain)."""
    if kind == "test":
        return get_year(year).test_dirs
    return (SUPPLEMENTAL_DIR,) if kind == "supplemental" else ("train",)


def find_machine_dirs(root: Path, part: str) -> dict[str, Path]:
    """Machine directories of ``<root>/<part>`` in either layout: ``<machine>/`` or ``raw/<machine>/``."""
    base = root / part
    if not base.is_dir():
        raise PrepError(
            f"{base} not found: the corpus root must hold {part}/ (download and unzip the {part} archives there, or restrict --sets)"
        )
    plain = _subdirs(base, exclude=("raw",))
    raw = _subdirs(base / "raw") if (base / "raw").is_dir() else {}
    if plain and raw:
        raise PrepError(
            f"{base} holds machine dirs both directly ({', '.join(sorted(plain))}) and under raw/ ({', '.join(sorted(raw))}); "
            "keep one layout (move everything under raw/ or out of it)"
        )
    found = raw or plain
    if not found:
        raise PrepError(f"{base} holds no machine directories (expected {base}/<machine>/ or {base}/raw/<machine>/)")
    return found


def _subdirs(path: Path, exclude: Sequence[str] = ()) -> dict[str, Path]:
    return {
        p.name: p
        for p in sorted(path.iterdir())
        if p.is_dir() and not p.name.startswith((".", "__")) and p.name not in exclude
    }


def list_wavs(directory: Path) -> list[Path]:
    """The ``*.wav`` files of a clip directory; anything else is reported, never read."""
    wavs, other = [], []
    for p in sorted(directory.iterdir()):
        (wavs if p.is_file() and p.name.endswith(".wav") else other).append(p.name)
    if other:
        logger.warning(
            "%s: ignoring %d entries that are not .wav files (e.g. %s)", directory, len(other), ", ".join(other[:3])
        )
    return [directory / n for n in wavs]


def read_attribute_csvs(machine_dir: Path) -> dict[str, str]:
    """File name -> attribute string from ``attributes_XX.csv`` (``<d1p>_<d1v>_...``, as in file names).

    Rows whose values are empty or ``noAttribute`` give nothing (the caller writes
    ``noAttribute``). Columns named ``file_name*`` besides the first (evaluator copies) are skipped.
    """
    out: dict[str, str] = {}
    for path in sorted(machine_dir.glob("attributes_*.csv")):
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
        if not rows or not rows[0] or rows[0][0].strip() != "file_name":
            raise PrepError(f"{path}: expected a header starting with 'file_name' (official attributes_XX.csv format)")
        keep = [i for i, h in enumerate(rows[0]) if i > 0 and not h.strip().startswith("file_name")]
        for lineno, row in enumerate(rows[1:], 2):
            if not row or not row[0].strip():
                continue
            name = row[0].strip().replace("\\", "/").rsplit("/", 1)[-1]
            attr = "_".join(row[i].strip() for i in keep if i < len(row) and row[i].strip())
            if not attr or attr == NO_ATTRIBUTE:
                continue
            if any(c.isspace() for c in attr):
                raise PrepError(
                    f"{path}:{lineno}: attribute values of {name} contain whitespace ({attr!r}); utt2attr needs one token"
                )
            if out.get(name, attr) != attr:
                raise PrepError(
                    f"{path}:{lineno}: {name} has attributes {attr!r} here but {out[name]!r} in an earlier row or file"
                )
            out[name] = attr
    return out


def _check_train(parsed: ParsedName, wav: Path) -> None:
    if parsed.label != "normal" or parsed.split not in ("train", None):
        raise PrepError(
            f"{wav}: a training directory must hold normal training clips only, got a {parsed.label or 'blinded'} {parsed.split or ''} clip"
        )


def _test_domain_dir_check(year: int, parsed: ParsedName, wav: Path) -> None:
    if (
        get_year(year).naming == "section_domain"
        and parsed.domain is not None
        and wav.parent.name != f"{parsed.domain}_test"
    ):
        raise PrepError(
            f"{wav}: a {parsed.domain}-domain clip in {wav.parent.name}/; 2021 keeps source_test/ and target_test/ apart"
        )


def build_set(
    year: int,
    set_name: str,
    machines: Mapping[str, Path],
    eval_entries: Mapping[tuple[str, str], EvalEntry] | None,
    eval_list_path: Path | None,
) -> list[Utt]:
    """The utterances of one set; raises :class:`PrepError`/:class:`DcaseNameError` on any problem."""
    spec = _SET_SPECS[set_name]
    utts: list[Utt] = []
    blinded_found: dict[str, list[str]] = {}
    for machine, mdir in machines.items():
        attrs = read_attribute_csvs(mdir)
        if get_year(year).attributes_csv and spec.kind == "train" and not any(mdir.glob("attributes_*.csv")):
            logger.warning(
                "%s: no attributes_XX.csv (DCASE %d ships one per machine directory); utt2attr comes from the "
                "file names alone. If this machine's names carry no attributes, restore the csv from its "
                "archive and rerun stage 1",
                mdir,
                year,
            )
        dirs = [mdir / d for d in clip_dirs(year, spec.kind)]
        missing = [d for d in dirs if not d.is_dir()]
        if missing and spec.kind == "supplemental":
            continue  # supplemental clips are extra material; machines without them are fine
        if missing:
            raise PrepError(
                f"{set_name}: {', '.join(map(str, missing))} not found for machine {machine}; "
                f"unzip the missing archive or leave {set_name} out of --sets"
            )
        if spec.kind == "test" and (mdir / _RENAMED_TEST_DIR).is_dir():
            logger.info(
                "%s: ignoring %s/ (a labelled copy of test/ made by the baseline's rename tool)",
                mdir,
                _RENAMED_TEST_DIR,
            )
        wavs = [w for d in dirs for w in list_wavs(d)]
        if not wavs:
            raise PrepError(f"{set_name}: no .wav files in {', '.join(map(str, dirs))}")
        for wav in wavs:
            if spec.kind == "supplemental":
                parsed = parse_supplemental_name(year, wav.name, where=str(wav.parent))
                if spec.supplemental_kind not in (None, parsed.kind):
                    continue
            else:
                parsed = parse_name(year, wav.name, where=str(wav.parent))
            if spec.kind == "train":
                _check_train(parsed, wav)
            elif set_name == "dev_test" and parsed.blinded:
                raise PrepError(f"{wav}: blinded name in the development test set; dev test names carry their labels")
            if spec.kind == "test":
                _test_domain_dir_check(year, parsed, wav)
            label, domain = parsed.label, parsed.domain
            if set_name == "eval_test" and parsed.blinded and eval_entries is not None:
                blinded_found.setdefault(machine, []).append(wav.name)
                entry = eval_entries.get((machine, wav.name))
                if entry is not None:  # a missing entry is reported by check_eval_list below
                    label, domain = entry.label, entry.domain
            attr = parsed.attr if parsed.attr != NO_ATTRIBUTE else attrs.get(wav.name, NO_ATTRIBUTE)
            utts.append(
                Utt(
                    utt_id=make_utt_id(machine, parsed.section, wav.stem),
                    path=str(wav),
                    machine=machine,
                    section=parsed.section,
                    domain=domain or "unknown",
                    label=label or "unknown",
                    attr=attr,
                )
            )
    if not utts:
        what = (
            f"a {SUPPLEMENTAL_DIR}/ dir"
            if spec.supplemental_kind is None
            else (
                f"{spec.supplemental_kind} clips in {SUPPLEMENTAL_DIR}/ (section_XX_{spec.supplemental_kind}_NNNN...wav)"
            )
        )
        raise PrepError(f"{set_name}: no machine dir has {what}; leave {set_name} out of --sets")
    if set_name == "eval_test" and eval_entries is not None:
        # labelled names on disk describe themselves; only blinded ones need (and must match) the list
        check_eval_list(eval_entries, blinded_found, eval_list_path or "")
    _warn_unofficial(year, set_name, spec.part, utts)
    return utts


def _warn_unofficial(year: int, set_name: str, part: str, utts: Sequence[Utt]) -> None:
    """Machines/sections outside the official lists are allowed (custom corpora) but reported."""
    official = get_year(year).dev if part == "dev_data" else get_year(year).eval
    seen = sorted({(u.machine, u.section) for u in utts})
    extra = [f"{m}/{s}" for m, s in seen if s not in official.get(m, ())]
    if extra:
        logger.warning(
            "%s: machine/section pairs not in the official DCASE %d %s lists: %s",
            set_name,
            year,
            part,
            ", ".join(extra),
        )
    absent = sorted(set(official) - {m for m, _ in seen})
    if absent and set_name not in SUPPLEMENTAL_SETS:
        logger.warning("%s: official DCASE %d machines without data: %s", set_name, year, ", ".join(absent))


def resolve_eval_list(root: Path, year: int, eval_list: str | None, metadata: str | Path | None = None) -> Path | None:
    """The eval list to use, and log which one.

    Precedence: ``eval_list`` as a path > ``none`` (no ground truth) > the corpus's
    ``<root>/eval_data_list_<year>.csv`` > the official list of the DCASE metadata (``metadata``,
    $ASDLIB_DCASE_METADATA, the recipe cache) > none (2026). A year whose list is published but
    found nowhere is an error: preparing it silently without ground truth would only fail at stage 6.
    """
    if eval_list is not None and eval_list.lower() in ("none", ""):
        logger.info("eval_test ground truth: none (--eval_list none); labels 'unknown'")
        return None
    if eval_list is not None:
        path = Path(eval_list).expanduser().resolve()
        if not path.is_file():
            raise PrepError(
                f"--eval_list {eval_list}: file not found (give the official eval_data_list_{year}.csv, or 'none')"
            )
        logger.info("eval_test ground truth: %s (--eval_list)", path)
        return path
    default = default_eval_list(root, year)
    if default.is_file():
        logger.info("eval_test ground truth: %s (the corpus's own list)", default)
        return default
    if not get_year(year).eval_list:
        logger.info("eval_test ground truth: none (no official DCASE %d list is published); labels 'unknown'", year)
        return None
    try:
        official = official_eval_list(year, metadata, required=True)
    except MetadataMissingError as e:
        raise MetadataMissingError(f"stage 1 (eval_test) needs {e}; or pass --eval_list none") from None
    logger.info(
        "eval_test ground truth: the official DCASE %d list of the DCASE metadata (%s); "
        "pass --eval_list none to prepare eval_test without it",
        year,
        official,
    )
    return official


def prepare(
    year: int,
    root: str | Path,
    data_dir: str | Path,
    sets: Sequence[str] = SETS,
    eval_list: str | None = None,
    metadata: str | Path | None = None,
) -> dict[str, list[Utt]]:
    """Build, write and re-validate the requested sets; nothing is written unless all sets build."""
    info = get_year(year)
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise PrepError(f"corpus root {root} not found: set it in db.sh or pass --root")
    unknown = [s for s in sets if s not in _SET_SPECS]
    if unknown:
        raise PrepError(f"unknown set(s) {unknown}; choose from {', '.join(_SET_SPECS)}")
    if not info.supplemental and any(s in SUPPLEMENTAL_SETS for s in sets):
        raise PrepError(f"supplemental sets exist only for DCASE 2025, not {year}")
    list_path = resolve_eval_list(root, year, eval_list, metadata) if "eval_test" in sets else None
    entries = None
    if list_path is not None:
        entries = correct_2022_toy_truth(read_eval_list(list_path, year), year, list_path, metadata)
    machine_dirs = {part: find_machine_dirs(root, part) for part in sorted({_SET_SPECS[s].part for s in sets})}
    built = {s: build_set(year, s, machine_dirs[_SET_SPECS[s].part], entries, list_path) for s in sets}
    _report_unrequested_supplemental(year, machine_dirs, sets)
    data_dir = Path(data_dir)
    for set_name, utts in built.items():
        _validate(data_dir / set_name, utts)
    truth = read_corpus_regions(root)
    for set_name, utts in built.items():
        write_data_dir(data_dir / set_name, utts)
        built[set_name] = read_data_dir(data_dir / set_name)
        known = {u.utt_id: truth[(u.machine, u.file_name)] for u in utts if (u.machine, u.file_name) in truth}
        if known:
            write_anomaly_regions(data_dir / set_name, known)
    return built


def read_corpus_regions(root: Path) -> dict[tuple[str, str], AnomalyTruth]:
    """(machine, file name) -> where its anomaly is, from a synthetic corpus's ``anomaly_regions.csv``
    ({} for a corpus without one, such as DCASE's)."""
    path = root / CORPUS_FILE
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        return {
            (r["machine"], r["file_name"]): parse_truth(f"{r['anomaly']} {r['regions']}", f"{path} ({r['file_name']})")
            for r in csv.DictReader(f)
        }


def _validate(set_dir: Path, utts: Sequence[Utt]) -> None:
    """The checks of write_data_dir, run on every set before the first one is written."""
    seen: dict[str, str] = {}
    for utt in utts:
        check_utt(utt, str(set_dir))
        if utt.utt_id in seen:
            raise DataDirError(
                f"{set_dir}: duplicate utt-id '{utt.utt_id}' ({seen[utt.utt_id]} and {utt.path}); rename one of the files"
            )
        seen[utt.utt_id] = utt.path


def _report_unrequested_supplemental(
    year: int, machine_dirs: Mapping[str, Mapping[str, Path]], sets: Sequence[str]
) -> None:
    for part, machines in machine_dirs.items():
        set_name = f"{part.split('_')[0]}_supplemental"
        if any(_SET_SPECS[s].part == part and _SET_SPECS[s].kind == "supplemental" for s in sets):
            continue
        dirs = [d / SUPPLEMENTAL_DIR for d in machines.values() if (d / SUPPLEMENTAL_DIR).is_dir()]
        if dirs:
            hint = (
                f"add {set_name} to --sets to prepare them"
                if get_year(year).supplemental
                else f"DCASE {year} has no supplemental data"
            )
            logger.warning(
                "%d machine dirs of %s have a %s/ dir that is not prepared (%s)",
                len(dirs),
                part,
                SUPPLEMENTAL_DIR,
                hint,
            )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Write Kaldi data dirs (wav.scp, utt2machine, utt2section, utt2domain, utt2label, utt2attr, utt2spk, spk2utt) for a DCASE Task 2 corpus.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--year", type=int, required=True, choices=tuple(YEARS), help="challenge year of the corpus")
    parser.add_argument("--root", required=True, help="corpus root holding dev_data/ and eval_data/")
    parser.add_argument("--data_dir", required=True, help="output directory; sets are written to <data_dir>/<set>/")
    parser.add_argument(
        "--eval_list",
        default=None,
        help="eval_data_list_<year>.csv for eval_test labels/domains; default: <root>/eval_data_list_<year>.csv "
        "if present, else the official list of the DCASE metadata (2020-2025); 'none' prepares eval_test without ground truth",
    )
    parser.add_argument(
        "--metadata_dir",
        default=None,
        help="the official DCASE metadata (python -m asdlib.bin.fetch_metadata --dest DIR); default: "
        "$ASDLIB_DCASE_METADATA, else downloads/dcase_metadata/",
    )
    parser.add_argument(
        "--sets",
        nargs="+",
        default=list(SETS),
        help=f"sets to build (space or comma separated); also {', '.join(SUPPLEMENTAL_SETS)} for 2025",
    )
    parser.add_argument("--verbose", type=int, default=1, help="0: warnings only; 2: debug messages and tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose, force=False)
    sets = [s for item in args.sets for s in item.replace(",", " ").split()]
    built = prepare(args.year, args.root, args.data_dir, sets, args.eval_list, args.metadata_dir)
    for set_name, utts in built.items():
        print(f"\n{set_name}: {len(utts)} utterances -> {Path(args.data_dir) / set_name}")
        print(summary_table(utts))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
