# shellcheck shell=bash
# Where the DCASE 2026 Task 2 corpus lives (the root holds dev_data/ and eval_data/); override from the
# environment: DCASE2026=/data/dcase2026 ./run.sh
# With --local_data_opts "--download true", stage 1 downloads it here from Zenodo if it is absent.
DCASE2026="${DCASE2026:-downloads/dcase2026}"
export DCASE2026
