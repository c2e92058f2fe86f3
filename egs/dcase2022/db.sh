# shellcheck shell=bash
# Where the DCASE 2022 Task 2 corpus lives (the root holds dev_data/ and eval_data/; the official
# eval_data_list_2022.csv comes from the fetched DCASE metadata, one in the root wins); override from the
# environment: DCASE2022=/data/dcase2022 ./run.sh
# With --local_data_opts "--download true", stage 1 downloads it here from Zenodo if it is absent.
DCASE2022="${DCASE2022:-downloads/dcase2022}"
export DCASE2022
