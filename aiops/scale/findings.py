"""What detect processes tell the incident stage: the wire format of ``aiops.anomalies`` and
``aiops.topology``.

In one process the pipeline calls its :class:`~aiops.correlate.incidents.IncidentManager`
directly. Scaled out, a detect process owns some telemetry partitions and the incident stage
owns correlation, so the same calls travel as records: a :class:`FindingsWriter` stands in for
the incident manager inside each partition's pipeline and turns one batch's calls into

- one **findings** record (to ``aiops.anomalies``): episodes that opened (with ``may_open``),
  series still anomalous (with their latest flagged time), forecast events, new change events
  and the partition's event-time watermark;
- a **progress** record (a findings record with nothing found) every checkpoint interval for
  each partition owned, saying whether the partition is ``caught_up`` (nothing left to read):
  a partition that is caught up cannot hold back anything older, while one with a backlog holds
  the incident stage's clock (:mod:`aiops.scale.stage`);
- one **topology** record (to ``aiops.topology``) when the partition's call graph or its set of
  monitored services changed: edge deltas (calls, errors since the last record) and new services.

Records are JSON objects with ``"v": 1``; non-finite numbers travel as null. The writer
remembers what it sent as part of its partition's snapshot, so a detect process that restarts
from a checkpoint re-sends only what followed it. Re-sent episodes carry the same ids (series @
onset), so the incident stage merges them rather than opening anything twice.

Cross-partition parent/child span links are not joined: edges come from CLIENT spans that name
their callee (``peer.service``, ``db.system`` + ``server.address``) and from parent/child pairs
that share a partition.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aiops.correlate.changes import ChangeIndex
from aiops.correlate.contract import Incident
from aiops.detect.episodes import Activity, Anomaly
from aiops.forecast.engine import Prediction
from aiops.forecast.slo import SloRule
from aiops.ingest.records import ChangeEvent
from aiops.rca.graph import DependencyGraph

VERSION = 1


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _real(x: Any) -> float:
    return math.nan if x is None else float(x)


def anomaly_row(a: Anomaly) -> list[Any]:
    return [a.series, a.service, a.first_seen, a.score, a.direction, a.value, _num(a.baseline), _num(a.previous)]


def anomaly_from(row: list[Any]) -> Anomaly:
    return Anomaly(str(row[0]), str(row[1]), int(row[2]), float(row[3]), int(row[4]), _real(row[5]),
                   _real(row[6]), _real(row[7]))  # fmt: skip


def prediction_doc(p: Prediction) -> dict[str, Any]:
    doc = asdict(p)
    doc["rule"] = p.rule.model_dump()
    for k in ("probability", "value", "baseline"):
        doc[k] = _num(doc[k])
    doc["fit"] = {k: _num(v) if isinstance(v, float) else v for k, v in p.fit.items()}
    return doc


def prediction_from(doc: dict[str, Any]) -> Prediction:
    fields = {**doc, "rule": SloRule.model_validate(doc["rule"])}
    for k in ("probability", "value", "baseline"):
        fields[k] = _real(doc[k])
    fields["fit"] = {k: math.nan if v is None else v for k, v in doc.get("fit", {}).items()}
    return Prediction(**fields)


@dataclass
class Findings:
    """One batch of one partition, as the incident stage applies it."""

    partition: int
    watermark: int
    opened: list[tuple[Anomaly, bool]] = field(default_factory=list)  # (episode, may_open)
    active: list[tuple[str, int]] = field(default_factory=list)  # (series, latest flagged ts) of ongoing episodes
    predictions: list[Prediction] = field(default_factory=list)
    changes: list[ChangeEvent] = field(default_factory=list)
    caught_up: bool = False  # the detect process had read everything in the partition


def progress(partition: int, watermark: int, caught_up: bool) -> dict[str, Any]:
    return {"v": VERSION, "type": "findings", "partition": partition, "watermark": watermark, "opened": [],
            "active": [], "predictions": [], "changes": [], "caught_up": caught_up}  # fmt: skip


@dataclass
class Topology:
    partition: int
    edges: list[tuple[str, str, int, int, int]] = field(default_factory=list)  # caller, callee, +calls, +errors, last seen
    services: list[str] = field(default_factory=list)  # services with series of their own


class FindingsWriter:
    """A detect partition's correlator: records what it is told, never returns incidents itself."""

    def __init__(self, changes: ChangeIndex, graph: DependencyGraph, own: set[str]) -> None:
        self._changes, self._graph, self._own = changes, graph, own
        self.partition = -1  # set by the owner once it knows which partition this pipeline is
        self._opened: list[list[Any]] = []
        self._active: dict[str, list[Any]] = {}
        self._predictions: list[dict[str, Any]] = []
        self._sent_edges: dict[str, list[int]] = {}  # "caller\tcallee" -> [calls, errors] already sent
        self._sent_changes: set[str] = set()
        self._sent_services: set[str] = set()
        self._watermark = 0  # the latest one sent
        self.records: list[tuple[str, dict[str, Any]]] = []  # ("findings" | "topology", record): the owner drains

    def on_activity(self, activity: Activity, keys: list[str], may_open: bool = True) -> list[Incident]:
        self._opened.extend([*anomaly_row(a), may_open] for a in activity.opened)
        for a in activity.opened:
            self._active.pop(a.series, None)
        if len(activity.active_ids):
            opened = {a.series for a in activity.opened}
            for j, ts in zip(activity.active_ids.tolist(), activity.active_ts.tolist(), strict=True):
                key = keys[j]
                if key not in opened:
                    self._active[key] = [key, max(ts, self._active.get(key, [key, 0])[1])]
        return []

    def on_predictions(self, predictions: list[Prediction]) -> list[Incident]:
        self._predictions.extend(prediction_doc(p) for p in predictions)
        return []

    def tick(self, watermark: int) -> list[Incident]:
        """The end of a batch: whatever it found becomes records."""
        changes = [[c.ts, c.service, c.kind, c.version, c.attributes] for c in self._new_changes()]
        if self._opened or self._active or self._predictions or changes or watermark > self._watermark:
            self.records.append(("findings", {
                "v": VERSION, "type": "findings", "partition": self.partition, "watermark": watermark,
                "opened": self._opened, "active": list(self._active.values()), "predictions": self._predictions,
                "changes": changes,
            }))  # fmt: skip
            self._opened, self._active, self._predictions = [], {}, []
            self._watermark = max(self._watermark, watermark)
        edges, services = self._edge_deltas(), sorted(self._own - self._sent_services)
        if edges or services:
            self.records.append(("topology", {"v": VERSION, "type": "topology", "partition": self.partition,
                                              "edges": edges, "services": services}))  # fmt: skip
            self._sent_services.update(services)
        return []

    def _new_changes(self) -> list[ChangeEvent]:
        """Changes not sent yet; what the index has pruned is forgotten here too."""
        new, held = [], set()
        for ts, service, kind, version, attributes in self._changes.state():
            key = f"{service}\t{ts}\t{version}"
            held.add(key)
            if key not in self._sent_changes:
                new.append(ChangeEvent(int(ts), service, kind, version, attributes))
        self._sent_changes = held
        return new

    def _edge_deltas(self) -> list[list[Any]]:
        out = []
        for u, v, e in self._graph.g.edges(data=True):
            if not e["calls"]:
                continue  # pinned by a topology file only: the incident stage reads that file itself
            key = f"{u}\t{v}"
            calls, errors = self._sent_edges.get(key, (0, 0))
            if e["calls"] < calls:  # aged out and seen again: counting restarted
                calls = errors = 0
            if e["calls"] > calls:
                out.append([u, v, e["calls"] - calls, max(0, e["errors"] - errors), e["last_seen"]])
                self._sent_edges[key] = [e["calls"], e["errors"]]
        return out

    def state(self) -> dict[str, Any]:
        return {"partition": self.partition, "sent_edges": self._sent_edges, "sent_changes": sorted(self._sent_changes),
                "sent_services": sorted(self._sent_services), "watermark": self._watermark}  # fmt: skip

    def load_state(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.partition = int(state["partition"])
        self._sent_edges = {k: list(v) for k, v in state["sent_edges"].items()}
        self._sent_changes = set(state["sent_changes"])
        self._sent_services = set(state["sent_services"])
        self._watermark = int(state["watermark"])


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


def decode(payload: bytes) -> Findings | Topology:
    """One record; anything malformed raises ValueError (the caller dead-letters it with the reason)."""
    try:
        doc = json.loads(payload)
        if not isinstance(doc, dict) or doc.get("v") != VERSION:
            raise ValueError(f"not a version {VERSION} findings/topology record")
        p = int(doc["partition"])
        if doc["type"] == "topology":
            return Topology(p, [(str(u), str(v), int(c), int(e), int(t)) for u, v, c, e, t in doc["edges"]],
                            [str(s) for s in doc["services"]])  # fmt: skip
        if doc["type"] != "findings":
            raise ValueError(f"unknown record type {doc['type']!r}")
        return Findings(
            p, int(doc["watermark"]),
            [(anomaly_from(row[:8]), bool(row[8])) for row in doc["opened"]],
            [(str(k), int(ts)) for k, ts in doc["active"]],
            [prediction_from(d) for d in doc["predictions"]],
            [ChangeEvent(int(ts), str(s), str(k), str(v), dict(a)) for ts, s, k, v, a in doc["changes"]],
            bool(doc.get("caught_up", False)),
        )  # fmt: skip
    except ValueError:
        raise
    except Exception as e:  # a wrong shape fails in any field, in any way
        raise ValueError(f"malformed findings record: {type(e).__name__}: {e}") from e


def activity(opened: list[Anomaly], ids: np.ndarray, ts: np.ndarray) -> Activity:
    """An :class:`Activity` rebuilt on the incident stage's own series ids."""
    return Activity(opened, ids, ts, np.ones(len(ids)))
