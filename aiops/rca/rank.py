"""Root-cause ranking: which service, among those in an incident, most likely started it.

Symptoms propagate from callee to caller: a slow database makes its callers slow, and theirs.
So a good candidate (1) shows its anomalies first, (2) has no anomalous callee of its own that
started at the same time or earlier (that callee would explain it better), (3) has anomalous
callers (the propagation it would cause), (4) has strong evidence, and (5) changed recently (a
deployment shortly before its onset). Each factor is a plain multiplier, so every candidate's
reason can say why it ranks where it does. Without a graph (metrics-only feeds) the ranking
falls back on onset, strength and changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiops.correlate.changes import ChangeIndex
from aiops.correlate.contract import RootCause
from aiops.detect.episodes import Anomaly
from aiops.rca.graph import DependencyGraph


@dataclass(frozen=True)
class RankConfig:
    onset_decay_s: float = 120.0  # a service whose anomalies start 2 min after the first weighs 1/e
    explain_slack_s: float = 60.0  # a callee whose onset is within this after ours still explains us
    explained_factor: float = 0.25  # per anomalous callee that explains the candidate
    explain_ratio: float = 0.5  # ... whose relative change is at least this share of the candidate's
    template_only_factor: float = 0.5  # a candidate whose only evidence is a never-seen log template
    deploy_factor: float = 1.5
    config_change_factor: float = 1.2
    new_template_factor: float = 1.2
    rollback_window_s: float = 900.0  # a deployment this long before onset is "shortly before"


@dataclass
class Candidate:
    service: str
    score: float
    reason: str
    indicators: list[str]
    deployed: bool


def _clock(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%H:%M:%S")


def _metric(series: str) -> str:
    return series.split("/", 1)[-1]


def describe(a: Anomaly, service: str) -> str:
    """``callers' client spans span.client.duration:p99 +480 %`` or ``process.cpu.utilization +35 %``."""
    if "/log.new_template" in a.series:
        text = a.series.split("text=", 1)[-1].rstrip("}")
        return f"never-seen log template '{text}'"
    own = a.series.split("/", 1)[0] == service
    what = _metric(a.series) if own else f"callers' client spans {_metric(a.series).split('{', 1)[0]}"
    if math.isfinite(a.baseline) and abs(a.baseline) > 1e-12:
        change = (a.value / a.baseline - 1.0) * 100.0
        return f"{what} {change:+.0f} %"
    return f"{what} {'up' if a.direction > 0 else 'down'}"


def _change(items: list[Anomaly]) -> float:
    """The largest relative change among a service's anomalies (1.0 = +100 %), inf when unknown."""
    changes = [abs(a.value / a.baseline - 1.0) for a in items if math.isfinite(a.baseline) and abs(a.baseline) > 1e-12]
    return max(changes, default=math.inf)


def rank(
    anomalies: list[Anomaly],
    graph: DependencyGraph | None,
    changes: ChangeIndex,
    monitored: Callable[[str], bool],
    config: RankConfig | None = None,
) -> list[Candidate]:
    """Candidates best first, scores normalised so the best is 1.0."""
    c = config or RankConfig()
    by_service: dict[str, list[Anomaly]] = {}
    for a in sorted(anomalies, key=lambda a: (a.first_seen, a.series)):
        by_service.setdefault(a.service, []).append(a)
    # a never-seen log template supports a candidate but does not date it: metrics and spans do
    onset = {
        s: min((a.first_seen for a in items if "/log.new_template" not in a.series), default=items[0].first_seen)
        for s, items in by_service.items()
    }
    first = min(onset.values())
    slack = int(c.explain_slack_s * 1e9)
    out = []
    for service, items in by_service.items():
        start = onset[service]
        strongest = max(items, key=lambda a: a.score)
        score = math.exp(-(start - first) / 1e9 / c.onset_decay_s)
        score *= (0.5 + 0.5 * strongest.score) * (1.0 + 0.1 * math.log1p(len(items)))
        reason = f"{service}: {describe(strongest, service)} from {_clock(start)}"
        reason += ", first anomaly" if start == first else f", +{(start - first) / 1e9:.0f} s after the first"
        if not monitored(service):
            reason += ", no own metrics"
        if graph is not None and service in graph.g:
            # a callee explains us if it went bad about as early, and about as hard: a slow database
            # slows its callers; a callee's small wobble does not explain a caller's big one
            ours = _change(items)
            explaining = [d for d in graph.callees(service) if d in onset and onset[d] <= start + slack
                          and _change(by_service[d]) >= c.explain_ratio * ours]  # fmt: skip
            callers = graph.callers(service)
            # an anomalous caller supports us only if we could explain it (the same rule, reversed)
            hit = [u for u in callers if u in onset and ours >= c.explain_ratio * _change(by_service[u])]
            score *= c.explained_factor ** len(explaining)
            score *= 0.5 + 0.5 * (1 + len(hit)) / (1 + len(callers))
            if callers:
                reason += f", {len(hit)} of {len(callers)} callers anomalous"
            if explaining:
                reason += f", but its callee{'s' if len(explaining) > 1 else ''} {', '.join(sorted(explaining))} went first"
        window = changes.between(service, start - int(c.rollback_window_s * 1e9), start + slack)
        deploys = [ch for ch in window if ch.kind == "deployment"]
        if deploys:
            d = deploys[-1]
            score *= c.deploy_factor
            reason += f"; deployed {d.version or 'a new version'} {(start - d.ts) / 60e9:.1f} min before onset"
        elif window:
            score *= c.config_change_factor
            reason += f"; config changed {(start - window[-1].ts) / 60e9:.1f} min before onset"
        templates = sum(1 for a in items if "/log.new_template" in a.series)
        if templates == len(items):
            score *= c.template_only_factor
        elif templates:
            score *= c.new_template_factor
            reason += "; a never-seen log template"
        indicators = [a.series for a in sorted(items, key=lambda a: (-a.score, a.first_seen))[:3]]
        out.append(Candidate(service, score, reason, indicators, bool(deploys)))
    out.sort(key=lambda k: (-k.score, onset[k.service], k.service))
    top = out[0].score or 1.0
    for k in out:
        k.score = round(k.score / top, 4)
    return out


def as_root_causes(candidates: list[Candidate]) -> list[RootCause]:
    return [RootCause(service=k.service, score=k.score, reason=k.reason, indicators=k.indicators) for k in candidates]
