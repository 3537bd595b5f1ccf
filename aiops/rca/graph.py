"""The service dependency graph, learned online from spans (caller → callee).

Two kinds of evidence make an edge:

- a CLIENT span that names its callee (``peer.service``, or ``db.system`` + ``server.address``):
  the only way a backend that exports nothing of its own (a database, a cache) becomes a node;
- a span whose parent span belongs to another service. Spans arrive in any order, so a child
  whose parent has not been seen waits (bounded) until the parent shows up.

Edges keep call and error counts and the event time they were last seen; an edge unseen for
``ttl_s`` ages out unless a static topology file pinned it. The graph is a networkx ``DiGraph``
so ranking can use its algorithms directly.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from aiops.ingest.aggregate import CLIENT, callee_of
from aiops.ingest.records import Span


class DependencyGraph:
    """Caller → callee edges with ``calls``, ``errors``, ``last_seen`` (ns) and ``pinned``."""

    def __init__(self, ttl_s: float = 3600.0, max_spans: int = 200_000, max_pending: int = 50_000) -> None:
        self.ttl = int(ttl_s * 1e9)
        self.max_spans = max_spans
        self.max_pending = max_pending
        self.g = nx.DiGraph()
        self._spans: OrderedDict[str, str] = OrderedDict()  # span id -> service (recent, bounded)
        self._pending: OrderedDict[str, list[tuple[str, int, bool]]] = OrderedDict()  # parent id -> children

    # --- learning -------------------------------------------------------------------------------
    def observe(self, spans: list[Span]) -> None:
        for s in spans:
            if s.kind == CLIENT and (callee := callee_of(s)) and callee != s.service:
                self._edge(s.service, callee, s.end_ts, s.error)
            self._remember(s.span_id, s.service)
            for child_service, ts, error in self._pending.pop(s.span_id, ()):
                if child_service != s.service:
                    self._edge(s.service, child_service, ts, error)
            if s.parent_span_id:
                parent = self._spans.get(s.parent_span_id)
                if parent is None:
                    self._wait(s.parent_span_id, (s.service, s.end_ts, s.error))
                elif parent != s.service:
                    self._edge(parent, s.service, s.end_ts, s.error)

    def _remember(self, span_id: str, service: str) -> None:
        self._spans[span_id] = service
        if len(self._spans) > self.max_spans:
            self._spans.popitem(last=False)

    def _wait(self, parent_id: str, child: tuple[str, int, bool]) -> None:
        self._pending.setdefault(parent_id, []).append(child)
        if len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)  # the oldest orphans: their parents are not coming

    def _edge(self, caller: str, callee: str, ts: int, error: bool) -> None:
        self.merge(caller, callee, 1, int(error), ts)

    def merge(self, caller: str, callee: str, calls: int, errors: int, last_seen: int) -> None:
        """Count ``calls`` (``errors`` of them failed) on an edge, last seen at ``last_seen``: how a
        scaled-out incident stage adds what each detect partition's graph learned."""
        if self.g.has_edge(caller, callee):
            e = self.g[caller][callee]
            e["calls"] += calls
            e["errors"] += errors
            e["last_seen"] = max(e["last_seen"], last_seen)
        else:
            self.g.add_edge(caller, callee, calls=calls, errors=errors, last_seen=last_seen, pinned=False)

    def prune(self, watermark: int) -> list[tuple[str, str]]:
        """Drop edges unseen for ``ttl_s`` (not pinned ones) and nodes left without edges."""
        old = [(u, v) for u, v, e in self.g.edges(data=True) if not e["pinned"] and watermark - e["last_seen"] > self.ttl]
        self.g.remove_edges_from(old)
        self.g.remove_nodes_from([n for n in list(self.g.nodes) if self.g.degree(n) == 0 and not self.g.nodes[n].get("pinned")])
        return old

    def load_static(self, path: str | Path) -> None:
        """Add pinned edges from a topology file: ``{"edges": [[caller, callee], ...]}`` (JSON or YAML)."""
        text = Path(path).read_text()
        doc = yaml.safe_load(text) if Path(path).suffix in (".yaml", ".yml") else json.loads(text)
        for caller, callee in doc.get("edges", []):
            if self.g.has_edge(caller, callee):
                self.g[caller][callee]["pinned"] = True
            else:
                self.g.add_edge(str(caller), str(callee), calls=0, errors=0, last_seen=0, pinned=True)
        for node in doc.get("nodes", []):
            self.g.add_node(str(node), pinned=True)

    # --- reading --------------------------------------------------------------------------------
    def callers(self, service: str) -> list[str]:
        return list(self.g.predecessors(service)) if service in self.g else []

    def callees(self, service: str) -> list[str]:
        return list(self.g.successors(service)) if service in self.g else []

    def connected(self, a: str, b: str, hops: int = 2) -> bool:
        """Within ``hops`` of each other, either direction (a symptom can sit two calls away)."""
        if a == b:
            return True
        if a not in self.g or b not in self.g:
            return False
        und = self.g.to_undirected(as_view=True)
        return b in nx.single_source_shortest_path_length(und, a, cutoff=hops)

    # --- state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "edges": [[u, v, e["calls"], e["errors"], e["last_seen"], e["pinned"]] for u, v, e in self.g.edges(data=True)],
            "nodes": [n for n, d in self.g.nodes(data=True) if d.get("pinned")],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.g = nx.DiGraph()
        for u, v, calls, errors, last_seen, pinned in state["edges"]:
            self.g.add_edge(u, v, calls=int(calls), errors=int(errors), last_seen=int(last_seen), pinned=bool(pinned))
        for n in state.get("nodes", []):
            self.g.add_node(n, pinned=True)
