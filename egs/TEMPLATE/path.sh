# shellcheck shell=bash
# Resolves its own link, so a recipe made anywhere by setup.sh finds the repository's path.sh.
# shellcheck disable=SC1091
. "$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)/path.sh"
