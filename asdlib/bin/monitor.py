"""Monitor a running machine: score a live stream with a packed model (stage 7), window by window,
with alarms.

    arecord -f S16_LE -r 16000 -c 1 -t wav - | asdlib-monitor --packed packed/ --machine pump -
    sox in.flac -r 16000 -b 16 -t wav - | asdlib-monitor --packed packed.tar --machine fan --format csv -
    asdlib-monitor --packed packed/ --machine fan --follow /var/rec/fan.wav --out fan.jsonl
    asdlib-monitor --packed packed/ --machine fan --device 2 --rate 16000 --channels 2

Input: a WAV stream on stdin (``-``; ``--format raw --rate R --channels C --encoding s16`` for
headerless PCM), a WAV file that is still being written (``--follow``; it ends when the file has
not grown for ``--stall_seconds``), or a sound device (``--device``, through the optional package
sounddevice). Channels and sample rate are handled as in training: the packed model's
``data.channel`` picks or down-mixes channels, and another rate is an error unless the model was
trained with ``data.resample``.

Windows of ``--window`` seconds start every ``--hop`` seconds (defaults: the packed model's
windows, else its training clips' length, and half a window). Each is scored as it completes;
memory holds one window, whatever the stream's length. Output (stdout or ``--out``, flushed line
by line, so a killed monitor leaves complete lines): JSON lines or CSV, one ``window`` row per window
(stream time, score, threshold, whether it is above, the alarm state, the latency from the window's
last sample to its score), an ``alarm`` row when the alarm is raised or cleared, and an ``end`` row
saying why the monitor stopped. The alarm rule is the packed model's (asdlib/backends/alarm.py:
raised when ``raise_k`` of the last ``raise_n`` windows are above the threshold, cleared after
``clear_m`` below); ``--raise_k/--raise_n/--clear_m`` override it.

Exit codes (docs/design.md §5): 0 the input ended and no alarm was raised; 5 an alarm was raised;
3 the input broke off (stalled, cut mid-frame, device error) with no alarm, after the rows already
written; 1 nothing was monitored (bad options, a refused pack, an input that is not audio); 2 a bad
command line; 130 interrupted (Ctrl-C), after a last ``end`` row.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np

from asdlib.backends.alarm import Alarm, AlarmRule
from asdlib.backends.packed import Packed, load_packed
from asdlib.data.audio import AudioError, resample, select_channel
from asdlib.data.live import ENCODINGS, LiveError, PcmFormat, device_blocks, follow_blocks, stream_blocks
from asdlib.devices import resolve_device
from asdlib.io.atomic import check_writable
from asdlib.utils import run_main, setup_logging

log = logging.getLogger(__name__)
COLUMNS = ("kind", "time", "start", "end", "score", "threshold", "above", "alarm", "latency_ms", "message")
EXIT_BROKE_OFF = 3
EXIT_ALARM = 5


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--packed", type=Path, required=True, help="packed model directory or packed.tar (stage 7)")
    p.add_argument("--machine", help="machine type to monitor (default: the packed model's only one)")
    p.add_argument("--section", help="section (default: the machine's only one)")
    p.add_argument(
        "--domain",
        help="the machine's domain, when known (source, target, or one asdlib-enroll added): its own threshold "
        "instead of the domain-unknown one (the maximum over the domains)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("input", nargs="?", help="'-': a WAV (or --format raw) stream on stdin")
    src.add_argument("--follow", type=Path, help="a WAV file that is still being written")
    src.add_argument("--device", help="a sound device (index or name; needs the optional package sounddevice)")
    p.add_argument("--format", choices=("wav", "raw"), default="wav", help="stdin/--follow: WAV or headerless PCM")
    p.add_argument("--rate", type=int, help="sample rate of raw PCM or of the device (default: the model's)")
    p.add_argument("--channels", type=int, default=1, help="channels of raw PCM or of the device")
    p.add_argument("--encoding", choices=ENCODINGS, default="s16", help="raw PCM sample encoding (little-endian)")
    p.add_argument("--window", type=float, help="window length in seconds (default: the packed model's)")
    p.add_argument("--hop", type=float, help="window hop in seconds (default: the model's, else half a window)")
    p.add_argument("--raise_k", type=int, help="raise the alarm when raise_k of the last raise_n windows are above")
    p.add_argument("--raise_n", type=int)
    p.add_argument("--clear_m", type=int, help="clear it after clear_m windows in a row at or below the threshold")
    p.add_argument(
        "--stall_seconds",
        type=float,
        default=10.0,
        help="stop when no audio arrives for this long (stdin, device; --follow: the end of the recording)",
    )
    p.add_argument("--max_seconds", type=float, default=0.0, help="stop after this much audio (0: never)")
    p.add_argument("--out_format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--out", type=Path, help="append rows to this file instead of stdout")
    p.add_argument("--device_kind", default="cpu", help="torch device for the model: cpu, cuda, cuda:N or auto")
    p.add_argument("--verbose", type=int, default=1)
    return p


def pick_target(packed: Packed, machine: str | None, section: str | None) -> tuple[str, str]:
    """The (machine, section) to monitor: as given, or the packed model's only one."""
    if machine is None:
        machines = sorted({m for m, _ in packed.known()})
        if len(machines) > 1:
            raise ValueError(f"the packed model knows several machines ({', '.join(machines)}); pass --machine")
        machine = machines[0]
    return machine, packed.section_of(machine, section)


