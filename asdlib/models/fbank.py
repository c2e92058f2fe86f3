"""Kaldi fbank front end shared by the patch upstreams (BEATs, EAT), per clip and batched.

Both models were pre-trained on ``torchaudio.compliance.kaldi.fbank`` features computed clip by clip
and normalised with fixed corpus statistics as ``(fbank - mean) / (2 * std)``; they differ only in
the waveform scaling, window and DC handling, which :class:`FbankSpec` holds. Each clip's fbank is
computed on its valid samples only (Kaldi frames never see the zero padding), then padded with
raw-zero frames *before* normalisation: that is how EAT pads its input, and padded frames of BEATs
are masked anyway.

While the model is exported to ONNX (asdlib-export), :func:`batch_fbank` computes every clip at once
with the framing and DFT of :mod:`asdlib.models.dft` instead (Kaldi's steps written out, the valid
frames of each clip kept, the rest raw zeros as above), since the exporter maps no ``rfft`` and the
per-clip loop would freeze the batch into the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio.compliance.kaldi as kaldi
from torch import Tensor

from asdlib.models.dft import frame, power_spectrum

#: Kaldi fbank defaults that kaldi.fbank applies and :func:`exported_fbank` writes out
PREEMPHASIS = 0.97
LOW_FREQ, HIGH_FREQ, VTLN_LOW, VTLN_HIGH, VTLN_WARP = 20.0, 0.0, 100.0, -500.0, 1.0


@dataclass(frozen=True)
class FbankSpec:
    """Kaldi fbank options plus the checkpoint's input scaling and normalisation statistics."""

    mean: float
    std: float
    num_mel_bins: int = 128
    sample_rate: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window_type: str = "povey"
    htk_compat: bool = False
    waveform_scale: float = 1.0  #: multiply the [-1, 1] waveform by this first (BEATs: int16 range)
    remove_dc: bool = False  #: subtract each clip's mean sample first (EAT)

    @property
    def window_samples(self) -> int:
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def shift_samples(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms / 1000)


#: BEATs (microsoft/unilm beats/BEATs.py ``preprocess``): int16-scaled waveform, Kaldi defaults.
BEATS_FBANK = FbankSpec(mean=15.41663, std=6.55582, waveform_scale=2.0**15)
#: EAT (cwx-worst-one/EAT feature_extract.py): DC removed, Hanning window, htk_compat, no energy.
EAT_FBANK = FbankSpec(mean=-4.2677393, std=4.5689974, window_type="hanning", htk_compat=True, remove_dc=True)


def num_frames(num_samples: Tensor, spec: FbankSpec) -> Tensor:
    """Frames Kaldi produces for each length (snip_edges=True); 0 when shorter than one window."""
    frames = torch.div(num_samples - spec.window_samples, spec.shift_samples, rounding_mode="floor") + 1
    return frames.clamp(min=0)


def clip_fbank(wav: Tensor, spec: FbankSpec) -> Tensor:
    """One clip's (frames, mel) raw log-mel fbank from its valid (T,) samples, not normalised."""
    wav = wav * spec.waveform_scale
    if spec.remove_dc:
        wav = wav - wav.mean()
    return kaldi.fbank(
        wav.unsqueeze(0),
        num_mel_bins=spec.num_mel_bins,
        sample_frequency=spec.sample_rate,
        frame_length=spec.frame_length_ms,
        frame_shift=spec.frame_shift_ms,
        window_type=spec.window_type,
        htk_compat=spec.htk_compat,
        use_energy=False,
        dither=0.0,
    )


def batch_fbank(
    wavs: Tensor, lengths: Tensor, spec: FbankSpec, total_frames: int | None = None
) -> tuple[Tensor, Tensor]:
    """(B, T) zero-padded waveforms -> normalised (B, frames, mel) fbank and (B,) valid frame counts.

    ``total_frames`` fixes the output length (clips are raw-zero padded or cut to it, the returned
    counts are clipped too); by default it is the longest clip's frame count.
    """
    if torch.onnx.is_in_onnx_export():
        return exported_fbank(wavs, lengths, spec, total_frames)
    frames = num_frames(lengths.long(), spec)
    too_short = (frames <= 0).nonzero().flatten().tolist()
    if too_short:
        raise ValueError(
            f"clips {too_short} are shorter than one {spec.frame_length_ms:g} ms fbank window "
            f"({spec.window_samples} samples): drop or pad them before the upstream"
        )
    width = int(frames.max()) if total_frames is None else total_frames
    out = wavs.new_zeros(wavs.shape[0], width, spec.num_mel_bins, dtype=torch.float32)
    with torch.autocast(device_type=wavs.device.type, enabled=False):  # log-mel needs float32
        for i, n in enumerate(lengths.tolist()):
            fb = clip_fbank(wavs[i, : int(n)].float(), spec)[:width]
            out[i, : fb.shape[0]] = fb
    return (out - spec.mean) / (2.0 * spec.std), frames.clamp(max=width)


def _window(spec: FbankSpec) -> Tensor:
    """Kaldi's frame window (``povey``: Hann to the power 0.85, or ``hanning``)."""
    hann = torch.hann_window(spec.window_samples, periodic=False, dtype=torch.float64)
    if spec.window_type == "povey":
        return hann.pow(0.85).float()
    if spec.window_type == "hanning":
        return hann.float()
    raise ValueError(f"fbank window {spec.window_type!r}: exporting supports povey and hanning")


def exported_fbank(
    wavs: Tensor, lengths: Tensor, spec: FbankSpec, total_frames: int | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`batch_fbank` in one pass over the batch, from ops ONNX has (see the module docstring):
    per frame Kaldi's DC removal, pre-emphasis, window, power spectrum, mel banks and log."""
    x = wavs.float() * spec.waveform_scale
    valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
    if spec.remove_dc:
        x = (x - (x * valid).sum(1, keepdim=True) / lengths[:, None].float()) * valid
    frames = frame(x, spec.window_samples, spec.shift_samples)
    frames = frames - frames.mean(-1, keepdim=True)
    frames = frames - PREEMPHASIS * torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    n_fft = 1 << (spec.window_samples - 1).bit_length()
    banks, _ = kaldi.get_mel_banks(
        spec.num_mel_bins, n_fft, float(spec.sample_rate), LOW_FREQ, HIGH_FREQ, VTLN_LOW, VTLN_HIGH, VTLN_WARP
    )
    power = power_spectrum(frames * _window(spec), n_fft)[..., :-1]  # the Nyquist bin has no mel weight
    fbank = torch.clamp(power @ banks.T.double(), min=torch.finfo(torch.float32).eps).log().float()
    counts = num_frames(lengths.long(), spec)
    fbank = fbank * (torch.arange(fbank.shape[1], device=x.device)[None, :] < counts[:, None]).unsqueeze(-1)
    if total_frames is None:
        width = counts.max()
        fbank = fbank.index_select(1, torch.arange(width, device=x.device))
        return (fbank - spec.mean) / (2.0 * spec.std), counts
    fbank = torch.cat([fbank, fbank.new_zeros(fbank.shape[0], total_frames, fbank.shape[2])], dim=1)[:, :total_frames]
    return (fbank - spec.mean) / (2.0 * spec.std), counts.clamp(max=total_frames)
