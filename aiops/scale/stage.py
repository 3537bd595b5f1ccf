"""The incident stage of a scaled-out install (``aiops run --role incidents``).

A :class:`~aiops.pipeline.Pipeline` whose detection happened elsewhere: it reads the findings
and topology records detect processes write (:mod:`aiops.scale.findings`) instead of telemetry,
and feeds them to the same incident manager, change index and call graph the embedded pipeline
has, so correlation, ranking, forecasts' incidents, the API, dashboard, notifier and executor
work unchanged on top of it.

Findings are applied in event-time order, once the stage's clock has passed them, as the
embedded pipeline would see them. Its clock is the slowest partition's watermark: an incident resolves only once every
partition has moved past its quiet period, so a partition that is catching up (a backlog, a
detect process that died and whose partitions moved) holds the clock back rather than having its
anomalies arrive after their incident closed. Each of the ``partitions`` telemetry partitions
holds it from the start, before its first record. A partition stops holding the others back
when its detect process reports it caught up (nothing left to read: what comes next is newer),
or when nothing was heard from it for ``idle_s`` of wall-clock time (its process is gone and no
other has taken it over yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from aiops.detect.episodes import Anomaly
from aiops.forecast.engine import Prediction
from aiops.ingest.records import Message, Reject
from aiops.pipeline import Pipeline
from aiops.scale import findings
from aiops.scale.findings import Findings, Topology


class IncidentStage(Pipeline):
    detects = False

    def __init__(self, *args: Any, partitions: int = 0, idle_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.partitions, self.idle_s, self.clock = partitions, idle_s, clock
        self.watermarks: dict[int, int] = {}  # detect partition -> its latest watermark
        self.heard = dict.fromkeys(range(partitions), clock())  # detect partition -> when its last record came
        self.caught_up: dict[int, bool] = {}
        # findings wait here until the clock passes them, then are applied in event-time order
        self.held: list[tuple[Anomaly, bool]] = []
        self.held_active: dict[str, list[int]] = {}  # series -> times it was seen flagged, one per record
        self.held_predictions: list[Prediction] = []

    def process(self, messages: Iterable[Message]) -> None:
        """One poll's records: the call graph and changes at once; episodes, ongoing anomalies and
        forecasts once the clock has passed them, in event-time order; then the clock ticks."""
        for msg in messages:
            self.stats.messages += 1
            try:
                record = findings.decode(msg.payload)
            except ValueError as e:
                self._reject([Reject(msg.source, msg.offset, str(e), msg.payload)])
                continue
            if isinstance(record, Topology):
                for caller, callee, calls, errors, last_seen in record.edges:
                    self.graph.merge(caller, callee, calls, errors, last_seen)
                self._own.update(record.services)
            else:
                self._hold(record)
        watermark = self.watermark
        if watermark:
            self._release(watermark)
            self._publish(self.incidents.tick(watermark))
            self.graph.prune(watermark)

    @property
    def watermark(self) -> int:
        now = self.clock()
        live = [self.watermarks.get(p, 0) for p, t in self.heard.items()
                if now - t <= self.idle_s and not self.caught_up.get(p)]  # fmt: skip
        return min(live, default=max(self.watermarks.values(), default=0))

    def _hold(self, f: Findings) -> None:
        self.watermarks[f.partition] = max(f.watermark, self.watermarks.get(f.partition, 0))
        self.heard[f.partition] = self.clock()
        self.caught_up[f.partition] = f.caught_up
        self.changes.add(f.changes)
        self.stats.changes += len(f.changes)
        self.held.extend(f.opened)
        for key, ts in f.active:
            self.held_active.setdefault(key, []).append(ts)
        self.held_predictions.extend(f.predictions)

    def _release(self, watermark: int) -> None:
        due = sorted((x for x in self.held if x[0].first_seen <= watermark), key=lambda x: (x[0].first_seen, x[0].series))
        self.held = [x for x in self.held if x[0].first_seen > watermark]
        latest: dict[str, int] = {}
        for key, times in list(self.held_active.items()):
            if passed := [t for t in times if t <= watermark]:
                latest[key] = max(passed)
                if len(passed) == len(times):
                    del self.held_active[key]
                else:
                    self.held_active[key] = [t for t in times if t > watermark]
        keys = list(latest)
        ts = np.array(list(latest.values()), dtype=np.int64)
        ids = np.arange(len(keys), dtype=np.int64)
        for may_open in (True, False):  # supporting evidence joins after what may open an incident
            opened = [a for a, flag in due if flag is may_open]
            if opened or (may_open and keys):
                active = (ids, ts) if may_open else (ids[:0], ts[:0])
                self._opened(findings.activity(opened, *active), may_open, keys)
        predictions = sorted((p for p in self.held_predictions if p.ts <= watermark), key=lambda p: (p.ts, p.series))
        self.held_predictions = [p for p in self.held_predictions if p.ts > watermark]
        if predictions:
            self.stats.predictions += sum(p.event == "predicted" for p in predictions)
            self._publish(self.incidents.on_predictions(predictions))

    def _extra_state(self) -> dict[str, Any]:
        return {"watermarks": {str(p): w for p, w in self.watermarks.items()}, "monitored": sorted(self._own),
                "caught_up": {str(p): c for p, c in self.caught_up.items()},
                "held": [[*findings.anomaly_row(a), flag] for a, flag in self.held], "held_active": self.held_active,
                "held_predictions": [findings.prediction_doc(p) for p in self.held_predictions]}  # fmt: skip

    def _load_extra(self, extra: dict[str, Any]) -> None:
        self.watermarks = {int(p): int(w) for p, w in extra.get("watermarks", {}).items()}
        self.caught_up = {int(p): bool(c) for p, c in extra.get("caught_up", {}).items()}
        self._own.update(extra.get("monitored", []))  # no series here to learn them from, unlike the embedded pipeline
        self.heard = dict.fromkeys({*self.watermarks, *range(self.partitions)}, self.clock())  # idle_s to be heard again
        self.held = [(findings.anomaly_from(row[:8]), bool(row[8])) for row in extra.get("held", [])]
        self.held_active = {k: [int(t) for t in times] for k, times in extra.get("held_active", {}).items()}
        self.held_predictions = [findings.prediction_from(d) for d in extra.get("held_predictions", [])]
