# shellcheck shell=bash
# Where the corpus lives; override from the environment (e.g. MINI=/data/mini ./run.sh).
MINI="${MINI:-downloads/mini}"
export MINI
# The second corpus family (local/data.sh --family b, asdlib.synth.family_b).
MINI_B="${MINI_B:-downloads/mini_b}"
export MINI_B
# The held-out corpus family (local/data.sh --family c, asdlib.synth.family_c).
MINI_C="${MINI_C:-downloads/mini_c}"
export MINI_C
# The family with DCASE's hard domain shift (local/data.sh --family d, asdlib.synth.family_d).
MINI_D="${MINI_D:-downloads/mini_d}"
export MINI_D
# The held-out family with the same hardness (local/data.sh --family e, asdlib.synth.family_e).
MINI_E="${MINI_E:-downloads/mini_e}"
export MINI_E
