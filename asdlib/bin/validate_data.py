"""Stage 1 (end): check every wav of the data dirs as the model will read it.

Reads each file with the training config's sample rate, channel and minimum length: the larger of
``data.min_seconds`` and the shortest clip the config's upstream accepts. Bad files
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

from asdlib.config import DataConfig, UpstreamConfig, add_config_options, load_train_config
from asdlib.data.validate import BAD_LIST, AudioSpec, validate_data_dir
from asdlib.io.config import ConfigError
from asdlib.models.upstream import upstream_min_samples
from asdlib.utils import channel_arg, run_main, setup_logging, str2bool

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dirs", nargs="+", type=Path, help="Kaldi data dirs (data/<set>)")
    p.add_argument("--config", type=Path, help="training YAML whose data section gives the settings below")
    p.add_argument("--sample_rate", type=int, help="required sample rate in Hz (default: config, else 16000)")
    p.add_argument("--min_seconds", type=float, help="shortest usable clip in seconds (default: config, else 0.1)")
    p.add_argument(
        "--channel",
        type=channel_arg,
        help="channel of multi-channel files, or mean (default: config; none = mono required)",
    )
    add_config_options(p)
    p.add_argument(
        "--skip_bad",
        type=str2bool,
        default=False,
        help="remove bad files from the data dir and list them in <data_dir>/bad.list instead of failing",
    )
    p.add_argument("--nj", type=int, default=4, help="files read concurrently")
    p.add_argument("--verbose", type=int, default=1)
    return p


def audio_spec(args: argparse.Namespace) -> AudioSpec:
    """The settings from ``--config`` (else the training defaults), overridden by the flags; the
    minimum length is at least what the config's upstream accepts (``upstream_min_samples``)."""
    cfg = load_train_config(args.config, args.override, args.train_sets) if args.config else None
    data = cfg.data if cfg else DataConfig()
    sample_rate = args.sample_rate if args.sample_rate is not None else data.sample_rate
    min_seconds = args.min_seconds if args.min_seconds is not None else data.min_seconds
    channel = args.channel if args.channel is not None else data.channel
    if sample_rate <= 0 or min_seconds < 0:
        raise ConfigError(f"--sample_rate must be > 0 and --min_seconds >= 0, got {sample_rate} and {min_seconds}")
    min_samples = max(1, int(min_seconds * sample_rate))
    if cfg is not None and cfg.embedder == "ssl":
        min_samples = max(min_samples, _upstream_minimum(cfg.upstream, sample_rate))
    return AudioSpec(sample_rate, min_samples, channel, data.resample)


def _upstream_minimum(upstream: UpstreamConfig, sample_rate: int) -> int:
    """The upstream's own minimum in input samples; 1 when the checkpoint is not there yet (stage 3
    then fails on the missing file, not on short clips)."""
    if not upstream.path or not Path(upstream.path).exists():
        log.warning(
            "upstream checkpoint %r not found: clips are checked against data.min_seconds only, not "
            "against the %s upstream's own minimum length",
            upstream.path,
            upstream.name,
        )
        return 1
    needed = upstream_min_samples(upstream)
    log.info(
        "the %s upstream (%s) needs clips of at least %d samples (%.3f s)",
        upstream.name,
        upstream.path,
        needed,
        needed / sample_rate,
    )
    return needed


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    spec = audio_spec(args)
    for set_dir in args.data_dirs:
        report = validate_data_dir(set_dir, spec, args.skip_bad, args.nj)
        if report.cached:
            log.info("%s: %d files already validated (unchanged since the last check)", set_dir, report.total)
        elif report.bad:
            for b in report.bad:
                log.warning("%s: skipped %s (%s): %s", set_dir, b.utt_id, b.path, b.reason)
            log.warning(
                "%s: removed %d of %d files as unusable (--skip_bad true); they are listed in %s",
                set_dir,
                len(report.bad),
                report.total,
                set_dir / BAD_LIST,
            )
        else:
            log.info(
                "%s: all %d files are usable (%d Hz, >= %d samples)",
                set_dir,
                report.total,
                spec.sample_rate,
                spec.min_samples,
            )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
