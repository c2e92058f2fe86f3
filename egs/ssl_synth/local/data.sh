#!/usr/bin/env bash
# Stage 1 of egs/ssl_synth: render the pre-training corpus (every family's sound model on machines and
# seeds that no evaluation corpus uses, asdlib.synth.pretrain_corpus) and write data/train.
set -euo pipefail
datadir=data
clips_per_machine=300   # 5 families x 4 machines
. utils/parse_options.sh
python -m asdlib.bin.make_pretrain_corpus --root "${SSL_SYNTH:-downloads/ssl_synth}" --data_dir "${datadir}" \
    --clips_per_machine "${clips_per_machine}"