def window_and_hop(packed: Packed, window: float | None, hop: float | None) -> tuple[float, float]:
    """Seconds per window and between window starts: as given, else the packed model's."""
    data = packed.trained.cfg.data
    win = window or data.window_seconds or packed.manifest.windowing.clip_seconds
    if not win:
        raise ValueError(
            "the packed model records no window or clip length; pass --window SECONDS (its training clips' length)"
        )
    step = hop or (data.hop_seconds if data.window_seconds and not window else win / 2)
    if win <= 0 or step <= 0 or step > win:
        raise ValueError(f"--window and --hop must be > 0 with hop <= window, got window {win} s, hop {step} s")
    if win < data.min_seconds:
        raise ValueError(f"--window {win} s is shorter than the model's minimum of {data.min_seconds} s")
    return win, step


def alarm_rule(packed: Packed, k: int | None, n: int | None, m: int | None) -> AlarmRule:
    base = packed.manifest.alarm
    return AlarmRule(k or base.raise_k, n or base.raise_n, m or base.clear_m)


class Writer:
    """Rows to a text stream, one complete line at a time, flushed at once."""

    def __init__(self, out: TextIO, fmt: str) -> None:
        self.out, self.fmt = out, fmt
        if fmt == "csv":
            self._line(",".join(COLUMNS))

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def row(self, **cells: object) -> None:
        cells["time"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        if self.fmt == "jsonl":
            self._line(json.dumps({k: cells.get(k) for k in COLUMNS if k in cells}, allow_nan=False))
            return
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="").writerow(
            {k: "" if cells.get(k) is None else cells.get(k) for k in COLUMNS}
        )
        self._line(buf.getvalue())


def open_input(args: argparse.Namespace, model_rate: int) -> tuple[str, PcmFormat, Iterator[np.ndarray]]:
    """The input's name, sample format and blocks."""
    raw = PcmFormat(args.rate or model_rate, args.channels, args.encoding) if args.format == "raw" else None
    if args.device is not None:
        return f"device {args.device}", *device_blocks(
            args.device, args.rate or model_rate, args.channels, args.stall_seconds
        )
    if args.follow is not None:
        return str(args.follow), *follow_blocks(args.follow, raw, args.stall_seconds)
    if args.input != "-":
        raise ValueError(f"input must be '-' (stdin), --follow FILE or --device; got '{args.input}'")
    return "stdin", *stream_blocks(sys.stdin.buffer, "stdin", raw, args.stall_seconds)


