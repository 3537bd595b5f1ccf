"""Which series an incident page charts, and what to mark on them and on the graph.

The store keeps when each anomaly was first seen, not when its episode ended, so a series' span
runs from its first anomaly to the incident's resolution (or to the latest point while it is
open): the time that series was part of the incident.
"""

from __future__ import annotations

from typing import Any

MAX_CHARTS = 4


def evidence_series(record: dict[str, Any], limit: int = MAX_CHARTS) -> list[str]:
    """The series that explain the incident best: the forecast one, then the top root causes'
    indicators in rank order, then the other anomalies by score."""
    keys: list[str] = []
    if record.get("forecast"):
        keys.append(record["forecast"]["series"])
    for rc in record.get("root_causes", []):
        keys += rc.get("indicators", [])
    keys += [a["series"] for a in sorted(record.get("anomalies", []), key=lambda a: -a["score"])]
    return list(dict.fromkeys(keys))[:limit]


def spans(record: dict[str, Any], key: str, last_ts: int) -> list[tuple[int, int]]:
    """Shaded intervals of ``key``: from each of its anomalies' onset to the incident's end."""
    end = record["updated_at_unix_nano"] if record["status"] == "resolved" else last_ts
    return [(a["first_seen_unix_nano"], max(end, a["first_seen_unix_nano"]))
            for a in record.get("anomalies", []) if a["series"] == key]  # fmt: skip


def threshold(record: dict[str, Any], key: str) -> float | None:
    """The SLO line of the forecast series, if ``key`` is it."""
    f = record.get("forecast")
    return float(f["threshold"]) if f and f["series"] == key else None


def edge_of(series: str) -> tuple[str, str] | None:
    """The call a per-edge series measures: ``caller/…{peer=callee}`` or ``{peer.service=callee}``.

    >>> edge_of("frontend/span.client.duration:p99{peer=cart}")
    ('frontend', 'cart')
    >>> edge_of("cart/process.cpu.utilization") is None
    True
    """
    head, _, attrs = series.partition("{")
    for pair in attrs.rstrip("}").split(",") if attrs else ():
        name, _, callee = pair.partition("=")
        if name in ("peer", "peer.service") and callee:
            return head.split("/", 1)[0], callee
    return None


def hot_edges(record: dict[str, Any]) -> set[tuple[str, str]]:
    """Calls with an anomaly on their own series, plus calls between two anomalous services."""
    edges = {e for a in record.get("anomalies", []) if (e := edge_of(a["series"])) is not None}
    services = set(record.get("services", []))
    return edges | {(u, v) for u in services for v in services if u != v}


def candidates(record: dict[str, Any]) -> list[str]:
    """Root-cause services, best first."""
    return [rc["service"] for rc in record.get("root_causes", [])]
