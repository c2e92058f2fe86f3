"""Live audio for ``asdlib-monitor``: blocks of samples as they arrive, from a WAV or raw PCM stream
(a pipe such as ``arecord ... |``), a file that is still being written, or a sound device.

Why a reader of its own: soundfile needs a seekable file, and a pipe or a growing file is neither
whole nor seekable. The WAV header is parsed from the first bytes (RIFF chunks up to ``data``); the
data size it declares is ignored, because streaming writers (arecord, sox to a pipe) cannot know it.
Every source yields float32 arrays of shape (frames, channels) and raises :class:`LiveError` with the
source's name and the cause when the input stalls, ends mid-frame or is not audio. A sound device
goes through ``sounddevice`` (PortAudio), an optional package: without it the error says how to get it.
"""

from __future__ import annotations

import io
import os
import queue
import select
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

#: PCM encodings of raw streams (little-endian, as arecord's S16_LE, S24_3LE, S32_LE, FLOAT_LE)
ENCODINGS = ("s16", "s24", "s32", "f32")
_WAVE_PCM, _WAVE_FLOAT, _WAVE_EXTENSIBLE = 1, 3, 0xFFFE
BLOCK_SECONDS = 0.1  # what one read asks for: latency of a block, not of a window


class LiveError(ValueError):
    """A live input that cannot be read on: not audio, malformed, stalled or gone."""


@dataclass(frozen=True)
class PcmFormat:
    sample_rate: int
    channels: int
    encoding: str  # one of ENCODINGS

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.channels <= 0 or self.encoding not in ENCODINGS:
            raise LiveError(
                f"PCM format needs a rate > 0, channels > 0 and an encoding in {', '.join(ENCODINGS)}; got "
                f"{self.sample_rate} Hz, {self.channels} channels, {self.encoding!r}"
            )

    @property
    def frame_bytes(self) -> int:
        return self.channels * {"s16": 2, "s24": 3, "s32": 4, "f32": 4}[self.encoding]


def decode(raw: bytes, fmt: PcmFormat) -> np.ndarray:
    """Whole frames of little-endian PCM as float32 in [-1, 1], shape (frames, channels)."""
    if fmt.encoding == "s24":
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        x = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend 24 bits
        data = x.astype(np.float32) / 2.0**23
    elif fmt.encoding == "f32":
        data = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    else:
        dtype, full = {"s16": ("<i2", 2.0**15), "s32": ("<i4", 2.0**31)}[fmt.encoding]
        data = (np.frombuffer(raw, dtype=dtype).astype(np.float64) / full).astype(np.float32)
    return data.reshape(-1, fmt.channels)


def _read_exact(read, n: int, name: str, what: str) -> bytes:
    """``n`` bytes from a reader that may return fewer (a pipe); a short read is a :class:`LiveError`."""
    out = b""
    while len(out) < n:
        chunk = read(n - len(out))
        if not chunk:
            raise LiveError(f"{name}: the input ended inside the WAV header ({what}); is it a WAV stream?")
        out += chunk
    return out


def read_wav_header(read, name: str) -> PcmFormat:
    """Consume a WAV header up to the start of its ``data`` chunk and return the sample format."""
    head = _read_exact(read, 12, name, "RIFF")
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise LiveError(
            f"{name}: not a WAV stream (no RIFF/WAVE header); for headerless PCM pass --format raw with "
            "--rate, --channels and --encoding"
        )
    fmt = None
    while True:
        tag, size = struct.unpack("<4sI", _read_exact(read, 8, name, "chunk"))
        if tag == b"data":
            if fmt is None:
                raise LiveError(f"{name}: WAV 'data' chunk before its 'fmt ' chunk; the header is malformed")
            return fmt
        body = _read_exact(read, size + (size & 1), name, tag.decode("latin-1"))
        if tag == b"fmt ":
            fmt = _wav_format(body, name)


def _wav_format(body: bytes, name: str) -> PcmFormat:
    if len(body) < 16:
        raise LiveError(f"{name}: WAV 'fmt ' chunk of {len(body)} bytes is too short")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == _WAVE_EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack("<H", body[24:26])[0]  # the sub-format GUID starts with the plain format tag
    encoding = {(_WAVE_PCM, 16): "s16", (_WAVE_PCM, 24): "s24", (_WAVE_PCM, 32): "s32", (_WAVE_FLOAT, 32): "f32"}.get(
        (tag, bits)
    )
    if encoding is None:
        raise LiveError(
            f"{name}: WAV format tag {tag} with {bits} bits is not supported; send 16/24/32-bit PCM or 32-bit float "
            "(e.g. sox ... -b 16 -e signed -t wav -)"
        )
    return PcmFormat(rate, channels, encoding)


