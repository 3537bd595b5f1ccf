"""One window's log records as one ``ExportLogsServiceRequest``.

Messages follow a few fixed templates with variable parts (ids, durations, ip:port), as real
services log, so template mining has something to find: sampled INFO access logs, background
chatter, WARN for slow requests and resource pressure, ERROR for failed requests attributed to
their cause (own bug, failing callee, vanished callee), plus deployment change events.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._model import Model, ServiceWindow
from ._otlp import SCOPE, SEVERITY, dumps, kv_str, resource
from ._rng import Draws

__all__ = ["LogBuilder", "deployment_record", "log_record"]

MiB = 1024 * 1024
ERROR_LOG_SAMPLE = 0.3
SLOW_LOG_SAMPLE = 0.1
_CAP_ERR, _CAP_SLOW, _CAP_ACCESS = 25, 15, 10


def log_record(ts_ns: int, level: str, body: str,
               attributes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An OTLP ``LogRecord`` dict."""
    t = str(ts_ns)
    rec: dict[str, Any] = {"timeUnixNano": t, "observedTimeUnixNano": t,
                           "severityNumber": SEVERITY[level], "severityText": level,
                           "body": {"stringValue": body}}
    if attributes:
        rec["attributes"] = attributes
    return rec


class LogBuilder:
    """Builds one window's logs from the sampled requests; keeps no state between windows."""

    def __init__(self, model: Model, draws: Draws, access_log_rate: float) -> None:
        self.model = model
        self.topo = model.topo
        self.d = draws
        self.access_rate = access_log_rate

    def build(
        self, w: dict[str, ServiceWindow], a_ns: int, step_ns: int,
        samples: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]],
        extra: dict[str, list[dict[str, Any]]], versions: dict[str, str],
    ) -> bytes | None:
        """Logs of every running service for ``[a_ns, a_ns + step_ns)``; None if there are none.

        ``extra`` holds ready records (deployments, restarts) by service.
        """
        groups = []
        for name in self.topo.monitored:
            recs = list(extra.get(name, ()))
            if name in samples:
                self._service_logs(name, w, a_ns, step_ns, samples[name], recs)
            if not recs:
                continue
            recs.sort(key=lambda r: int(r["timeUnixNano"]))
            groups.append({"resource": resource(name, versions[name]),
                           "scopeLogs": [{"scope": SCOPE, "logRecords": recs}]})
        if not groups:
            return None
        return dumps({"resourceLogs": groups})

    # -- per service -------------------------------------------------------------------------

    def _service_logs(
        self, name: str, w: dict[str, ServiceWindow], a_ns: int, step_ns: int,
        sample: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]], out: list[dict[str, Any]],
    ) -> None:
        d, topo = self.d, self.topo
        svc, sw = topo.services[name], w[name]
        lat, err, _client = sample
        n = int(lat.size)

        def ts() -> int:
            return a_ns + int(d.u() * step_ns)

        callers = [topo.services[e.caller].ip for e in topo.callers(name)] or ["10.0.0.2"]
        for _ in range(min(_CAP_ACCESS, d.poisson(n * self.access_rate)) if n else 0):
            i = int(d.u() * n)
            status = 500 if err[i] else 200
            out.append(log_record(ts(), "INFO",
                f'{d.choice(callers)}:{d.randint(32768, 60999)} - "{svc.method} {svc.route} '
                f'HTTP/1.1" {status} {lat[i] * 1000:.1f}ms request_id={d.hex(8)}'))
        for _ in range(d.poisson(0.3)):
            out.append(log_record(ts(), "INFO", self._chatter()))
        callees = topo.callees(name)
        if callees and d.u() < 0.03:
            e = callees[int(d.u() * len(callees))]
            c = topo.services[e.callee]
            out.append(log_record(ts(), "WARN",
                f"Retrying request to {c.name} at {c.ip}:{c.port} (attempt 2/3) after "
                f"{d.randint(20, 400)}ms"))

        n_err = int(err.sum())
        k = min(_CAP_ERR, int(d.rng.binomial(n_err, ERROR_LOG_SAMPLE))) if n_err else 0
        if k:
            causes, weights = self._error_causes(name, w)
            total = sum(weights)
            for _ in range(k):
                r, acc, pick = d.u() * total, 0.0, causes[-1]
                for c, wt in zip(causes, weights):
                    acc += wt
                    if r < acc:
                        pick = c
                        break
                out.append(log_record(ts(), "ERROR", self._error_message(name, pick, w)))

        base = self.model.baseline[name]
        thr = 4.0 * base.lat_med
        slow = lat[lat > thr]
        k = min(_CAP_SLOW, int(d.rng.binomial(slow.size, SLOW_LOG_SAMPLE))) if slow.size else 0
        if k:
            culprit = self._slow_culprit(name, w)
            for _ in range(k):
                ms = float(slow[int(d.u() * slow.size)]) * 1000
                out.append(log_record(ts(), "WARN", self._slow_message(name, culprit, ms, thr)))

        if sw.cpu > 0.85 and d.u() < 0.7:
            out.append(log_record(ts(), "WARN",
                f"Worker pool saturated: {d.randint(60, 64)}/64 workers busy, "
                f"{d.randint(20, 500)} requests queued"))
        ratio = sw.memory / svc.memory_limit_bytes
        if ratio > 0.8:
            out.append(log_record(ts(), "WARN",
                f"High memory usage: {sw.memory // MiB}MiB of {svc.memory_limit_bytes // MiB}MiB "
                f"({ratio * 100:.0f}%), GC pause {d.randint(50, 900)}ms"))
        if ratio > 0.93 and d.u() < 0.5:
            out.append(log_record(ts(), "ERROR",
                f"Memory allocation of {d.randint(1, 64) * 65536} bytes failed: heap "
                f"{ratio * 100:.0f}% full, request_id={d.hex(8)}"))

    def _chatter(self) -> str:
        d = self.d
        i = int(d.u() * 4)
        if i == 0:
            return f"Health check passed in {d.randint(1, 30)}ms"
        if i == 1:
            return (f"Cache refresh completed: {d.randint(100, 20000)} entries in "
                    f"{d.randint(5, 900)}ms")
        if i == 2:
            return (f"Connection pool stats: active={d.randint(0, 40)} "
                    f"idle={d.randint(0, 20)} max=50")
        return f"Flushed {d.randint(10, 500)} spans to collector in {d.randint(1, 80)}ms"

    def _error_causes(
        self, name: str, w: dict[str, ServiceWindow]
    ) -> tuple[list[str], list[float]]:
        causes, weights = [""], [w[name].own_err]
        for e in self.topo.callees(name):
            c_err = self.model.client_view(e, w)[1]
            causes.append(e.callee)
            weights.append(e.p_call * e.propagate * c_err)
        return causes, weights

    def _error_message(self, name: str, cause: str, w: dict[str, ServiceWindow]) -> str:
        d, svc = self.d, self.topo.services[name]
        rid = d.hex(8)
        if not cause:
            if "bad_release" in w[name].effect.kinds:
                cls = name.title().replace("-", "")
                if d.u() < 0.6:
                    return (f"NullPointerException at {cls}Handler.handle({cls}Handler.java:"
                            f"{d.randint(80, 420)}) request_id={rid}")
                return f"Failed to decode field 'price_v2' for request {rid}: unexpected null"
            if d.u() < 0.5:
                return (f"Failed to process request {rid}: internal error "
                        f"code={d.randint(1000, 1099)}")
            return (f"Transaction {d.hex(6)} rolled back after {d.randint(5, 900)}ms: "
                    f"constraint check failed (request_id={rid})")
        c, cw = self.topo.services[cause], w[cause]
        addr = f"{c.ip}:{c.port}"
        if cw.crashed:
            if not c.monitored:
                return f"Could not connect to {c.db_system} at {addr}: Connection refused"
            if d.u() < 0.5:
                return (f"Request to {c.name} at {addr} timed out after 1000ms "
                        f"(request_id={rid})")
            return f"Failed to connect to {c.name} at {addr}: connection refused (request_id={rid})"
        if not c.monitored:
            return (f"Query failed on {c.db_system} {addr}: server closed the connection "
                    f"unexpectedly (request_id={rid})")
        return (f"Upstream {c.name} returned HTTP 500 for {svc.method} {svc.route} after "
                f"{d.randint(2, 300)}ms (request_id={rid})")

    def _slow_culprit(self, name: str, w: dict[str, ServiceWindow]) -> str:
        """The callee (or "" for own work) that added most latency over the baseline."""
        base = self.model.baseline
        # A callee is blamed only for a material slowdown; tail noise is the service's own.
        best, delta = "", max(w[name].own_med - base[name].own_med, 0.1 * base[name].lat_med)
        for e in self.topo.callees(name):
            now = self.model.client_view(e, w)[0]
            was = self.model.client_view(e, base)[0]
            if e.p_call * (now - was) > delta:
                best, delta = e.callee, e.p_call * (now - was)
        return best

    def _slow_message(self, name: str, culprit: str, ms: float, thr: float) -> str:
        d, svc = self.d, self.topo.services[name]
        if not culprit:
            return (f"Slow request {svc.method} {svc.route} took {ms:.0f}ms (threshold "
                    f"{thr * 1000:.0f}ms) request_id={d.hex(8)}")
        c = self.topo.services[culprit]
        addr = f"{c.ip}:{c.port}"
        if c.db_system == "postgresql":
            return (f"Slow query on postgresql {addr} took {ms:.0f}ms: SELECT rows="
                    f"{d.randint(1, 5000)} request_id={d.hex(8)}")
        if c.db_system:
            return f"Slow {c.db_system} command on {addr} took {ms:.0f}ms key=session:{d.hex(6)}"
        return f"Slow response from {c.name} at {addr}: {ms:.0f}ms for request {d.hex(8)}"


def deployment_record(ts_ns: int, service: str, version: str, previous: str,
                      rollback: bool = False) -> dict[str, Any]:
    """A change event: ``event.name=deployment`` with the new ``service.version``."""
    verb = "Rolled back" if rollback else "Deployed"
    return log_record(ts_ns, "INFO",
        f"{verb} {service} to version {version} (previous {previous})",
        [kv_str("event.name", "deployment"), kv_str("service.version", version),
         kv_str("deployment.previous_version", previous)])
