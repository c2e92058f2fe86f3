"""Official DCASE Task 2 metrics, submission CSVs, plots and result reports."""

from asdlib.metrics.official import (
    Evaluation,
    UnlabelledDataError,
    auc,
    hmean_eps,
    official_from_per_machine,
    official_score,
    pauc,
)
from asdlib.metrics.records import ScoredUtt, scored_utts

__all__ = [
    "Evaluation",
    "ScoredUtt",
    "UnlabelledDataError",
    "auc",
    "hmean_eps",
    "official_from_per_machine",
    "official_score",
    "pauc",
    "scored_utts",
]
