#!/usr/bin/env bash
# The mini ablation of the paper's model (frozen, LoRA, full fine-tuning, LoRA+MGA, LoRA+MGA+VQ),
# measured in one run on the same data, every row with the plain kNN back end (the LoRA row is
# conf/train.yaml's model): run ./run.sh (or at least stages 1-2) first. Writes
# exp/ablation[_<name>]_<set>.md. With --eat PATH --name NAME, every row uses the tiny EAT upstream at
# PATH instead of the random-init BEATs (e.g. egs/ssl_synth's pre-trained one: local/pretrained.sh).
set -euo pipefail
configs="conf/tuning/train_frozen.yaml conf/tuning/backend_knn.yaml conf/tuning/train_full.yaml
conf/tuning/train_lora_mga.yaml conf/tuning/train_lora_mga_vq.yaml"
eat=""
name=""
while [ $# -ge 2 ]; do
    case "$1" in
        --eat) eat=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        *) break ;;
    esac
done
if [ -n "${eat}" ] && [ -z "${name}" ]; then
    echo "local/ablation.sh: --eat needs --name (the suffix of the experiment names)" >&2; exit 1
fi
local/make_upstream.sh downloads
exps=()
for config in ${configs}; do
    tag=$(basename "${config}" .yaml)${name:+_${name}}
    opts=()
    # the same upstream settings as conf/tuning/eat_lora.yaml
    [ -z "${eat}" ] || opts=(--train_args "upstream.name=eat upstream.path=${eat} upstream.conf.target_frames=192")
    ./asd.sh --year 2024 --nj 2 --train_config "${config}" --tag "${tag}" "${opts[@]}" --stage 3 --stop_stage 6 "$@"
    exps+=("exp/${tag}")
done
# shellcheck disable=SC1091
. ./path.sh
for set in dev_test eval_test; do
    out="exp/ablation${name:+_${name}}_${set}.md"
    python -m asdlib.bin.compare_results --set "${set}" --out "${out}" "${exps[@]}"
    cat "${out}"
done
