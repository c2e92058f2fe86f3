#!/usr/bin/env bash
# Pre-train a mini-size EAT upstream from random init on a synthetic corpus disjoint from every
# evaluation corpus (families a-e), on CPU; then use it in egs/mini:
#   ./asd.sh --train_args "upstream.name=eat upstream.path=../ssl_synth/exp/pretrain/upstream.pt"
# Any ssl.sh option works (./run.sh --help). The corpus is rendered to ${SSL_SYNTH:-downloads/ssl_synth}.
set -euo pipefail

./ssl.sh --pretrain_config conf/pretrain.yaml --train_sets train --init random --init_seed 0 "$@"
