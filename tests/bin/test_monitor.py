"""asdlib-monitor (issue 22): a live stream is scored window by window, the hysteresis alarm rises
on a planted anomaly within its delay bound and not on one loud window, broken inputs leave
complete lines and a documented exit code, and every input kind (WAV or raw PCM on stdin, a
growing file) gives the same scores. The packed model is a real one: the training-free log-mel
embedder whose kNN bank holds the embeddings of noise clips, so a tone burst is an anomaly."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import make_logmel_pack

from asdlib.backends.alarm import Alarm, AlarmRule
from asdlib.bin import monitor
from asdlib.data.live import LiveError, PcmFormat, decode, read_wav_header

SR = 16000
REPO = Path(__file__).resolve().parents[2]


def noise(seconds: float, seed: int, burst: tuple[float, float] | None = None) -> np.ndarray:
    """Steady white noise; ``burst``: a loud 3 kHz tone from..to (seconds)."""
    rng = np.random.default_rng(seed)
    x = 0.05 * rng.standard_normal(int(seconds * SR))
    if burst is not None:
        t = np.arange(x.size) / SR
        on = (t >= burst[0]) & (t < burst[1])
        x[on] += 0.3 * np.sin(2 * np.pi * 3000 * t[on])
    return np.clip(x, -1, 1).astype(np.float32)


def wav_bytes(x: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A packed log-mel kNN model of machine ``fan`` whose bank is 40 noise clips of 1 s, thresholds at 1 % FPR."""
    root = tmp_path_factory.mktemp("monitor_pack")
    wavs = []
    for i in range(40):
        wavs.append(root / "wav" / f"n{i:02d}.wav")
        wavs[-1].parent.mkdir(exist_ok=True)
        sf.write(str(wavs[-1]), noise(1.0, 100 + i), SR)
    return make_logmel_pack(root, {"fan": wavs}, fpr=0.01)


