#!/usr/bin/env bash
# The whole pipeline on a synthetic DCASE-format corpus, on a CPU, in minutes. Compares on eval_test
# the default system (LoRA-trained BEATs, fused with the log-mel stream in the back end), the same
# pipeline with the untrained upstream, a mean log-mel kNN baseline, and the s3prl (HuBERT) route of
# the default. Pass --train_config to run one system.
set -euo pipefail

systems="conf/train.yaml conf/tuning/train_frozen_untrained.yaml conf/tuning/logmel_knn.yaml conf/tuning/train_hubert_lora.yaml"

# --help before any work: asd.sh would print it once per system, after the upstreams were written.
single=false
for arg in "$@"; do
    case "${arg}" in
        --help | -h)
            ./asd.sh --help
            echo "egs/mini: without --train_config, runs every system (${systems}) and compares them on eval_test."
            exit 0
            ;;
        --train_config | --train_config=*) single=true ;;
    esac
done

local/make_upstream.sh downloads
if "${single}"; then
    ./asd.sh --year 2024 --nj 2 "$@"
    exit 0
fi
for config in ${systems}; do
    ./asd.sh --year 2024 --nj 2 --train_config "${config}" "$@"
done
# shellcheck disable=SC1091
. ./path.sh
python -m asdlib.bin.compare_results --set eval_test --out exp/compare_eval_test.md \
    exp/train exp/train_frozen_untrained exp/logmel_knn exp/train_hubert_lora
cat exp/compare_eval_test.md
