"""Synthetic corpora in the file layout and naming of every DCASE Task 2 year (2020-2026).

Why: each year's recipe must run end to end on a corpus that looks exactly like that year's
official data (directory layout, file names, blinded evaluation names, eval list format, line
endings, attribute CSVs), without downloading anything. The sounds come from
:mod:`asdlib.synth.corpus` (one acoustic identity per machine *and section*, so that sections differ
as machine IDs do); this module only decides which clips exist and how they are named per year:

* 2020: ``<part>/<m>/train/normal_id_XX_NNNNNNNN.wav``; test ``{normal,anomaly}_id_XX_...`` (dev) or
  blinded ``id_XX_NNNNNNNN.wav`` (eval); no domains; eval list ``<blinded>,<labelled>,<0|1>`` (LF).
* 2021: train with attributes; test split into ``source_test/`` and ``target_test/``, labelled names
  without attributes (dev) or ``section_XX_<domain>_test_NNNN.wav`` (eval); eval list CRLF.
* 2022: one ``test/`` dir, names with attributes, blinded ``section_XX_NNNN.wav``; ``attributes_XX.csv``
  per section; eval list LF.
* 2023/2024: delegated to :func:`asdlib.synth.corpus.generate_corpus` (that module's own layout).
* 2025: the 2024 layout plus ``supplemental/section_00_machine_NNNN_.wav`` clips; eval list CRLF.
* 2026: the 2025 layout in stereo (left: near microphone, right: far microphone), attribute
  strings ending in ``_noise_<n>``, no supplemental clips.

Machines and sections default to the year's official ones (the first two machine types), so the
recipes' data preparation sees official names; the same ``.done`` marker rule as ``synth`` applies.
The per-year facts (naming, sections, attribute CSVs, supplemental clips, channels, noise attribute,
eval-list line endings) are the year's row in :mod:`asdlib.years`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from asdlib.data.dcase import NO_ATTRIBUTE
from asdlib.io.atomic import atomic_write_text
from asdlib.synth import corpus as synth
from asdlib.years import YEARS, get_year

# the years that synth.generate_corpus writes for this module (its 2025/2026 mini layouts differ from these)
_CORPUS_YEARS = (2023, 2024)
_FAR_MIC_DELAY = 12  # samples between near (left) and far (right) microphone in 2026 stereo


@dataclass(frozen=True)
class YearSynthConfig:
    """A synthetic corpus of one year; counts are per section (``n_test``: per domain x label)."""

    year: int
    dev_machines: tuple[str, ...] = ()  # () = the year's first two official dev machine types
    eval_machines: tuple[str, ...] = ()  # () = the year's first two official eval machine types
    sections: int = 2  # sections (2020: machine IDs) per machine, official ones first; 2023+: always 1
    no_attribute: tuple[str, ...] = ()  # machines whose names hide their attributes (2022+)
    n_train_source: int = 8
    n_train_target: int = 2  # 2020 has no target domain: ignored
    n_test: int = 2
    n_supplemental: int = 2  # 2025 only
    seconds: float = 1.0
    sample_rate: int = 16000
    seed: int = 0
    anomaly_strength: float = 1.0

    def resolved(self) -> YearSynthConfig:
        """Defaults filled in from the year's official machine lists; checked."""
        if self.year not in YEARS:
            raise synth.SynthError(f"year must be one of {tuple(YEARS)}, got {self.year}")
        dev, eval_ = official_machines(self.year)
        cfg = dataclasses.replace(
            self, dev_machines=self.dev_machines or dev[:2], eval_machines=self.eval_machines or eval_[:2]
        )
        if (
            cfg.sections < 1
            or cfg.n_train_source < 1
            or cfg.n_test < 1
            or cfg.n_train_target < 0
            or cfg.n_supplemental < 0
        ):
            raise synth.SynthError(
                "sections, n_train_source, n_test >= 1 and n_train_target, n_supplemental >= 0 required"
            )
        if get_year(cfg.year).has_domains and cfg.n_train_target < 1:
            raise synth.SynthError(f"DCASE {cfg.year} has target-domain training clips: n_train_target must be >= 1")
        unknown = sorted(set(cfg.no_attribute) - set(cfg.dev_machines + cfg.eval_machines))
        if unknown:
            raise synth.SynthError(f"no_attribute names machines that are not generated: {unknown}")
        if not get_year(cfg.year).attributes_csv and cfg.no_attribute:
            raise synth.SynthError(f"DCASE {cfg.year} names never carry 'noAttribute'; leave no_attribute empty")
        if not 0.5 <= cfg.seconds <= 60.0 or cfg.sample_rate < 8000 or not 0.0 <= cfg.anomaly_strength <= 20.0:
            raise synth.SynthError("seconds in [0.5, 60], sample_rate >= 8000 and anomaly_strength in [0, 20] required")
        return cfg

    def synth_config(self) -> synth.SynthConfig:
        """The sound options in :mod:`asdlib.synth.corpus`'s form (its year field only names the layout)."""
        return synth.SynthConfig(
            year=self.year if self.year in _CORPUS_YEARS else 2024,
            dev_machines=self.dev_machines,
            eval_machines=self.eval_machines,
            no_attribute=self.no_attribute,
            n_train_source=self.n_train_source,
            n_train_target=max(1, self.n_train_target),
            n_test=self.n_test,
            seconds=self.seconds,
            sample_rate=self.sample_rate,
            seed=self.seed,
            anomaly_strength=self.anomaly_strength,
        )

    def to_json_dict(self) -> dict:
        """Plain-JSON form plus the sound generator's version, stored in ``.done``."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        d["generator_version"] = synth.GENERATOR_VERSION
        return d


def official_machines(year: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(dev, eval) official machine types of ``year``."""
    info = get_year(year)
    return tuple(info.dev), tuple(info.eval)


