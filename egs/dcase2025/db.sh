# shellcheck shell=bash
# Where the DCASE 2025 Task 2 corpus lives (the root holds dev_data/ and eval_data/; the official
# eval_data_list_2025.csv comes from the fetched DCASE metadata, one in the root wins); override from the
# environment: DCASE2025=/data/dcase2025 ./run.sh
# With --local_data_opts "--download true", stage 1 downloads it here from Zenodo if it is absent.
DCASE2025="${DCASE2025:-downloads/dcase2025}"
export DCASE2025
