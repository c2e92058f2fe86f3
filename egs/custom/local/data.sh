#!/usr/bin/env bash
# Stage 1 of the custom recipe: Kaldi data dirs train (and test) from the corpus of db.sh
# (run.sh --corpus sets it), section 00, domain source; layouts: asdlib/data/custom.py.
set -euo pipefail

datadir=data
help_message="Usage: local/data.sh [--datadir data]   (the corpus is CUSTOM of db.sh, set by ./run.sh --corpus DIR)"

# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./db.sh

python -m asdlib.bin.prepare_custom --corpus "${CUSTOM}" --data_dir "${datadir}"
