"""A stand-in for Slack on 127.0.0.1: incoming webhook, Web API and response_url, scriptable.

Real HTTP (stdlib ``http.server`` in a thread) so the notifier's real slack_sdk clients are
exercised: every request is recorded with the status it got; answers are 200 unless a scripted
reply is queued or ``failing`` is set (an outage that answers); the server can be stopped
(connection refused) and started again on the same port.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = 0.0  # wall-clock arrival (time.time()), for latency measurements
    status: int = 200  # what the stand-in answered


@dataclass
class Reply:
    status: int = 200
    body: str | dict[str, Any] = "ok"
    headers: dict[str, str] = field(default_factory=dict)


class SlackServer:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Request] = []
        self.replies: list[Reply] = []  # consumed first, one per request
        self.failing: Reply | None = None  # then, while set, the answer to every request
        self._ts = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> SlackServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else {}
                with outer._lock:
                    reply = outer.replies.pop(0) if outer.replies else outer.failing or outer._default(self.path)
                    outer.requests.append(Request(self.path, body, dict(self.headers.items()), time.time(),
                                                  reply.status))  # fmt: skip
                data = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                ctype = "text/plain" if isinstance(reply.body, str) else "application/json"
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(data.encode())))
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _default(self, path: str) -> Reply:
        if path.endswith("chat.postMessage"):
            self._ts += 1
            return Reply(body={"ok": True, "channel": "C1", "ts": f"1700000000.{self._ts:06d}"})
        if path.endswith("chat.update"):
            return Reply(body={"ok": True})
        return Reply()

    def to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]
