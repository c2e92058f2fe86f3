"""Score new recordings with a packed model (stage 7 output): prints '<wav> <score>' per file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from asdlib.backends.knn import KnnBackend
from asdlib.backends.bank import embeddings_for
from asdlib.data.audio import load_wav
from asdlib.data.datadir import Utt, make_utt_id, read_data_dir
from asdlib.models.loading import load_trained
from asdlib.utils import resolve_device, run_main, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--packed", type=Path, required=True, help="exp/<tag>/packed")
    p.add_argument("--machine", required=True, help="machine type as in training (e.g. fan)")
    p.add_argument("--section", default="00")
    p.add_argument("wavs", nargs="+", type=Path)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, or auto (cuda when a GPU is visible)")
    p.add_argument("--verbose", type=int, default=0)
    return p


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    device = torch.device(resolve_device(args.device))
    trained = load_trained(args.packed, str(device))
    bank_utts = read_data_dir(args.packed / "bank")
    backend = KnnBackend(trained.cfg.backend.k, trained.cfg.backend.domain_wise).fit(
        bank_utts, embeddings_for(bank_utts, args.packed / "bank" / "embeddings.scp"))
    data = trained.cfg.data
    machine = torch.tensor([trained.machines.index(args.machine) if args.machine in trained.machines else -1], device=device)
    embs, utts = [], []
    for wav_path in args.wavs:
        wav = load_wav(wav_path, data.sample_rate, min_samples=int(data.min_seconds * data.sample_rate), channel=data.channel)
        emb = trained.model(torch.from_numpy(wav)[None].to(device), torch.tensor([wav.size], device=device), machine)
        embs.append(emb[0].float().cpu().numpy())
        utts.append(Utt(make_utt_id(args.machine, args.section, f"new{len(utts)}"), str(wav_path), args.machine,
                        args.section, "unknown", "unknown", "noAttribute"))
    for wav_path, score in zip(args.wavs, backend.score(utts, np.stack(embs))):
        sys.stdout.write(f"{wav_path} {score:.6f}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
