"""Stage 4: embeddings of a data dir (or a key subset of it) to ark/scp."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from asdlib.data.datadir import read_data_dir, select_keys
from asdlib.data.dataset import ClipDataset, collate
from asdlib.devices import resolve_device
from asdlib.io.ark import write_vectors
from asdlib.models.loading import load_trained
from asdlib.utils import channel_arg, run_main, seed_everything, setup_logging

log = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp_dir", type=Path, required=True, help="experiment dir with config.yaml and model.pt")
    p.add_argument(
        "--model_file",
        type=Path,
        help="trained weights (default: <exp_dir>/model.pt); named on the "
        "command line so that the launcher reruns finished jobs when the model changes",
    )
    p.add_argument("--data_dir", type=Path, required=True)
    p.add_argument("--keys", type=Path, help="file whose first column lists the utt-ids to process (one job's split)")
    p.add_argument(
        "--channel",
        type=channel_arg,
        help="channel of multi-channel files, or mean (default: the config's data.channel); asd.sh passes "
        "backend.noise.channel for the noise sets (asdlib.bin.noise_sets)",
    )
    p.add_argument("--out_ark", type=Path, required=True)
    p.add_argument("--out_scp", type=Path, required=True)
    p.add_argument(
        "--batch_size",
        type=int,
        default=1,
        help="clips per forward; 1 keeps every embedding bit-identical whatever the job split (nj), "
        "because CPU/GPU kernels pick their blocking by batch size; raise it for GPU throughput",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default), cuda, cuda:N, or auto (cuda when a GPU is visible); the recipe passes it from --ngpu",
    )
    p.add_argument("--verbose", type=int, default=1)
    return p


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    device = resolve_device(args.device)
    trained = load_trained(args.exp_dir, device, args.model_file)
    seed_everything(trained.cfg.seed, device)
    utts = read_data_dir(args.data_dir)
    if args.keys:
        utts = select_keys(utts, args.keys, args.data_dir)
    machine_index = {m: i for i, m in enumerate(trained.machines)}
    unseen = sorted({u.machine for u in utts} - set(machine_index))
    if unseen:
        log.warning("machine types %s were not seen in training: they use machine id -1 (shared adapter only)", unseen)
    data = trained.cfg.data
    dataset = ClipDataset(
        utts,
        data.sample_rate,
        machines=[machine_index.get(u.machine, -1) for u in utts],
        min_samples=int(data.min_seconds * data.sample_rate),
        channel=args.channel if args.channel is not None else data.channel,
        resample=data.resample,
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, collate_fn=collate, num_workers=data.num_workers)
    out: dict[str, np.ndarray] = {}
    for batch in tqdm(loader, desc=f"extract {args.data_dir.name}", file=sys.stderr, mininterval=30.0, ascii=True):
        batch = batch.to(torch.device(device))
        emb = trained.model(batch.wavs, batch.lengths, batch.machines).float().cpu().numpy()
        for i, e in zip(batch.indices.tolist(), emb):
            out[utts[i].utt_id] = e
    write_vectors(args.out_ark, args.out_scp, out)
    embedder = getattr(trained.model, "embedder", trained.model)  # inside AppendLogMel when a fusion reads log-mel
    summary = getattr(getattr(embedder, "upstream", None), "fit_summary", None)
    if summary is not None:  # EAT: once per job, how much audio its fixed length cut or padded
        log.info("%s", summary())
    log.info("wrote %d embeddings of dim %d to %s", len(out), next(iter(out.values())).size if out else 0, args.out_scp)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
