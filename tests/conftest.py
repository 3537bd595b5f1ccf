"""Shared pytest fixtures.

Broker provisioning lives in ``kafka_broker.py``; this file only wires it into pytest.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_broker import KafkaBroker, KafkaBrokerError


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated so --strict-markers holds under any config.
    config.addinivalue_line("markers", "kafka: needs a real Apache Kafka broker")
    # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text, which
    # calls open_text; on Python 3.11/3.12 that warns from importlib itself, so the
    # "ignore::DeprecationWarning:kafka.*" filter misses it and filterwarnings=error would
    # turn every `import kafka` into an error.
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One real Kafka broker per session (startup costs seconds; the JVM ~0.5 GB).

    Skips when Java/Maven are unavailable so a plain checkout still runs the unit tests;
    ``AIOPS_REQUIRE_KAFKA=1`` (CI) turns that into a failure so the integration tests
    can never be skipped silently.
    """
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
    except KafkaBrokerError as exc:
        if os.environ.get("AIOPS_REQUIRE_KAFKA") == "1":
            pytest.fail(f"Kafka broker required (AIOPS_REQUIRE_KAFKA=1) but failed to start: {exc}")
        pytest.skip(f"Kafka broker unavailable; needs Java 17+ and Maven (or cached jars): {exc}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def unique_topic_prefix() -> str:
    """A fresh prefix per test: topics and groups outlive tests on the shared broker."""
    return f"t-{uuid.uuid4().hex[:12]}"


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def require_shared_data(*parts: str) -> Path:
    """A folder of the public benchmark data beside the checkout (``../shared/data``).

    Skips where it is absent, except under ``AIOPS_REQUIRE_DATA=1`` (CI), where that fails.
    """
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_dir():
        message = f"benchmark data not found at {path} (expected <repo>/../shared/data/...)"
        if os.environ.get("AIOPS_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path
