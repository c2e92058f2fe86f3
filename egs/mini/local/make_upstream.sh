#!/usr/bin/env bash
# A tiny random-init HuBERT in s3prl's checkpoint format. It is NOT pre-trained: it only lets the
# mini recipe exercise the real s3prl loading and LoRA code on a CPU in minutes.
set -euo pipefail
out=$1
# shellcheck disable=SC1091
. ./path.sh
mkdir -p "$(dirname "${out}")"
python -m asdlib.bin.make_random_upstream --name hubert --out "${out}" --seed 0
