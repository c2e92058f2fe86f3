#!/usr/bin/env bash
# Does self-supervised pre-training help? The tiny EAT upstream from random init against the same
# weights pre-trained by egs/ssl_synth (run it first), and against those continued on each family's
# own unlabelled training clips (+DAPT, egs/TEMPLATE/ssl.sh --init checkpoint; train sets only).
# Every init is measured frozen (nothing trained: plain kNN, and the domain-normalised knn_zscore)
# and fine-tuned (conf/train.yaml's LoRA recipe and back end, conf/tuning/eat_lora.yaml) on every
# corpus family. Writes exp/pretrained_<set>.md (official score and AUC(target) per system x family)
# and, per family, <expdir>/pretrained_<set>.md (compare_results: AUC(source), AUC(target), pAUC).
# Usage: local/pretrained.sh [--families "a b c d e"] [--inits "random pretrained dapt"]
#                            [--systems "eat_frozen_knn ..."] [--report_only true] [asd.sh options...]
set -euo pipefail

families="a b c d e"
inits="random pretrained dapt"
systems="eat_frozen_knn eat_frozen_zscore eat_lora"
pretrained=../ssl_synth/exp/pretrain/upstream.pt
report_only=false
while [ $# -ge 2 ]; do
    case "$1" in
        --families) families=$2; shift 2 ;;
        --inits) inits=$2; shift 2 ;;
        --systems) systems=$2; shift 2 ;;
        --pretrained) pretrained=$2; shift 2 ;;
        --report_only) report_only=$2; shift 2 ;;
        *) break ;;
    esac
done

local/make_upstream.sh downloads
# shellcheck disable=SC1091
. ./path.sh
dirs() {  # dirs <family>: its data and experiment roots (as local/two_families.sh)
    if [ "$1" = a ]; then echo "data exp"; else echo "data_$1 exp_$1"; fi
}
upstream_of() {  # upstream_of <init> <expdir>
    case "$1" in
        random) echo downloads/eat_tiny_random ;;
        pretrained) echo "${pretrained}" ;;
        dapt) echo "$2/dapt/upstream.pt" ;;
        *) echo "local/pretrained.sh: --inits takes random, pretrained and dapt, got '$1'" >&2; exit 1 ;;
    esac
}
if [ "${report_only}" != true ]; then
    case " ${inits} " in
        *" pretrained "* | *" dapt "*)  # both start from egs/ssl_synth's upstream
            [ -f "${pretrained}" ] || {
                echo "local/pretrained.sh: ${pretrained} not found: run egs/ssl_synth/run.sh first (or pass --pretrained)" >&2; exit 1; } ;;
    esac
    for family in ${families}; do
        read -r datadir expdir <<< "$(dirs "${family}")"
        if [ ! -f "${datadir}/eval_test/utt2dur" ]; then  # stages 1-2 once per family (shared with the other scripts)
            ./asd.sh --year 2024 --nj 2 --datadir "${datadir}" --expdir "${expdir}" --local_data_opts "--family ${family}" \
                --train_config conf/train.yaml --stage 1 --stop_stage 2 "$@"
        fi
        for init in ${inits}; do
            upstream=$(upstream_of "${init}" "${expdir}")
            if [ "${init}" = dapt ]; then
                ./ssl.sh --stage 2 --datadir "${datadir}" --expdir "${expdir}" --tag dapt --init checkpoint \
                    --pretrain_config conf/tuning/dapt.yaml --train_sets "dev_train eval_train" \
                    --train_args "upstream.path=${pretrained}"
            fi
            for system in ${systems}; do
                ./asd.sh --year 2024 --nj 2 --datadir "${datadir}" --expdir "${expdir}" --tag "${system}_${init}" \
                    --train_config "conf/tuning/${system}.yaml" --train_args "upstream.path=${upstream}" \
                    --stage 3 --stop_stage 6 "$@"
            done
        done
    done
fi
names=()
for system in ${systems}; do for init in ${inits}; do names+=("${system}_${init}"); done; done
by_family=()
for family in ${families}; do
    read -r datadir expdir <<< "$(dirs "${family}")"
    by_family+=(--by_family "${family}=${expdir}")
    for set in eval_test dev_test; do
        python -m asdlib.bin.compare_results --set "${set}" --out "${expdir}/pretrained_${set}.md" "${names[@]/#/${expdir}/}"
    done
done
mkdir -p exp
for set in eval_test dev_test; do
    python -m asdlib.bin.compare_results --set "${set}" --out "exp/pretrained_${set}.md" "${by_family[@]}" "${names[@]}"
    cat "exp/pretrained_${set}.md"
done
