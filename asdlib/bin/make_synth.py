"""Write a small synthetic corpus in the DCASE 2023-2026 Task 2 layout (for tests and egs/mini).

Example: python -m asdlib.bin.make_synth --root downloads/synth --anomaly_strength 1.5
--family b: the second sound model and domain shift (asdlib.synth.family_b), with its own default
machines (bearing,slider,ToyCar / AirCompressor,BrushlessMotor,HoveringDrone); --family c: impulsive
cyclic machines, the held-out family (asdlib.synth.family_c; ToyTrain / 3DPrinter,RoboticArm,ToyCircuit);
--family d: inverter-driven machines with DCASE's hard domain shift and proportions (990 + 10 training
clips, 50 test clips per domain x label; asdlib.synth.family_d); --family e: servo-driven devices at
the same hardness, held out from every choice (asdlib.synth.family_e).
--year 2025 adds supplemental/ clips per machine (--n_supplemental_machine clean machine clips
section_00_machine_NNNN_.wav, --n_supplemental_noise noise-only clips section_00_noise_NNNN_.wav);
--year 2026 writes stereo files (channel 0: the 2024 clip, channel 1: a far microphone).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from asdlib.synth.corpus import LAYOUT_YEARS, SynthConfig, generate_corpus
from asdlib.synth.families import FAMILIES
from asdlib.utils import run_main, setup_logging


def _names(text: str) -> tuple[str, ...]:
    """Comma list -> tuple of names (empty items dropped)."""
    return tuple(x.strip() for x in text.split(",") if x.strip())


def get_parser(family: str = "a") -> argparse.ArgumentParser:
    """The options, with the defaults of corpus family ``family``."""
    defaults = FAMILIES[family][0]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument(
        "--family",
        choices=sorted(FAMILIES),
        default=family,
        help="sound model: a (asdlib.synth.corpus), b, c, d or e (asdlib.synth.family_<x>) "
        "(asdlib.synth.family_c); sets the machine defaults",
    )
    p.add_argument(
        "--root", type=Path, required=True, help="corpus root; gets dev_data/, eval_data/, eval_data_list_<year>.csv"
    )
    p.add_argument(
        "--year",
        type=int,
        choices=LAYOUT_YEARS,
        default=defaults.year,
        help="names the eval list file; 2025 adds supplemental/ clips, 2026 writes stereo (near, far microphone)",
    )
    p.add_argument("--dev_machines", type=_names, default=",".join(defaults.dev_machines), help="comma list")
    p.add_argument("--eval_machines", type=_names, default=",".join(defaults.eval_machines), help="comma list")
    p.add_argument(
        "--no_attribute",
        type=_names,
        default=",".join(defaults.no_attribute),
        help="comma list of machines whose file names hide their attributes ('' for none)",
    )
    p.add_argument("--n_train_source", type=int, default=defaults.n_train_source)
    p.add_argument("--n_train_target", type=int, default=defaults.n_train_target)
    p.add_argument("--n_test", type=int, default=defaults.n_test, help="test clips per (domain, label)")
    p.add_argument(
        "--n_supplemental_machine",
        type=int,
        default=defaults.n_supplemental_machine,
        help="--year 2025: clean machine clips per machine in supplemental/",
    )
    p.add_argument(
        "--n_supplemental_noise",
        type=int,
        default=defaults.n_supplemental_noise,
        help="--year 2025: noise-only clips per machine in supplemental/ (half source, half target conditions)",
    )
    p.add_argument("--seconds", type=float, default=defaults.seconds, help="clip length")
    p.add_argument("--sample_rate", type=int, default=defaults.sample_rate)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--anomaly_strength",
        type=float,
        default=defaults.anomaly_strength,
        help="scales every anomaly (1: hard for a mean-log-mel kNN; 3: easy)",
    )
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)  # read --family first: it picks the defaults
    pre.add_argument("--family", choices=sorted(FAMILIES), default="a")
    args = get_parser(pre.parse_known_args(argv)[0].family).parse_args(argv)
    setup_logging(args.verbose, force=False)
    # argparse applies `type` to string defaults too, so every list option is a tuple here
    cfg = SynthConfig(
        year=args.year,
        dev_machines=args.dev_machines,
        eval_machines=args.eval_machines,
        no_attribute=args.no_attribute,
        n_train_source=args.n_train_source,
        n_train_target=args.n_train_target,
        n_test=args.n_test,
        n_supplemental_machine=args.n_supplemental_machine,
        n_supplemental_noise=args.n_supplemental_noise,
        seconds=args.seconds,
        sample_rate=args.sample_rate,
        seed=args.seed,
        anomaly_strength=args.anomaly_strength,
    )
    start = time.time()
    generate_corpus(args.root, cfg, FAMILIES[args.family][1])
    logging.info("synthetic corpus ready in %s (%.1f s)", args.root, time.time() - start)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
