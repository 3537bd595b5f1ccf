"""Recent deployments and configuration changes per service, for RCA and rollback."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiops.ingest.records import ChangeEvent


class ChangeIndex:
    def __init__(self, retention_s: float = 86_400.0) -> None:
        self.retention = int(retention_s * 1e9)
        self._by_service: dict[str, list[ChangeEvent]] = defaultdict(list)

    def add(self, changes: list[ChangeEvent]) -> None:
        for c in changes:
            events = self._by_service[c.service]
            if not any(e.ts == c.ts and e.version == c.version for e in events):  # replays re-send
                events.append(c)
                events.sort(key=lambda e: e.ts)

    def between(self, service: str, start: int, end: int) -> list[ChangeEvent]:
        return [c for c in self._by_service.get(service, ()) if start <= c.ts <= end]

    def previous_version(self, service: str, version: str) -> str | None:
        """The version ``service`` ran before it was deployed at ``version`` (its latest such deploy).

        The deploy event's own ``deployment.previous_version`` attribute when it has one (CI/CD hooks
        and the simulator send it), else the version of the change before it.
        """
        events = self._by_service.get(service, [])
        for i in range(len(events) - 1, -1, -1):
            if events[i].version == version:
                before = events[i].attributes.get("deployment.previous_version")
                return str(before) if before else (events[i - 1].version if i else None)
        return None

    def prune(self, watermark: int) -> None:
        horizon = watermark - self.retention
        for service, events in list(self._by_service.items()):
            kept = [e for e in events if e.ts >= horizon]
            if kept:
                self._by_service[service] = kept
            else:
                del self._by_service[service]

    def state(self) -> list[list[Any]]:
        return [[c.ts, c.service, c.kind, c.version, c.attributes] for es in self._by_service.values() for c in es]

    def load_state(self, rows: list[list[Any]]) -> None:
        self._by_service.clear()
        self.add([ChangeEvent(int(ts), s, k, v, a) for ts, s, k, v, a in rows])
