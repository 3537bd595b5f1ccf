"""Schemathesis against the API's own OpenAPI schema: every operation, generated requests, real parts.

No generated request may get a 5xx or a response that the schema does not document.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from slack_server import SlackServer

from aiops.act.config import ExecutorConfig
from aiops.act.executor import Executor
from aiops.act.playbooks import load_playbooks
from aiops.api.app import ApiContext, create_app
from aiops.api.auth import TokenTable
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.learn.learner import Learner
from aiops.notify.config import NotifyConfig
from aiops.notify.notifier import Notifier
from aiops.pipeline import Pipeline
from aiops.store.sqlite import Store

ROOT = Path(__file__).resolve().parents[1]


def _app(tmp: Path, slack_url: str):  # noqa: ANN202
    store = Store(tmp / "aiops.db")
    pipeline = Pipeline(MemoryDeadLetter(), lambda _: None)
    executor = Executor(store, load_playbooks(ROOT / "playbooks"), ExecutorConfig(playbooks_dir=ROOT / "playbooks"))
    notifier = Notifier(store, NotifyConfig(webhook_url=f"{slack_url}/webhook"))
    learner = Learner(store, tmp / "models", lambda fn: fn(pipeline))
    ctx = ApiContext(store, TokenTable({"tok": "approver:fuzz"}), "secret", {"U1": "approver"}, None, executor,
                     notifier, learner)  # fmt: skip
    return create_app(ctx)


_slack = SlackServer()
schema = schemathesis.openapi.from_asgi("/openapi.json", _app(Path(__import__("tempfile").mkdtemp()), _slack.url))


@pytest.fixture(scope="module", autouse=True)
def slack():
    yield _slack.start()
    _slack.stop()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_schema(case):
    # Business rules legitimately refuse schema-valid requests (no such incident: 404, already
    # decided: 409, a verdict missing: 422), so "valid data is accepted" is not a check here.
    case.call_and_validate(headers={"Authorization": "Bearer tok"}, excluded_checks=[positive_data_acceptance])
