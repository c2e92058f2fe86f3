#!/usr/bin/env bash
# Your own machines: train on normal recordings, score new ones (README "Your own machines").
#   ./run.sh --corpus /data/plant                 # <machine>/train/*.wav|*.flac (+ optional test/)
#   ./run.sh --corpus recordings.list             # '<path> <machine>' per line
# Any asd.sh option works as usual (./run.sh --help), e.g. --train_args "optim.epochs=20", --fpr 0.01.
# The packed model for the plant is exp/<tag>/packed (stage 7); score with asdlib-infer.
set -euo pipefail

case " $* " in
    *" --help "* | *" -h "*)  # works from any folder: the options are asd.sh's
        echo "egs/custom/run.sh --corpus DIR|LIST [asd.sh options]   (run it from egs/custom); the asd.sh options:"
        cd "$(dirname "$0")" && exec ./asd.sh --help ;;
esac
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --corpus) CUSTOM="$2"; shift 2 ;;
        --corpus=*) CUSTOM="${1#--corpus=}"; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
# shellcheck disable=SC1091
. ./db.sh
# The test set exists when a machine has a test/ folder (override with --test_sets).
test_sets=""
if [ -d "${CUSTOM}" ] && compgen -G "${CUSTOM}/*/test" > /dev/null; then test_sets="test"; fi
# Year 2020's metric (AUC, pAUC per machine) needs no target domain: every clip here is 'source'.
# Submission rows are named by utt-id: test/normal/x.wav and test/anomaly/x.wav are two recordings.
./asd.sh --year 2020 --train_config conf/train.yaml --train_sets train --test_sets "${test_sets}" \
    --submission_rows utt "${args[@]}"
