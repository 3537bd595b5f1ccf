"""Ranking cost on a large dependency graph: seconds per incident.

    python benchmarks/rca_cost.py [--services 1000] [--anomalous 200]

A random layered call graph (each service calls 1-4 services of deeper layers), a fault at a deep
service whose symptoms climb to its transitive callers (``--anomalous`` of them, several series
each), then the full incident path: grouping every anomaly (graph connectivity checks) and
ranking the incident. Best of 5 runs; one core. Target (issue #4): <= 1 s per incident.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _history import report  # noqa: E402

from aiops.correlate.changes import ChangeIndex  # noqa: E402
from aiops.correlate.incidents import IncidentManager  # noqa: E402
from aiops.detect.episodes import Activity, Anomaly  # noqa: E402
from aiops.rca.graph import DependencyGraph  # noqa: E402
from aiops.rca.rank import rank  # noqa: E402

NS = 1_000_000_000


def build(services: int, seed: int) -> DependencyGraph:
    rng = np.random.default_rng(seed)
    layers = np.sort(rng.integers(0, 8, services))
    graph = DependencyGraph()
    for i in range(services):
        deeper = np.flatnonzero(layers > layers[i])
        for j in rng.choice(deeper, size=min(len(deeper), int(rng.integers(1, 5))), replace=False) if len(deeper) else []:
            graph.g.add_edge(f"s{i}", f"s{j}", calls=1, errors=0, last_seen=0, pinned=True)
    return graph


def anomalies_for(graph: DependencyGraph, count: int, per_service: int, seed: int) -> list[Anomaly]:
    rng = np.random.default_rng(seed)
    deep = [n for n in graph.g if graph.g.out_degree(n) == 0 and graph.g.in_degree(n) > 0]
    root = deep[int(rng.integers(len(deep)))]
    affected = [root] + [n for n in nx.bfs_tree(graph.g.reverse(copy=False), root) if n != root]
    affected = affected[:count]
    t0 = 1_700_000_000 * NS
    out = []
    for depth, svc in enumerate(affected):
        for k in range(per_service):
            out.append(Anomaly(f"{svc}/metric{k}", svc, t0 + depth * NS, 0.6 + 0.4 * float(rng.random()), 1, 2.0, 1.0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--anomalous", type=int, default=200)
    ap.add_argument("--series", type=int, default=5, help="anomalous series per affected service")
    args = ap.parse_args()
    graph = build(args.services, 0)
    anomalies = anomalies_for(graph, args.anomalous, args.series, 1)
    keys = [a.series for a in anomalies]
    empty = np.zeros(0, dtype=np.int64)

    def incident_path() -> int:
        manager = IncidentManager(ChangeIndex(), graph)
        published = manager.on_activity(Activity(anomalies, empty, empty, np.zeros(0)), keys)
        return len(published)

    best_rank, best_path = float("inf"), float("inf")
    for _ in range(5):
        t = time.perf_counter()
        ranked = rank(anomalies, graph, ChangeIndex(), lambda _: True)
        best_rank = min(best_rank, time.perf_counter() - t)
        t = time.perf_counter()
        incident_path()
        best_path = min(best_path, time.perf_counter() - t)
    figures = {
        "services": graph.g.number_of_nodes(),
        "edges": graph.g.number_of_edges(),
        "anomalous_services": len({a.service for a in anomalies}),
        "anomalies": len(anomalies),
        "top_is_root": int(ranked[0].service == anomalies[0].service),
        "rank_s": round(best_rank, 4),
        "group_and_rank_s": round(best_path, 4),
    }
    report("rca_cost", vars(args), f"random layered graph seed=0 services={args.services}", "synthetic", figures)


if __name__ == "__main__":
    main()