def monitor(
    packed: Packed,
    machine: str,
    section: str,
    name: str,
    fmt: PcmFormat,
    blocks: Iterator[np.ndarray],
    window: float,
    hop: float,
    rule: AlarmRule,
    writer: Writer,
    device: str = "cpu",
    max_seconds: float = 0.0,
    domain: str | None = None,
) -> tuple[bool, str, dict[str, float]]:
    """Score the stream's windows as they complete: (whether an alarm was raised, why the input broke
    off or "" when it ended cleanly, timing)."""
    data = packed.trained.cfg.data
    if fmt.sample_rate != data.sample_rate and not data.resample:
        raise AudioError(
            f"{name}: sample rate {fmt.sample_rate} Hz, the model takes {data.sample_rate} Hz; record at that rate "
            f"(arecord -r {data.sample_rate}, sox ... -r {data.sample_rate}) or use a model trained with data.resample"
        )
    if fmt.channels > 1 and data.channel is None:
        raise AudioError(f"{name}: {fmt.channels} channels, but the model was trained on mono recordings; send one")
    threshold = packed.threshold(machine, section, domain)
    win, step = int(round(window * fmt.sample_rate)), int(round(hop * fmt.sample_rate))
    stop_at = int(max_seconds * fmt.sample_rate) if max_seconds > 0 else None
    alarm, raised = Alarm(rule), False
    buf, buf_start, next_start = np.zeros(0, np.float32), 0, 0
    latencies: list[float] = []
    compute = 0.0
    reason = "the input ended"
    broke_off = ""
    try:
        for block in blocks:
            arrived = time.perf_counter()
            buf = np.concatenate([buf, select_channel(block, data.channel, name)])
            while buf_start + buf.size - next_start >= win and (stop_at is None or next_start + win <= stop_at):
                seg = buf[next_start - buf_start : next_start - buf_start + win]
                if fmt.sample_rate != data.sample_rate:
                    seg = resample(seg, fmt.sample_rate, data.sample_rate)
                started = time.perf_counter()
                score = float(packed.score_embeddings(packed.embed([seg], machine, device), machine, section)[0])
                done = time.perf_counter()
                compute += done - started
                latencies.append(done - arrived)
                event = alarm.update(score > threshold)
                start, end = round(next_start / fmt.sample_rate, 3), round(next_start / fmt.sample_rate + window, 3)
                writer.row(
                    kind="window",
                    start=start,
                    end=end,
                    score=score,
                    threshold=threshold,
                    above=score > threshold,
                    alarm=alarm.active,
                    latency_ms=round(1000 * (done - arrived), 2),
                )
                if event:
                    raised |= event == "raised"
                    writer.row(kind="alarm", start=start, end=end, alarm=alarm.active, message=f"alarm {event}")
                next_start += step
                buf, buf_start = buf[next_start - buf_start :], next_start
            if stop_at is not None and buf_start + buf.size >= stop_at:
                reason = f"--max_seconds {max_seconds:g} reached"
                break
    except LiveError as e:
        reason = broke_off = " ".join(str(e).split())
    except KeyboardInterrupt:
        reason = "interrupted (Ctrl-C)"
        raise
    finally:
        audio = (buf_start + buf.size) / fmt.sample_rate
        writer.row(kind="end", start=round(audio, 3), alarm=alarm.active, message=reason)
    timing = {
        "audio_seconds": audio,
        "compute_seconds": compute,
        "windows": float(len(latencies)),
        "latency_median_ms": 1000 * float(np.median(latencies)) if latencies else 0.0,
        "latency_p95_ms": 1000 * float(np.percentile(latencies, 95)) if latencies else 0.0,
    }
    return raised, broke_off, timing


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.out is not None:
        check_writable(args.out)
    if args.channels < 1 or args.stall_seconds <= 0 or args.max_seconds < 0:
        raise ValueError("--channels must be >= 1, --stall_seconds > 0 and --max_seconds >= 0")
    device = resolve_device(args.device_kind)
    packed = load_packed(args.packed, device)
    machine, section = pick_target(packed, args.machine, args.section)
    threshold = packed.threshold(machine, section, args.domain)  # an unknown domain names the known ones
    window, hop = window_and_hop(packed, args.window, args.hop)
    rule = alarm_rule(packed, args.raise_k, args.raise_n, args.clear_m)
    name, fmt, blocks = open_input(args, packed.trained.cfg.data.sample_rate)
    log.info(
        "monitoring %s/%s from %s (%d Hz, %d channels): %.2f s windows every %.2f s, threshold %.4f, alarm %s",
        machine,
        section,
        name,
        fmt.sample_rate,
        fmt.channels,
        window,
        hop,
        threshold,
        rule,
    )
    out = args.out.open("a", encoding="utf-8") if args.out else sys.stdout
    try:
        raised, broke_off, timing = monitor(
            packed,
            machine,
            section,
            name,
            fmt,
            blocks,
            window,
            hop,
            rule,
            Writer(out, args.out_format),
            device,
            args.max_seconds,
            args.domain,
        )
    finally:
        if out is not sys.stdout:
            out.close()
    if timing.get("compute_seconds"):
        log.info(
            "%.1f s of audio, %d windows in %.2f s of compute: %.0fx faster than real time; latency per window "
            "median %.1f ms, p95 %.1f ms",
            timing["audio_seconds"],
            timing["windows"],
            timing["compute_seconds"],
            timing["audio_seconds"] / timing["compute_seconds"],
            timing["latency_median_ms"],
            timing["latency_p95_ms"],
        )
    if broke_off:
        print(f"ERROR: {broke_off} (the rows written so far are complete)", file=sys.stderr)
    if raised:
        return EXIT_ALARM
    return EXIT_BROKE_OFF if broke_off else 0


def cli() -> None:
    """Console script ``asdlib-monitor``."""
    raise SystemExit(run_main(main))


if __name__ == "__main__":
    cli()
