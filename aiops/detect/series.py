"""Series identity → dense integer ids, so detector state can live in numpy arrays."""

from __future__ import annotations

import numpy as np


class SeriesIndex:
    """Assigns each series key a stable id (its row in every state array) and remembers its service."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self.keys: list[str] = []
        self.services: list[str] = []

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def index(self) -> dict[str, int]:
        return self._ids

    def ids(self, keys: list[str], services: list[str]) -> np.ndarray:
        get = self._ids.get
        out = np.empty(len(keys), dtype=np.int64)
        for i, k in enumerate(keys):
            j = get(k)
            if j is None:
                j = self._ids[k] = len(self.keys)
                self.keys.append(k)
                self.services.append(services[i])
            out[i] = j
        return out

    def state(self) -> dict[str, list[str]]:
        return {"keys": self.keys, "services": self.services}

    def load_state(self, state: dict[str, list[str]]) -> None:
        self.keys = list(state["keys"])
        self.services = list(state["services"])
        self._ids = {k: i for i, k in enumerate(self.keys)}


def rounds(ids: np.ndarray) -> list[np.ndarray]:
    """Split a batch into index arrays with unique ids each, keeping every series' point order.

    Vectorized state updates use fancy indexing, where a repeated id would lose all but one
    write; scrape-shaped batches (one point per series) come back as a single round.

    >>> [r.tolist() for r in rounds(np.array([5, 7, 5]))]
    [[0, 1], [2]]
    """
    if len(ids) == 0:
        return []
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    rank = np.arange(len(s)) - np.repeat(starts, np.diff(np.r_[starts, len(s)]))
    if rank.max() == 0:
        return [np.arange(len(ids))]
    return [np.sort(order[rank == r]) for r in range(int(rank.max()) + 1)]
