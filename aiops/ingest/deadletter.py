"""Where refused records go: a JSONL file in replay, a Kafka topic in service mode.

``write`` may buffer; ``flush`` makes everything written so far durable. The service flushes
before it stores a checkpoint and commits offsets, so a refused record is never lost, and the
hot path never waits for the broker record by record (poison traffic must not slow good traffic).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from aiops.ingest.records import Reject


class DeadLetterSink(Protocol):
    def write(self, rejects: list[Reject]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class FileDeadLetter:
    """One JSON line per reject: ``{"source", "offset_or_line", "reason", "raw", "raw_encoding"}``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, rejects: list[Reject]) -> None:
        for r in rejects:
            self._fh.write(r.to_json() + "\n")
        self._fh.flush()

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class MemoryDeadLetter:
    """Keeps rejects in a list: for the demo and for tests of the logic around sinks."""

    def __init__(self) -> None:
        self.rejects: list[Reject] = []

    def write(self, rejects: list[Reject]) -> None:
        self.rejects.extend(rejects)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class KafkaDeadLetter:
    """Produces each reject to a topic (default ``aiops.deadletter``), keyed by its source.

    Give it a producer with large batches (the service's: 1 MiB). A burst of poison is thousands of
    records of a few KiB, and with kafka-python's 16 KiB default each few of them are a produce
    request of their own: 10 k rejects cost 1.1 s of CPU and 1.4-2 s of flush waits that way,
    against 0.3-0.4 s and 0.05-0.2 s (benchmarks/README.md, poison.py).


    A letter larger than ``max_bytes`` (the producer refuses requests over 1 MiB by default) keeps
    the head of its raw bytes and says so in its reason, with the full size and SHA-256; the whole
    record is still at its source and offset.
    """

    def __init__(self, producer: Any, topic: str = "aiops.deadletter", max_bytes: int = 900_000) -> None:
        self.producer = producer
        self.topic = topic
        self.max_bytes = max_bytes

    def write(self, rejects: list[Reject]) -> None:
        for r in rejects:
            value = r.to_json().encode()
            if len(value) > self.max_bytes:
                value = self._shortened(r)
            self.producer.send(self.topic, key=r.source.encode(), value=value)

    def _shortened(self, r: Reject) -> bytes:
        digest = hashlib.sha256(r.raw).hexdigest()
        keep = self.max_bytes // 3  # room for hex encoding (2x) and the rest of the letter
        why = f"{r.reason} [raw truncated to its first {keep} of {len(r.raw)} bytes, sha256 {digest}]"
        return Reject(r.source, r.offset, why, r.raw[:keep]).to_json().encode()

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.flush()


def read_dead_letters(path: str | Path) -> list[dict[str, Any]]:
    """Parse a dead-letter file back; the inverse of :class:`FileDeadLetter`."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
