#!/usr/bin/env bash
# The years' extra data on the synthetic families, each option against not using it:
# - DCASE 2025 layout (local/data.sh --year 2025: supplemental clean machine and noise-only clips):
#   the default (train), the default with the noise clips projected out of the embeddings
#   (conf/tuning/noise_projection.yaml) and the default trained on the clean clips with noise mixed
#   into every crop (conf/tuning/supplemental.yaml, its own data dirs: other training sets);
# - DCASE 2026 layout (--year 2026: stereo, near and far microphone): the default on the near
#   microphone, and the same with the far microphone as a noise reference
#   (conf/tuning/far_noise_projection.yaml).
# The 2025 and 2026 corpora hold the 2024 corpus's train/test audio (near microphone) exactly, so the
# default's rows equal the 2024 run's. Writes exp_<family>_<year>/compare_<set>.md per family and year.
# Usage: local/extra_data.sh [--families "a d"] [asd.sh options...]
set -euo pipefail

families="a d"
while [ $# -ge 2 ]; do
    case "$1" in
        --families) families=$2; shift 2 ;;
        *) break ;;
    esac
done

local/make_upstream.sh downloads
sup="dev_train eval_train dev_supplemental_machine eval_supplemental_machine"
for family in ${families}; do
    d25="data_${family}_2025" e25="exp_${family}_2025" d26="data_${family}_2026" e26="exp_${family}_2026"
    opts25=(--year 2024 --nj 2 --datadir "${d25}" --expdir "${e25}" --local_data_opts "--family ${family} --year 2025")
    ./asd.sh "${opts25[@]}" --train_config conf/train.yaml --stop_stage 6 "$@"
    ./asd.sh "${opts25[@]}" --train_config conf/tuning/noise_projection.yaml --stage 3 --stop_stage 6 "$@"
    # other training sets, other labels: own data dirs (stage 1 prepares them from the same corpus)
    ./asd.sh --year 2024 --nj 2 --datadir "${d25}_sup" --expdir "${e25}" \
        --local_data_opts "--family ${family} --year 2025" --train_config conf/tuning/supplemental.yaml \
        --train_sets "${sup}" --stop_stage 6 "$@"
    opts26=(--year 2024 --nj 2 --datadir "${d26}" --expdir "${e26}" --local_data_opts "--family ${family} --year 2026")
    ./asd.sh "${opts26[@]}" --train_config conf/train.yaml --train_args "data.channel=0" --stop_stage 6 "$@"
    ./asd.sh "${opts26[@]}" --train_config conf/tuning/far_noise_projection.yaml --stage 3 --stop_stage 6 "$@"
    for set in dev_test eval_test; do
        python -m asdlib.bin.compare_results --set "${set}" --out "${e25}/compare_${set}.md" \
            "${e25}/train" "${e25}/noise_projection" "${e25}/supplemental"
        python -m asdlib.bin.compare_results --set "${set}" --out "${e26}/compare_${set}.md" \
            "${e26}/train_data.channel0" "${e26}/far_noise_projection"
    done
done
