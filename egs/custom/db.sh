# shellcheck shell=bash
# Your recordings: a folder <machine>/train/*.wav|*.flac (normal only; optional <machine>/test/ with
# normal/ and anomaly/ or a labels.csv), or a list file '<path> <machine>' per line.
# Set it with ./run.sh --corpus DIR, or from the environment: CUSTOM=/data/plant ./run.sh
CUSTOM="${CUSTOM:-downloads/custom}"
export CUSTOM
