#!/usr/bin/env bash
# How the mini's default (conf/train.yaml: system and back end) is chosen, by a written protocol:
# every candidate system's stage-4 embeddings, with every back end on them and on the clips' log-mel
# statistics (the default's log-mel stream, as conf/tuning/logmel_routed.yaml computes it), and every
# fusion of two of those (asdlib.bin.select_backend), scored on the dev_test sets of family a
# (data/, exp/) and family d (data_d/, exp_d/: DCASE's hard domain shift). The protocol: the best
# worse-of-the-two official score among the back ends that read the trained model's embedding (a
# back end on the log-mel alone is a training-free baseline). Each row also says whether it meets the
# rule on both (beat the log-mel kNN, the untrained upstream with the same back end, and its own
# log-mel member alone); until 2026-12-08 rule-meeting rows ranked first, which twice chose a back end
# that lost on every family's eval set (RESULTS.md). Families b, c and e and every eval_test set
# take no part: local/two_families.sh reports the choice there. Trains what is missing (stages 1-4).
# Writes exp/select_dev_test.md.
set -euo pipefail
configs="conf/train.yaml conf/tuning/train_frozen_untrained.yaml"
for family in a d; do
    if [ "${family}" = a ]; then datadir=data; expdir=exp; else datadir="data_${family}"; expdir="exp_${family}"; fi
    stage=1
    for config in conf/tuning/logmel_routed.yaml ${configs}; do
        ./asd.sh --year 2024 --nj 2 --datadir "${datadir}" --expdir "${expdir}" --local_data_opts "--family ${family}" \
            --train_config "${config}" --stage "${stage}" --stop_stage 4 "$@"
        stage=3
    done
done
exps=()
for config in ${configs}; do exps+=("$(basename "${config}" .yaml)"); done
# shellcheck disable=SC1091
. ./path.sh
python -m asdlib.bin.select_backend --logmel_exp logmel_routed --family a=data:exp --family d=data_d:exp_d \
    --untrained train_frozen_untrained --set dev_test --year 2024 --out exp/select_dev_test.md "${exps[@]}"
head -n 14 exp/select_dev_test.md
