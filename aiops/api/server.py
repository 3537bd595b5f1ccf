"""The API on uvicorn in a background thread of ``aiops run``, stopped with the service.

Port 0 asks the OS for a free port; the port actually bound is logged and written to
``DATA_DIR/api.port`` so scripts and tests can find it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, app: FastAPI, host: str, port: int, port_file: Path | None = None) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
        self.port_file = port_file
        self.thread = threading.Thread(target=self.server.run, name="aiops-api", daemon=True)
        self.port = port

    def start(self, timeout_s: float = 10.0) -> int:
        """Serve in the background; return the bound port once requests are accepted."""
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start (is the port in use?)")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        if self.port_file is not None:
            self.port_file.write_text(str(self.port))
        log.info("API listening on http://%s:%d", self.server.config.host, self.port)
        return self.port

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
