"""Spans and logs become per-window series, closed by the event-time watermark.

Spans give each service's request rate, error ratio and p50/p99 latency as its server sees them,
and, from CLIENT spans, the same per callee (``peer.service``, or ``db.system`` +
``server.address``), attributed to the callee: that is how a database that exports no metrics
still gets series, and evidence, of its own. Logs give
per-service record rates by severity. A window closes once the watermark passes its end plus a
grace period; a record for a closed window is late and refused, never silently folded in.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from aiops.detect.templates import MinerConfig, TemplateMiner
from aiops.ingest.records import LogRecord, MetricBatch, MetricColumns, PointKind, Reject, Span, row_json, series_key

SERVER, CLIENT = 2, 3
SEVERITY_CLASSES = (("ERROR", 17), ("WARN", 13), ("INFO", 0))  # lowest severity number per class


def callee_of(span: Span) -> str | None:
    """The service a CLIENT span calls, as the caller names it."""
    a = span.attributes
    peer = a.get("peer.service")
    if peer:
        return str(peer)
    if a.get("db.system"):  # the database host is its identity; the system name when no host is given
        return str(a.get("server.address") or a.get("net.peer.name") or a["db.system"])
    return None


MAX_EMPTY_WINDOWS = 120  # after a longer silence (an hour of 30 s windows) the stream was away, not quiet


class _Windows:
    """Tumbling event-time windows keyed by (window start, group key).

    Each source (Kafka partition, file) has its own watermark and a window closes when the
    slowest live source has passed it, so a partition consumed later than another is not late.
    A source silent for ``idle_s`` of event time stops holding windows open.
    """

    def __init__(self, width_s: float, grace_s: float, idle_s: float = 300.0) -> None:
        self.width = int(width_s * 1e9)
        self.grace = int(grace_s * 1e9)
        self.idle = int(idle_s * 1e9)
        self.closed_before = 0  # windows starting before this are flushed
        self.source_wm: dict[str, int] = {}
        self.open: dict[int, dict[Any, list[Any]]] = defaultdict(lambda: defaultdict(list))

    def add(self, ts: int, group: Any, item: Any) -> bool:
        start = ts - ts % self.width
        if start < self.closed_before:
            return False
        self.open[start][group].append(item)
        return True

    def seen(self, source: str, ts: int) -> None:
        if ts > self.source_wm.get(source, 0):
            self.source_wm[source] = ts

    def due(self, final: bool) -> list[tuple[int, dict[Any, list[Any]]]]:
        """Windows to close, oldest first, including the empty ones since the last close: a window
        nobody wrote into is a quiet window (a zero rate), whichever services share this stream."""
        newest = max(self.source_wm.values(), default=0)
        watermark = min((w for w in self.source_wm.values() if w >= newest - self.idle), default=0)
        ready = {s for s in self.open if final or s + self.width + self.grace <= watermark}
        floor = self.closed_before or min(self.open, default=0)  # nothing before the first window
        if floor and not final:
            last = watermark - self.width - self.grace
            first = max(floor, last - last % self.width - MAX_EMPTY_WINDOWS * self.width)
            ready.update(range(first, last + 1, self.width))
        if ready:
            self.closed_before = max(self.closed_before, max(ready) + self.width)
        return [(s, self.open.pop(s, {})) for s in sorted(ready)]

    def state(self) -> dict[str, Any]:
        return {
            "closed_before": self.closed_before,
            "source_wm": self.source_wm,
            "open": [[s, [[list(g) if isinstance(g, tuple) else g, items] for g, items in groups.items()]]
                     for s, groups in self.open.items()],
        }  # fmt: skip

    def load_state(self, state: dict[str, Any]) -> None:
        self.closed_before = int(state["closed_before"])
        self.source_wm = {k: int(v) for k, v in state["source_wm"].items()}
        self.open.clear()
        for s, groups in state["open"]:
            for g, items in groups:
                self.open[int(s)][tuple(g) if isinstance(g, list) else g] = items


class SpanMetrics:
    """Per service and per caller→callee edge: rate, error ratio, p50/p99 duration per window."""

    def __init__(self, width_s: float = 30.0, grace_s: float = 30.0) -> None:
        self.windows = _Windows(width_s, grace_s)

    def add(self, spans: list[Span], source: str, offset: int, late: list[Reject]) -> None:
        """Take spans in; a span for an already closed window goes to ``late`` as a reject."""
        for s in spans:
            self.windows.seen(source, s.end_ts)
            if s.kind == SERVER:
                group: tuple[str, ...] = (s.service, "server", "")
            elif s.kind == CLIENT and (callee := callee_of(s)):
                group = (s.service, "client", callee)
            else:
                continue
            if not self.windows.add(s.end_ts, group, (s.duration_s, s.error)):
                late.append(Reject(source, offset, "late span: its window already closed", row_json(s)))

    def flush(self, final: bool = False) -> MetricBatch:
        cols = MetricColumns()
        width_s = self.windows.width / 1e9
        for start, groups in self.windows.due(final):
            ts = start + self.windows.width
            for (service, side, callee), items in groups.items():
                d = np.fromiter((x[0] for x in items), dtype=np.float64, count=len(items))
                errors = sum(1 for x in items if x[1])
                attrs = {"peer": callee} if callee else {}
                name = f"span.{side}"
                p50, p99 = np.percentile(d, (50, 99))
                for suffix, value in ((":rate", len(items) / width_s), (":error_ratio", errors / len(items)),
                                      (".duration:p50", p50), (".duration:p99", p99)):  # fmt: skip
                    # An edge series is evidence about the callee, as its callers see it: the series
                    # keeps the caller's name, the anomaly is attributed to the callee.
                    cols.append(series_key(service, name + suffix, attrs), callee or service, ts, float(value),
                                PointKind.GAUGE, 0)  # fmt: skip
        return cols.freeze()

    def state(self) -> dict[str, Any]:
        return {"windows": self.windows.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.windows.load_state(state["windows"])


class LogMetrics:
    """Per service: log records per second by severity class (zeros included once a service logs),
    and per WARN/ERROR log template; a template first seen at WARN/ERROR after the service's
    first ``new_after`` lines is reported by :meth:`take_new_templates` as evidence of its own.

    Templates are mined per service (:class:`aiops.detect.templates.TemplateMiner`), so one noisy
    program never evicts another's templates; each service tracks at most
    ``max_template_series`` error templates as series.
    """

    def __init__(self, width_s: float = 30.0, grace_s: float = 30.0, new_after: int = 200,
                 max_template_series: int = 50, miner: MinerConfig | None = None) -> None:  # fmt: skip
        self.windows = _Windows(width_s, grace_s)
        # first window each service / error template was seen in: zeros are filled from there on,
        # never before, so the series are the same however the stream was batched
        self.services: dict[str, int] = {}
        self.new_after = new_after
        self.max_template_series = max_template_series
        self.miner_config = miner or MinerConfig(max_templates=1000, cache_size=4096)
        self.miners: dict[str, TemplateMiner] = {}
        self.lines: dict[str, int] = {}
        self.tracked: dict[str, dict[str, tuple[str, int]]] = {}  # service -> template id -> (class, first window)
        self._new: list[tuple[int, str, str, str, str]] = []  # ts, service, id, template, class

    def add(self, logs: list[LogRecord], source: str, offset: int, late: list[Reject]) -> None:
        for r in logs:
            self.windows.seen(source, r.ts)
            window = r.ts - r.ts % self.windows.width
            self.services[r.service] = min(self.services.get(r.service, window), window)
            cls = next((name for name, floor in SEVERITY_CLASSES if r.severity_number >= floor), "INFO")
            miner = self.miners.get(r.service)
            if miner is None:
                miner = self.miners[r.service] = TemplateMiner(self.miner_config)
            m = miner.add(r.body)
            seen = self.lines[r.service] = self.lines.get(r.service, 0) + 1
            tid = None
            if cls != "INFO":
                tracked = self.tracked.setdefault(r.service, {})
                if m.template_id in tracked or len(tracked) < self.max_template_series:
                    known = tracked.get(m.template_id)
                    tracked[m.template_id] = (cls, window if known is None else min(known[1], window))
                    tid = m.template_id
                if m.is_new and seen > self.new_after:
                    self._new.append((r.ts, r.service, m.template_id, m.template, cls))
            if not self.windows.add(r.ts, r.service, (cls, tid)):
                late.append(Reject(source, offset, "late log record: its window already closed", row_json(r)))

    def take_new_templates(self) -> list[tuple[int, str, str, str, str]]:
        """(ts, service, template id, template, severity class) of error templates never seen before."""
        out, self._new = self._new, []
        return out

    def flush(self, final: bool = False) -> MetricBatch:
        cols = MetricColumns()
        width_s = self.windows.width / 1e9
        for start, groups in self.windows.due(final):
            ts = start + self.windows.width
            for service, since in sorted(self.services.items()):
                if start < since:
                    continue
                items = groups.get(service, [])
                for name, _ in SEVERITY_CLASSES:
                    rate = sum(1 for c, _ in items if c == name) / width_s
                    key = series_key(service, "log.records:rate", {"severity": name})
                    cols.append(key, service, ts, rate, PointKind.GAUGE, 0)
                counts: dict[str, int] = {}
                for _, tid in items:
                    if tid is not None:
                        counts[tid] = counts.get(tid, 0) + 1
                for tid, (cls, first) in self.tracked.get(service, {}).items():
                    if start < first:
                        continue
                    key = series_key(service, "log.template:rate", {"severity": cls, "template": tid})
                    cols.append(key, service, ts, counts.get(tid, 0) / width_s, PointKind.GAUGE, 0)
        return cols.freeze()

    def state(self) -> dict[str, Any]:
        return {
            "windows": self.windows.state(),
            "services": self.services,
            "miners": {s: m.state() for s, m in self.miners.items()},
            "lines": self.lines,
            "tracked": self.tracked,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.windows.load_state(state["windows"])
        self.services = {s: int(w) for s, w in state["services"].items()}
        self.miners = {s: TemplateMiner.from_state(m) for s, m in state["miners"].items()}
        self.lines = {s: int(n) for s, n in state["lines"].items()}
        self.tracked = {s: {tid: (c, int(w)) for tid, (c, w) in t.items()} for s, t in state["tracked"].items()}