def sections_of(year: int, part: str, machine: str, count: int) -> tuple[str, ...]:
    """The first ``count`` official sections (2020: IDs) of a machine; the year's usual ones for other names."""
    info = get_year(year)
    table = info.dev if part == "dev" else info.eval
    default = info.default_sections[0 if part == "dev" else 1]
    return tuple(table.get(machine, default))[:count]


# ---------------------------------------------------------------------------------------------
# Clips


@dataclass(frozen=True)
class _Clip:
    """One clip to write: where, under which distributed name, and the labelled name if blinded."""

    spec: synth.ClipSpec
    subdir: str
    name: str
    labelled: str | None = None  # eval-list second column (blinded eval test clips only)


def _rng(*keys: str | int) -> np.random.Generator:
    return np.random.default_rng([k if isinstance(k, int) else zlib.crc32(k.encode("utf-8")) for k in keys])


def _specs(
    cfg: YearSynthConfig, dataset: str, voice: str, split: str, domain: str, label: str, count: int
) -> list[synth.ClipSpec]:
    """``count`` clips of one group, as :mod:`synth` draws them: attribute combinations balanced but
    shuffled (the file index must not reveal hidden attributes), about half with background events."""
    combos = synth.attribute_combos(synth.machine_profile(voice), domain)
    rng = _rng(cfg.seed, "layout", dataset, voice, split, domain, label)
    assigned = [combos[i] for i in rng.permutation(count) % len(combos)]
    n_events = min(count - 1, max(1, round(synth.EVENT_PROB * count))) if count > 1 else 0
    events = set(rng.permutation(count)[:n_events].tolist())
    return [synth.ClipSpec(dataset, voice, split, domain, label, i, assigned[i], i in events) for i in range(count)]


def _attr(cfg: YearSynthConfig, machine: str, spec: synth.ClipSpec) -> str:
    if machine in cfg.no_attribute:
        return NO_ATTRIBUTE
    attr = synth.attribute_string(spec.combo)
    return f"{attr}_noise_{1 + spec.index % 2}" if get_year(cfg.year).noise_attribute else attr


