"""The simulator as a pipeline source, and its messages as pipeline messages."""

from __future__ import annotations

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
