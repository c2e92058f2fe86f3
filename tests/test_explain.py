"""asdlib.explain finds a tone burst planted in one band at one time, the map of a normal clip has no
region that stands out, bad grids are one-line errors, and the localisation measures
(asdlib.metrics.localisation) count as documented. The scorer is a plain band-energy distance:
the explainer only ever sees ``waveforms -> scores``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asdlib.data.regions import AnomalyRegion
from asdlib.explain import ExplainError, Grid, band_edges, deletion_scores, explain
from asdlib.metrics.localisation import ClipResult, deletion_drop, energy_order, markdown_table, summarise, truth_cells

SR, N = 16000, 32000
EDGES = np.linspace(0, SR / 2, 17)


def noise(seed: int) -> np.ndarray:
    return (0.05 * np.random.default_rng(seed).standard_normal(N)).astype(np.float32)


def log_bands(waves: np.ndarray) -> np.ndarray:
    power = np.abs(np.fft.rfft(waves, axis=-1)) ** 2
    band = np.clip(np.searchsorted(EDGES, np.fft.rfftfreq(N, 1 / SR), side="right") - 1, 0, 15)
    return np.log(np.stack([power[:, band == j].mean(1) for j in range(16)], 1))


REFERENCE = log_bands(np.stack([noise(s) for s in range(1, 9)])).mean(0)


def scorer(waves: np.ndarray) -> np.ndarray:
    return np.sqrt(((log_bands(waves) - REFERENCE) ** 2).sum(1))


def burst_clip() -> np.ndarray:
    """Noise with a 3 kHz tone from 1.2 to 1.4 s: grid 10x8 cell (6, 5) (band 2682-3934 Hz)."""
    t = np.arange(N) / SR
    return noise(100) + (0.1 * np.sin(2 * np.pi * 3000 * t) * ((t >= 1.2) & (t < 1.4))).astype(np.float32)


def test_a_tone_burst_is_found_where_it_was_planted() -> None:
    exp = explain(burst_clip(), SR, scorer, Grid(10, 8), batch_size=32)
    top = exp.top(1)[0]
    assert (round(top.start, 3), round(top.end, 3)) == (1.2, 1.4)
    assert top.f_low < 3000 < top.f_high
    assert exp.stands_out() and top.contribution > 0.5 * exp.score
    # deleting the top cell removes most of the score; deleting a random far cell does not
    order = exp.order()
    (first,) = deletion_scores(burst_clip(), SR, scorer, Grid(10, 8), order, 1)
    (far,) = deletion_scores(burst_clip(), SR, scorer, Grid(10, 8), order[::-1], 1)
    assert first < 0.5 * exp.score < far


def test_the_map_of_a_normal_clip_has_no_region_that_stands_out() -> None:
    exp = explain(noise(200), SR, scorer, Grid(10, 8), batch_size=64)
    assert not exp.stands_out(), exp.prominence()


@pytest.mark.parametrize("text", ["10", "ax8", "0x8", "10x41", "10x8x2"])
def test_bad_grids_are_one_line_errors(text: str) -> None:
    with pytest.raises(ExplainError, match="--explain_grid") as e:
        Grid.parse(text)
    assert "\n" not in str(e.value)


def test_a_clip_too_short_for_the_grid_says_so() -> None:
    with pytest.raises(ExplainError, match="too short for 100 time segments"):
        explain(noise(1)[:4000], SR, scorer, Grid(100, 8))


def test_band_edges_are_mel_spaced_to_nyquist() -> None:
    edges = band_edges(8, SR)
    assert edges[0] == 0 and edges[-1] == pytest.approx(SR / 2) and np.all(np.diff(np.diff(edges)) > 0)


def test_localisation_measures() -> None:
    times, edges = np.linspace(0, 2, 11), band_edges(8, SR)
    cells = truth_cells(times, edges, [AnomalyRegion(1.25, 1.3, 2900, 3100)])
    assert cells.sum() == 1 and cells[6, 5]
    energy = np.zeros((10, 8))
    energy[3, 2] = -20.0  # a dropout: the energy baseline ranks it first
    assert energy_order(energy, np.zeros(8))[0] == 3 * 8 + 2
    assert deletion_drop(10.0, np.array([6.0, 4.0]), 2.0) == 2.5
    rows = [
        ClipResult(
            "u1",
            "whine",
            {"method": 1.0, "random": 0.1, "energy": 0.0},
            {"method": 2.0, "random": 0.0, "energy": 1.0},
            True,
        ),
        ClipResult(
            "u2",
            "dropout",
            {"method": 0.0, "random": 0.1, "energy": 1.0},
            {"method": 1.0, "random": 0.0, "energy": 3.0},
            False,
        ),
    ]
    summaries = summarise(rows)
    assert [s.kind for s in summaries] == ["dropout", "whine", "all"]
    table = markdown_table("x / a", summaries)
    assert "| x / a | dropout | 1 | 0.00* | 0.10 | 1.00 | 1.00* |" in table
    assert "| x / a | whine | 1 | 1.00 | 0.10 | 0.00 | 2.00 | 0.00 | 1.00 | 1 | 1.00 |" in table
    assert table.splitlines()[2].endswith("| 0 | - |")  # dropout: none flagged


def test_infer_explain_on_a_moved_packed_model(tmp_path, capsys) -> None:
    """asdlib-infer --explain with a real log-mel kNN pack that was moved after packing: a PNG and a
    JSON per recording, the burst is the top region, the normal clip has none that stands out."""
    import soundfile as sf
    from conftest import make_logmel_pack

    from asdlib.bin import infer

    wavs = []
    for seed in range(1, 7):
        wavs.append(tmp_path / "normal" / f"n{seed}.wav")
        wavs[-1].parent.mkdir(exist_ok=True)
        sf.write(str(wavs[-1]), noise(seed), SR)
    built = make_logmel_pack(tmp_path / "build", {"fan": wavs}, fpr=0.2, folds=3)
    packed = tmp_path / "elsewhere" / "packed"
    packed.parent.mkdir()
    built.rename(packed)
    sf.write(str(tmp_path / "burst.wav"), burst_clip(), SR)
    sf.write(str(tmp_path / "normal.wav"), noise(200), SR)
    out = tmp_path / "explain"
    args = ["--packed", str(packed), "--machine", "fan", "--explain", str(out), "--explain_top", "2"]
    assert infer.main([*args, str(tmp_path / "burst.wav"), str(tmp_path / "normal.wav")]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == [
        "fan-burst.json",
        "fan-burst.png",
        "fan-normal.json",
        "fan-normal.png",
    ]
    burst = json.loads((out / "fan-burst.json").read_text())
    top = burst["top"][0]
    assert (top["start"], top["end"]) == (1.2, 1.4) and top["f_low"] < 3000 < top["f_high"] and burst["stands_out"]
    assert len(burst["top"]) == 2 and np.array(burst["map"]).shape == (10, 8)
    assert not json.loads((out / "fan-normal.json").read_text())["stands_out"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--explain_grid", "8"], "--explain_grid must be"),
        (["--explain_top", "0"], "--explain_top must be >= 1"),
        (["--explain", "FILE"], "is not a folder"),
    ],
)
def test_bad_explain_options_are_one_line_errors(tmp_path, option: list[str], message: str) -> None:
    from asdlib.bin import infer

    (tmp_path / "FILE").write_text("")
    option = [str(tmp_path / o) if o == "FILE" else o for o in option]
    with pytest.raises(ValueError, match=message) as e:
        infer.main(["--packed", str(tmp_path / "missing"), "--machine", "fan", str(tmp_path / "x.wav"), *option])
    assert "\n" not in str(e.value)


def test_a_long_recording_is_explained_over_its_windows(tiny_pack, tmp_path, capsys) -> None:
    """The tiny pack scores 1 s windows: a 3.5 s recording is explained as a whole, and the JSON and
    PNG carry its window scores over time."""
    import soundfile as sf

    from asdlib.bin import infer

    sf.write(str(tmp_path / "long.wav"), np.concatenate([noise(5), noise(6)[: N // 4 * 3]]), SR)
    out = tmp_path / "why"
    args = ["--packed", str(tiny_pack), "--machine", "fan", str(tmp_path / "long.wav"), "--explain", str(out)]
    assert infer.main([*args, "--explain_grid", "7x4"]) == 0
    capsys.readouterr()
    body = json.loads((out / "fan-long.json").read_text())
    assert [w["start"] for w in body["windows"]] == [0.0, 1.0, 2.0, 3.0]  # the 0.5 s tail: a window of its own
    assert body["times"][-1] == 3.5 and np.array(body["map"]).shape == (7, 4)
    assert (out / "fan-long.png").stat().st_size > 0