def _labelled_name(cfg: YearSynthConfig, machine: str, section: str, spec: synth.ClipSpec) -> str:
    """The year's labelled file name of a clip."""
    naming = get_year(cfg.year).naming
    if naming == "id":
        return f"{spec.label}_id_{section}_{spec.index:08d}.wav"
    stem = f"section_{section}_{spec.domain}_{spec.split}_{spec.label}_{spec.index:04d}"
    if naming == "section_domain" and spec.split == "test":
        return f"{stem}.wav"  # 2021 test names carry no attributes
    return f"{stem}_{_attr(cfg, machine, spec)}.wav"


def _machine_clips(cfg: YearSynthConfig, dataset: str, machine: str) -> tuple[list[_Clip], list[tuple[str, ...]]]:
    """All clips of one machine (every section) and its eval-list rows (blinded, labelled[, 0|1])."""
    info = get_year(cfg.year)
    per_domain = info.naming == "section_domain"  # 2021: test clips blinded per domain folder
    clips: list[_Clip] = []
    rows: list[tuple[str, ...]] = []
    domains = synth.DOMAINS if info.has_domains else ("source",)
    for section in sections_of(cfg.year, dataset, machine, cfg.sections):
        voice = f"{machine}-{section}"  # one acoustic identity per section, like a machine ID
        for domain in domains:
            n = cfg.n_train_source if domain == "source" else cfg.n_train_target
            clips += [
                _Clip(s, "train", _labelled_name(cfg, machine, section, s))
                for s in _specs(cfg, dataset, voice, "train", domain, "normal", n)
            ]
        if info.supplemental and cfg.n_supplemental:
            clips += [
                _Clip(s, "supplemental", f"section_{section}_machine_{s.index:04d}_.wav")
                for s in _specs(cfg, dataset, voice, "supplemental", "source", "normal", cfg.n_supplemental)
            ]
        test = [
            s for d in domains for lab in synth.LABELS for s in _specs(cfg, dataset, voice, "test", d, lab, cfg.n_test)
        ]
        if dataset == "dev":
            clips += [_Clip(s, _test_dir(cfg.year, s.domain), _labelled_name(cfg, machine, section, s)) for s in test]
            continue
        for domain_group in [[s for s in test if s.domain == d] for d in domains] if per_domain else [test]:
            order = _rng(cfg.seed, "blind", voice, domain_group[0].domain if per_domain else "").permutation(
                len(domain_group)
            )
            blinded = sorted(zip(order.tolist(), domain_group), key=lambda t: t[0])
            for j, spec in blinded:
                name = _blinded_name(cfg.year, section, spec.domain, j)
                labelled = _labelled_name(cfg, machine, section, spec)
                clips.append(_Clip(spec, _test_dir(cfg.year, spec.domain), name, labelled))
                rows.append(
                    (name, labelled, "1" if spec.label == "anomaly" else "0")
                    if info.eval_list_columns == 3
                    else (name, labelled)
                )
    return clips, rows


def _test_dir(year: int, domain: str) -> str:
    return f"{domain}_test" if get_year(year).naming == "section_domain" else "test"


def _blinded_name(year: int, section: str, domain: str, index: int) -> str:
    naming = get_year(year).naming
    if naming == "id":
        return f"id_{section}_{index:08d}.wav"
    if naming == "section_domain":
        return f"section_{section}_{domain}_test_{index:04d}.wav"
    return f"section_{section}_{index:04d}.wav"


def _render(clip: _Clip, cfg: YearSynthConfig, scfg: synth.SynthConfig) -> np.ndarray:
    """Samples of a clip: mono, or (n, 2) near/far microphone stereo for 2026."""
    x = synth.synthesize_clip(clip.spec, scfg)
    if get_year(cfg.year).channels == 1:
        return x
    noise = (
        _rng(cfg.seed, "far", clip.spec.machine, clip.subdir, clip.name).standard_normal(x.size)
        * 0.3
        * float(np.std(x))
    )
    far = 0.5 * np.concatenate([np.zeros(_FAR_MIC_DELAY), x[:-_FAR_MIC_DELAY]]) + noise
    return np.stack([x, np.clip(far, -1.0, synth.MAX_SAMPLE)], axis=1)


