"""The engine's own topics, created on first use with the partition counts they need."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from aiops.errors import ConfigError

log = logging.getLogger(__name__)


def _counts(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    return {d.get("name", d.get("topic")): len(d["partitions"]) for d in admin.describe_topics(topics)}


def partition_counts(bootstrap: str, topics: Iterable[str]) -> dict[str, int]:
    """How many partitions each topic has (0 for a topic that does not exist)."""
    topics = list(topics)
    with KafkaAdminClient(bootstrap_servers=bootstrap, client_id="aiops-admin") as admin:
        existing = set(admin.list_topics())
        return dict.fromkeys(topics, 0) | _counts(admin, [t for t in topics if t in existing])


def ensure_topics(bootstrap: str, wanted: dict[str, int]) -> dict[str, int]:
    """Create missing topics (name -> partitions); return every topic's actual partition count.

    A topic that exists keeps its count: the caller checks what it must (the leader topic needs
    exactly one partition, since leadership means owning that one partition).
    """
    with KafkaAdminClient(bootstrap_servers=bootstrap, client_id="aiops-admin") as admin:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, n, -1) for t, n in wanted.items() if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
                log.info("created topics %s", {t.name: t.num_partitions for t in missing})
            except TopicAlreadyExistsError:
                pass  # another process created them first
        deadline = time.monotonic() + 30
        while True:  # a topic just created may take a moment to show its partitions
            found = _counts(admin, list(wanted))
            if all(found.get(t) for t in wanted) or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


def require_partitions(found: dict[str, int], topic: str, n: int) -> None:
    if found.get(topic) != n:
        raise ConfigError(f"topic {topic} has {found.get(topic)} partitions; it must have exactly {n}")
