"""Write a DCASE recipe's run.sh, db.sh and local/data.sh from its row of the year table (asdlib.years).

Why: the egs/dcase20XX recipes differ only in what the table knows (year, headline, whether the
evaluation test set, its eval list and the year's own official rule are out), so these files are
generated (egs/TEMPLATE/setup.sh calls this) and tests/egs/test_setup_recipe.py checks that the
committed ones are exactly what this writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asdlib.io.atomic import atomic_write_text
from asdlib.utils import run_main, setup_logging
from asdlib.years import YEARS, Year, get_year

_USAGE = """\
# Stages 1-7 are egs/TEMPLATE/asd.sh (./run.sh --help); the corpus root is set in db.sh, the
# default system in conf/train.yaml, paper-table rows in conf/tuning/ (commands: RESULTS.md).
#   ./run.sh --local_data_opts "--download true"      # fetch the corpus from Zenodo first
#   ./run.sh --train_config conf/tuning/lora_r16.yaml # one table row
"""
_DEV_SETS = "dev_train,dev_test,eval_train"


def run_sh(info: Year) -> str:
    """run.sh: asd.sh with the year's scoring rules (and only dev_test while no eval test set is out)."""
    y, s = info.year, info.scoring_year
    notes = []
    if info.channels > 1:
        notes.append(
            f"# {info.channels}-channel recordings: the training config's data.channel selects one\n"
            "# (conf/train.yaml: 0, the left/near microphone, as the official baseline).\n"
        )
    if not info.eval_test:
        notes.append(
            "# No evaluation test set is released yet: stage 1 prepares "
            f"{_DEV_SETS.replace(',', ', ')}; only dev_test is scored.\n"
        )
    if s != y:
        notes.append(
            f"# No official DCASE {y} rule is published yet: stages 5-6 write DCASE {s} submission files\n"
            f"# and use the {s} rule (asd.sh --year {s}).\n"
        )
    test_sets = "" if info.eval_test else " --test_sets dev_test"
    return (
        f"#!/usr/bin/env bash\n# DCASE {y} Task 2 recipe: {info.description}\n{_USAGE}{''.join(notes)}"
        f'set -euo pipefail\n./asd.sh --year {s}{test_sets} --train_config conf/train.yaml "$@"\n'
    )


def db_sh(info: Year) -> str:
    """db.sh: the corpus root variable DCASE<year>, overridable from the environment."""
    y = info.year
    where = (
        "(the root holds dev_data/ and eval_data/; the official\n"
        f"# eval_data_list_{y}.csv comes from the fetched DCASE metadata, one in the root wins); override from the\n"
        if info.eval_list
        else "(the root holds dev_data/ and eval_data/); override from the\n"
    )
    return (
        f"# shellcheck shell=bash\n# Where the DCASE {y} Task 2 corpus lives {where}"
        f"# environment: DCASE{y}=/data/dcase{y} ./run.sh\n"
        '# With --local_data_opts "--download true", stage 1 downloads it here from Zenodo if it is absent.\n'
        f'DCASE{y}="${{DCASE{y}:-downloads/dcase{y}}}"\nexport DCASE{y}\n'
    )


def data_sh(info: Year) -> str:
    """local/data.sh: the shared stage 1 (egs/TEMPLATE/local_common/data.sh) with the corpus year."""
    y = info.year
    sets = "" if info.eval_test else f" \\\n    --sets {_DEV_SETS}"
    note = (
        ""
        if info.eval_test
        else "# The evaluation test set is not released, so the default sets leave eval_test out; pass\n"
        f"# --sets {_DEV_SETS},eval_test once it is.\n"
    )
    return (
        "#!/usr/bin/env bash\n"
        f"# Stage 1 of the DCASE {y} recipe: the shared egs/TEMPLATE/local_common/data.sh with --corpus_year {y}\n"
        "# (options: local/data.sh --help), found through the recipe's utils link (run from the recipe directory).\n"
        f"{note}set -euo pipefail\n"
        f'exec "$(readlink -f utils)/../local_common/data.sh" --corpus_year {y}{sets} "$@"\n'
    )


def write_recipe_files(year: int, recipe: Path) -> list[Path]:
    """Create the directory ``recipe`` with run.sh, db.sh and local/data.sh of ``year`` in it."""
    info = get_year(year)
    if recipe.exists():
        raise FileExistsError(f"{recipe} already exists; choose a new recipe directory or delete it")
    out = []
    for rel, text, mode in (
        ("run.sh", run_sh(info), 0o755),
        ("db.sh", db_sh(info), 0o644),
        ("local/data.sh", data_sh(info), 0o755),
    ):
        path = recipe / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
        path.chmod(mode)
        out.append(path)
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--year", type=int, required=True, help=f"a year of the table ({', '.join(map(str, YEARS))})")
    p.add_argument("--dir", type=Path, required=True, help="the new recipe directory (must not exist)")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    write_recipe_files(args.year, args.dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