def _attributes_csv(cfg: YearSynthConfig, machine: str, section: str, clips: list[_Clip]) -> str:
    """``attributes_XX.csv`` (2022+): ``file_name,d1p,d1v,...`` for the labelled (non-blinded) clips."""
    rows = []
    noise = get_year(cfg.year).noise_attribute
    npairs = len(synth.machine_profile(f"{machine}-{section}").params)
    for c in clips:
        if c.labelled is not None or c.subdir == "supplemental" or not c.name.startswith(f"section_{section}_"):
            continue
        if machine in cfg.no_attribute:
            values = [NO_ATTRIBUTE, ""] + [""] * (2 * npairs - 2)
        else:
            values = [v for pair in c.spec.combo for v in pair]
            if noise:
                values += ["noise", str(1 + c.spec.index % 2)]
        rows.append(",".join([f"{machine}/{c.subdir}/{c.name}", *values]))
    width = max(npairs + (1 if noise else 0), 1)
    header = "file_name," + ",".join(f"d{i}p,d{i}v" for i in range(1, width + 1))
    return "\n".join([header] + rows) + "\n"


def _write_wav(path: Path, samples: np.ndarray, sr: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), samples, sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _check_root(root: Path, cfg: YearSynthConfig) -> bool:
    """True when ``root`` already holds this exact corpus; raise if it holds anything else."""
    marker = root / synth.DONE_MARKER
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise synth.SynthError(f"{marker} is not valid JSON ({e}); delete {root} and generate again") from e
        if recorded != cfg.to_json_dict():
            raise synth.SynthError(
                f"{root} holds a synthetic corpus made with other options; use another root or delete {root}"
            )
        return True
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise synth.SynthError(
            f"{root} exists, is not empty and has no {synth.DONE_MARKER} marker; delete it or choose another root"
        )
    return False


def generate_year_corpus(root: str | Path, cfg: YearSynthConfig) -> YearSynthConfig:
    """Write a synthetic corpus of ``cfg.year`` under ``root`` (with its eval list); returns the resolved config.

    A no-op when ``root`` already holds the same corpus. 2023/2024 use :func:`synth.generate_corpus`.
    """
    cfg = cfg.resolved()
    root = Path(root)
    if cfg.year in _CORPUS_YEARS:
        synth.generate_corpus(root, cfg.synth_config())
        return cfg
    if _check_root(root, cfg):
        return cfg
    scfg = cfg.synth_config()
    lines: list[str] = []
    for dataset, machines in (("dev", cfg.dev_machines), ("eval", cfg.eval_machines)):
        for machine in machines:
            mdir = root / f"{dataset}_data" / machine
            clips, rows = _machine_clips(cfg, dataset, machine)
            for clip in clips:
                (mdir / clip.subdir).mkdir(parents=True, exist_ok=True)
                _write_wav(mdir / clip.subdir / clip.name, _render(clip, cfg, scfg), cfg.sample_rate)
            if get_year(cfg.year).attributes_csv:
                for section in sections_of(cfg.year, dataset, machine, cfg.sections):
                    atomic_write_text(mdir / f"attributes_{section}.csv", _attributes_csv(cfg, machine, section, clips))
            if rows:
                lines += [machine] + [",".join(r) for r in rows]
    eol = "\r\n" if get_year(cfg.year).eval_list_crlf else "\n"
    atomic_write_text(root / f"eval_data_list_{cfg.year}.csv", "".join(line + eol for line in lines))
    atomic_write_text(root / synth.DONE_MARKER, json.dumps(cfg.to_json_dict(), sort_keys=True) + "\n")
    return cfg
