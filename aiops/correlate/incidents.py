"""Anomaly episodes grouped into incidents, each with a ranked, explained root cause.

An anomaly joins an open incident that was active within ``group_window_s`` of its onset and
holds a service connected to the anomaly's service in the dependency graph (within two calls,
either way; services the graph does not know are grouped by time alone); otherwise it opens a
new incident. One episode of one series is one anomaly, so re-seen episodes merge. An incident
resolves when none of its series has been flagged for ``resolve_after_s`` of event time.
Incident ids derive from the first anomaly, so replaying the same data yields the same ids.
Ranking is :func:`aiops.rca.rank.rank`.

A forecast (:mod:`aiops.forecast`) that an SLO will break opens a ``predicted`` incident, or
joins the open incident that already holds its series or a related service. Trending series
are ranked with the incident's anomalies. A predicted incident stays open while its forecast is
pending, becomes ``detected`` when the breach happens, and resolves as averted when the
forecast falls back.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiops.correlate.changes import ChangeIndex
from aiops.correlate.contract import AnomalyRef, ChangeRef, ForecastRef, Incident, RootCause
from aiops.detect.episodes import Activity, Anomaly
from aiops.forecast.engine import Prediction
from aiops.learn.weights import reorder
from aiops.rca.graph import DependencyGraph
from aiops.rca.rank import RankConfig, as_root_causes, rank


@dataclass(slots=True)
class _Open:
    id: str
    opened_at: int
    updated_at: int
    last_activity: int
    anomalies: dict[str, Anomaly] = field(default_factory=dict)
    signature: tuple[str, ...] = ()
    kind: str = "detected"
    forecast: ForecastRef | None = None
    trends: dict[str, Anomaly] = field(default_factory=dict)  # forecast series: ranked, not listed as anomalies
    saturation: bool = False  # the forecast SLO is a saturation line: scaling out is the remedy

    @property
    def services(self) -> set[str]:
        return {a.service for a in self.evidence()}

    def evidence(self) -> list[Anomaly]:
        return [*self.anomalies.values(), *self.trends.values()]

    @property
    def pending(self) -> bool:
        """A forecast breach still ahead: the problem is developing, so the incident stays open."""
        return self.forecast is not None and self.forecast.outcome == "pending"


class IncidentManager:
    def __init__(
        self,
        changes: ChangeIndex,
        graph: DependencyGraph | None = None,
        monitored: Callable[[str], bool] = lambda _: True,
        group_window_s: float = 120.0,
        resolve_after_s: float = 300.0,
        change_lookback_s: float = 1800.0,
        rank_config: RankConfig | None = None,
    ) -> None:
        self.changes = changes
        self.graph = graph
        self.monitored = monitored
        self.group_window = int(group_window_s * 1e9)
        self.resolve_after = int(resolve_after_s * 1e9)
        self.change_lookback = int(change_lookback_s * 1e9)
        self.rank_config = rank_config or RankConfig()
        self.open: dict[str, _Open] = {}
        self._series_incident: dict[str, str] = {}
        self._forecast_incident: dict[str, str] = {}  # forecast series -> incident holding its forecast
        self.evidence_weights: dict[str, float] = {}  # learned from confirmed root causes (aiops.learn.weights)

    def on_activity(self, activity: Activity, keys: list[str], may_open: bool = True) -> list[Incident]:
        """Fold one round of detector output in; return incidents that opened or changed.

        ``may_open=False`` is for supporting evidence (a never-seen log template): it joins a related
        open incident but never opens one on its own, since rare messages appear in healthy systems too.
        """
        touched: set[str] = set()
        for a in sorted(activity.opened, key=lambda a: (a.first_seen, a.series)):  # ids do not depend on arrival order
            inc = self._home(a, may_open)
            if inc is None:
                continue
            if a.id not in inc.anomalies:
                inc.anomalies[a.id] = a
                inc.last_activity = max(inc.last_activity, a.first_seen)
                self._series_incident[a.series] = inc.id
                touched.add(inc.id)
        if len(activity.active_ids):
            for j, ts in zip(activity.active_ids.tolist(), activity.active_ts.tolist(), strict=True):
                inc_id = self._series_incident.get(keys[j])
                if inc_id in self.open:
                    inc = self.open[inc_id]
                    inc.last_activity = max(inc.last_activity, ts)
        return [r for r in (self._emit(self.open[i], self.open[i].last_activity) for i in sorted(touched)) if r]

    def _related(self, service: str, inc: _Open) -> bool:
        g = self.graph
        if g is None or service not in g.g:
            return True  # nothing known about it: time is the only evidence
        known = [s for s in inc.services if s in g.g]
        return not known or any(g.connected(service, s) for s in known)

    def _home(self, a: Anomaly, may_open: bool = True) -> _Open | None:
        best = None
        for inc in self.open.values():
            # within the window either side: an anomaly can arrive after later ones (a scaled-out
            # stage reads partitions at different paces), and then must not join a later incident
            close = (a.first_seen - inc.last_activity <= self.group_window and inc.opened_at - a.first_seen <= self.group_window) \
                or (inc.pending and not inc.anomalies)  # fmt: skip
            if close and self._related(a.service, inc) and (best is None or inc.opened_at < best.opened_at):
                best = inc
        if best is None:
            if not may_open:
                return None
            inc_id = hashlib.sha1(a.id.encode()).hexdigest()[:16]
            best = self.open[inc_id] = _Open(inc_id, a.first_seen, a.first_seen, a.first_seen)
        return best

    def on_predictions(self, predictions: list[Prediction]) -> list[Incident]:
        """Fold forecast events in; return incidents that opened or changed.

        Related warnings (the same service, or services connected in the graph) share one incident:
        each trending series is ranked as evidence, and the incident shows the first warning's
        forecast until it breaches or falls back.
        """
        out: list[Incident] = []
        for p in predictions:
            if p.event == "predicted":
                inc = self._forecast_home(p)
                inc.trends[p.series] = Anomaly(p.series, p.service, p.trend_start, p.probability, p.rule.sign,
                                               p.value, p.baseline)  # fmt: skip
                self._forecast_incident[p.series] = inc.id
                inc.last_activity = max(inc.last_activity, p.ts)  # a warning is activity too
                if not inc.pending:
                    inc.forecast = _forecast_ref(p)
                    inc.saturation = p.rule.kind == "saturation"
                emitted = self._emit(inc, max(inc.updated_at, p.ts))
            else:
                inc_id = self._forecast_incident.pop(p.series, None)
                inc = self.open.get(inc_id) if inc_id else None
                if inc is None:
                    continue
                if p.event == "averted" and (inc.anomalies or len(inc.trends) > 1):
                    inc.trends.pop(p.series, None)  # a trend that fell back is no evidence (unless it is all there is)
                if inc.forecast is not None and inc.forecast.series == p.series and inc.pending:
                    inc.forecast = inc.forecast.model_copy(update={"outcome": p.event, "outcome_at_unix_nano": p.ts})
                if p.event == "breached":
                    inc.kind = "detected"
                    inc.last_activity = max(inc.last_activity, p.ts)
                elif inc.kind == "predicted" and not inc.anomalies and not self._warned(inc):
                    out.append(self._close(inc, p.ts))  # every warning fell back before anything went wrong
                    continue
                emitted = self._emit(inc, max(inc.updated_at, p.ts))
            if emitted is not None:
                out.append(emitted)
        return out

    def _warned(self, inc: _Open) -> bool:
        """Some warning of this incident is still pending."""
        return any(self._forecast_incident.get(series) == inc.id for series in inc.trends)

    def _forecast_home(self, p: Prediction) -> _Open:
        """The open incident holding the series, or a related service lately; else a new predicted one."""
        held = self.open.get(self._series_incident.get(p.series, ""))
        if held is None:
            near = [i for i in self.open.values()
                    if (p.ts - i.last_activity <= self.group_window or i.pending)
                    and (p.service in i.services or self._related(p.service, i))]  # fmt: skip
            held = min(near, key=lambda i: (p.service not in i.services, i.opened_at), default=None)
        if held is not None:
            return held
        inc_id = hashlib.sha1(f"{p.series}@forecast@{p.ts}".encode()).hexdigest()[:16]
        inc = self.open[inc_id] = _Open(inc_id, p.ts, p.ts, p.ts, kind="predicted")
        return inc

    def tick(self, watermark: int) -> list[Incident]:
        """Resolve incidents quiet for ``resolve_after_s`` of event time; open ones stay open at end of stream.

        An incident whose forecast is still pending stays open: the warning is its activity.
        """
        out = []
        for inc in list(self.open.values()):
            if not inc.pending and watermark - inc.last_activity >= self.resolve_after:
                out.append(self._close(inc, max(inc.last_activity + self.resolve_after, inc.updated_at)))
        self.changes.prune(watermark)
        return out

    def _close(self, inc: _Open, now: int) -> Incident:
        del self.open[inc.id]
        for a in inc.anomalies.values():
            if self._series_incident.get(a.series) == inc.id:
                del self._series_incident[a.series]
        for series in [s for s, i in self._forecast_incident.items() if i == inc.id]:
            del self._forecast_incident[series]
        return self._render(inc, "resolved", now)

    def _emit(self, inc: _Open, now: int) -> Incident | None:
        record = self._render(inc, "open", now)
        # Reasons count each candidate's anomalous series, so a new anomaly re-publishes the incident.
        signature = tuple(f"{rc.service}|{rc.reason}|{','.join(rc.indicators)}" for rc in record.root_causes)
        signature += (record.kind, record.forecast.model_dump_json() if record.forecast else "")
        if signature == inc.signature:
            return None
        inc.signature = signature
        inc.updated_at = now
        return record

    def rank(self, anomalies: list[Anomaly]) -> list[RootCause]:
        """Rank any given set of anomalies as one incident, on the current graph and changes.

        For evaluation given a labelled onset (all anomalies of a period, however they were
        grouped) and for an operator's "what if these belong together" question.
        """
        if not anomalies:
            return []
        ordered = sorted(anomalies, key=lambda a: (a.first_seen, a.series))
        return as_root_causes(rank(ordered, self.graph, self.changes, self.monitored, self.rank_config))

    def _render(self, inc: _Open, status: str, now: int) -> Incident:
        anomalies = sorted(inc.anomalies.values(), key=lambda a: (a.first_seen, a.series))
        candidates = reorder(rank(inc.evidence(), self.graph, self.changes, self.monitored, self.rank_config),
                             self.evidence_weights)  # fmt: skip
        services = sorted(inc.services)
        first = min(a.first_seen for a in inc.evidence())
        changes = [
            ChangeRef(service=c.service, version=c.version, at_unix_nano=c.ts)
            for s in services
            for c in self.changes.between(s, first - self.change_lookback, now)
        ]
        n_services, n_series = len(services), len(anomalies)
        severity = "critical" if n_services >= 3 else "warning" if n_series >= 2 else "info"
        return Incident(
            id=inc.id,
            opened_at_unix_nano=inc.opened_at,
            updated_at_unix_nano=now,
            status=status,  # type: ignore[arg-type]
            kind=inc.kind,  # type: ignore[arg-type]
            severity=severity,  # type: ignore[arg-type]
            services=services,
            root_causes=as_root_causes(candidates),
            anomalies=[AnomalyRef(**a.to_contract()) for a in anomalies],
            changes=sorted(changes, key=lambda c: c.at_unix_nano),
            suggested_playbook="rollback" if candidates[0].deployed else "scale-out" if inc.saturation else None,
            forecast=inc.forecast,
        )

    def state(self) -> dict[str, Any]:
        return {
            "series_incident": self._series_incident,
            "forecast_incident": self._forecast_incident,
            "open": [
                {"id": i.id, "opened_at": i.opened_at, "updated_at": i.updated_at, "last_activity": i.last_activity,
                 "signature": list(i.signature), "kind": i.kind, "saturation": i.saturation,
                 "forecast": i.forecast.model_dump() if i.forecast else None,
                 "trends": [_row(a) for a in i.trends.values()],
                 "anomalies": [_row(a) for a in i.anomalies.values()]}
                for i in self.open.values()
            ],
        }  # fmt: skip

    def load_state(self, state: dict[str, Any]) -> None:
        self._series_incident = dict(state["series_incident"])
        self._forecast_incident = dict(state["forecast_incident"])
        self.open = {}
        for o in state["open"]:
            inc = _Open(o["id"], int(o["opened_at"]), int(o["updated_at"]), int(o["last_activity"]),
                        signature=tuple(o["signature"]), kind=o["kind"], saturation=bool(o["saturation"]),
                        forecast=ForecastRef(**o["forecast"]) if o["forecast"] else None,
                        trends={r[0]: _anomaly(r) for r in o["trends"]})  # fmt: skip
            for row in o["anomalies"]:
                a = _anomaly(row)
                inc.anomalies[a.id] = a
            self.open[inc.id] = inc


def _row(a: Anomaly) -> list[Any]:
    return [a.series, a.service, a.first_seen, a.score, a.direction, a.value, a.baseline, a.previous]


def _anomaly(row: list[Any]) -> Anomaly:
    previous = float(row[7]) if len(row) > 7 else math.nan  # rows saved before anomalies carried it
    return Anomaly(row[0], row[1], int(row[2]), float(row[3]), int(row[4]), float(row[5]), float(row[6]), previous)


def _forecast_ref(p: Prediction) -> ForecastRef:
    return ForecastRef(
        series=p.series,
        service=p.service,
        slo=f"{p.rule.name or p.series.split('/', 1)[-1]} {p.rule.describe()}",
        threshold=p.rule.threshold,
        predicted_at_unix_nano=p.ts,
        probability=round(p.probability, 4),
        expected_breach_unix_nano=p.expected_breach,
        earliest_breach_unix_nano=p.earliest_breach,
        latest_breach_unix_nano=p.latest_breach,
        model=str(p.fit.get("model", "")),
        fit={k: float(v) if math.isfinite(v) else None for k, v in p.fit.items() if k != "model"},
        outcome="pending",
        outcome_at_unix_nano=None,
    )
