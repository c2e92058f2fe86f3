"""Alarms on a stream of window scores: a hysteresis rule, so that one noisy window raises nothing.

The rule is the packed model's (``manifest.json``: ``alarm``), with a default: the alarm is raised
when at least ``raise_k`` of the last ``raise_n`` windows scored above the threshold, and cleared
after ``clear_m`` windows in a row at or below it. Its cost is detection delay: at least
``raise_k`` windows' hops after an anomaly starts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class AlarmRule:
    raise_k: int = 3
    raise_n: int = 5
    clear_m: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.raise_k <= self.raise_n or self.clear_m < 1:
            raise ValueError(
                f"alarm rule needs 1 <= raise_k <= raise_n and clear_m >= 1, got raise_k={self.raise_k}, "
                f"raise_n={self.raise_n}, clear_m={self.clear_m}"
            )


class Alarm:
    """The alarm state of one monitored machine; :meth:`update` takes each window's decision in turn."""

    def __init__(self, rule: AlarmRule) -> None:
        self.rule = rule
        self.recent: deque[bool] = deque(maxlen=rule.raise_n)
        self.below = 0
        self.active = False

    def update(self, above: bool) -> str:
        """``"raised"`` or ``"cleared"`` when the state changes with this window, else ``""``."""
        self.recent.append(above)
        self.below = 0 if above else self.below + 1
        if not self.active and sum(self.recent) >= self.rule.raise_k:
            self.active = True
            return "raised"
        if self.active and self.below >= self.rule.clear_m:
            self.active = False
            self.recent.clear()
            return "cleared"
        return ""
