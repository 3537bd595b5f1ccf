"""The simulator as a pipeline source, and its messages as pipeline messages."""

from __future__ import annotations

import time
from collections.abc import Iterator

from aiops.ingest.records import Message
from aiops.sim.simulator import SimMessage, Simulator


def to_message(m: SimMessage, offset: int) -> Message:
    return Message(m.kind, "otlp_json", m.payload, "sim", offset)


class SimulatorSource:
    """One batch per simulated step; ``steps=None`` runs until the caller stops iterating."""

    def __init__(self, sim: Simulator, steps: int | None = None) -> None:
        self.sim = sim
        self.steps = steps
        self.offset = 0

    def batches(self) -> Iterator[list[Message]]:
        k = 0
        while self.steps is None or k < self.steps:
            batch = []
            for m in self.sim.step():
                self.offset += 1
                batch.append(to_message(m, self.offset))
            k += 1
            yield batch


class PacedSimulatorSource:
    """The simulator as the service's source (instead of Kafka): one step per ``step_seconds / speed`` of wall time.

    It has no offsets to resume from; ``positions`` stays empty and commits are no-ops.
    """

    def __init__(self, sim: Simulator, speed: float, steps: int | None = None) -> None:
        self.sim, self.speed, self.steps = sim, speed, steps
        self.positions: dict[str, int] = {}
        self.offset = 0
        self._taken = 0
        self._due = 0.0

    def open(self, resume: dict[str, int] | None = None) -> None:
        self._due = time.monotonic()

    def poll(self, timeout_ms: int = 100) -> list[Message]:
        if self.steps is not None and self._taken >= self.steps:
            time.sleep(timeout_ms / 1000)
            return []
        wait = self._due - time.monotonic()
        if wait > timeout_ms / 1000:
            time.sleep(timeout_ms / 1000)
            return []
        time.sleep(max(0.0, wait))
        self._due = max(self._due, time.monotonic() - 1.0) + self.sim.step_seconds / self.speed  # no burst after a stall
        self._taken += 1
        batch = []
        for m in self.sim.step():
            self.offset += 1
            batch.append(to_message(m, self.offset))
        return batch

    def commit(self, offsets: dict[str, int]) -> None:
        pass

    def close(self) -> None:
        pass
