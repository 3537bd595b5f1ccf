"""What the dashboard reads from the running engine, beyond the store: the ``DashboardViews`` interface.

The pipeline lives in its own thread and mutates numpy rings, the call graph and the forecaster
in place; an API thread must never read them half-updated. So the dashboard does not touch a
:class:`~aiops.pipeline.Pipeline` directly: it asks a ``DashboardViews`` object for *copies*.
:class:`PipelineViews` is the version over a pipeline guarded by a ``threading.Lock`` that the
owner of the pipeline also holds around ``Pipeline.process`` (and ``restore``). Every call holds
the lock only for the copy, never while rendering. :class:`NoViews` stands in when the API runs
beside no pipeline: the pages then show what the store has, without live series.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import networkx as nx
from scipy.special import ndtri

from aiops.act.playbooks import Playbook
from aiops.config import Settings
from aiops.dashboard.secrets import masked_settings
from aiops.pipeline import Pipeline


@dataclass(frozen=True)
class Forecast:
    """A forecast band: step times (ns), the mean and the interval's edges (``interval`` coverage)."""

    ts: list[int]
    mean: list[float]
    lo: list[float]
    hi: list[float]
    model: str
    interval: float


@dataclass(frozen=True)
class Change:
    service: str
    version: str
    at_unix_nano: int
    kind: str


class DashboardViews(Protocol):
    """Read-only copies of live engine state; every method is safe to call from any thread."""

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """Recent (event time ns, value) points of one series, oldest first; empty when unknown."""
        ...

    def graph(self) -> nx.DiGraph:
        """A copy of the service dependency graph (caller → callee, edge attrs ``calls``, ``errors``)."""
        ...

    def forecast(self, key: str) -> Forecast | None:
        """The current forecast of a series under an SLO, or None when it has no usable fit."""
        ...

    def changes(self, services: Iterable[str], start_ns: int, end_ns: int) -> list[Change]:
        """Deployments and config changes of these services within the window, oldest first."""
        ...

    def config(self) -> dict[str, Any]:
        """The effective settings, secrets masked (:func:`~aiops.dashboard.secrets.masked_settings`)."""
        ...

    def playbooks(self) -> list[dict[str, Any]]:
        """Loaded playbooks as plain data: when they apply, their parameters, who may approve."""
        ...


class NoViews:
    """No pipeline beside the API: nothing live to show."""

    def series(self, key: str) -> tuple[list[int], list[float]]:
        return [], []

    def graph(self) -> nx.DiGraph:
        return nx.DiGraph()

    def forecast(self, key: str) -> Forecast | None:
        return None

    def changes(self, services: Iterable[str], start_ns: int, end_ns: int) -> list[Change]:
        return []

    def config(self) -> dict[str, Any]:
        return {}

    def playbooks(self) -> list[dict[str, Any]]:
        return []


class PipelineViews:
    """:class:`DashboardViews` over a live pipeline; ``lock`` must be the one held around its updates."""

    def __init__(self, pipeline: Pipeline, lock: threading.Lock, settings: Settings | None = None,
                 playbooks: Iterable[Playbook] = ()) -> None:  # fmt: skip
        self._p, self._lock = pipeline, lock
        self._config = masked_settings(settings) if settings is not None else {}
        self._books = [b.model_dump(mode="json", by_alias=True) for b in playbooks]

    def series(self, key: str) -> tuple[list[int], list[float]]:
        with self._lock:
            sid = self._p.series.index.get(key)
            if sid is None:
                return [], []
            ts, values = self._p.recorder.series(sid)  # fancy indexing: already copies
        return ts.tolist(), values.tolist()

    def graph(self) -> nx.DiGraph:
        with self._lock:
            return self._p.graph.g.copy()

    def forecast(self, key: str) -> Forecast | None:
        with self._lock:
            forecaster = self._p.forecaster
            sid = self._p.series.index.get(key)
            w = forecaster.watch.get(sid) if sid is not None else None
            if w is None or w.fit is None or not w.fit.usable:
                return None
            c = forecaster.config
            horizon = max(1, round(c.horizon_s / c.step_s))
            mean, sd = w.fit.forecast(horizon)
            first_step, model = w.bucket, w.fit.model  # the open step is the first one ahead of the fit
        step_ns = int(c.step_s * 1e9)
        z = float(ndtri(0.5 + c.interval / 2))
        ts = [int((first_step + j + 0.5) * step_ns) for j in range(horizon)]  # step midpoints
        return Forecast(ts, mean.tolist(), (mean - z * sd).tolist(), (mean + z * sd).tolist(), model, c.interval)

    def changes(self, services: Iterable[str], start_ns: int, end_ns: int) -> list[Change]:
        with self._lock:
            found = [c for s in set(services) for c in self._p.changes.between(s, start_ns, end_ns)]
        return sorted((Change(c.service, c.version, c.ts, c.kind) for c in found), key=lambda c: c.at_unix_nano)

    def config(self) -> dict[str, Any]:
        return self._config

    def playbooks(self) -> list[dict[str, Any]]:
        return self._books

