#!/usr/bin/env bash
# Make a new recipe directory, as ESPnet's egs2/TEMPLATE/asr1/setup.sh does: links to the shared
# scripts here (asd.sh, cmd.sh, path.sh, utils), conf/ (slurm.conf and a train.yaml to start from),
# and run.sh, db.sh, local/data.sh. With --year those come from the year's row in asdlib.years
# (python -m asdlib.bin.make_recipe; every egs/dcase20XX holds exactly these, tests/egs/test_setup_recipe.py
# checks it); without it they are copies of egs/custom's, a recipe for your own recordings.
set -euo pipefail

die() { echo "setup.sh: $*" >&2; exit 1; }

template="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
egs="$(dirname "${template}")"
usage="Usage: $0 <dir> [--year YYYY] [--train_config yaml]
  <dir>                the new recipe directory (must not exist), e.g. egs/dcase2027
  --year YYYY          a DCASE year of the table asdlib/years.py (add one with register_year, see
                       docs/dcase_recipes.md); without it: a recipe for your own recordings (egs/custom)
  --train_config yaml  the conf/train.yaml to start from; default: egs/dcase<year>/conf/train.yaml if
                       present, else the newest egs/dcase*/conf/train.yaml (without --year: egs/custom's)"

dir=""
year=""
train_config=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) echo "${usage}"; exit 0 ;;
        --year|--train_config)
            [ $# -ge 2 ] || die "$1 needs a value (see --help)"
            if [ "$1" = --year ]; then year="$2"; else train_config="$2"; fi
            shift 2 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "${dir}" ] || die "one recipe directory only, got '${dir}' and '$1'"; dir="$1"; shift ;;
    esac
done
[ -n "${dir}" ] || die "name the new recipe directory, e.g. $0 egs/dcase2027 --year 2027 (see --help)"
[ ! -e "${dir}" ] && [ ! -L "${dir}" ] || die "${dir} already exists; choose a new recipe directory or delete it"
[ -z "${year}" ] || [[ "${year}" =~ ^[0-9]{4}$ ]] || die "--year ${year}: expected a four-digit year such as 2025"

if [ -n "${year}" ]; then
    if [ -z "${train_config}" ]; then
        train_config="${egs}/dcase${year}/conf/train.yaml"
        if [ ! -f "${train_config}" ]; then
            configs=("${egs}"/dcase*/conf/train.yaml)
            train_config="${configs[-1]}"
        fi
    fi
    [ -f "${train_config}" ] || die "--train_config ${train_config}: file not found"
    # shellcheck disable=SC1091
    . "${template}/path.sh"
    # checks the year (one-line error for an unknown one) before it creates the directory
    python -m asdlib.bin.make_recipe --year "${year}" --dir "${dir}"
else
    train_config="${train_config:-${egs}/custom/conf/train.yaml}"
    [ -f "${train_config}" ] || die "--train_config ${train_config}: file not found"
    mkdir -p "${dir}/local"
    cp "${egs}/custom/run.sh" "${egs}/custom/db.sh" "${dir}/"
    cp "${egs}/custom/local/data.sh" "${dir}/local/"
fi

rel="$(realpath --relative-to="${dir}" "${template}")"
for name in asd.sh cmd.sh path.sh utils; do
    ln -s "${rel}/${name}" "${dir}/${name}"
done
mkdir -p "${dir}/conf"
cp "${template}/conf/slurm.conf" "${dir}/conf/slurm.conf"
cp "${train_config}" "${dir}/conf/train.yaml"
echo "setup.sh: made ${dir} (conf/train.yaml from ${train_config}); run ./run.sh --help there" >&2
