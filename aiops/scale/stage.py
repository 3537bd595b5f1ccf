"""The incident stage of a scaled-out install (``aiops run --role incidents``).

A :class:`~aiops.pipeline.Pipeline` whose detection happened elsewhere: it reads the findings
and topology records detect processes write (:mod:`aiops.scale.findings`) instead of telemetry,
and feeds them to the same incident manager, change index and call graph the embedded pipeline
has, so correlation, ranking, forecasts' incidents, the API, dashboard, notifier and executor
work unchanged on top of it.

Its event time is the slowest partition's watermark: an incident resolves only once every
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

    def process(self, messages: Iterable[Message]) -> None:
        """One poll's records, applied as one round whatever partitions they came from: the
        call graph first, then changes, episodes (in onset order), forecasts, then the clock."""
        batch: list[Findings] = []
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
                batch.append(record)
                self.watermarks[record.partition] = max(record.watermark, self.watermarks.get(record.partition, 0))
                self.heard[record.partition] = self.clock()
                self.caught_up[record.partition] = record.caught_up
        if batch:
            self._apply(batch)
        watermark = self.watermark
        if watermark:
            self._publish(self.incidents.tick(watermark))
            self.graph.prune(watermark)

    @property
    def watermark(self) -> int:
        now = self.clock()
        live = [self.watermarks.get(p, 0) for p, t in self.heard.items()
                if now - t <= self.idle_s and not self.caught_up.get(p)]  # fmt: skip
        return min(live, default=max(self.watermarks.values(), default=0))

    def _apply(self, batch: list[Findings]) -> None:
        changes = [c for f in batch for c in f.changes]
        self.changes.add(changes)
        self.stats.changes += len(changes)
        latest: dict[str, int] = {}
        for f in batch:
            for key, ts in f.active:
                latest[key] = max(ts, latest.get(key, 0))
        keys = list(latest)
        ids, ts = np.arange(len(keys), dtype=np.int64), np.array(list(latest.values()), dtype=np.int64)
        for may_open in (True, False):  # supporting evidence joins after what may open an incident
            opened = sorted((a for f in batch for a, flag in f.opened if flag is may_open), key=lambda a: (a.first_seen, a.series))
            if opened or (may_open and keys):
                active = (ids, ts) if may_open else (ids[:0], ts[:0])
                self._opened(findings.activity(opened, *active), may_open, keys)
        predictions = [p for f in batch for p in f.predictions]
        if predictions:
            self.stats.predictions += sum(p.event == "predicted" for p in predictions)
            self._publish(self.incidents.on_predictions(predictions))

    def _extra_state(self) -> dict[str, Any]:
        return {"watermarks": {str(p): w for p, w in self.watermarks.items()}, "monitored": sorted(self._own)}

    def _load_extra(self, extra: dict[str, Any]) -> None:
        self.watermarks = {int(p): int(w) for p, w in extra.get("watermarks", {}).items()}
        self._own.update(extra.get("monitored", []))  # no series here to learn them from, unlike the embedded pipeline
        self.heard = dict.fromkeys({*self.watermarks, *range(self.partitions)}, self.clock())  # idle_s to be heard again
