"""The simulated system's call graph: services, backends and who calls whom.

The first eight services form a fixed, Online-Boutique-like shop so small scenarios read
naturally; larger graphs grow from it deterministically from a seed, keeping a DAG rooted at
``frontend``. Two backends, ``postgres`` and ``redis``, export nothing of their own: they exist
only as callers' CLIENT spans, which is how the engine has to discover unmonitored callees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["BACKENDS", "Edge", "Service", "Topology", "build_topology"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class Service:
    """One node of the graph; baseline figures the simulator perturbs.

    ``base_latency_s`` is the service's own median work per request, excluding callees.
    ``base_rps`` is its expected request rate at the reference entry rate (derived from edges).
    """

    name: str
    index: int
    base_latency_s: float
    base_rps: float
    cpu_base: float
    memory_base_bytes: int
    memory_limit_bytes: int
    version: str
    ip: str
    port: int
    monitored: bool = True
    db_system: str | None = None
    route: str = "/"
    method: str = "GET"


@dataclass(frozen=True)
class Edge:
    """A call from ``caller`` to ``callee``: made by a fraction ``p_call`` of caller requests.

    ``propagate`` is the chance a failed call fails the caller's request too (the rest are
    absorbed by retries or fallbacks).
    """

    caller: str
    callee: str
    p_call: float
    propagate: float = 0.8


@dataclass
class Topology:
    """Services by name, edges, and the orders the simulator walks them in."""

    services: dict[str, Service]
    edges: list[Edge]
    entry: str = "frontend"
    _out: dict[str, list[Edge]] = field(default_factory=dict, repr=False)
    _in: dict[str, list[Edge]] = field(default_factory=dict, repr=False)
    order: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._out = {name: [] for name in self.services}
        self._in = {name: [] for name in self.services}
        for e in self.edges:
            self._out[e.caller].append(e)
            self._in[e.callee].append(e)
        self.order = _topo_order(self.entry, self._out, list(self.services))

    def callees(self, name: str) -> list[Edge]:
        """Outgoing edges of ``name`` in call order."""
        return self._out[name]

    def callers(self, name: str) -> list[Edge]:
        """Incoming edges of ``name``."""
        return self._in[name]

    @property
    def monitored(self) -> list[str]:
        """Services that export their own telemetry, in graph order (callers first)."""
        return [n for n in self.order if self.services[n].monitored]

    @property
    def backends(self) -> list[str]:
        """Unmonitored services, seen only in callers' CLIENT spans."""
        return [n for n in self.order if not self.services[n].monitored]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view (services and edges) for static-config consumers and tests."""
        return {
            "services": [
                {"name": s.name, "monitored": s.monitored, "db_system": s.db_system}
                for s in (self.services[n] for n in self.order)
            ],
            "edges": [
                {"caller": e.caller, "callee": e.callee, "p_call": e.p_call} for e in self.edges
            ],
        }


def _topo_order(entry: str, out: dict[str, list[Edge]], names: list[str]) -> list[str]:
    indeg = {n: 0 for n in names}
    for edges in out.values():
        for e in edges:
            indeg[e.callee] += 1
    ready = [n for n in names if indeg[n] == 0]
    if ready != [entry]:
        raise ValueError(f"graph must have exactly one entry {entry!r}, got roots {ready}")
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for e in out[n]:
            indeg[e.callee] -= 1
            if indeg[e.callee] == 0:
                ready.append(e.callee)
    if len(order) != len(names):
        raise ValueError("call graph has a cycle")
    return order


# name, own latency (s), cpu base, memory base MiB, memory limit MiB, route, method
_CORE: list[tuple[str, float, float, int, int, str, str]] = [
    ("frontend", 0.008, 0.30, 420, 1024, "/", "GET"),
    ("catalog", 0.006, 0.22, 380, 1024, "/api/products", "GET"),
    ("cart", 0.004, 0.18, 300, 768, "/api/cart", "GET"),
    ("recommendation", 0.012, 0.35, 610, 1536, "/api/recommendations", "GET"),
    ("checkout", 0.015, 0.20, 350, 1024, "/api/checkout", "POST"),
    ("currency", 0.002, 0.25, 180, 512, "/api/convert", "GET"),
    ("payment", 0.030, 0.15, 260, 768, "/api/charge", "POST"),
    ("shipping", 0.010, 0.12, 240, 768, "/api/quote", "POST"),
]

# caller, callee, p_call: every core service is reached from frontend through earlier ones.
_CORE_EDGES: list[tuple[str, str, float]] = [
    ("frontend", "catalog", 0.9),
    ("frontend", "cart", 0.5),
    ("frontend", "recommendation", 0.6),
    ("frontend", "currency", 0.7),
    ("frontend", "checkout", 0.15),
    ("recommendation", "catalog", 1.0),
    ("checkout", "cart", 1.0),
    ("checkout", "currency", 1.0),
    ("checkout", "payment", 1.0),
    ("checkout", "shipping", 1.0),
    ("catalog", "postgres", 0.8),
    ("cart", "redis", 1.0),
    ("currency", "redis", 0.5),
    ("payment", "postgres", 1.0),
    ("checkout", "postgres", 1.0),
]

BACKENDS: dict[str, tuple[str, float, int, str]] = {
    # name: (db.system, own latency s, port, ip)
    "postgres": ("postgresql", 0.004, 5432, "10.0.9.10"),
    "redis": ("redis", 0.0008, 6379, "10.0.9.20"),
}

_EXTRA_NAMES = [
    "auth", "search", "inventory", "pricing", "ads", "email", "notification", "review",
    "user", "fraud", "loyalty", "tax", "invoice", "media", "session", "gateway", "profile",
    "wishlist", "coupon", "analytics",
]

ENTRY_RPS = 40.0


def build_topology(n_services: int = 8, seed: int = 0) -> Topology:
    """Build a DAG of ``n_services`` monitored services plus the two backends.

    Up to 8 services come from the fixed core (in order, so ``n_services=3`` is frontend,
    catalog, cart); beyond that, each new service gets one caller (sometimes two) among the
    earlier ones and maybe a backend, drawn from ``seed``. Same arguments, same graph.
    """
    if n_services < 1:
        raise ValueError("n_services must be >= 1")
    rng = np.random.default_rng([seed, 0x70_70])
    rows: list[tuple[str, float, float, int, int, str, str]] = list(_CORE[:n_services])
    names = [r[0] for r in rows]
    edges: list[tuple[str, str, float]] = [
        e for e in _CORE_EDGES if e[0] in names and (e[1] in names or e[1] in BACKENDS)
    ]
    for i in range(len(rows), n_services):
        name = _EXTRA_NAMES[i - 8] if i - 8 < len(_EXTRA_NAMES) else f"svc-{i:03d}"
        rows.append(
            (
                name,
                float(round(rng.uniform(0.002, 0.02), 4)),
                float(round(rng.uniform(0.08, 0.4), 3)),
                int(rng.integers(150, 700)),
                int(rng.choice([512, 768, 1024, 1536, 2048])),
                f"/api/{name}",
                "GET" if rng.random() < 0.7 else "POST",
            )
        )
        # Prefer shallow callers so traces stay a realistic depth.
        k = len(names)
        w = 1.0 / (1.0 + np.arange(k)) ** 0.5
        caller = names[int(rng.choice(k, p=w / w.sum()))]
        edges.append((caller, name, float(round(rng.uniform(0.3, 1.0), 2))))
        if k > 2 and rng.random() < 0.25:
            other = names[int(rng.integers(1, k))]
            if other != caller:
                edges.append((other, name, float(round(rng.uniform(0.1, 0.5), 2))))
        if rng.random() < 0.4:
            edges.append((name, "postgres" if rng.random() < 0.6 else "redis", 1.0))
        names.append(name)
    # Backends must hang off something even in tiny graphs.
    for backend in BACKENDS:
        if not any(e[1] == backend for e in edges):
            edges.append((names[-1], backend, 1.0))

    prop = rng.uniform(0.7, 0.9, size=len(edges))
    edge_objs = [Edge(c, d, p, float(round(pr, 2))) for (c, d, p), pr in zip(edges, prop)]
    rps = _rates(names + list(BACKENDS), edge_objs)
    services: dict[str, Service] = {}
    for i, (name, lat, cpu, mem, lim, route, method) in enumerate(rows):
        major, minor, patch = rng.integers(1, 4), rng.integers(0, 20), rng.integers(0, 10)
        services[name] = Service(
            name=name, index=i, base_latency_s=lat, base_rps=rps[name], cpu_base=cpu,
            memory_base_bytes=mem * MiB, memory_limit_bytes=max(lim, 2 * mem) * MiB,
            version=f"{major}.{minor}.{patch}", ip=f"10.0.{1 + i // 200}.{10 + i % 200}",
            port=8080, route=route, method=method,
        )
    for j, (name, (system, lat, port, ip)) in enumerate(BACKENDS.items()):
        services[name] = Service(
            name=name, index=len(rows) + j, base_latency_s=lat, base_rps=rps[name],
            cpu_base=0.0, memory_base_bytes=0, memory_limit_bytes=0, version="",
            ip=ip, port=port, monitored=False, db_system=system,
        )
    return Topology(services=services, edges=edge_objs)


def _rates(names: list[str], edges: list[Edge]) -> dict[str, float]:
    """Expected requests/s per service when the entry receives ``ENTRY_RPS``."""
    topo_out: dict[str, list[Edge]] = {n: [] for n in names}
    for e in edges:
        topo_out[e.caller].append(e)
    order = _topo_order("frontend", topo_out, names)
    rate = {n: 0.0 for n in names}
    rate["frontend"] = ENTRY_RPS
    for n in order:
        for e in topo_out[n]:
            rate[e.callee] += rate[n] * e.p_call
    return rate