def run_cli(*args: str, stdin: bytes = b"", timeout: float = 120) -> tuple[int, list[dict], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "asdlib.bin.monitor", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    lines = proc.stdout.decode().splitlines()
    return proc.returncode, [json.loads(line) for line in lines], proc.stderr.decode()


def start_cli(*args: str) -> subprocess.Popen:
    """asdlib-monitor in a child process whose stdin the test feeds (and leaves open) itself. The
    child gets the default SIGINT action, as under a shell: a test runner's worker may ignore SIGINT,
    and Python keeps a signal ignored that it inherits ignored."""
    return subprocess.Popen(
        [sys.executable, "-m", "asdlib.bin.monitor", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def windows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["kind"] == "window"]


def test_pack_records_clip_length_and_alarm_rule(pack) -> None:
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["windowing"]["clip_seconds"] == 1.0
    assert manifest["alarm"] == {"raise_k": 3, "raise_n": 5, "clear_m": 5}


def test_alarm_rises_after_an_anomaly_starts_and_clears_after_it(pack) -> None:
    x = noise(16.0, 7, burst=(6.0, 10.0))
    code, rows, err = run_cli("--packed", str(pack), "-", stdin=wav_bytes(x))
    assert code == monitor.EXIT_ALARM, err
    win = windows(rows)
    assert [r["start"] for r in win[:3]] == [0.0, 0.5, 1.0]  # the clip length, hop half a window
    alarms = [r for r in rows if r["kind"] == "alarm"]
    assert [a["message"] for a in alarms] == ["alarm raised", "alarm cleared"]
    # raised by the 3rd window above: the first window that holds the burst starts at 5.5 s, so the
    # 3rd ends at 7.5 s; cleared 5 windows after the last window that holds it
    assert 6.0 < alarms[0]["end"] <= 7.5, alarms
    assert alarms[1]["start"] > 10.0
    assert sum(r["above"] for r in win if r["end"] <= 6.0) <= 2  # a few false positives, never an alarm
    assert rows[-1]["kind"] == "end" and rows[-1]["message"] == "the input ended"
    assert all(r["latency_ms"] >= 0 and r["threshold"] == win[0]["threshold"] for r in win)


def test_normal_stream_and_one_loud_window_raise_nothing(pack) -> None:
    x = noise(12.0, 8, burst=(5.2, 5.5))  # touches 2 windows: below raise_k = 3
    code, rows, err = run_cli("--packed", str(pack), "-", stdin=wav_bytes(x))
    assert code == 0, err
    assert sum(r["above"] for r in windows(rows)) in (1, 2)
    assert not any(r["kind"] == "alarm" for r in rows)


def test_raw_pcm_float_wav_and_growing_file_give_the_same_scores(pack, tmp_path) -> None:
    x = noise(4.0, 9)
    _, ref, _ = run_cli("--packed", str(pack), "-", stdin=wav_bytes(x))
    pcm = (np.clip(x, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()
    _, raw, _ = run_cli("--packed", str(pack), "--format", "raw", "--rate", "16000", "-", stdin=pcm)
    _, f32, _ = run_cli("--packed", str(pack), "-", stdin=wav_bytes(x, subtype="FLOAT"))
    grow = tmp_path / "growing.wav"
    data = wav_bytes(x)
    grow.write_bytes(data[:5000])

    def writer() -> None:  # another program still recording: the file grows in 4 steps
        for k in range(1, 5):
            time.sleep(0.3)
            with grow.open("ab") as f:
                f.write(data[5000 + (k - 1) * (len(data) - 5000) // 4 : 5000 + k * (len(data) - 5000) // 4])

    t = threading.Thread(target=writer)
    t.start()
    code, follow, err = run_cli("--packed", str(pack), "--follow", str(grow), "--stall_seconds", "1.5")
    t.join()
    assert code == 0, err
    scores = [r["score"] for r in windows(ref)]
    assert len(scores) == 7
    assert [r["score"] for r in windows(raw)] == pytest.approx(scores, abs=1e-6)
    assert [r["score"] for r in windows(f32)] == pytest.approx(scores, abs=1e-3)
    assert [r["score"] for r in windows(follow)] == pytest.approx(scores, abs=1e-6)


def test_cut_off_input_leaves_complete_lines_and_exit_3(pack) -> None:
    data = wav_bytes(noise(3.0, 10))
    code, rows, err = run_cli("--packed", str(pack), "-", stdin=data[:-1])  # half a frame missing
    assert code == monitor.EXIT_BROKE_OFF
    assert len(windows(rows)) == 4 and rows[-1]["kind"] == "end"
    assert "ended inside a frame" in rows[-1]["message"] and err.count("ERROR:") == 1


def test_stalled_input_stops_with_its_reason(pack) -> None:
    proc = start_cli("--packed", str(pack), "--stall_seconds", "1", "-")
    proc.stdin.write(wav_bytes(noise(2.0, 11)))
    proc.stdin.flush()  # ... and then nothing, with the pipe left open
    out, err = proc.communicate(timeout=120) if proc.wait(timeout=120) is not None else (b"", b"")
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert proc.returncode == monitor.EXIT_BROKE_OFF, err
    assert "no audio for 1 s" in rows[-1]["message"] and len(windows(rows)) == 3


def test_ctrl_c_writes_a_last_end_row(pack) -> None:
    proc = start_cli("--packed", str(pack), "--out_format", "csv", "-")
    proc.stdin.write(wav_bytes(noise(2.0, 12))[:-8000])  # a header that promises more than arrives
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    first = proc.stdout.readline()  # the CSV header
    assert first.decode().startswith("kind,time,start")
    while time.monotonic() < deadline and not proc.stdout.peek(1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    lines = out.decode().splitlines()
    assert proc.returncode == 130, err
    assert lines[-1].startswith("end,") and "interrupted (Ctrl-C)" in lines[-1]
    assert all(line.count(",") == len(monitor.COLUMNS) - 1 for line in lines)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["-"], b"hello, this is not audio at all", "not a WAV stream"),
        (["-"], wav_bytes(noise(1.0, 1), sr=8000), "sample rate 8000 Hz"),
        (["--window", "2", "--hop", "3", "-"], b"", "hop <= window"),
        (["--machine", "pump", "-"], b"", "unknown machine 'pump'"),
        (["--device", "0"], b"", "sounddevice"),
        (["--raise_k", "6", "-"], b"", "raise_k <= raise_n"),
    ],
)
def test_bad_input_is_one_error_line(pack, args, stdin, message) -> None:
    code, rows, err = run_cli("--packed", str(pack), *args, stdin=stdin)
    assert code == 1 and rows == []
    lines = [line for line in err.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 1 and message in lines[0], err


def test_memory_holds_one_window_whatever_the_stream_length(pack) -> None:
    from asdlib.backends.packed import load_packed

    packed = load_packed(pack)
    sizes = []
    real_concat = np.concatenate

    def blocks():
        x = noise(30.0, 13)
        for i in range(0, x.size, 1600):
            yield x[i : i + 1600, None]

    def spy(arrays, *a, **k):
        out = real_concat(arrays, *a, **k)
        sizes.append(out.size)
        return out

    writer = monitor.Writer(io.StringIO(), "jsonl")
    np.concatenate, saved = spy, np.concatenate
    try:
        raised, broke_off, timing = monitor.monitor(
            packed, "fan", "00", "test", PcmFormat(SR, 1, "s16"), blocks(), 1.0, 0.5, AlarmRule(), writer
        )
    finally:
        np.concatenate = saved
    assert broke_off == "" and timing["windows"] == 59
    assert max(s for s in sizes if s <= 2 * SR) == max(sizes) <= SR + 1600


def test_alarm_rule() -> None:
    alarm = Alarm(AlarmRule(raise_k=2, raise_n=3, clear_m=2))
    events = [alarm.update(a) for a in (True, False, False, True, False, True, True, False, False, True)]
    assert events == ["", "", "", "", "", "raised", "", "", "cleared", ""]
    with pytest.raises(ValueError, match="raise_k <= raise_n"):
        AlarmRule(raise_k=4, raise_n=3)


def test_wav_header_parser_reads_extensible_and_rejects_others() -> None:
    data = wav_bytes(noise(0.1, 2).reshape(-1, 1).repeat(2, axis=1), subtype="PCM_24")
    stream = io.BytesIO(data)
    fmt = read_wav_header(stream.read, "x")
    assert fmt == PcmFormat(SR, 2, "s24")
    got = decode(stream.read(), fmt)
    ref, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    assert np.allclose(got, ref, atol=1e-6)
    with pytest.raises(LiveError, match="inside the WAV header"):
        read_wav_header(io.BytesIO(data[:20]).read, "x")
    ulaw = io.BytesIO()
    sf.write(ulaw, noise(0.1, 3), SR, format="WAV", subtype="ULAW")
    with pytest.raises(LiveError, match="not supported"):
        read_wav_header(io.BytesIO(ulaw.getvalue()).read, "x")


def test_make_stream_writes_a_file_and_a_pipe_of_the_same_audio(tmp_path) -> None:
    from asdlib.bin import make_stream

    args = ["--family", "a", "--machine", "ToyDrone", "--seconds", "5", "--anomaly_from", "2", "--verbose", "0"]
    assert make_stream.main([*args, "--out", str(tmp_path / "s.wav")]) == 0
    x, sr = sf.read(str(tmp_path / "s.wav"), dtype="float32")
    assert sr == SR and x.size == 6 * SR  # 3 clips of 2 s
    piped = subprocess.run(
        [sys.executable, "-m", "asdlib.bin.make_stream", *args, "--out", "-"],
        capture_output=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout
    stream = io.BytesIO(piped)
    fmt = read_wav_header(stream.read, "stdout")
    assert fmt == PcmFormat(SR, 1, "s16")
    assert np.array_equal(decode(stream.read(), fmt)[:, 0], x)
