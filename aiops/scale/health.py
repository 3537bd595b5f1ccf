"""``/healthz`` and ``/metrics`` of a detect process: what it owns, how far behind it is, how its
checkpoints and rebalances go. The incident stage serves the full API; a detect process has no
store, so only these two, on ``AIOPS_PORT`` (port 0: a free one, written to
``DATA_DIR/detect-<pid>.port``)."""

from __future__ import annotations

import os
import time

from fastapi import FastAPI, Response

from aiops.api.metrics import ApiMetrics
from aiops.api.server import ApiServer
from aiops.scale.detect import DetectWorker


def detect_app(worker: DetectWorker) -> FastAPI:
    app = FastAPI(title="aiops detect process", docs_url=None, redoc_url=None)
    metrics = ApiMetrics(worker.snapshot)

    @app.get("/healthz")
    def healthz(response: Response) -> dict[str, object]:
        age = time.monotonic() - worker.last_poll
        ok = age < 60
        response.status_code = 200 if ok else 503
        return {"ok": ok, "last_poll_age_s": round(age, 1), "partitions": sorted(worker.owned)}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def serve(worker: DetectWorker) -> ApiServer:
    s = worker.settings
    s.data_dir.mkdir(parents=True, exist_ok=True)
    server = ApiServer(detect_app(worker), s.api_host, s.port, s.data_dir / f"detect-{os.getpid()}.port")
    server.start()
    return server
