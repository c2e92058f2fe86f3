"""Why a recording alarmed: which (time segment x mel band) regions its anomaly score rests on.

Model-agnostic occlusion: the clip's short-time spectrum is cut into a grid of cells; each
perturbation replaces some cells by the clip's own background (per frequency bin, the smaller of
the median over time and that median smoothed across frequency, so a click, a burst or a dropout
is replaced by what the clip sounds like the rest of the time, and a steady whine by the spectrum
around it; silence would itself be anomalous), the waveform is rebuilt and scored again, and the
score drop is the cell's share. Three scales are perturbed in one batch: every cell, every whole
band and every whole time segment, so a steady anomaly (a whine over the whole clip) is found as
well as a short one; a cell's attribution is its own drop plus its band's and segment's drops
shared among their cells. All the caller gives is a scorer ``waveforms -> scores``: any embedder
and back end (:func:`asdlib.bin.infer.packed_scorer` wraps a packed model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import median_filter

#: scores of a batch of equal-length mono float32 waveforms, shape (batch, samples) -> (batch,)
Scorer = Callable[[np.ndarray], np.ndarray]
SMOOTH_HZ = 300.0  # width of the median across frequency that removes steady tones from the fill
#: a map whose top cell's :meth:`Explanation.prominence` reaches this has a region that stands out
#: (a planted tone burst: ~100; a normal clip's map: ~1, tests/test_explain.py)
STANDS_OUT = 3.0


class ExplainError(ValueError):
    """An explanation that cannot be made as asked (bad grid, clip too short)."""


@dataclass(frozen=True)
class Grid:
    """Time segments x mel bands of the explanation map."""

    n_time: int = 10
    n_bands: int = 8

    @classmethod
    def parse(cls, text: str) -> Grid:
        """``TxB`` (e.g. ``10x8``), as ``--explain_grid`` takes it."""
        try:
            n_time, n_bands = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise ExplainError(
                f"--explain_grid must be <time segments>x<mel bands> such as 10x8, got {text!r}"
            ) from None
        grid = cls(n_time, n_bands)
        grid.validate()
        return grid

    def validate(self) -> None:
        if not (1 <= self.n_time <= 100 and 1 <= self.n_bands <= 40):
            raise ExplainError(
                f"--explain_grid needs 1-100 time segments and 1-40 mel bands, got {self.n_time}x{self.n_bands}"
            )


def band_edges(n_bands: int, sample_rate: int) -> np.ndarray:
    """``n_bands + 1`` band edges (Hz) equally spaced on the mel scale from 0 to the Nyquist frequency."""
    mel_top = 2595.0 * np.log10(1.0 + sample_rate / 2 / 700.0)
    return 700.0 * (10.0 ** (np.linspace(0.0, mel_top, n_bands + 1) / 2595.0) - 1.0)


@dataclass(frozen=True)
class Region:
    """One cell of the map: its box and its share of the score."""

    start: float
    end: float
    f_low: float
    f_high: float
    contribution: float  # score drop attributed to it (score units)

    def as_dict(self) -> dict[str, float]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "f_low": round(self.f_low, 1),
            "f_high": round(self.f_high, 1),
            "contribution": float(self.contribution),
        }


@dataclass(frozen=True)
class Explanation:
    """The attribution map of one recording (``attribution[time, band]``, score units)."""

    score: float
    times: np.ndarray  # n_time + 1 segment edges, seconds
    edges: np.ndarray  # n_bands + 1 band edges, Hz
    attribution: np.ndarray

    def order(self) -> np.ndarray:
        """Flat cell indices (time * n_bands + band), largest attribution first."""
        return np.argsort(-self.attribution.ravel(), kind="stable")

    def region(self, flat: int) -> Region:
        i, j = divmod(int(flat), self.attribution.shape[1])
        t, f = self.times, self.edges
        return Region(float(t[i]), float(t[i + 1]), float(f[j]), float(f[j + 1]), float(self.attribution[i, j]))

    def top(self, k: int) -> list[Region]:
        return [self.region(c) for c in self.order()[:k]]

    def prominence(self) -> float:
        """How far the top cell stands out: (top - median) / (1.4826 MAD), the MAD floored at 1 % of
        the score's size so that a flat map of a normal clip does not divide by ~0."""
        a = self.attribution.ravel()
        med = float(np.median(a))
        mad = max(1.4826 * float(np.median(np.abs(a - med))), 0.01 * abs(self.score), 1e-9)
        return (float(a.max()) - med) / mad

    def stands_out(self) -> bool:
        """Whether one region carries the score (prominence >= :data:`STANDS_OUT`)."""
        return self.prominence() >= STANDS_OUT


