"""Errors, grouped by what the caller can do about them.

    AiopsError
    ├── ConfigError      bad settings: stop at startup and say which key is wrong
    ├── DecodeError      one record cannot be read: send it to the dead-letter sink, go on
    ├── StateError       a saved model/checkpoint cannot be loaded: refuse it loudly
    └── RequestError     a caller's request (REST, Slack, CLI) cannot be done: tell them why
        ├── NotFound         no such incident, action, model version (HTTP 404)
        ├── Forbidden        the caller's role may not do this (HTTP 403)
        ├── Conflict         not in this state: already decided, expired, running (HTTP 409)
        └── InvalidRequest   a parameter out of bounds or malformed (HTTP 422)
"""

from __future__ import annotations


class AiopsError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(AiopsError):
    """Invalid configuration; the process should not start."""


class DecodeError(AiopsError):
    """A record that cannot be decoded; ``reason`` is what goes to the dead-letter sink."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StateError(AiopsError):
    """Saved state with an unknown version or a broken layout."""


class RequestError(AiopsError):
    """A request that cannot be carried out; the message says why, for the person who made it."""

    status = 400


class NotFound(RequestError):
    status = 404


class Forbidden(RequestError):
    status = 403


class Conflict(RequestError):
    status = 409


class InvalidRequest(RequestError):
    status = 422
