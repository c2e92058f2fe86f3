#!/usr/bin/env bash
# Pre-train an EAT upstream on your own recordings (self-supervised, no labels read), then use it in
# any ASD recipe: ./asd.sh --train_args "upstream.name=eat upstream.path=$PWD/exp/pretrain/upstream.pt".
#   ./run.sh --corpus /data/plant                       # from random init, the size of --init_size
#   ./run.sh --corpus /data/plant --init checkpoint     # domain-adaptive: from the config's upstream.path
# Any ssl.sh option works (./run.sh --help).
set -euo pipefail

./ssl.sh --pretrain_config conf/pretrain.yaml --train_sets train "$@"
