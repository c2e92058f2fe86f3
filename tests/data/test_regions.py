"""Ground truth for explanations: every synthetic family says where it put each anomaly (a region
inside the clip, none for its global kinds) without changing the audio, make_synth writes it (also
into a corpus made before), stage 1 turns it into utt2anomaly_region, and a bad line is one error."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from asdlib.bin import prepare_dcase
from asdlib.data.datadir import DataDirError, read_data_dir
from asdlib.data.regions import CORPUS_FILE, REGION_FILE, AnomalyRegion, parse_truth, read_anomaly_regions
from asdlib.synth.corpus import anomaly_regions, generate_corpus, recording_regions, split_specs
from asdlib.synth.families import FAMILIES


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_located_kind_has_a_region_inside_the_clip_and_the_audio_is_unchanged(family: str) -> None:
    cfg, model = FAMILIES[family]
    cfg = dataclasses.replace(cfg, n_test=8, seconds=1.0)
    seen: dict[str, bool] = {}
    for machine in cfg.dev_machines[:1]:
        for spec in (s for s in split_specs("dev", machine, "test", cfg, model) if s.label == "anomaly"):
            kind = spec.anomaly_kind(cfg.seed, model.anomaly_kinds)
            if kind in seen:
                continue
            regions = anomaly_regions(spec, cfg, model)
            seen[kind] = bool(regions)
            assert all(0 <= r.start < r.end <= 1.0 and 0 <= r.f_low < r.f_high <= cfg.sample_rate / 2 for r in regions)
            with recording_regions():  # noting the regions draws nothing: the clip is as rendered without
                inside = model.render(spec, cfg)
            np.testing.assert_array_equal(inside, model.render(spec, cfg))
    assert not any(seen[k] for k in seen if k in model.global_kinds)
    assert any(seen.values()), f"family {family}: no kind with a region among {sorted(seen)}"


def test_stage_1_writes_utt2anomaly_region_also_for_an_older_corpus(tmp_path) -> None:
    cfg, model = FAMILIES["a"]
    cfg = dataclasses.replace(cfg, dev_machines=("fan",), eval_machines=("ToyDrone",), no_attribute=(), n_train_source=2,
                              n_train_target=1, n_test=4, seconds=0.5)  # fmt: skip
    root = tmp_path / "corpus"
    generate_corpus(root, cfg, model)
    (root / CORPUS_FILE).unlink()  # a corpus made before the regions: generating again adds only them
    generate_corpus(root, cfg, model)
    assert (root / CORPUS_FILE).is_file()
    prepare_dcase.prepare(2024, root, tmp_path / "data", ["dev_test", "eval_test"])
    for set_name in ("dev_test", "eval_test"):
        utts = read_data_dir(tmp_path / "data" / set_name)
        truth = read_anomaly_regions(tmp_path / "data" / set_name, utts)
        assert set(truth) == {u.utt_id for u in utts if u.label == "anomaly"}
        assert {t.kind for t in truth.values()} <= set(model.anomaly_kinds)


def test_region_lines_parse_and_bad_ones_are_one_line_errors(tmp_path) -> None:
    truth = parse_truth("dropout 0.1:0.2:0:8000 1.0:1.1:0:8000", "x")
    assert truth.regions[1] == AnomalyRegion(1.0, 1.1, 0.0, 8000.0)
    assert truth.regions[0].overlaps(0.15, 0.5, 100, 200) and not truth.regions[0].overlaps(0.2, 0.5, 100, 200)
    assert parse_truth("harmonic_shift none", "x").regions == ()
    for bad, msg in (
        ("whine 0.1:0.2:300", "start:end:f_low:f_high"),
        ("whine 0.2:0.1:0:10", "start < end"),
        ("whine", "expected"),
    ):
        with pytest.raises(DataDirError, match=msg) as e:
            parse_truth(bad, "utt2anomaly_region (u)")
        assert "\n" not in str(e.value)
    (tmp_path / REGION_FILE).write_text("u1 whine 0.0:1.0:100:200\n")
    with pytest.raises(DataDirError, match="not anomalous clips of the set"):
        read_anomaly_regions(tmp_path, [])
