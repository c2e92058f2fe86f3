#!/usr/bin/env bash
# DCASE 2020 Task 2 recipe: Unsupervised detection of anomalous sounds (ToyADMOS + MIMII; machine IDs, no domains).
# Stages 1-7 are egs/TEMPLATE/asd.sh (./run.sh --help); the corpus root is set in db.sh, the
# default system in conf/train.yaml, paper-table rows in conf/tuning/ (commands: RESULTS.md).
#   ./run.sh --local_data_opts "--download true"      # fetch the corpus from Zenodo first
#   ./run.sh --train_config conf/tuning/lora_r16.yaml # one table row
set -euo pipefail
./asd.sh --year 2020 --train_config conf/train.yaml "$@"
