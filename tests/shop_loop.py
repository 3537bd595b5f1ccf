"""A bad release on the simulated shop, end to end in one process, for the dashboard tests.

Simulator → pipeline → SQLite; the executor proposes ``rollback`` and runs it against the
simulator's control API (target ``sim``), so approving really ends the bad release and the
incident resolves once the telemetry recovers. The API (with the dashboard) is the real app over
the real parts; :meth:`ShopLoop.serve` runs it on uvicorn and keeps the simulator going in the
background, paced, as ``aiops demo`` does. Every pipeline update holds ``lock``, the lock the
dashboard's :class:`~aiops.dashboard.PipelineViews` copies under.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiops.act.config import ExecutorConfig
from aiops.act.executor import Executor
from aiops.act.model import Action
from aiops.act.playbooks import load_playbooks
from aiops.api.app import ApiContext, create_app
from aiops.api.auth import TokenTable
from aiops.api.server import ApiServer
from aiops.config import Settings
from aiops.correlate.contract import Incident
from aiops.dashboard import PipelineViews
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.pipeline import Pipeline
from aiops.sim import DEFAULT_START_UNIX_NANO, FaultSpec, Simulator
from aiops.sim.control import ControlServer
from aiops.sim.source import SimulatorSource
from aiops.store.sqlite import Store

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
TOKEN = "dashboard-test-approver-token-0123"
WEBHOOK = "https://hooks.slack.com/services/T000/B000/webhooksecretXYZW"
FAULT_AT_S = 3600  # the detectors get an hour of normal traffic first


class ShopLoop:
    def __init__(self, root: Path, **api: Any) -> None:
        # a fixed start: the simulated load follows the time of day, so a wall-clock start made the
        # incident (and its proposal) depend on when the test ran
        self.sim = Simulator(n_services=8, seed=3, start_unix_nano=DEFAULT_START_UNIX_NANO, step_seconds=10,
                             faults=[FaultSpec("cart", "bad_release", FAULT_AT_S, 3600, 0.5)])  # fmt: skip
        self.control = ControlServer(self.sim)
        executor_config = ExecutorConfig(playbooks_dir=PLAYBOOKS, target="sim", sim_control_url=self.control.url)
        self.settings = Settings(api_tokens={TOKEN: "approver:alice"}, slack_webhook_url=WEBHOOK,
                                 executor=executor_config, data_dir=root)  # fmt: skip
        self.lock = threading.Lock()
        self.store = Store(root / "aiops.db")
        self.pipeline = Pipeline(MemoryDeadLetter(), self._incident, now_ns=lambda: self.sim.now_unix_nano)
        books = load_playbooks(PLAYBOOKS)
        self.executor = Executor(self.store, books, executor_config, changes=self.pipeline.changes, verify=self._verify)
        self.views = PipelineViews(self.pipeline, self.lock, self.settings, books)
        self.ctx = ApiContext(self.store, TokenTable(self.settings.api_tokens), executor=self.executor, views=self.views,
                              health=self._health, snapshot=self._snapshot, **api)  # fmt: skip
        self.app = create_app(self.ctx)
        self._batches = SimulatorSource(self.sim).batches()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.server: ApiServer | None = None

    # --- the engine's callbacks ----------------------------------------------------------------
    def _incident(self, inc: Incident) -> None:
        self.store.commit([inc], [])
        if inc.status == "open":
            self.executor.propose(inc)

    def _verify(self, action: Action) -> bool | None:
        with self.lock:
            return None if action.incident_id in self.pipeline.incidents.open else True

    def _health(self) -> dict[str, Any]:
        return {"pipeline": {"ok": True, "sim_time_unix_nano": self.sim.now_unix_nano}}

    def _snapshot(self) -> dict[str, float]:
        with self.lock:
            st = self.pipeline.stats
            return {"points": st.points, "series": len(self.pipeline.series), "anomalies": st.anomalies,
                    **{f"bad_records|reason={r}": n for r, n in st.reasons.items()}}  # fmt: skip

    # --- driving -------------------------------------------------------------------------------
    def step(self) -> None:
        batch = next(self._batches)
        with self.lock:
            self.pipeline.process(batch)

    def run_until(self, done: Callable[[], Any], max_steps: int) -> Any:
        for _ in range(max_steps):
            self.step()
            if got := done():
                return got
        raise AssertionError(f"not done after {max_steps} simulator steps")

    def proposed(self) -> Action | None:
        """The rollback proposed for the bad release, once there is one."""
        return next((a for a in self.executor.actions("proposed") if a.playbook == "rollback"), None)

    def serve(self, steps_per_s: float = 10.0) -> str:
        """The API on a free port, the simulator and the executor running on; returns the base URL."""
        self.server = ApiServer(self.app, "127.0.0.1", 0)
        port = self.server.start()

        def feed() -> None:
            while not self._stop.wait(1.0 / steps_per_s):
                self.step()

        self._threads = [threading.Thread(target=feed, name="sim-feed", daemon=True),
                         threading.Thread(target=self.executor.run, args=(self._stop,), name="executor", daemon=True)]  # fmt: skip
        for t in self._threads:
            t.start()
        return f"http://127.0.0.1:{port}"

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        if self.server is not None:
            self.server.stop()
        self.control.close()
        self.store.close()
