#!/usr/bin/env bash
# DCASE 2026 Task 2 recipe: noise-aware first-shot ASD on stereo recordings (left: near microphone,
# right: far microphone). The training config's data.channel selects the channel (conf/train.yaml:
# 0, the near microphone, as the official baseline; conf/tuning/far_mic.yaml: 1).
# Not released yet: the evaluation test set and the 2026 evaluator. So stage 1 prepares dev_train,
# dev_test and eval_train, only dev_test is scored, and stages 5-6 write the 2022-2025 submission
# files and use the 2022-2025 official rule (asd.sh --year 2025) until a 2026 rule is published.
set -euo pipefail
./asd.sh --year 2025 --test_sets dev_test --train_config conf/train.yaml "$@"
