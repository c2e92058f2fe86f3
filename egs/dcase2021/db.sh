# shellcheck shell=bash
# Where the DCASE 2021 Task 2 corpus lives (the root holds dev_data/ and eval_data/; the official
# eval_data_list_2021.csv comes from the fetched DCASE metadata, one in the root wins); override from the
# environment: DCASE2021=/data/dcase2021 ./run.sh
# With --local_data_opts "--download true", stage 1 downloads it here from Zenodo if it is absent.
DCASE2021="${DCASE2021:-downloads/dcase2021}"
export DCASE2021
