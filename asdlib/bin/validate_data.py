"""Stage 1 (end): check every wav of the data dirs as the model will read it.

Reads each file with the training config's sample rate, channel and minimum length. Bad files
(missing, empty, unreadable, wrong sample rate, multi-channel, too short, NaN/Inf, all zero) stop
the run with a list naming utterance, path, reason and fix; with ``--skip_bad true`` they are
removed from every file of the data dir and listed in ``<data_dir>/bad.list`` instead, with a
warning. Settings: ``--config`` reads them from the training YAML; the flags override it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from asdlib.data.datadir import DataDirError
from asdlib.data.validate import BAD_LIST, AudioSpec, validate_data_dir
from asdlib.io.config import ConfigError
from asdlib.train.config import DataConfig, load_train_config
from asdlib.utils import setup_logging, str2bool

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dirs", nargs="+", type=Path, help="Kaldi data dirs (data/<set>)")
    p.add_argument("--config", type=Path, help="training YAML whose data section gives the settings below")
    p.add_argument("--sample_rate", type=int, help="required sample rate in Hz (default: config, else 16000)")
    p.add_argument("--min_seconds", type=float, help="shortest usable clip in seconds (default: config, else 0.1)")
    p.add_argument("--channel", type=int, help="channel of multi-channel files (default: config; none = mono required)")
    p.add_argument("--skip_bad", type=str2bool, default=False,
                   help="remove bad files from the data dir and list them in <data_dir>/bad.list instead of failing")
    p.add_argument("--nj", type=int, default=4, help="files read concurrently")
    p.add_argument("--verbose", type=int, default=1)
    return p


def audio_spec(args: argparse.Namespace) -> AudioSpec:
    """The settings from ``--config`` (else the training defaults), overridden by the flags."""
    data = load_train_config(args.config).data if args.config else DataConfig()
    sample_rate = args.sample_rate if args.sample_rate is not None else data.sample_rate
    min_seconds = args.min_seconds if args.min_seconds is not None else data.min_seconds
    channel = args.channel if args.channel is not None else data.channel
    if sample_rate <= 0 or min_seconds < 0:
        raise ConfigError(f"--sample_rate must be > 0 and --min_seconds >= 0, got {sample_rate} and {min_seconds}")
    return AudioSpec(sample_rate, max(1, int(min_seconds * sample_rate)), channel)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        spec = audio_spec(args)
        for set_dir in args.data_dirs:
            report = validate_data_dir(set_dir, spec, args.skip_bad, args.nj)
            if report.cached:
                log.info("%s: %d files already validated (unchanged since the last check)", set_dir, report.total)
            elif report.bad:
                for b in report.bad:
                    log.warning("%s: skipped %s (%s): %s", set_dir, b.utt_id, b.path, b.reason)
                log.warning("%s: removed %d of %d files as unusable (--skip_bad true); they are listed in %s",
                            set_dir, len(report.bad), report.total, set_dir / BAD_LIST)
            else:
                log.info("%s: all %d files are usable (%d Hz, >= %d samples)", set_dir, report.total,
                         spec.sample_rate, spec.min_samples)
    except (DataDirError, ConfigError, OSError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
