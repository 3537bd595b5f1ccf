"""Before/after figures for a detector change, from a replay of the recorded points.

The recorded window of one series is replayed through a fresh one-series detector bank with the
engine's configuration and the series' policy, once as it is and once with the change. Alerts
(episode starts) are matched to the experts' labels on that series within ``match_s``:

* precision: labelled true alerts / all labelled alerts the replay raised;
* recall: labelled true alerts the replay still raises / all labelled true alerts in the window;
* alert volume: every episode the replay opens, labelled or not.

A fresh detector learns the window from scratch, so the absolute figures are those of a young
series; the difference between before and after is what the change does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiops.detect.bank import BankConfig, DetectorBank
from aiops.detect.episodes import EpisodeTracker
from aiops.detect.policy import PolicyTable


@dataclass(frozen=True)
class Figures:
    alerts: int
    precision: float | None  # None: no labelled alert in the replay
    recall: float | None  # None: no true-positive label in the window

    def as_dict(self) -> dict[str, float | int | None]:
        return {"alerts": self.alerts, "precision": self.precision, "recall": self.recall}


def replay_alerts(key: str, ts: np.ndarray, x: np.ndarray, policy: PolicyTable, config: BankConfig,
                  sensitivity: float, feedback: float) -> list[int]:  # fmt: skip
    """Event times at which episodes open when this series' points run through a fresh detector."""
    table = PolicyTable(policy.policy, policy.slos)
    table.extend([key])
    bank = DetectorBank(config)
    one = np.zeros(1, dtype=np.int64)
    bank.set_sensitivity(one, np.array([sensitivity], dtype=np.float32))
    bank.arrays["fb"][0] = feedback
    tracker = EpisodeTracker()
    service = key.split("/", 1)[0]
    starts = []
    for t, v in zip(ts.tolist(), x.tolist(), strict=True):
        tt, vv = np.array([t], dtype=np.int64), np.array([v])
        scores, directions = bank.update(one, tt, vv)
        activity = tracker.update(one, tt, vv, scores, directions, [key], [service], table)
        starts += [a.first_seen for a in activity.opened]
    return starts


def figures(alerts: list[int], true_at: list[int], false_at: list[int], match_s: float = 300.0) -> Figures:
    tol = int(match_s * 1e9)

    def hit(label: int) -> bool:
        return any(abs(a - label) <= tol for a in alerts)

    tp = [t for t in true_at if hit(t)]
    fp = [f for f in false_at if hit(f)]
    labelled = len(tp) + len(fp)
    return Figures(len(alerts), len(tp) / labelled if labelled else None, len(tp) / len(true_at) if true_at else None)
