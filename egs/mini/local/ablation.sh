#!/usr/bin/env bash
# The mini ablation of the paper's model (frozen, LoRA, LoRA+MGA, LoRA+MGA+VQ), measured in one run
# on the same data, every row with the plain kNN back end (the LoRA row is conf/train.yaml's model):
# run ./run.sh (or at least stages 1-2) first. Writes exp/ablation_<set>.md.
set -euo pipefail
configs="conf/tuning/train_frozen.yaml conf/tuning/backend_knn.yaml conf/tuning/train_lora_mga.yaml conf/tuning/train_lora_mga_vq.yaml"
exps=()
for config in ${configs}; do
    ./asd.sh --year 2024 --nj 2 --train_config "${config}" --stage 3 --stop_stage 6 "$@"
    exps+=("exp/$(basename "${config}" .yaml)")
done
# shellcheck disable=SC1091
. ./path.sh
for set in dev_test eval_test; do
    python -m asdlib.bin.compare_results --set "${set}" --out "exp/ablation_${set}.md" "${exps[@]}"
    cat "exp/ablation_${set}.md"
done
