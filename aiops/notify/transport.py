"""How a message reaches Slack, and what each answer means for the outbox.

Every send ends in an :class:`Outcome`: delivered (2xx and, for the Web API, ``ok: true``),
worth retrying (network error, timeout, HTTP 5xx, 429 with its ``Retry-After``, or a Web API
error Slack documents as transient), or refused for good (any other 4xx such as 400
``invalid_payload``, 403, 404, 410, or ``ok: false`` with e.g. ``channel_not_found``), which no
retry would fix. slack_sdk's own retry handlers are switched off: the outbox owns retries, so a
failure is counted, spaced and survives a restart instead of blocking the dispatcher in place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from aiops.notify.config import NotifyConfig

# slack_sdk logs every failed request at ERROR; the notifier reports each failure with its retry
# plan itself, so the clients get a logger of their own that is quiet below CRITICAL.
_sdk_log = logging.getLogger(f"{__name__}.slack_sdk")
_sdk_log.setLevel(logging.CRITICAL)

Message = dict[str, Any]

# Web API errors that say "later", not "never" (docs.slack.dev, chat.postMessage / chat.update).
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retryable: bool = False
    retry_after: float | None = None  # seconds Slack asked us to wait (429)
    error: str = ""
    ts: str | None = None  # the posted message's id (chat.postMessage)


class Transport(Protocol):
    """The three ways a message leaves: a webhook-style URL, chat.postMessage, chat.update."""

    def webhook(self, url: str, message: Message, replace_original: bool = False) -> Outcome: ...

    def post_message(self, channel: str, message: Message) -> Outcome: ...

    def update_message(self, channel: str, ts: str, message: Message) -> Outcome: ...


class SlackTransport:
    """slack_sdk clients: ``WebhookClient`` for incoming webhooks and ``response_url``, ``WebClient`` for the rest."""

    def __init__(self, config: NotifyConfig) -> None:
        self.timeout = config.timeout_s
        self.web = WebClient(token=config.bot_token, base_url=config.api_url, timeout=int(max(1, config.timeout_s)),
                             logger=_sdk_log, retry_handlers=[])  # fmt: skip

    def webhook(self, url: str, message: Message, replace_original: bool = False) -> Outcome:
        client = WebhookClient(url, timeout=int(max(1, self.timeout)), logger=_sdk_log, retry_handlers=[])
        try:
            resp = client.send_dict({**message, **({"replace_original": True} if replace_original else {})})
        except Exception as e:  # noqa: BLE001 - URLError, timeouts, resets: all mean "not delivered, try later"
            return Outcome(ok=False, retryable=True, error=f"{type(e).__name__}: {e}")
        if 200 <= resp.status_code < 300:
            return Outcome(ok=True)
        return _http_failure(resp.status_code, resp.headers, str(resp.body)[:200])

    def post_message(self, channel: str, message: Message) -> Outcome:
        return self._call(lambda: self.web.chat_postMessage(channel=channel, **message))

    def update_message(self, channel: str, ts: str, message: Message) -> Outcome:
        return self._call(lambda: self.web.chat_update(channel=channel, ts=ts, **message))

    @staticmethod
    def _call(call: Any) -> Outcome:
        try:
            resp = call()
        except SlackApiError as e:
            status, body = e.response.status_code, e.response.data
            error = body.get("error", "") if isinstance(body, dict) else str(body)[:200]
            if status == 200:
                return Outcome(ok=False, retryable=error in _TRANSIENT, error=f"ok=false: {error}")
            return _http_failure(status, e.response.headers, error)
        except Exception as e:  # noqa: BLE001 - as above
            return Outcome(ok=False, retryable=True, error=f"{type(e).__name__}: {e}")
        return Outcome(ok=True, ts=resp.get("ts"))


def _http_failure(status: int, headers: Any, body: str) -> Outcome:
    error = f"HTTP {status}: {body}".strip()
    if status == 429:
        return Outcome(ok=False, retryable=True, retry_after=_seconds(headers), error=error)
    return Outcome(ok=False, retryable=status >= 500 or status == 408, error=error)


def _seconds(headers: Any) -> float | None:
    """``Retry-After`` in seconds, as Slack sends it (None: absent or not a number)."""
    for key in ("Retry-After", "retry-after"):
        value = headers.get(key) if headers else None
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


class ConsoleTransport:
    """Prints each message instead of sending it: the demo without a Slack workspace.

    Prints the fallback text and, when the message carries Approve/Reject buttons, the action
    id they act on, so a reader can approve it with curl or on the dashboard.
    """

    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.write = write

    def _show(self, prefix: str, message: Message) -> Outcome:
        buttons = [el.get("value") for b in message.get("blocks", []) if b.get("type") == "actions"
                   for el in b.get("elements", []) if el.get("action_id") == "approve"]  # fmt: skip
        line = f"{prefix} {message.get('text', '')}"
        if buttons:
            line += f"  [Approve/Reject: action {buttons[0]}]"
        self.write(line)
        return Outcome(ok=True, ts=str(time.time()))

    def webhook(self, url: str, message: Message, replace_original: bool = False) -> Outcome:
        return self._show("slack (edit)>" if replace_original else "slack>", message)

    def post_message(self, channel: str, message: Message) -> Outcome:
        return self._show("slack>", message)

    def update_message(self, channel: str, ts: str, message: Message) -> Outcome:
        return self._show("slack (edit)>", message)
