#!/usr/bin/env bash
# How the mini's default (conf/train.yaml: system and back end) is chosen: on family a's dev_test
# only. Every candidate system's stage-4 embeddings, with every back end on them and on the clips'
# mean log-mel, and every fusion of two of those (asdlib.bin.select_backend), ranked by the official
# score. Run ./run.sh and local/ablation.sh first (they train the systems); this runs stages 3-4 of
# any system still missing. Writes exp/select_dev_test.md; local/two_families.sh then reports the
# choice on eval_test and on family b, which took no part in it.
set -euo pipefail
configs="conf/train.yaml conf/tuning/train_frozen_untrained.yaml conf/tuning/train_hubert_lora.yaml
conf/tuning/train_frozen.yaml conf/tuning/train_lora_mga.yaml conf/tuning/train_lora_mga_vq.yaml"
exps=()
for config in conf/tuning/logmel_knn.yaml ${configs}; do
    ./asd.sh --year 2024 --nj 2 --train_config "${config}" --stage 3 --stop_stage 4 "$@"
done
for config in ${configs}; do exps+=("exp/$(basename "${config}" .yaml)"); done
# shellcheck disable=SC1091
. ./path.sh
python -m asdlib.bin.select_backend --logmel_exp exp/logmel_knn --data_root data --set dev_test --year 2024 \
    --out exp/select_dev_test.md "${exps[@]}"
head -n 14 exp/select_dev_test.md
