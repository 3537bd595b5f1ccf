"""Sampled traces for one window as one ``ExportTraceServiceRequest``.

Each trace walks the call graph from the entry: a SERVER span per visited service, a CLIENT
span per call (``peer.service`` for services; ``db.system`` + ``server.address`` for the
databases, which get no SERVER span because they export nothing). Durations nest: a server
span lasts its own work plus its sequential client calls, so trace latency matches the metrics
model; a failed call fails its caller with the edge's propagation probability.
"""

from __future__ import annotations

from typing import Any

from ._model import NET_S, REFUSED_S, TIMEOUT_S, Model, ServiceWindow
from ._otlp import (
    SCOPE,
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    dumps,
    kv_int,
    kv_str,
    resource,
)
from ._rng import Draws

__all__ = ["TraceBuilder"]

_OK: dict[str, Any] = {}
_PG_TABLES = {"catalog": "products", "payment": "payments", "checkout": "orders"}
_PG_OPS = ["SELECT", "SELECT", "SELECT", "INSERT", "UPDATE"]
_REDIS_OPS = ["GET", "GET", "HGETALL", "SET", "EXPIRE"]


class TraceBuilder:
    """Builds one window's traces; keeps no state between windows."""

    def __init__(self, model: Model, draws: Draws) -> None:
        self.model = model
        self.topo = model.topo
        self.d = draws

    def build(
        self, w: dict[str, ServiceWindow], a_ns: int, span_ns: int, n_traces: int,
        versions: dict[str, str],
    ) -> bytes | None:
        """``n_traces`` traces starting inside ``[a_ns, a_ns + span_ns)``; None if no spans."""
        entry = self.topo.entry
        if w[entry].crashed or n_traces <= 0:
            return None
        self._w = w
        self._spans: dict[str, list[dict[str, Any]]] = {}
        for _ in range(n_traces):
            t0 = a_ns + int(self.d.u() * span_ns)
            self._visit(entry, self.d.hex(16), None, t0)
        groups = [
            {"resource": resource(name, versions[name]),
             "scopeSpans": [{"scope": SCOPE, "spans": self._spans[name]}]}
            for name in self.topo.order if name in self._spans
        ]
        self._spans = {}
        return dumps({"resourceSpans": groups})

    def _visit(self, name: str, trace_id: str, parent: str | None, start: int) -> tuple[int, bool]:
        """Emit ``name``'s SERVER span and its calls; return (duration ns, failed)."""
        d, w, svc = self.d, self._w, self.topo.services[name]
        sw = w[name]
        span_id = d.hex(8)
        own = self.model.own_latency(sw, d.n(), d.n() if sw.added_s else 0.0)
        cursor = start + int(own * 0.3e9)
        own_fail = d.u() < sw.own_err
        failed = own_fail
        out = self._spans.setdefault(name, [])
        for e in self.topo.callees(name):
            if d.u() >= e.p_call:
                continue
            callee = self.topo.services[e.callee]
            cw = w[e.callee]
            cid = d.hex(8)
            attrs: list[dict[str, Any]]
            if callee.monitored:
                span_name = f"{callee.method} {callee.route}"
                attrs = [kv_str("peer.service", callee.name), kv_str("server.address", callee.name),
                         kv_int("server.port", callee.port),
                         kv_str("http.request.method", callee.method)]
            else:
                span_name, attrs = self._db_call(name, callee.name, callee.db_system or "",
                                                 callee.port)
            message = ""
            if cw.crashed:
                timeout = d.u() < 0.5
                dur = int((TIMEOUT_S if timeout else REFUSED_S) * 1e9)
                c_fail = True
                message = (f"timeout after {int(TIMEOUT_S * 1000)}ms" if timeout
                           else f"connect ECONNREFUSED {callee.ip}:{callee.port}")
            elif callee.monitored:
                child_dur, c_fail = self._visit(e.callee, trace_id, cid, cursor + int(NET_S * 5e8))
                dur = child_dur + int(NET_S * 1e9)
                attrs.append(kv_int("http.response.status_code", 500 if c_fail else 200))
                if c_fail:
                    message = "HTTP 500"
            else:
                z2 = d.n() if cw.added_s else 0.0
                dur = int((self.model.own_latency(cw, d.n(), z2) + NET_S) * 1e9)
                c_fail = d.u() < cw.own_err
                if c_fail:
                    message = f"{callee.db_system} error: server closed the connection"
            out.append({
                "traceId": trace_id, "spanId": cid, "parentSpanId": span_id, "name": span_name,
                "kind": SPAN_KIND_CLIENT, "startTimeUnixNano": str(cursor),
                "endTimeUnixNano": str(cursor + dur), "attributes": attrs,
                "status": {"code": STATUS_ERROR, "message": message} if c_fail else _OK,
            })
            cursor += dur + int(d.u() * 2e5)
            if c_fail and d.u() < e.propagate:
                failed = True
        end = cursor + int(own * 0.7e9)
        span: dict[str, Any] = {
            "traceId": trace_id, "spanId": span_id, "name": f"{svc.method} {svc.route}",
            "kind": SPAN_KIND_SERVER, "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
            "attributes": [kv_str("http.request.method", svc.method),
                           kv_str("http.route", svc.route),
                           kv_int("http.response.status_code", 500 if failed else 200)],
            "status": {"code": STATUS_ERROR, "message": "Internal Server Error"} if failed
            else _OK,
        }
        if parent is not None:
            span["parentSpanId"] = parent
        if own_fail:
            exc = ("NullPointerException" if "bad_release" in sw.effect.kinds
                   else "RuntimeError")
            span["events"] = [{"timeUnixNano": str(end), "name": "exception", "attributes": [
                kv_str("exception.type", exc),
                kv_str("exception.message", f"request {d.hex(4)} failed in {svc.route}")]}]
        out.append(span)
        return end - start, failed

    def _db_call(self, caller: str, db: str, system: str, port: int
                 ) -> tuple[str, list[dict[str, Any]]]:
        d = self.d
        if system == "redis":
            op = d.choice(_REDIS_OPS)
            return op, [kv_str("peer.service", db), kv_str("db.system", system),
                        kv_str("server.address", db), kv_int("server.port", port),
                        kv_str("db.operation.name", op), kv_str("db.namespace", "0")]
        op = d.choice(_PG_OPS)
        table = _PG_TABLES.get(caller, caller.replace("-", "_"))
        return f"{op} shop.{table}", [
            kv_str("db.system", system), kv_str("server.address", db), kv_int("server.port", port),
            kv_str("db.operation.name", op), kv_str("db.namespace", "shop"),
            kv_str("db.collection.name", table)]
