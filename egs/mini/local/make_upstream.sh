#!/usr/bin/env bash
# Tiny random-init upstreams in their official checkpoint formats: a BEATs ({cfg, model}, our own
# implementation) and a HuBERT (s3prl's converted format). They are NOT pre-trained: they only let
# the mini recipe exercise the real loading, LoRA and adapter code on a CPU in minutes.
set -euo pipefail
dir=$1
# shellcheck disable=SC1091
. ./path.sh
mkdir -p "${dir}"
[ -f "${dir}/beats_tiny_random.pt" ] || python -m asdlib.bin.make_random_upstream --name beats --out "${dir}/beats_tiny_random.pt" --seed 0
[ -f "${dir}/hubert_tiny_random.pt" ] || python -m asdlib.bin.make_random_upstream --name hubert --out "${dir}/hubert_tiny_random.pt" --seed 0
[ -d "${dir}/eat_tiny_random" ] || python -m asdlib.bin.make_random_upstream --name eat --out "${dir}/eat_tiny_random" --seed 0
