#!/usr/bin/env bash
# DCASE 2026 Task 2 recipe: noise-aware first-shot ASD on stereo recordings (left: near microphone, right: far microphone).
# Stages 1-7 are egs/TEMPLATE/asd.sh (./run.sh --help); the corpus root is set in db.sh, the
# default system in conf/train.yaml, paper-table rows in conf/tuning/ (commands: RESULTS.md).
#   ./run.sh --local_data_opts "--download true"      # fetch the corpus from Zenodo first
#   ./run.sh --train_config conf/tuning/lora_r16.yaml # one table row
# 2-channel recordings: the training config's data.channel selects one
# (conf/train.yaml: 0, the left/near microphone, as the official baseline).
# No evaluation test set is released yet: stage 1 prepares dev_train, dev_test, eval_train; only dev_test is scored.
# No official DCASE 2026 rule is published yet: stages 5-6 write DCASE 2025 submission files
# and use the 2025 rule (asd.sh --year 2025).
set -euo pipefail
./asd.sh --year 2025 --test_sets dev_test --train_config conf/train.yaml "$@"
