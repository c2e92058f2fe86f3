"""Export a packed model (stage 7) for scoring without torch: ONNX embedder plus numpy back end.

    asdlib-export --packed exp/<tag>/packed --format onnx --out exp/<tag>/onnx [--int8]
    python exp/<tag>/onnx/reference.py --machine fan new.wav          # numpy + onnxruntime only

``--out`` receives ``embedder.onnx`` (LoRA merged, appended log-mel included; batch and time
dynamic), ``embedder.int8.onnx`` with ``--int8`` (dynamic quantisation), ``backend.json`` and
``backend.npz`` (back-end tree and arrays, thresholds, alarm rule, audio and windowing, machines),
``reference.py`` (the scorer, asdlib/export/reference.py) and ``manifest.json`` (size and sha256 of
every file, the pack's digest, versions, and the probe's errors). The pack is verified as
asdlib-infer verifies it, and the export is checked before it is published: onnxruntime through
reference.py must reproduce the packed model's embeddings and scores on seeded noise windows within
``--tolerance``, else nothing is written. A back-end kind without a numpy scorer is refused with the
list of those that have one.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np

from asdlib.backends.packed import Packed, PackedError, file_table, load_packed
from asdlib.backends.portable import check_exportable
from asdlib.bin.enroll import check_out
from asdlib.bin.pack import software_versions
from asdlib.export import reference
from asdlib.export.onnx_export import (
    DEFAULT_OPSET,
    check_traceable,
    export_embedder,
    export_scoring,
    probe_errors,
    quantize_int8,
)
from asdlib.io.atomic import atomic_write_text
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asdlib-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--packed", type=Path, required=True, help="exp/<tag>/packed (a copy of it) or packed.tar")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--out", type=Path, required=True, help="directory to write (published only once checked)")
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out")
    p.add_argument("--int8", action="store_true", help="also write embedder.int8.onnx (dynamic int8 quantisation)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest embedding difference, and score difference relative to max(1, |score|), accepted on the probe",
    )
    p.add_argument("--verbose", type=int, default=1)
    return p


def write_export(packed: Packed, out: Path, args: argparse.Namespace) -> None:
    """Write the export into ``<out>.tmp``, check it against ``packed`` and rename it to ``out``."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        export_embedder(packed, tmp / reference.EMBEDDER, args.opset)
        config, arrays = export_scoring(packed)
        np.savez(tmp / reference.BACKEND_NPZ, **arrays)
        atomic_write_text(tmp / reference.BACKEND_JSON, json.dumps(config, indent=1, allow_nan=False) + "\n")
        shutil.copy2(reference.__file__, tmp / "reference.py")
        if args.int8:
            quantize_int8(tmp / reference.EMBEDDER, tmp / reference.EMBEDDER_INT8)
        manifest = {
            "format": reference.FORMAT,
            "created": datetime.now().isoformat(timespec="seconds"),
            "source": {"path": str(args.packed.resolve()), "digest": packed.manifest.digest},
            "versions": {**software_versions(), **_onnx_versions()},
            "opset": args.opset,
            "files": file_table(tmp),
        }
        atomic_write_text(tmp / reference.MANIFEST, json.dumps(manifest, indent=1) + "\n")
        errors = probe_errors(packed, reference.Scorer(tmp))
        log.info(
            "onnxruntime vs torch on %d probe windows: max |embedding diff| %.3g, max |score diff| %.3g "
            "(%.3g relative)",
            errors.windows,
            errors.embedding,
            errors.score,
            errors.score_relative,
        )
        if max(errors.embedding, errors.score_relative) > args.tolerance:
            raise PackedError(
                f"{args.packed}: the ONNX export differs from the packed model by up to {errors.embedding:.3g} "
                f"(embeddings) and {errors.score_relative:.3g} (scores, relative) on the probe, over --tolerance "
                f"{args.tolerance:g}; nothing was written (report it with the pack's config.yaml)"
            )
        manifest["probe"] = asdict(errors)
        if args.int8:
            manifest["probe_int8"] = asdict(probe_errors(packed, reference.Scorer(tmp, int8=True)))
        atomic_write_text(tmp / reference.MANIFEST, json.dumps(manifest, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    tmp.rename(out)


def _onnx_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.tolerance <= 0:
        raise ValueError(f"--tolerance must be > 0, got {args.tolerance}")
    check_out(args.packed, args.out, args.force)
    packed = load_packed(args.packed)  # verified as asdlib-infer verifies it (a .tar is extracted and removed)
    check_exportable(packed.trained.cfg.backend, f"{args.packed} (config.yaml)")
    check_traceable(packed, f"{args.packed} (config.yaml)")
    write_export(packed, args.out, args)
    log.info("exported %s -> %s", args.packed, args.out)
    return 0


def cli() -> None:
    """Console script ``asdlib-export``."""
    raise SystemExit(run_main(main))


if __name__ == "__main__":
    cli()
