#!/usr/bin/env bash
# Every mini system on every synthetic corpus family, so that a default is reported on data it was
# not tuned on: families a (asdlib.synth.corpus; data/, exp/) and d (asdlib.synth.family_d: DCASE's
# hard domain shift; data_d/, exp_d/), whose dev sets chose the default (local/select_default.sh),
# family b (other sounds, anomalies and domain shift; data_b/, exp_b/), and the held-out families c
# (impulsive cyclic machines; data_c/, exp_c/) and e (servo-driven devices with d's hardness;
# data_e/, exp_e/). Each table gives the official score with AUC(source), AUC(target) and pAUC.
# Writes exp/two_families_<family>_<set>.md (compare_results per family), exp/two_families.md
# (official score per system and family, mean and min; eval_test, then dev_test) and
# exp/two_families_a_<family>_<set>.png (family a's score against each other family's).
# Usage: local/two_families.sh [--systems "conf/a.yaml ..."] [--families "a b"] [asd.sh options...]
set -euo pipefail

systems="conf/train.yaml conf/tuning/train_frozen_untrained.yaml conf/tuning/train_frozen_untrained_knn.yaml
conf/tuning/logmel_knn.yaml conf/tuning/logmel_routed.yaml conf/tuning/logmel_mahalanobis.yaml
conf/tuning/train_hubert_lora.yaml
conf/tuning/train_frozen.yaml conf/tuning/train_lora_mga.yaml conf/tuning/train_lora_mga_vq.yaml
conf/tuning/backend_knn.yaml conf/tuning/backend_knn_smote.yaml conf/tuning/backend_kmeans.yaml
conf/tuning/backend_knn_rescaled.yaml conf/tuning/backend_mahalanobis.yaml conf/tuning/backend_fusion.yaml"
families="a b c d e"
while [ $# -ge 2 ]; do
    case "$1" in
        --systems) systems=$2; shift 2 ;;
        --families) families=$2; shift 2 ;;
        *) break ;;
    esac
done

local/make_upstream.sh downloads
names=()
for config in ${systems}; do names+=("$(basename "${config}" .yaml)"); done
by_family=()
for family in ${families}; do
    if [ "${family}" = a ]; then datadir=data; expdir=exp; else datadir="data_${family}"; expdir="exp_${family}"; fi
    by_family+=(--by_family "${family}=${expdir}")
    stage=1
    for config in ${systems}; do
        # stages 1-2 once per family; the other systems start at stage 3 on the same data dirs
        ./asd.sh --year 2024 --nj 2 --datadir "${datadir}" --expdir "${expdir}" --local_data_opts "--family ${family}" \
            --train_config "${config}" --stage "${stage}" --stop_stage 6 "$@"
        stage=3
    done
done
# shellcheck disable=SC1091
. ./path.sh
mkdir -p exp
for family in ${families}; do
    expdir=exp; [ "${family}" = a ] || expdir="exp_${family}"
    for set in eval_test dev_test; do
        python -m asdlib.bin.compare_results --set "${set}" --out "exp/two_families_${family}_${set}.md" \
            "${names[@]/#/${expdir}/}"
    done
done
: > exp/two_families.md
for set in eval_test dev_test; do
    python -m asdlib.bin.compare_results --set "${set}" --out "exp/.two_families_${set}.md" "${by_family[@]}" "${names[@]}"
    { cat "exp/.two_families_${set}.md"; echo; } >> exp/two_families.md
    rm -f "exp/.two_families_${set}.md"
    # a scatter plot of family a's score against each other family's
    for family in ${families}; do
        [ "${family}" != a ] || continue
        python -m asdlib.bin.compare_results --set "${set}" --out "exp/.two_families_${set}.md" \
            --plot "exp/two_families_a_${family}_${set}.png" --by_family a=exp --by_family "${family}=exp_${family}" "${names[@]}"
        rm -f "exp/.two_families_${set}.md"
    done
done
cat exp/two_families.md
