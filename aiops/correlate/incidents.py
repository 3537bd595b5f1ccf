"""Anomaly episodes grouped into incidents, with a first, explainable root-cause ranking.

An anomaly joins the open incident that was active within ``group_window_s`` of its onset,
otherwise it opens a new one; an incident resolves when none of its series has been flagged for
``resolve_after_s`` of event time. Incident ids derive from the first anomaly, so replaying the
same data yields the same ids. Candidates rank by anomaly onset (symptoms propagate from callee
to caller, so the cause tends to show first), the strength of their evidence and a deployment
shortly before their onset. The dependency graph joins this ranking in the RCA stage.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiops.correlate.changes import ChangeIndex
from aiops.correlate.contract import AnomalyRef, ChangeRef, Incident, RootCause
from aiops.detect.episodes import Activity, Anomaly

_ONSET_DECAY_S = 120.0  # a service whose anomalies start 2 min after the first weighs 1/e as much
_CHANGE_BONUS = 0.3


@dataclass(slots=True)
class _Open:
    id: str
    opened_at: int
    updated_at: int
    last_activity: int
    anomalies: dict[str, Anomaly] = field(default_factory=dict)
    signature: tuple[str, ...] = ()


def _clock(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%H:%M:%S")


class IncidentManager:
    def __init__(
        self,
        changes: ChangeIndex,
        group_window_s: float = 120.0,
        resolve_after_s: float = 300.0,
        change_lookback_s: float = 1800.0,
        rollback_window_s: float = 900.0,
    ) -> None:
        self.changes = changes
        self.group_window = int(group_window_s * 1e9)
        self.resolve_after = int(resolve_after_s * 1e9)
        self.change_lookback = int(change_lookback_s * 1e9)
        self.rollback_window = int(rollback_window_s * 1e9)
        self.open: dict[str, _Open] = {}
        self._series_incident: dict[str, str] = {}

    def on_activity(self, activity: Activity, keys: list[str]) -> list[Incident]:
        """Fold one round of detector output in; return incidents that opened or changed."""
        touched: set[str] = set()
        for a in activity.opened:
            inc = self._home(a)
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

    def _home(self, a: Anomaly) -> _Open:
        best = None
        for inc in self.open.values():
            if a.first_seen - inc.last_activity <= self.group_window and (best is None or inc.opened_at < best.opened_at):
                best = inc
        if best is None:
            inc_id = hashlib.sha1(a.id.encode()).hexdigest()[:16]
            best = self.open[inc_id] = _Open(inc_id, a.first_seen, a.first_seen, a.first_seen)
        return best

    def tick(self, watermark: int) -> list[Incident]:
        """Resolve incidents quiet for ``resolve_after_s`` of event time; open ones stay open at end of stream."""
        out = []
        for inc in list(self.open.values()):
            if watermark - inc.last_activity >= self.resolve_after:
                del self.open[inc.id]
                for a in inc.anomalies.values():
                    if self._series_incident.get(a.series) == inc.id:
                        del self._series_incident[a.series]
                out.append(self._render(inc, "resolved", max(inc.last_activity + self.resolve_after, inc.updated_at)))
        self.changes.prune(watermark)
        return out

    def _emit(self, inc: _Open, now: int) -> Incident | None:
        record = self._render(inc, "open", now)
        # Reasons count each candidate's anomalous series, so a new anomaly re-publishes the incident.
        signature = tuple(f"{rc.service}|{rc.reason}|{','.join(rc.indicators)}" for rc in record.root_causes)
        if signature == inc.signature:
            return None
        inc.signature = signature
        inc.updated_at = now
        return record

    def _render(self, inc: _Open, status: str, now: int) -> Incident:
        anomalies = sorted(inc.anomalies.values(), key=lambda a: (a.first_seen, a.series))
        by_service: dict[str, list[Anomaly]] = {}
        for a in anomalies:
            by_service.setdefault(a.service, []).append(a)
        first = anomalies[0].first_seen
        candidates = []
        for service, items in by_service.items():
            onset = items[0].first_seen
            deploys = [c for c in self.changes.between(service, onset - self.rollback_window, onset)
                       if c.kind == "deployment"]  # fmt: skip
            strength = max(a.score for a in items)
            score = math.exp(-(onset - first) / 1e9 / _ONSET_DECAY_S) * (0.5 + 0.5 * strength)
            score += _CHANGE_BONUS if deploys else 0.0
            reason = f"{service}: first anomaly {items[0].series} at {_clock(onset)} UTC"
            reason += " (earliest in the incident)" if onset == first else f" (+{(onset - first) / 1e9:.0f} s after the first)"
            reason += f", {len(items)} anomalous series"
            if deploys:
                d = deploys[-1]
                reason += f"; deployed {d.version or 'a new version'} {(onset - d.ts) / 60e9:.1f} min before onset"
            indicators = [a.series for a in sorted(items, key=lambda a: -a.score)[:3]]
            candidates.append((score, onset, service, reason, indicators, bool(deploys)))
        candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
        top = candidates[0][0]
        root_causes = [RootCause(service=s, score=round(sc / top, 4), reason=r, indicators=ind)
                       for sc, _, s, r, ind, _ in candidates]  # fmt: skip
        services = sorted(by_service)
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
            kind="detected",
            severity=severity,  # type: ignore[arg-type]
            services=services,
            root_causes=root_causes,
            anomalies=[AnomalyRef(**a.to_contract()) for a in anomalies],
            changes=sorted(changes, key=lambda c: c.at_unix_nano),
            suggested_playbook="rollback" if candidates[0][5] else None,
        )

    def state(self) -> dict[str, Any]:
        return {
            "series_incident": self._series_incident,
            "open": [
                {"id": i.id, "opened_at": i.opened_at, "updated_at": i.updated_at, "last_activity": i.last_activity,
                 "signature": list(i.signature),
                 "anomalies": [[a.series, a.service, a.first_seen, a.score, a.direction, a.value] for a in i.anomalies.values()]}
                for i in self.open.values()
            ],
        }  # fmt: skip

    def load_state(self, state: dict[str, Any]) -> None:
        self._series_incident = dict(state["series_incident"])
        self.open = {}
        for o in state["open"]:
            inc = _Open(o["id"], int(o["opened_at"]), int(o["updated_at"]), int(o["last_activity"]),
                        signature=tuple(o["signature"]))  # fmt: skip
            for row in o["anomalies"]:
                a = Anomaly(row[0], row[1], int(row[2]), float(row[3]), int(row[4]), float(row[5]))
                inc.anomalies[a.id] = a
            self.open[inc.id] = inc