def _waiting_read(stream: BinaryIO, stall_seconds: float, name: str):
    """``read(n)`` on a pipe that raises :class:`LiveError` when no byte arrives for ``stall_seconds``."""
    try:
        fd = stream.fileno()
    except (OSError, io.UnsupportedOperation):
        fd = None

    def read(n: int) -> bytes:
        if fd is not None and stall_seconds > 0:
            ready, _, _ = select.select([fd], [], [], stall_seconds)
            if not ready:
                raise LiveError(f"{name}: no audio for {stall_seconds:g} s (stalled input; --stall_seconds)")
            return os.read(fd, n)
        return getattr(stream, "read1", stream.read)(n)  # read1: what is there, not a full n bytes

    return read


def pcm_blocks(read, fmt: PcmFormat, name: str) -> Iterator[np.ndarray]:
    """Blocks of about :data:`BLOCK_SECONDS` from ``read`` until the input ends on a frame boundary."""
    want = max(1, int(fmt.sample_rate * BLOCK_SECONDS)) * fmt.frame_bytes
    rest = b""
    while True:
        chunk = read(want)
        if not chunk:
            if rest:
                raise LiveError(f"{name}: the input ended inside a frame ({len(rest)} stray bytes); it was cut off")
            return
        rest += chunk
        whole = len(rest) - len(rest) % fmt.frame_bytes
        if whole:
            yield decode(rest[:whole], fmt)
            rest = rest[whole:]


def stream_blocks(
    stream: BinaryIO, name: str, raw: PcmFormat | None = None, stall_seconds: float = 0.0
) -> tuple[PcmFormat, Iterator[np.ndarray]]:
    """A pipe or file object: WAV (header parsed here) or, with ``raw``, headerless PCM of that format."""
    read = _waiting_read(stream, stall_seconds, name)
    fmt = raw or read_wav_header(read, name)
    return fmt, pcm_blocks(read, fmt, name)


def follow_blocks(
    path: Path, raw: PcmFormat | None = None, stall_seconds: float = 10.0, poll_seconds: float = 0.1
) -> tuple[PcmFormat, Iterator[np.ndarray]]:
    """A file that another program is still writing (``tail -f``): read what is there, then wait for
    more; the input ends when the file has not grown for ``stall_seconds``."""
    if not path.is_file():
        raise LiveError(f"{path}: file not found")
    f = path.open("rb")
    name = str(path)
    last = [time.monotonic()]

    def read(n: int) -> bytes:
        while True:
            chunk = f.read(n)
            if chunk:
                last[0] = time.monotonic()
                return chunk
            if time.monotonic() - last[0] >= stall_seconds:
                return b""  # the writer stopped: the end of the recording
            time.sleep(poll_seconds)

    try:
        fmt = raw or read_wav_header(read, name)
    except LiveError:
        f.close()
        raise

    def blocks() -> Iterator[np.ndarray]:
        with f:
            yield from pcm_blocks(read, fmt, name)

    return fmt, blocks()


def device_blocks(
    device: str, sample_rate: int, channels: int, stall_seconds: float = 5.0
) -> tuple[PcmFormat, Iterator[np.ndarray]]:
    """A sound card through ``sounddevice`` (an optional package): ``device`` is its index or name."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:
        raise LiveError(
            f"--device needs the optional package sounddevice and the PortAudio library ({e}); install them with "
            "'pip install sounddevice' (and e.g. 'apt install libportaudio2'), or pipe audio in: "
            "arecord -f S16_LE -r 16000 -t wav - | asdlib-monitor ... -"
        ) from e
    dev: int | str = int(device) if device.isdigit() else device
    blocks: queue.Queue[np.ndarray] = queue.Queue(maxsize=600)  # bounded: about a minute of blocks
    fmt = PcmFormat(sample_rate, channels, "f32")

    def callback(indata: np.ndarray, frames: int, t: object, status: object) -> None:
        try:
            blocks.put_nowait(indata.copy())
        except queue.Full:
            pass  # the scorer fell a minute behind; dropping is better than unbounded memory

    def gen() -> Iterator[np.ndarray]:
        try:
            with sd.InputStream(
                device=dev,
                channels=channels,
                samplerate=sample_rate,
                dtype="float32",
                blocksize=int(sample_rate * BLOCK_SECONDS),
                callback=callback,
            ):
                while True:
                    try:
                        yield blocks.get(timeout=stall_seconds)
                    except queue.Empty:
                        raise LiveError(f"sound device {device}: no audio for {stall_seconds:g} s") from None
        except sd.PortAudioError as e:
            raise LiveError(f"sound device {device}: {e}") from e

    return fmt, gen()
