# shellcheck shell=bash
# Where the DCASE 2024 Task 2 corpus lives (the root holds dev_data/ and eval_data/; the official
# eval_data_list_2024.csv comes from the fetched DCASE metadata, one in the root wins); override from the
# environment: DCASE2024=/data/dcase2024 ./run.sh
# With --local_data_opts "--download true", stage 1 downloads it here from Zenodo if it is absent.
DCASE2024="${DCASE2024:-downloads/dcase2024}"
export DCASE2024
