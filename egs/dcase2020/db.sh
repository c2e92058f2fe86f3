# shellcheck shell=bash
# Where the DCASE 2020 Task 2 corpus lives (the root holds dev_data/ and eval_data/; the official
# eval_data_list_2020.csv comes from the fetched DCASE metadata, one in the root wins); override from the
# environment: DCASE2020=/data/dcase2020 ./run.sh
# With --local_data_opts "--download true", stage 1 downloads it here from Zenodo if it is absent.
DCASE2020="${DCASE2020:-downloads/dcase2020}"
export DCASE2020
