"""asdlib.bin.plot_losses: one panel per loss term, runs offset by epochs, a clear error without a record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asdlib.bin import plot_losses
from asdlib.metrics import plots
from asdlib.utils import UserError


def _record(exp: Path, losses: list[dict[str, float]]) -> None:
    exp.mkdir(parents=True)
    rows = [{"epoch": i + 1, "loss": sum(t.values()), "terms": t, "lr": 1e-3} for i, t in enumerate(losses)]
    (exp / "train_losses.json").write_text(json.dumps(rows))


def test_panels_per_term_and_offset_runs(tmp_path: Path) -> None:
    _record(tmp_path / "pretrain", [{"frame": 8.0, "utterance": 900.0}, {"frame": 4.0, "utterance": 500.0}])
    _record(tmp_path / "dapt", [{"frame": 3.0, "utterance": 400.0}])
    out = tmp_path / "losses.png"
    plot_losses.main(["--out", str(out), str(tmp_path / "pretrain"), f"+DAPT={tmp_path / 'dapt'}@2"])
    assert out.read_bytes().startswith(b"\x89PNG")
    runs = {
        "pretrain": json.loads((tmp_path / "pretrain" / "train_losses.json").read_text()),
        "+DAPT": [r | {"epoch": 3} for r in json.loads((tmp_path / "dapt" / "train_losses.json").read_text())],
    }
    axes = plots.plot_losses(runs, tmp_path / "again.png").axes
    assert [ax.get_title() for ax in axes] == ["frame", "utterance"]
    lines = {line.get_label(): line.get_xydata().tolist() for line in axes[0].get_lines()}
    assert lines == {"pretrain": [[1.0, 8.0], [2.0, 4.0]], "+DAPT": [[3.0, 3.0]]}


def test_missing_record_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="train_losses.json not found"):
        plot_losses.main(["--out", str(tmp_path / "x.png"), str(tmp_path / "nothing")])
