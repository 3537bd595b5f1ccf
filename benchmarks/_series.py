"""Stream many labelled series through one detector bank in lockstep, as a live system would.

Series of different lengths share one bank (each its own id); at step t every series that
still has a point t sends it, so one bank call updates up to all series at once.
"""

from __future__ import annotations

import numpy as np

from aiops.detect.bank import BankConfig, DetectorBank
from aiops.detect.filters import OnsetFilter


def stream(series: list[tuple[np.ndarray, np.ndarray]], config: BankConfig | None = None,
           half_life: float = 30.0) -> tuple[list[np.ndarray], list[np.ndarray]]:  # fmt: skip
    """(raw scores, onset-filtered scores) per series; ``series`` holds (ts ns int64, values) pairs."""
    bank = DetectorBank(config)
    onset = OnsetFilter(half_life)
    n = len(series)
    length = max(len(v) for _, v in series)
    ts = np.zeros((n, length), dtype=np.int64)
    xs = np.zeros((n, length))
    lens = np.array([len(v) for _, v in series])
    for i, (t, v) in enumerate(series):
        ts[i, : len(t)] = t
        xs[i, : len(v)] = v
    raw = np.zeros((n, length))
    news = np.zeros((n, length))
    all_ids = np.arange(n)
    for step in range(length):
        ids = all_ids[lens > step]
        finite = np.isfinite(xs[ids, step])  # a gap in the data is not a point
        ids = ids[finite]
        s, _ = bank.update(ids, ts[ids, step], xs[ids, step])
        raw[ids, step] = s
        news[ids, step] = onset.filter(ids, s)
    return [raw[i, : lens[i]] for i in range(n)], [news[i, : lens[i]] for i in range(n)]
