"""The simulator's control API: what ``kubectl`` is to a cluster, for the demo's playbooks.

A small stdlib HTTP server on 127.0.0.1 (a free port unless given) bound to a running
:class:`~aiops.sim.simulator.Simulator`. Playbook scripts with ``AIOPS_EXECUTOR__TARGET=sim``
call it, so an approved remediation visibly changes the simulated telemetry:

    GET  /state                                       replicas, version and canary weight per service
    POST /scale     {"service": s, "replicas": n}     per-replica load falls; the rollout restarts it
    POST /traffic   {"service": s, "canary_weight": w}  w % to the newest release (0..100)
    POST /rollback  {"service": s, "version": v?}     ends an active bad release; a deployment event
    POST /fault     {"service": s, "kind": k, "duration_s": d, "magnitude": m?, "ramp_s": r?}
                                                      injects a fault now (the demo's on-demand faults)

Answers are JSON; a bad request gets 400 and an unknown service 404, with ``{"error": ...}``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from aiops.sim.simulator import Simulator

__all__ = ["ControlServer"]


class ControlServer:
    """Serves :class:`Simulator`'s operator controls until :meth:`close` (or the ``with`` block ends)."""

    def __init__(self, sim: Simulator, port: int = 0) -> None:
        self.sim = sim
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(sim))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="sim-control", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(sim: Simulator) -> type[BaseHTTPRequestHandler]:
    routes: dict[str, tuple[tuple[str, ...], Any]] = {  # path: (required fields, call)
        "/scale": (("service", "replicas"), lambda b: sim.scale(str(b["service"]), int(b["replicas"]))),
        "/traffic": (("service", "canary_weight"),
                     lambda b: sim.shift_traffic(str(b["service"]), float(b["canary_weight"]))),
        "/rollback": (("service",), lambda b: sim.rollback(str(b["service"]), b.get("version") and str(b["version"]))),
        "/fault": (("service", "kind", "duration_s"),
                   lambda b: sim.inject(str(b["service"]), str(b["kind"]), float(b["duration_s"]),
                                        None if b.get("magnitude") is None else float(b["magnitude"]),
                                        float(b.get("ramp_s") or 0.0))),
    }  # fmt: skip

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/state":
                self._reply(200, sim.control_state())
            else:
                self._reply(404, {"error": f"no route GET {self.path}"})

        def do_POST(self) -> None:
            route = routes.get(self.path)
            if route is None:
                self._reply(404, {"error": f"no route POST {self.path}; one of {sorted(routes)}"})
                return
            fields, call = route
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                missing = [f for f in fields if f not in body]
                if missing:
                    raise ValueError(f"missing field(s) {missing}")
                self._reply(200, call(body))
            except KeyError as e:  # the simulator has no such service
                self._reply(404, {"error": e.args[0]})
            except (TypeError, ValueError, AttributeError) as e:
                self._reply(400, {"error": str(e)})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are audited by the executor; no stderr noise in the demo

    return Handler
