# shellcheck shell=bash
# Where the DCASE 2023 Task 2 corpus lives (the root holds dev_data/ and eval_data/; the official
# eval_data_list_2023.csv comes from the fetched DCASE metadata, one in the root wins); override from the
# environment: DCASE2023=/data/dcase2023 ./run.sh
# With --local_data_opts "--download true", stage 1 downloads it here from Zenodo if it is absent.
DCASE2023="${DCASE2023:-downloads/dcase2023}"
export DCASE2023
