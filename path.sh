# Sourced by every recipe and by `make -C tools test`: activates tools/venv and sets the environment.
# shellcheck shell=bash
ASDLIB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export ASDLIB_ROOT
if [ ! -f "${ASDLIB_ROOT}/tools/venv/bin/activate" ]; then
    echo "path.sh: ${ASDLIB_ROOT}/tools/venv is missing; run 'make -C tools' in ${ASDLIB_ROOT} first." >&2
    # shellcheck disable=SC2317  # exit is reached only when the file is executed, not sourced
    return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "${ASDLIB_ROOT}/tools/venv/bin/activate"
export PYTHONPATH="${ASDLIB_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-${OMP_NUM_THREADS}}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
