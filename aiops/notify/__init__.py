"""Slack notifications through a durable outbox (see :mod:`aiops.notify.notifier`)."""

from aiops.notify.config import NotifyConfig
from aiops.notify.notifier import Notifier
from aiops.notify.transport import Outcome, SlackTransport, Transport

__all__ = ["Notifier", "NotifyConfig", "Outcome", "SlackTransport", "Transport"]
