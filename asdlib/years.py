"""One table of what asdlib knows about each DCASE Task 2 year (2020-2026).

Why: a new challenge year used to touch a year tuple or an ``if year == ...`` chain in every module
(file names, downloads, eval lists, the official metric, synthetic corpora, recipes, tests). They
all read one :class:`Year` row from :data:`YEARS` now, so a new year is one row here or one
:func:`register_year` call from a plug-in module (``$ASDLIB_PLUGINS`` or the ``asdlib.plugins``
entry points, as for every registry: asdlib.registry.load_plugins, run when this module is
imported). It sits at the bottom of the package graph, below data, metrics, synth and bin.

Machine and section lists are those of the official baseline's ``datasets/machine_type_*.yaml``
and the Zenodo records those of its ``datasets/download_path_*.yaml``
(nttcslab/dcase2023_task2_baseline_ae). They are asdlib's own tables: asdlib does not
redistribute those files (their licence forbids it), and the tests compare the tables with a
fetched copy when there is one (:mod:`asdlib.data.resources`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from asdlib.registry import PLUGINS_ENV, load_plugins

#: file-name styles: ``id`` (2020: ``{normal|anomaly}_id_XX_N.wav``, no domains), ``section_domain``
#: (2021: blinded eval names keep the domain, test names carry no attribute), ``section`` (2022+:
#: blinded eval names hide the domain)
NAMINGS = ("id", "section_domain", "section")
#: official score rules (docs/dcase.md, asdlib.metrics.official)
METRIC_RULES = ("amean_per_type", "hmean_per_domain", "hmean_source_target")
#: Zenodo archive kinds of a year: development set, evaluation training clips, evaluation test clips
ARCHIVE_KINDS = ("dev", "eval_train", "eval_test")
#: the pAUC false-positive-rate limit of every official rule so far
DEFAULT_MAX_FPR = 0.1


class UnknownYearError(ValueError):
    """A year that the table does not hold."""


@dataclass(frozen=True)
class Metric:
    """An official score rule: how per-section AUCs and pAUCs become the year's single number."""

    rule: str  # one of METRIC_RULES
    name: str  # stored as "metric" in results.json
    max_fpr: float = DEFAULT_MAX_FPR  # pAUC's false-positive-rate limit (sklearn's max_fpr)


@dataclass(frozen=True)
class ZenodoRecord:
    """One Zenodo record: its URL path word (``record``/``records``, as the official yaml), id, and
    archive file-name pattern with ``{m}`` for the machine type."""

    path: str
    record_id: int
    pattern: str


