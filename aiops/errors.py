"""Errors, grouped by what the caller can do about them.

    AiopsError
    ├── ConfigError      bad settings: stop at startup and say which key is wrong
    ├── DecodeError      one record cannot be read: send it to the dead-letter sink, go on
    └── StateError       a saved model/checkpoint cannot be loaded: refuse it loudly
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
