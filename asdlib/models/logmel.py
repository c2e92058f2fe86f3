"""Mean log-mel embedding: the classic training-free kNN baseline, on the same pipeline.

While exported to ONNX (asdlib-export) the spectrogram is computed by :mod:`asdlib.models.dft` from
the same window and mel matrix (torchaudio's ``stft`` has complex output, which ONNX lacks)."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from asdlib.config import LogMelConfig
from asdlib.models.dft import frame, power_spectrum
from asdlib.models.pooling import frame_mask


class LogMelMean(nn.Module):
    """Embedding = statistics of the log-mel spectrogram over the clip's valid frames (``logmel.stats``:
    time average, spread, mean frame-to-frame change), side by side."""

    def __init__(self, cfg: LogMelConfig, sample_rate: int) -> None:
        super().__init__()
        self.hop, self.stats = cfg.hop_length, tuple(cfg.stats)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, power=2.0
        )

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor, machines: torch.Tensor | None = None) -> torch.Tensor:
        exporting = torch.onnx.is_in_onnx_export()
        power = self.exported_power(wavs) if exporting else self.mel(wavs).transpose(1, 2)
        logmel = torch.log(power + 1e-10)  # (B, frames, mels)
        frames = (lengths // self.hop + 1).clamp(max=logmel.shape[1])
        mask = frame_mask(frames, logmel.shape[1]).unsqueeze(-1)
        mean = (logmel * mask).sum(1) / frames[:, None]
        out = []
        for stat in self.stats:
            if stat == "mean":
                out.append(mean)
            elif stat == "std":  # population spread over the valid frames
                out.append((((logmel - mean[:, None]) ** 2 * mask).sum(1) / frames[:, None]).sqrt())
            else:  # delta: mean |change| between consecutive valid frames (0 for a one-frame clip)
                pairs = mask[:, 1:] & mask[:, :-1]
                change = (logmel[:, 1:] - logmel[:, :-1]).abs() * pairs
                out.append(change.sum(1) / (frames[:, None] - 1).clamp(min=1))
        return torch.cat(out, dim=1)

    def exported_power(self, wavs: torch.Tensor) -> torch.Tensor:
        """(B, frames, mels) mel power spectrogram as ``self.mel`` computes it, from ops ONNX has."""
        spec = self.mel.spectrogram  # centred frames of a reflect-padded signal, Hann window, power 2
        half = spec.n_fft // 2
        padded = nn.functional.pad(wavs.unsqueeze(1), (half, half), mode="reflect").squeeze(1)
        power = power_spectrum(frame(padded, spec.n_fft, spec.hop_length) * spec.window, spec.n_fft)
        return (power @ self.mel.mel_scale.fb.double()).float()


class AppendLogMel(nn.Module):
    """An embedder's output followed by the clip's mean log-mel (``backend.uses_logmel``): one forward
    gives every stream a fusion reads, so stage 4, packing and inference stay single-pass."""

    def __init__(self, embedder: nn.Module, cfg: LogMelConfig, sample_rate: int) -> None:
        super().__init__()
        self.embedder, self.logmel = embedder, LogMelMean(cfg, sample_rate)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor, machines: torch.Tensor | None = None) -> torch.Tensor:
        return torch.cat([self.embedder(wavs, lengths, machines), self.logmel(wavs, lengths).to(torch.float32)], dim=1)