class Perturber:
    """The short-time spectrum of one clip, and waveforms of it with chosen cells replaced by the fill."""

    def __init__(self, wav: np.ndarray, sample_rate: int, grid: Grid) -> None:
        grid.validate()
        self.n = wav.size
        self.n_fft = int(2 ** round(np.log2(0.032 * sample_rate)))  # 32 ms frames
        self.hop = self.n_fft // 4
        if self.n < self.n_fft * grid.n_time // 2:
            raise ExplainError(
                f"a clip of {self.n / sample_rate:.3f} s is too short for {grid.n_time} time segments; use fewer"
            )
        self.window = torch.hann_window(self.n_fft)
        spec = torch.stft(
            torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)),
            self.n_fft,
            self.hop,
            window=self.window,
            return_complex=True,
        )
        self.spec = spec  # (bins, frames)
        mag = spec.abs().numpy()
        median = np.median(mag, axis=1)
        width = max(3, int(round(SMOOTH_HZ / (sample_rate / self.n_fft))) | 1)
        fill = np.minimum(median, median_filter(median, size=width, mode="nearest"))
        self.fill = torch.from_numpy(fill.astype(np.float32))[:, None]
        self.times = np.linspace(0.0, self.n / sample_rate, grid.n_time + 1)
        self.edges = band_edges(grid.n_bands, sample_rate)
        freqs = np.arange(spec.shape[0]) * sample_rate / self.n_fft
        centres = np.arange(spec.shape[1]) * self.hop / sample_rate
        self.band_of_bin = np.clip(np.searchsorted(self.edges, freqs, side="right") - 1, 0, grid.n_bands - 1)
        self.seg_of_frame = np.clip(np.searchsorted(self.times, centres, side="right") - 1, 0, grid.n_time - 1)
        self.grid = grid
        self.power = mag**2

    def apply(self, masks: np.ndarray) -> np.ndarray:
        """Waveforms (len(masks), samples) with the cells of each ``masks[k]`` (n_time, n_bands) replaced."""
        full = torch.from_numpy(masks[:, self.seg_of_frame][:, :, self.band_of_bin].transpose(0, 2, 1).copy())
        phase = self.spec / self.spec.abs().clamp_min(1e-12)
        specs = torch.where(full, self.fill * phase, self.spec)
        out = torch.istft(specs, self.n_fft, self.hop, window=self.window, length=self.n)
        return out.numpy()

    def cell_log_energy(self) -> np.ndarray:
        """Mean log power (dB) of every cell, (n_time, n_bands): the energy baseline's input."""
        sums = np.zeros((self.grid.n_time, self.grid.n_bands))
        counts = np.zeros_like(sums)
        np.add.at(sums, (self.seg_of_frame[None, :], self.band_of_bin[:, None]), 10 * np.log10(self.power + 1e-12))
        np.add.at(counts, (self.seg_of_frame[None, :], self.band_of_bin[:, None]), 1.0)
        return sums / np.maximum(counts, 1.0)


def score_masks(perturber: Perturber, scorer: Scorer, masks: np.ndarray, batch_size: int) -> np.ndarray:
    """Scores of the perturbed clips, ``batch_size`` waveforms per call of ``scorer``."""
    out = [
        np.asarray(scorer(perturber.apply(masks[i : i + batch_size])), dtype=np.float64)
        for i in range(0, len(masks), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros(0)


def explain(
    wav: np.ndarray, sample_rate: int, scorer: Scorer, grid: Grid = Grid(), batch_size: int = 16
) -> Explanation:
    """Occlusion map of one clip: n_time * n_bands + n_time + n_bands perturbations, scored in batches."""
    p = Perturber(wav, sample_rate, grid)
    t, b = grid.n_time, grid.n_bands
    cells = np.eye(t * b, dtype=bool).reshape(t * b, t, b)
    bands = np.zeros((b, t, b), dtype=bool)
    bands[np.arange(b), :, np.arange(b)] = True
    segments = np.zeros((t, t, b), dtype=bool)
    segments[np.arange(t), np.arange(t), :] = True
    masks = np.concatenate([cells, bands, segments])
    base = float(np.asarray(scorer(wav[None, :].astype(np.float32)))[0])
    drops = base - score_masks(p, scorer, masks, batch_size)
    cell_drop = drops[: t * b].reshape(t, b)
    band_drop, seg_drop = drops[t * b : t * b + b], drops[t * b + b :]
    attribution = cell_drop + band_drop[None, :] / t + seg_drop[:, None] / b
    return Explanation(base, p.times, p.edges, attribution)


def deletion_scores(
    wav: np.ndarray,
    sample_rate: int,
    scorer: Scorer,
    grid: Grid,
    order: Sequence[int],
    steps: int,
    batch_size: int = 16,
) -> np.ndarray:
    """Scores after removing the first 1..``steps`` cells of ``order`` (flat indices), cumulatively."""
    p = Perturber(wav, sample_rate, grid)
    masks = np.zeros((steps, grid.n_time * grid.n_bands), dtype=bool)
    for k in range(steps):
        masks[k, np.asarray(order[: k + 1])] = True
    return score_masks(p, scorer, masks.reshape(steps, grid.n_time, grid.n_bands), batch_size)
