#!/usr/bin/env bash
# "Why did it alarm?": measure the explanations of asdlib-infer --explain (asdlib.explain) against
# where the synthetic families put their anomalies (utt2anomaly_region): pointing game and deletion
# drop of the method, random cells and the energy baseline, per family and anomaly kind
# (asdlib.bin.measure_explain on dev_test + eval_test). Needs stages 1-7 of each system on each
# family (local/two_families.sh names the dirs: data/ + exp/ for a, data_<f>/ + exp_<f>/ for f);
# --packs "<system>:<family>=<pack> ..." takes a pack from elsewhere. Writes exp/explain/<system>_<family>.md
# (+ .json per clip) and exp/explain/explain.md (every table in exp/explain/).
# Usage: local/explain.sh [--systems "train logmel_knn"] [--families "a b c d"] [--packs "..."] [--max_per_kind 12] [--grid 10x8]
set -euo pipefail

systems="train logmel_knn"
families="a b c d"
packs=""
max_per_kind=12
grid=10x8
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh

mkdir -p exp/explain
tables=()
for system in ${systems}; do
    for family in ${families}; do
        if [ "${family}" = a ]; then datadir=data; expdir=exp; else datadir="data_${family}"; expdir="exp_${family}"; fi
        packed="${expdir}/${system}/packed"
        for p in ${packs}; do [ "${p%%=*}" != "${system}:${family}" ] || packed="${p#*=}"; done
        if [ ! -f "${packed}/manifest.json" ]; then
            echo "local/explain.sh: no packed ${system} for family ${family} (${packed}): run its stages 1-7 first; skipped" >&2
            continue
        fi
        out="exp/explain/${system}_${family}.md"
        python -m asdlib.bin.measure_explain --packed "${packed}" --grid "${grid}" --max_per_kind "${max_per_kind}" \
            --test_dir "${datadir}/dev_test" "${datadir}/eval_test" --train_dir "${datadir}/dev_train" "${datadir}/eval_train" \
            --label "${system} / ${family}" --out "${out}" --verbose 0
        tables+=("${out}")
    done
done
# every table measured so far (also by earlier runs for other systems or families), one under the other
for t in exp/explain/*.md; do [ "${t}" = exp/explain/explain.md ] || tables+=("${t}"); done
{ head -2 "${tables[0]}"; for t in $(printf '%s\n' "${tables[@]}" | sort -u); do tail -n +3 "${t}"; done; } > exp/explain/explain.md
cat exp/explain/explain.md
