# shellcheck shell=bash
# Kaldi-style option parsing. SOURCE it after declaring every option as a shell variable with a
# default (and optionally a `help_message`):
#
#   stage=1          # first stage to run
#   use_gpu=false    # a true/false variable only accepts true or false
#   . utils/parse_options.sh
#   # "$@" now holds the positional arguments
#
# Rules:
#   --name value and --name=value set the variable `name`; '-' in a name becomes '_'
#     (--stop-stage 3 sets stop_stage). A variable that was not declared before sourcing is
#     an error ("invalid option"), so a typo never passes silently.
#   If the variable was true or false, the new value must be true or false.
#   --config FILE sources FILE, a file of name=value lines (comments and blank lines allowed;
#     every name must be declared). Config files are read first, in the order given, so options
#     on the command line win whatever their position.
#   --help or -h prints $help_message and exits 0.
#   Parsing stops at the first argument that is not an option (or after `--`); the rest stays
#     in "$@".
# Errors print "<script>: ..." to stderr and exit 1. Helper variables are named __po_* and unset.

__po_prog="$(basename "$0")"

__po_die() {
    echo "${__po_prog}: $*" >&2
    exit 1
}

# Check that variable $1 is declared and, if it holds true/false, that $2 is true/false too.
__po_check() {
    [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || __po_die "invalid option --$1 (see --help)"
    [ -n "${!1+set}" ] || __po_die "invalid option --$1 (see --help)"
    case "${!1}" in
        true | false)
            case "$2" in
                true | false) ;;
                *) __po_die "option --$1 takes true or false, got '$2'" ;;
            esac
            ;;
    esac
}

# Pass 1: --help anywhere among the options; collect --config files.
__po_configs=()
__po_i=1
while [ "${__po_i}" -le "$#" ]; do
    __po_arg="${!__po_i}"
    case "${__po_arg}" in
        --help | -h)
            if [ -n "${help_message+set}" ]; then
                printf '%s\n' "${help_message}"
            else
                echo "${__po_prog}: no help_message defined" >&2
            fi
            exit 0
            ;;
        --config=*)
            __po_configs+=("${__po_arg#--config=}")
            __po_i=$((__po_i + 1))
            ;;
        --config)
            __po_i=$((__po_i + 1))
            [ "${__po_i}" -le "$#" ] || __po_die "option --config needs a value"
            __po_configs+=("${!__po_i}")
            __po_i=$((__po_i + 1))
            ;;
        --) break ;;
        --*=*) __po_i=$((__po_i + 1)) ;;
        --*) __po_i=$((__po_i + 2)) ;;
        *) break ;;
    esac
done

for __po_file in "${__po_configs[@]}"; do
    [ -f "${__po_file}" ] || __po_die "config file '${__po_file}' not found"
    __po_lineno=0
    __po_bools=()
    while IFS= read -r __po_line || [ -n "${__po_line}" ]; do
        __po_lineno=$((__po_lineno + 1))
        [[ "${__po_line}" =~ ^[[:space:]]*(#.*)?$ ]] && continue
        [[ "${__po_line}" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)= ]] \
            || __po_die "${__po_file}:${__po_lineno}: expected name=value, got '${__po_line}'"
        __po_name="${BASH_REMATCH[1]}"
        [ -n "${!__po_name+set}" ] \
            || __po_die "${__po_file}:${__po_lineno}: invalid option '${__po_name}' (not a variable of this script)"
        case "${!__po_name}" in true | false) __po_bools+=("${__po_name}") ;; esac
    done <"${__po_file}"
    # shellcheck disable=SC1090  # the file is named on the command line
    . "${__po_file}"
    for __po_name in "${__po_bools[@]}"; do
        case "${!__po_name}" in
            true | false) ;;
            *) __po_die "${__po_file}: ${__po_name} takes true or false, got '${!__po_name}'" ;;
        esac
    done
done

# Pass 2: assign the options.
while [ "$#" -gt 0 ]; do
    case "$1" in
        --) shift; break ;;
        --config=*) shift ;;
        --config) shift 2 ;;
        --*=*)
            __po_name="${1%%=*}"
            __po_name="${__po_name#--}"
            __po_name="${__po_name//-/_}"
            __po_check "${__po_name}" "${1#*=}"
            printf -v "${__po_name}" '%s' "${1#*=}"
            shift
            ;;
        --*)
            __po_name="${1#--}"
            __po_name="${__po_name//-/_}"
            [ "$#" -ge 2 ] || __po_die "option $1 needs a value"
            __po_check "${__po_name}" "$2"
            printf -v "${__po_name}" '%s' "$2"
            shift 2
            ;;
        *) break ;;
    esac
done

unset -f __po_die __po_check
unset __po_prog __po_configs __po_bools __po_i __po_arg __po_file __po_lineno __po_line __po_name
true
