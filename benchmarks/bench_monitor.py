"""asdlib-monitor on long synthetic streams: false alarms per hour, detection delay, speed.

For every machine of the packed model that the corpus family has, and each domain:

- a normal stream of ``--hours`` (clips of :mod:`asdlib.synth.streams`: the family's sound model,
  draws of its own, one operating condition) goes through :func:`asdlib.bin.monitor.monitor`, as
  ``asdlib-monitor`` runs it; each alarm raised is a false alarm. Reported: false alarms per hour,
  and the share of windows above the threshold (the packed promise is ``calibration.target_fpr``);
- ``--episodes`` streams of ``--onset`` seconds of normal sound followed by ``--anomaly`` seconds of
  anomalous sound (one anomaly kind per clip, as in the corpus): the detection delay is the end of
  the window that raised the alarm minus the onset; an alarm before the onset is a false alarm, none
  at all a miss.

Speed: audio seconds over compute seconds (real-time factor), and the latency from a window's last
sample to its score (median, 95th percentile), on the CPU threads given (``--threads``).
Run: ``python benchmarks/bench_monitor.py --packed egs/mini/exp/train/packed --family a``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from asdlib.backends.packed import load_packed
from asdlib.bin.monitor import Writer, monitor, window_and_hop
from asdlib.data.live import PcmFormat
from asdlib.synth.streams import stream_clips, stream_config


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packed", type=Path, required=True)
    p.add_argument("--family", default="a", help="corpus family the packed model was trained on")
    p.add_argument("--hours", type=float, default=0.25, help="normal audio per machine and domain")
    p.add_argument("--episodes", type=int, default=10, help="anomaly episodes per machine and domain")
    p.add_argument("--onset", type=float, default=60.0, help="seconds of normal sound before the anomaly")
    p.add_argument("--anomaly", type=float, default=30.0, help="seconds of anomalous sound")
    p.add_argument("--window", type=float, help="window seconds (default: the packed model's)")
    p.add_argument("--hop", type=float, help="hop seconds (default: the packed model's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="write the results here (JSON)")
    return p


def run(packed, machine, section, clips, sr, window, hop, rule) -> tuple[list[dict], dict]:
    out = io.StringIO()
    blocks = (c.astype(np.float32)[:, None] for c in clips)
    _, _, timing = monitor(
        packed, machine, section, "stream", PcmFormat(sr, 1, "f32"), blocks, window, hop, rule, Writer(out, "jsonl")
    )
    return [json.loads(line) for line in out.getvalue().splitlines()], timing


def main() -> int:
    args = get_parser().parse_args()
    torch.set_num_threads(args.threads)
    packed = load_packed(args.packed)
    cfg = stream_config(args.family)
    window, hop = window_and_hop(packed, args.window, args.hop)
    rule = packed.manifest.alarm
    machines = set(cfg.dev_machines + cfg.eval_machines)
    results, compute, audio, latencies = [], 0.0, 0.0, []
    for machine, section in packed.known():
        if machine not in machines:
            continue
        for domain in ("source", "target"):
            rows, t = run(
                packed,
                machine,
                section,
                stream_clips(args.family, machine, domain, args.hours * 3600),
                cfg.sample_rate,
                window,
                hop,
                rule,
            )
            compute, audio = compute + t["compute_seconds"], audio + t["audio_seconds"]
            latencies += [r["latency_ms"] for r in rows if r["kind"] == "window"]
            wins = [r for r in rows if r["kind"] == "window"]
            false_alarms = sum(r["kind"] == "alarm" and r["message"] == "alarm raised" for r in rows)
            delays, early, missed = [], 0, 0
            for e in range(args.episodes):
                clips = stream_clips(args.family, machine, domain, args.onset + args.anomaly, args.onset, episode=e + 1)
                rows_e, t = run(packed, machine, section, clips, cfg.sample_rate, window, hop, rule)
                compute, audio = compute + t["compute_seconds"], audio + t["audio_seconds"]
                onset = float(np.ceil(args.onset / cfg.seconds) * cfg.seconds)
                raised = [r["end"] for r in rows_e if r["kind"] == "alarm" and r["message"] == "alarm raised"]
                early += int(sum(t_end <= onset for t_end in raised))
                after = [t_end - onset for t_end in raised if t_end > onset]
                if after:
                    delays.append(after[0])
                else:
                    missed += 1
            results.append(
                {
                    "machine": machine,
                    "domain": domain,
                    "normal_hours": args.hours,
                    "false_alarms_per_hour": false_alarms / args.hours,
                    "windows_above": float(np.mean([r["above"] for r in wins])),
                    "episodes": args.episodes,
                    "alarms_before_onset": early,
                    "missed": missed,
                    "delay_median_s": statistics.median(delays) if delays else None,
                    "delay_max_s": max(delays) if delays else None,
                }
            )
            print(json.dumps(results[-1]), flush=True)
    summary = {
        "packed": str(args.packed),
        "family": args.family,
        "window_s": window,
        "hop_s": hop,
        "alarm": dataclasses.asdict(rule),
        "target_fpr": packed.manifest.calibration.target_fpr,
        "threads": args.threads,
        "realtime_factor": audio / compute if compute else None,
        "latency_median_ms": statistics.median(latencies),
        "latency_p95_ms": float(np.percentile(latencies, 95)),
        "results": results,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "results"}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
