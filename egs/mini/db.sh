# shellcheck shell=bash
# Where the corpus lives; override from the environment (e.g. MINI=/data/mini ./run.sh).
MINI="${MINI:-downloads/mini}"
export MINI
