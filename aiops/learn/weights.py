"""Evidence weights learned from confirmed root causes, applied on top of the ranking.

A kind of evidence is a metric family: the metric name of an indicator without its service,
attributes and derived suffix (``catalog/http.server.request.duration:p99{…}`` →
``http.server.request.duration``). When an expert names the real root cause of an incident, the
families that pointed at it weigh more in later incidents and those of a wrongly top-ranked
candidate weigh less, each within bounds so no single verdict dominates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

UP, DOWN = 1.25, 0.8
LOW, HIGH = 0.25, 4.0


def family(series: str) -> str:
    name = series.split("/", 1)[-1].split("{", 1)[0]
    return name.split(":", 1)[0]


def candidate_weight(indicators: Iterable[str], weights: dict[str, float]) -> float:
    """The strongest learned weight among a candidate's indicators (1.0 when none is known)."""
    found = [weights[f] for f in {family(s) for s in indicators} if f in weights]
    return max(found, key=lambda w: abs(w - 1.0), default=1.0)


def reorder(root_causes: Sequence[Any], weights: dict[str, float]) -> list[Any]:
    """Root causes (anything with ``.score`` and ``.indicators``) re-scored by the weights, best first.

    Scores stay normalised to the best one; with no weights the order is unchanged.
    """
    if not weights or not root_causes:
        return list(root_causes)
    scored = [(rc.score * candidate_weight(rc.indicators, weights), i, rc) for i, rc in enumerate(root_causes)]
    scored.sort(key=lambda t: (-t[0], t[1]))
    top = scored[0][0] or 1.0
    out = []
    for score, _, rc in scored:
        rc.score = round(score / top, 4)
        out.append(rc)
    return out


def learn(weights: dict[str, float], incident: dict[str, Any], truth: str) -> dict[str, float]:
    """New weights after an expert says ``truth`` caused ``incident`` (a contract record)."""
    new = dict(weights)
    causes = incident.get("root_causes", [])
    right = {family(s) for rc in causes if rc["service"] == truth for s in rc["indicators"]}
    wrong = set()
    if causes and causes[0]["service"] != truth:
        wrong = {family(s) for s in causes[0]["indicators"]} - right
    for f in right:
        new[f] = min(HIGH, new.get(f, 1.0) * UP)
    for f in wrong:
        new[f] = max(LOW, new.get(f, 1.0) * DOWN)
    return new


def accuracy(labelled: list[tuple[dict[str, Any], str]], weights: dict[str, float]) -> float | None:
    """AC@1 of the re-weighted rankings over incidents with a confirmed root cause."""
    if not labelled:
        return None
    hits = 0
    for incident, truth in labelled:
        causes = [_RC(rc["score"], rc["indicators"], rc["service"]) for rc in incident.get("root_causes", [])]
        ranked = reorder(causes, weights)
        hits += bool(ranked) and ranked[0].service == truth
    return hits / len(labelled)


class _RC:
    __slots__ = ("indicators", "score", "service")

    def __init__(self, score: float, indicators: list[str], service: str) -> None:
        self.score, self.indicators, self.service = score, indicators, service
