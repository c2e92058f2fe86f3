#!/usr/bin/env bash
# Stage 1 of the DCASE recipes (docs/design.md §3), shared by egs/dcase20XX/local/data.sh, which call it
# with their --corpus_year (the corpus's year; asd.sh's --year is the scoring year, which differs while a
# year has no official rule, e.g. 2026). Run from the recipe directory: reads ./db.sh
# (DCASE<corpus_year>=corpus root), then
#   1. downloads the official corpus when --download true and the root is absent or empty (or holds
#      an unfinished download of ours: <root>/.downloads/), resuming where it stopped, and, unless
#      --metadata_dir or $ASDLIB_DCASE_METADATA names a copy, the official DCASE metadata into
#      downloads/dcase_metadata/ (python -m asdlib.bin.fetch_metadata: eval lists, sha256-checked);
#   2. writes data/{dev_train,dev_test,eval_train,eval_test} with asdlib.bin.prepare_dcase.
# eval_test ground truth: --eval_list PATH, or none with --eval_list none; by default
# <root>/eval_data_list_<year>.csv when present, else the official list of the DCASE metadata (2020-2025):
# --metadata_dir, else $ASDLIB_DCASE_METADATA, else downloads/dcase_metadata/.
set -euo pipefail

corpus_year=""       # year of the corpus: naming, layout, downloads (set by the recipe's local/data.sh)
datadir=data         # output: <datadir>/<set>/
eval_list=""         # eval_data_list_<year>.csv, or none; default: <root>/eval_data_list_<year>.csv, else the metadata's official list
metadata_dir=""      # the official DCASE metadata (fetch_metadata --dest DIR); default: $ASDLIB_DCASE_METADATA, downloads/dcase_metadata
download=false       # download the corpus from Zenodo when the root is absent or empty
mirror=""            # download from a mirror laid out as <mirror>/<host>/<path> (e.g. file:///data/mirror)
machines=""          # download only these machine types (comma-separated); default: all of the year
keep_zips=false      # keep the downloaded archives in <root>/.downloads/
sets=""              # sets to prepare (comma-separated); default: dev_train,dev_test,eval_train,eval_test
help_message="Usage: local/data.sh [--datadir data] [--eval_list csv|none] [--download true|false] [--mirror url]
                     [--machines m1,m2] [--keep_zips true|false] [--sets set1,set2] [--metadata_dir dir]
The corpus root comes from db.sh (DCASE<corpus_year>, overridable from the environment); the recipe's
local/data.sh sets --corpus_year.
eval_test ground truth: --eval_list csv, or 'none'; default <root>/eval_data_list_<year>.csv if present,
else the official list of the year from the DCASE metadata (2020-2025; 2026 has none): --metadata_dir,
else \$ASDLIB_DCASE_METADATA, else downloads/dcase_metadata/ (--download true fetches it there)."

# shellcheck disable=SC1091
. utils/parse_options.sh
[ -n "${corpus_year}" ] || { echo "local/data.sh: --corpus_year is required (the recipe's local/data.sh sets it)" >&2; exit 1; }
# shellcheck disable=SC1091
. ./path.sh
# shellcheck disable=SC1091
. ./db.sh
root_var="DCASE${corpus_year}"
root="${!root_var:-}"
[ -n "${root}" ] || { echo "local/data.sh: db.sh does not set ${root_var} (the corpus root)" >&2; exit 1; }

is_empty() { [ ! -d "$1" ] || [ -z "$(ls -A "$1")" ]; }

if [ "${download}" = true ]; then
    if [ -z "${metadata_dir}" ] && [ -z "${ASDLIB_DCASE_METADATA:-}" ]; then
        # the eval lists asdlib may not redistribute, from their official repositories (or the mirror)
        opts=()
        [ -z "${mirror}" ] || opts+=(--base_url "${mirror%/}/raw.githubusercontent.com")
        python -m asdlib.bin.fetch_metadata "${opts[@]}"
    fi
    if is_empty "${root}" || [ -d "${root}/.downloads" ]; then
        opts=(--year "${corpus_year}" --root "${root}" --keep_zips "${keep_zips}")
        [ -z "${mirror}" ] || opts+=(--mirror "${mirror}")
        [ -z "${machines}" ] || opts+=(--machines "${machines}")
        echo "local/data.sh: downloading the DCASE ${corpus_year} corpus into ${root}" >&2
        python -m asdlib.bin.download_dcase "${opts[@]}"
    else
        echo "local/data.sh: ${root} already holds data; not downloading (delete it, or point ${root_var} elsewhere, to download)" >&2
    fi
elif is_empty "${root}"; then
    echo "local/data.sh: no DCASE ${corpus_year} corpus at ${root}. Set ${root_var}=/path/to/corpus (db.sh or environment)," \
        "or run with --local_data_opts \"--download true\" to fetch it from Zenodo." >&2
    exit 1
fi

opts=(--year "${corpus_year}" --root "${root}" --data_dir "${datadir}")
[ -z "${eval_list}" ] || opts+=(--eval_list "${eval_list}")
[ -z "${sets}" ] || opts+=(--sets "${sets}")
[ -z "${metadata_dir}" ] || opts+=(--metadata_dir "${metadata_dir}")
python -m asdlib.bin.prepare_dcase "${opts[@]}"
