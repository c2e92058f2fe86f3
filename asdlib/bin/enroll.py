"""Enrol a new normal condition into a packed model without retraining: a new pack at --out.

    asdlib-enroll --packed packed/ --machine fan --domain line2 --out packed_line2/ new_normals/

The recordings (files, folders or ``--list``, as for asdlib-infer) are read and embedded window by
window exactly as asdlib-infer reads them, and join the packed bank as normal clips of the machine
and section in ``--domain`` (default ``target``). Back ends with domain-wise banks treat a new name
as one more domain bank (the minimum over the banks, as for source and target); the others put the
clips into the section's one bank. The thresholds of that machine and section are calibrated again
on held-out normals as stage 7 does (k-fold, ``--fpr`` and ``--folds`` default to the pack's);
every other threshold is kept. The new pack's manifest records the parent (its digest and path) and
every enrolment. The parent is only read; ``results/`` is not carried over (it describes the
parent's bank). A recording that cannot be read stops the run: enrolment never skips normals.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asdlib.backends.bank import own_widths
from asdlib.backends.calibration import calibrate, describe, pooled_fpr
from asdlib.backends.noise import NoiseProjected
from asdlib.backends.packed import (
    BANK,
    Packed,
    PackedError,
    extract,
    load_bank,
    load_packed,
    save_bank,
    seal,
)
from asdlib.bin.infer import collect, embed_recording, resolve
from asdlib.bin.pack import software_versions
from asdlib.data.audio import AudioError
from asdlib.data.datadir import Utt, make_utt_id
from asdlib.devices import resolve_device
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)
DOMAIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asdlib-enroll", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--packed", type=Path, required=True, help="the parent: exp/<tag>/packed or packed.tar (only read)")
    p.add_argument("inputs", nargs="*", type=Path, help="normal recordings of the new condition, or folders of them")
    p.add_argument("--list", type=Path, help="file of '<path> [<machine> [<section>]]' lines, as for asdlib-infer")
    p.add_argument("--machine", required=True, help="machine of the recordings, as named in the pack")
    p.add_argument("--section", help="section (default: the machine's only section in the pack)")
    p.add_argument("--domain", default="target", help="domain bank the recordings join (a new name: a new bank)")
    p.add_argument("--out", type=Path, required=True, help="directory of the new pack (not the parent)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    p.add_argument("--fpr", type=float, help="false-alarm rate of the new thresholds (default: the pack's)")
    p.add_argument("--folds", type=int, help="folds over the normals for the thresholds (default: the pack's)")
    p.add_argument("--batch_size", type=int, default=8, help="windows embedded per forward pass")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, or auto")
    p.add_argument("--verbose", type=int, default=1)
    return p


def check_out(parent: Path, out: Path, force: bool) -> None:
    """Refuse an --out that is, holds or lies inside the parent, or a non-empty one without --force."""
    src, dst = parent.resolve(), out.resolve()
    tmp = dst.with_name(dst.name + ".tmp")
    if src == dst or dst.is_relative_to(src) or src.is_relative_to(dst) or src.is_relative_to(tmp):
        raise ValueError(f"--out {out}: overlaps the parent pack {parent}, which is never modified; choose another")
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        if not force:
            raise ValueError(f"--out {out}: exists and is not empty; choose another or pass --force to replace it")


def enrolled_utts(
    packed: Packed, paths: list[Path], machine: str, section: str, domain: str, device: str, batch_size: int
) -> tuple[list[Utt], np.ndarray, int]:
    """Bank entries of the recordings' windows (ids ``enrol<n>r<recording>w<window>``, unique along the
    lineage) and their embeddings; the number of this enrolment."""
    n = len(packed.manifest.enrolled)
    utts, embs = [], []
    with tqdm(desc="asdlib-enroll", unit="window", file=sys.stderr, disable=None) as bar:
        for i, path in enumerate(paths):
            try:
                windows, emb = embed_recording(packed, path, machine, device, batch_size, bar)
            except (AudioError, OSError) as e:
                reason = " ".join(str(e).split())
                raise AudioError(
                    f"{reason if str(path) in reason else f'{path}: {reason}'}; it cannot be enrolled: fix or "
                    "remove it and run again (enrolment never skips a normal recording)"
                ) from e
            rec = make_utt_id(machine, section, f"enrol{n:02d}r{i:05d}")
            if len(windows) == 1:
                utts.append(Utt(rec, "", machine, section, domain, "normal", "noAttribute"))
            else:
                utts += [
                    Utt(f"{rec}w{j:05d}", "", machine, section, domain, "normal", "noAttribute", rec=rec)
                    for j in range(len(windows))
                ]
            embs.append(emb)
    return utts, np.concatenate(embs), n


def enroll(args: argparse.Namespace, root: Path, device: str) -> None:
    """Enrol into the verified pack at ``root`` (a directory) and publish the new pack at ``args.out``."""
    packed = load_packed(root, device)
    manifest = packed.manifest
    fpr = manifest.calibration.target_fpr if args.fpr is None else args.fpr
    folds = manifest.calibration.folds if args.folds is None else args.folds
    if not 0.0 < fpr < 1.0 or folds < 2:
        raise ValueError(f"--fpr must be in (0, 1) and --folds >= 2, got {fpr} and {folds}")
    recs = resolve(packed, collect(args))
    machine, section = recs[0].machine, recs[0].section
    other = next((r for r in recs if (r.machine, r.section) != (machine, section)), None)
    if other is not None:
        raise ValueError(
            f"{other.path}: machine/section {other.machine}/{other.section}, but {recs[0].path} is "
            f"{machine}/{section}; enrol one machine and section per run"
        )
    if fpr != manifest.calibration.target_fpr and len(packed.known()) > 1:
        raise ValueError(
            f"--fpr {fpr} differs from the pack's calibration.target_fpr {manifest.calibration.target_fpr}, "
            "which the other machines' thresholds keep; omit --fpr or repack with stage 7 at that rate"
        )
    new_utts, new_emb, n = enrolled_utts(
        packed, [r.path for r in recs], machine, section, args.domain, device, args.batch_size
    )
    utts, emb = load_bank(root / BANK)
    if new_emb.shape[1] != emb.shape[1]:
        raise PackedError(f"{root / BANK}: embeddings of width {emb.shape[1]}, the model gives {new_emb.shape[1]}")
    clash = sorted({u.utt_id for u in utts} & {u.utt_id for u in new_utts})
    if clash:
        raise PackedError(f"{root / BANK}: already holds entry {clash[0]}; enrol from a pack without it")
    utts += new_utts
    emb = np.concatenate([emb, new_emb.astype(np.float32)])

    cfg = packed.trained.cfg
    projection = packed.backend.projection if isinstance(packed.backend, NoiseProjected) else None
    group = [i for i, u in enumerate(utts) if (u.machine, u.section) == (machine, section)]
    fresh = calibrate(
        [utts[i] for i in group], emb[group], cfg.backend, own_widths(cfg, emb.shape[1]), fpr, folds, projection
    )[machine][section]
    old = manifest.thresholds[machine][section]
    log.info(
        "%s/%s: %d recordings (%d windows) enrolled in domain %s; threshold %.6f -> %s",
        machine,
        section,
        len(recs),
        len(new_utts),
        args.domain,
        old.threshold,
        describe(machine, section, fresh, fpr),
    )

    body = dataclasses.asdict(manifest)
    body["thresholds"][machine][section] = fresh
    measured, n_heldout = pooled_fpr(body["thresholds"])
    now = datetime.datetime.now().isoformat(timespec="seconds")
    entry = {
        "machine": machine,
        "section": section,
        "domain": args.domain,
        "recordings": len(recs),
        "windows": len(new_utts),
        "date": now,
    }
    body.update(
        created=now,
        versions=software_versions(),
        calibration={**body["calibration"], "target_fpr": fpr, "measured_fpr": measured, "n_heldout": n_heldout},
        parent={"digest": manifest.digest, "path": str(args.packed.resolve())},
        enrolled=[*body["enrolled"], entry],
    )
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for rel in manifest.files:  # verified by load_packed; the bank is rewritten, results/ left behind
        if rel != BANK and not rel.startswith("results/"):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, tmp / rel)
    save_bank(tmp / BANK, utts, emb)
    seal(tmp, body, f"{args.out}: the enrolled pack")  # a pack that does not load is not published
    if args.out.is_dir():
        shutil.rmtree(args.out)
    elif args.out.exists():
        args.out.unlink()
    tmp.rename(args.out)
    log.info("enrolment %d: %s -> %s", n, args.packed, args.out)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if not DOMAIN_RE.fullmatch(args.domain) or args.domain == "unknown":
        raise ValueError(
            f"--domain {args.domain!r}: a name of letters, digits, '_', '.' or '-' (not 'unknown', which marks "
            "clips of no known domain); e.g. target or line2"
        )
    check_out(args.packed, args.out, args.force)
    device = resolve_device(args.device)
    if args.packed.is_file():  # a packed.tar: its files are copied into the new pack, so extract it first
        with tempfile.TemporaryDirectory(prefix="asdlib-enroll-") as tmp:
            enroll(args, extract(args.packed, Path(tmp)), device)
    else:
        enroll(args, args.packed, device)
    return 0


def cli() -> None:
    """Console script ``asdlib-enroll``."""
    raise SystemExit(run_main(main))


if __name__ == "__main__":
    cli()
