"""Write a long synthetic recording of one running machine (asdlib.synth.streams) as a WAV file or
stream: normal sound, or normal sound with an anomaly from a known time. For trying and measuring
asdlib-monitor on a corpus family's machines:

    python -m asdlib.bin.make_stream --family a --machine ToyDrone --seconds 120 --anomaly_from 60 --out - \\
        | asdlib-monitor --packed exp/train/packed --machine ToyDrone -

``--out -`` writes to stdout clip by clip (a WAV header that declares no length, as arecord
writes), so the monitor starts before the stream is complete; a file is written atomically.
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

import numpy as np

from asdlib.io.atomic import atomic_write
from asdlib.synth.corpus import MAX_SAMPLE
from asdlib.synth.streams import stream_clips, stream_config
from asdlib.utils import run_main, setup_logging

STREAMING_SIZE = 0xFFFFFFFF  # RIFF/data sizes of a stream whose length is not known when it starts


def wav_header(sample_rate: int, data_bytes: int = STREAMING_SIZE) -> bytes:
    """A 16-bit mono PCM WAV header; the default sizes mark a stream of unknown length."""
    riff = STREAMING_SIZE if data_bytes == STREAMING_SIZE else 36 + data_bytes
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, 2 * sample_rate, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, MAX_SAMPLE) * 32768).astype("<i2").tobytes()


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="a", help="corpus family (asdlib.synth.families)")
    p.add_argument("--machine", required=True)
    p.add_argument("--domain", choices=("source", "target"), default="source")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--anomaly_from", type=float, help="anomalous from this time on (rounded up to a clip)")
    p.add_argument("--episode", type=int, default=0, help="another draw of the same stream")
    p.add_argument("--out", required=True, help="a .wav path, or - for stdout")
    p.add_argument("--verbose", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    sr = stream_config(args.family).sample_rate
    clips = stream_clips(args.family, args.machine, args.domain, args.seconds, args.anomaly_from, args.episode)
    if args.out == "-":
        out = sys.stdout.buffer
        out.write(wav_header(sr))
        for clip in clips:
            out.write(pcm16(clip))
            out.flush()
        return 0
    data = b"".join(pcm16(c) for c in clips)
    with atomic_write(Path(args.out), "wb", encoding=None) as f:
        f.write(wav_header(sr, len(data)) + data)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