@dataclass(frozen=True)
class Year:
    """Every per-year fact asdlib uses: naming, machines, data layout, metric, downloads, recipe."""

    year: int
    description: str  # the recipe's headline: "# DCASE <year> Task 2 recipe: <description>"
    naming: str  # one of NAMINGS
    dev: Mapping[str, tuple[str, ...]]  # machine type -> sections (2020: machine IDs) of the development set
    eval: Mapping[str, tuple[str, ...]]  # machine type -> sections of the evaluation set
    default_sections: tuple[tuple[str, ...], tuple[str, ...]]  # (dev, eval) sections of a machine not listed
    attributes_csv: bool  # attributes_XX.csv beside each machine's clips
    metric: Metric | None  # None: no official rule published yet
    scoring_year: int  # whose metric and submission files score it (the year itself once its rule is known)
    eval_list: bool  # official eval_data_list_<year>.csv published (fetched: asdlib.data.resources)
    eval_list_crlf: bool  # that list (and the synthetic one) ends its lines with CRLF
    evaluator: bool  # the official evaluator's ground truth exists (evaluator<year>/ of the DCASE metadata)
    evaluator_truth_files: bool  # ... as per-section ground_truth_data/ and ground_truth_domain/ files
    zenodo: Mapping[str, ZenodoRecord]  # archive kind -> record
    zenodo_renamed: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (kind, machine) -> re-released file
    supplemental: bool = False  # supplemental/ clean-machine and noise-only clips (2025)
    channels: int = 1  # 2: stereo (left near, right far microphone)
    noise_attribute: bool = False  # attribute strings end in noise_<n> (2026)

    def __post_init__(self) -> None:
        for name in ("dev", "eval", "zenodo", "zenodo_renamed"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def section_keyword(self) -> str:
        """The name token before the two section digits: ``id`` (2020) or ``section``."""
        return "id" if self.naming == "id" else "section"

    @property
    def has_domains(self) -> bool:
        """Whether clips have a source/target domain (2020: all clips count as source)."""
        return self.naming != "id"

    @property
    def test_dirs(self) -> tuple[str, ...]:
        """The test folders of a machine (2021 keeps the domains apart)."""
        return ("source_test", "target_test") if self.naming == "section_domain" else ("test",)

    @property
    def eval_test(self) -> bool:
        """Whether the evaluation test set is released."""
        return "eval_test" in self.zenodo

    @property
    def eval_list_columns(self) -> int:
        """Columns of an eval-list row: ``<blinded>,<labelled>`` plus ``<0|1>`` in 2020."""
        return 3 if self.naming == "id" else 2


_REGISTRY: dict[int, Year] = {}
#: year -> its row; read-only, add rows with :func:`register_year`
YEARS: Mapping[int, Year] = MappingProxyType(_REGISTRY)


def register_year(info: Year, *, replace: bool = False) -> Year:
    """Add ``info`` to :data:`YEARS` after checking it; ``replace`` allows redefining a known year."""
    where = f"DCASE {info.year} year table"
    if info.year in _REGISTRY and not replace:
        raise ValueError(f"{where}: year {info.year} is already registered; pass replace=True to redefine it")
    if info.naming not in NAMINGS:
        raise ValueError(f"{where}: naming {info.naming!r} is not one of {', '.join(NAMINGS)}")
    if info.metric is not None and info.metric.rule not in METRIC_RULES:
        raise ValueError(f"{where}: metric rule {info.metric.rule!r} is not one of {', '.join(METRIC_RULES)}")
    scorer = info if info.scoring_year == info.year else _REGISTRY.get(info.scoring_year)
    if scorer is None or scorer.metric is None:
        raise ValueError(
            f"{where}: scoring_year {info.scoring_year} has no official metric; "
            f"use a year with one ({', '.join(map(str, metric_years()))}) or give this year a metric"
        )
    unknown = sorted(set(info.zenodo) - set(ARCHIVE_KINDS))
    if unknown:
        raise ValueError(f"{where}: zenodo kinds {', '.join(unknown)} are not among {', '.join(ARCHIVE_KINDS)}")
    if not info.dev or not info.eval:
        raise ValueError(f"{where}: dev and eval must each list at least one machine type")
    _REGISTRY[info.year] = info
    return info


def get_year(year: int) -> Year:
    """The row of ``year``; an error naming the known years (and how to add one) otherwise."""
    try:
        return _REGISTRY[year]
    except KeyError:
        raise UnknownYearError(
            f"unsupported DCASE year {year}; known years: {', '.join(map(str, _REGISTRY))} "
            f"(add one with asdlib.years.register_year, from a plug-in module named in ${PLUGINS_ENV})"
        ) from None


def metric_years() -> tuple[int, ...]:
    """Years with a published official metric (and submission format)."""
    return tuple(y for y, info in _REGISTRY.items() if info.metric is not None)


def eval_list_years() -> tuple[int, ...]:
    """Years whose official eval list is published."""
    return tuple(y for y, info in _REGISTRY.items() if info.eval_list)


_S00 = ("00",)
_MIMII_20 = (("00", "02", "04", "06"), ("01", "03", "05"))
_SECTIONS_21_22 = (("00", "01", "02"), ("03", "04", "05"))
_DEV_23_25 = {m: _S00 for m in ("ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve")}
_AMEAN_PER_TYPE = Metric(
    "amean_per_type", "dcase2020: (a-mean AUC + a-mean pAUC) / 2 over machine types; per-type means over machine IDs"
)
_HMEAN_PER_DOMAIN = Metric(
    "hmean_per_domain", "dcase2021: h-mean of AUC and pAUC over (machine, section, domain), each on that domain's clips"
)
_HMEAN_SOURCE_TARGET = Metric(
    "hmean_source_target", "dcase2022-2025: h-mean of AUC(source), AUC(target), pAUC over (machine, section)"
)


def _records(
    path: tuple[str, str, str], ids: tuple[int, ...], dev: str, eval_train: str, eval_test: str = ""
) -> dict[str, ZenodoRecord]:
    """A year's records in ARCHIVE_KINDS order (fewer ids: kinds not yet published)."""
    patterns = (dev, eval_train, eval_test)
    return {k: ZenodoRecord(path[i], ids[i], patterns[i]) for i, k in enumerate(ARCHIVE_KINDS[: len(ids)])}


_R, _RS = "record", "records"
for _info in (
    Year(
        2020,
        "Unsupervised detection of anomalous sounds (ToyADMOS + MIMII; machine IDs, no domains).",
        "id",
        {
            **{m: _MIMII_20[0] for m in ("fan", "pump", "slider", "valve")},
            "ToyCar": ("01", "02", "03", "04"),
            "ToyConveyor": ("01", "02", "03"),
        },
        {
            **{m: _MIMII_20[1] for m in ("fan", "pump", "slider", "valve")},
            "ToyCar": ("05", "06", "07"),
            "ToyConveyor": ("04", "05", "06"),
        },
        _MIMII_20,
        attributes_csv=False,
        metric=_AMEAN_PER_TYPE,
        scoring_year=2020,
        eval_list=True,
        eval_list_crlf=False,
        evaluator=False,
        evaluator_truth_files=False,
        zenodo=_records(
            (_R, _R, _R),
            (3678171, 3727685, 3841772),
            "dev_data_{m}.zip",
            "eval_data_train_{m}.zip",
            "eval_data_test_{m}.zip",
        ),
    ),
    Year(
        2021,
        "ASD under domain-shifted conditions (ToyADMOS2 + MIMII DUE; sections 00-05, source/target).",
        "section_domain",
        {m: _SECTIONS_21_22[0] for m in ("ToyCar", "ToyTrain", "fan", "gearbox", "slider", "pump", "valve")},
        {m: _SECTIONS_21_22[1] for m in ("ToyCar", "ToyTrain", "fan", "gearbox", "slider", "pump", "valve")},
        _SECTIONS_21_22,
        attributes_csv=False,
        metric=_HMEAN_PER_DOMAIN,
        scoring_year=2021,
        eval_list=True,
        eval_list_crlf=True,
        evaluator=True,
        evaluator_truth_files=False,
        zenodo=_records(
            (_R, _R, _R),
            (4562016, 4660992, 4884786),
            "dev_data_{m}.zip",
            "eval_data_{m}_train.zip",
            "eval_data_{m}_test.zip",
        ),
    ),
    Year(
        2022,
        "ASD applying domain generalisation (ToyADMOS2 + MIMII DG; domain hidden in eval test names).",
        "section",
        {m: _SECTIONS_21_22[0] for m in ("ToyCar", "ToyTrain", "fan", "gearbox", "bearing", "slider", "valve")},
        {m: _SECTIONS_21_22[1] for m in ("ToyCar", "ToyTrain", "fan", "gearbox", "bearing", "slider", "valve")},
        _SECTIONS_21_22,
        attributes_csv=True,
        metric=_HMEAN_SOURCE_TARGET,
        scoring_year=2022,
        eval_list=True,
        eval_list_crlf=False,
        evaluator=True,
        evaluator_truth_files=True,
        zenodo=_records(
            (_R, _R, _R),
            (6355122, 6462969, 6586456),
            "dev_{m}.zip",
            "eval_data_{m}_train.zip",
            "eval_data_{m}_test.zip",
        ),
    ),
    Year(
        2023,
        "First-shot ASD (one section per machine type, new machine types in the evaluation set).",
        "section",
        _DEV_23_25,
        {m: _S00 for m in ("ToyDrone", "ToyNscale", "ToyTank", "Vacuum", "bandsaw", "grinder", "shaker")},
        (_S00, _S00),
        attributes_csv=True,
        metric=_HMEAN_SOURCE_TARGET,
        scoring_year=2023,
        eval_list=True,
        eval_list_crlf=True,
        evaluator=True,
        evaluator_truth_files=True,
        zenodo=_records(
            (_R, _R, _R),
            (7882613, 7830345, 7860847),
            "dev_{m}.zip",
            "eval_data_{m}_train.zip",
            "eval_data_{m}_test.zip",
        ),
    ),
    Year(
        2024,
        "First-shot ASD with hidden attributes for some machine types.",
        "section",
        _DEV_23_25,
        {
            m: _S00
            for m in (
                "3DPrinter",
                "AirCompressor",
                "Scanner",
                "ToyCircuit",
                "HoveringDrone",
                "HairDryer",
                "ToothBrush",
                "RoboticArm",
                "BrushlessMotor",
            )
        },
        (_S00, _S00),
        attributes_csv=True,
        metric=_HMEAN_SOURCE_TARGET,
        scoring_year=2024,
        eval_list=True,
        eval_list_crlf=True,
        evaluator=True,
        evaluator_truth_files=True,
        zenodo=_records(
            (_R, _RS, _RS),
            (10902294, 11259435, 11363076),
            "dev_{m}.zip",
            "eval_data_{m}_train.zip",
            "eval_data_{m}_test.zip",
        ),
        zenodo_renamed={
            ("eval_train", "3DPrinter"): "eval_data_3DPrinter_train_r2.zip",
            ("eval_train", "RoboticArm"): "eval_data_RoboticArm_train_r2.zip",
        },
    ),
    Year(
        2025,
        "First-shot ASD with supplemental clean/noise clips for some machine types.",
        "section",
        _DEV_23_25,
        {
            m: _S00
            for m in (
                "ToyRCCar",
                "ToyPet",
                "HomeCamera",
                "AutoTrash",
                "Polisher",
                "ScrewFeeder",
                "BandSealer",
                "CoffeeGrinder",
            )
        },
        (_S00, _S00),
        attributes_csv=True,
        metric=_HMEAN_SOURCE_TARGET,
        scoring_year=2025,
        eval_list=True,
        eval_list_crlf=True,
        evaluator=False,
        evaluator_truth_files=False,
        supplemental=True,
        zenodo=_records(
            (_RS, _RS, _RS),
            (15097779, 15392814, 15519362),
            "dev_{m}.zip",
            "eval_data_{m}_train.zip",
            "eval_data_{m}_test.zip",
        ),
    ),
    Year(
        2026,
        "noise-aware first-shot ASD on stereo recordings (left: near microphone, right: far microphone).",
        "section",
        {m: _S00 for m in ("ToyCarEmu", "ToyCar", "bearingEmu", "fan", "gearboxEmu", "sliderEmu", "valveEmu")},
        {m: _S00 for m in ("ToyDrone", "ToothBrush", "SewingMachine", "BlowerDustCollector", "Sander")},
        (_S00, _S00),
        attributes_csv=True,
        metric=None,
        scoring_year=2025,
        eval_list=False,
        eval_list_crlf=True,
        evaluator=False,
        evaluator_truth_files=False,
        channels=2,
        noise_attribute=True,
        zenodo=_records((_RS, _RS, _RS), (19336329, 20151556), "dev_{m}.zip", "eval_data_{m}_train.zip"),
        zenodo_renamed={("dev", "ToyCar"): "dev_ToyCar_r2.zip"},
    ),
):
    register_year(_info)


load_plugins()  # plug-in modules may call register_year
