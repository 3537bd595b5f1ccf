"""Root-cause ranking: which service, among those in an incident, most likely started it.

Symptoms propagate from callee to caller: a slow database makes its callers slow, and theirs.
An anomalous callee explains an anomalous caller when it went bad about as early (not after,
and not so long before that the caller stayed healthy meanwhile) with a harmful signal: a
request-rate change alone is load the caller sends down, never a cause. Following these
propagation edges upwards from a service gives everything it explains; a good candidate
(1) explains much of the incident, best including an entry point (a service nobody calls: what
users see), (2) is not itself explained by an anomalous callee, (3) shows its anomalies early,
(4) has strong evidence, and (5) changed recently (a deployment shortly before its onset).
Each factor is a plain multiplier, so every candidate's reason can say why it ranks where it
does. Without a graph (metrics-only feeds) the ranking falls back on onset, strength and changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import networkx as nx

from aiops.correlate.changes import ChangeIndex
from aiops.correlate.contract import RootCause
from aiops.detect.episodes import Anomaly
from aiops.rca.graph import DependencyGraph


@dataclass(frozen=True)
class RankConfig:
    onset_decay_s: float = 120.0  # a service whose anomalies start 2 min after its cluster's first weighs 1/e
    explain_slack_s: float = 60.0  # a callee whose onset is within this after ours still explains us
    lead_s: float = 450.0  # ... or this long before ours; earlier, we stayed healthy meanwhile: not our cause
    explained_factor: float = 0.25  # per anomalous callee that explains the candidate
    explain_ratio: float = 0.5  # ... whose relative change is at least this share of the candidate's
    reach_power: float = 1.0  # score grows as (services the candidate explains, itself included) ** this
    entry_factor: float = 2.0  # the candidate explains an anomalous entry point (a service nobody calls)
    error_factor: float = 2.0  # the candidate fails requests (errors up, availability down): rarer than slowness
    saturation_factor: float = 2.0  # the candidate's own CPU went up: a resource fault acts where it is
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


def _relative(value: float, ref: float) -> float:
    return abs(value / ref - 1.0) if math.isfinite(ref) and abs(ref) > 1e-12 else math.inf


def step(a: Anomaly) -> float:
    """Relative change at onset (1.0 = +100 %): from the baseline, but never more than from the value
    just before the episode, since a level the series already held then did not start at this onset."""
    return min(_relative(a.value, a.baseline), _relative(a.value, a.previous))


def _change(items: list[Anomaly]) -> float:
    """The largest known step at onset among a service's anomalies, inf when none is known."""
    return max((x for x in map(step, items) if math.isfinite(x)), default=math.inf)


def _benign(a: Anomaly) -> bool:
    """Availability or success going up is recovery, not a symptom."""
    name = _metric(a.series).lower()
    return a.direction > 0 and ("availability" in name or "success" in name)


def _failing(a: Anomaly) -> bool:
    """Requests failing: an error series going up or an availability/success series going down."""
    name = _metric(a.series).lower().split("{", 1)[0]
    if "availability" in name or "success" in name:
        return a.direction < 0
    return a.direction > 0 and ("error" in name or "status_code=5" in a.series)


def _saturated(a: Anomaly) -> bool:
    """The service's own CPU going up: where a resource fault (contention, a hog) acts, while its
    callers only get slower."""
    name = _metric(a.series).lower().split("{", 1)[0]
    return a.direction > 0 and "cpu" in name and a.series.split("/", 1)[0] == a.service


def _traffic(a: Anomaly) -> bool:
    """A request-rate series: load that callers send down, so it cannot explain a caller."""
    name = _metric(a.series).lower().split("{", 1)[0]
    if "error" in a.series.lower() or "status_code=5" in a.series:
        return False
    return name.endswith(":rate") or ("request" in name and "duration" not in name and "latency" not in name)


def _propagation(by_service: dict[str, list[Anomaly]], onset: dict[str, int], graph: DependencyGraph,
                 c: RankConfig) -> nx.DiGraph:  # fmt: skip
    """Caller → callee edges among anomalous services along which the callee can explain the caller."""
    slack, lead = int(c.explain_slack_s * 1e9), int(c.lead_s * 1e9)
    change = {s: _change(items) for s, items in by_service.items()}
    causal = {s for s, items in by_service.items() if any(not _traffic(a) for a in items)}
    p = nx.DiGraph()
    p.add_nodes_from(by_service)
    for u in by_service:
        for v in graph.callees(u):
            if v in causal and onset[u] - lead <= onset[v] <= onset[u] + slack and change[v] >= c.explain_ratio * change[u]:
                p.add_edge(u, v)
    return p


def rank(
    anomalies: list[Anomaly],
    graph: DependencyGraph | None,
    changes: ChangeIndex,
    monitored: Callable[[str], bool],
    config: RankConfig | None = None,
) -> list[Candidate]:
    """Candidates best first, scores normalised so the best is 1.0."""
    c = config or RankConfig()
    harmful = [a for a in anomalies if not _benign(a)] or anomalies
    by_service: dict[str, list[Anomaly]] = {}
    for a in sorted(harmful, key=lambda a: (a.first_seen, a.series)):
        by_service.setdefault(a.service, []).append(a)
    # a never-seen log template supports a candidate but does not date it: metrics and spans do
    onset = {
        s: min((a.first_seen for a in items if "/log.new_template" not in a.series), default=items[0].first_seen)
        for s, items in by_service.items()
    }
    slack = int(c.explain_slack_s * 1e9)
    prop = _propagation(by_service, onset, graph, c) if graph is not None else None
    # onset counts within a cluster of services linked by propagation: an unrelated anomaly that
    # happened to start earlier says nothing about this cluster's order
    cluster_first: dict[str, int] = {}
    for part in nx.weakly_connected_components(prop) if prop is not None else [set(by_service)]:
        first = min(onset[s] for s in part)
        cluster_first |= dict.fromkeys(part, first)
    out = []
    for service, items in by_service.items():
        start, first = onset[service], cluster_first[service]
        strongest = max(items, key=lambda a: a.score)
        score = math.exp(-(start - first) / 1e9 / c.onset_decay_s)
        score *= (0.5 + 0.5 * strongest.score) * (1.0 + 0.1 * math.log1p(len(items)))
        reason = f"{service}: {describe(strongest, service)} from {_clock(start)}"
        failing = [a for a in items if _failing(a)]
        if failing:
            score *= c.error_factor
            if strongest not in failing:
                reason += f", {describe(max(failing, key=lambda a: a.score), service)}"
        saturated = [a for a in items if _saturated(a)]
        if saturated:
            score *= c.saturation_factor
            if strongest not in saturated:
                reason += f", {describe(max(saturated, key=lambda a: a.score), service)}"
        reason += ", first anomaly" if start == first else f", +{(start - first) / 1e9:.0f} s after the first"
        if not monitored(service):
            reason += ", no own metrics"
        if prop is not None and graph is not None:
            explained = nx.ancestors(prop, service)
            explaining = sorted(prop.successors(service))
            score *= (1 + len(explained)) ** c.reach_power * c.explained_factor ** len(explaining)
            entry = sorted(u for u in explained if not graph.callers(u))
            if entry:
                score *= c.entry_factor
            if explained:
                reason += f", explains {len(explained)} anomalous service{'s' if len(explained) > 1 else ''}"
                reason += f" up to {', '.join(entry)}" if entry else ""
            if explaining:
                reason += f", but its callee{'s' if len(explaining) > 1 else ''} {', '.join(explaining)} went first"
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
