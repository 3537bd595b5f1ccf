"""OTLP/JSON building blocks (protobuf JSON mapping, as the Collector's kafka exporter writes).

Plain dict literals serialised once per message keep generation cheap; int64/uint64/fixed64
fields are decimal strings and ids are lowercase hex, per the OTLP/JSON spec.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["SCOPE", "dumps", "kv_bool", "kv_double", "kv_int", "kv_str", "resource"]

try:  # orjson is optional: faster, same JSON semantics
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    _orjson = None

SCOPE: dict[str, str] = {"name": "aiops.sim", "version": "0.1.0"}

SPAN_KIND_INTERNAL = 1
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2
TEMPORALITY_DELTA = 1
TEMPORALITY_CUMULATIVE = 2
SEVERITY = {"INFO": 9, "WARN": 13, "ERROR": 17}


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes; orjson when installed, the stdlib otherwise."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    return json.dumps(obj, separators=(",", ":")).encode()


def kv_str(key: str, value: str) -> dict[str, Any]:
    """A string ``KeyValue``."""
    return {"key": key, "value": {"stringValue": value}}


def kv_int(key: str, value: int) -> dict[str, Any]:
    """An int ``KeyValue`` (int64 as a decimal string)."""
    return {"key": key, "value": {"intValue": str(value)}}


def kv_double(key: str, value: float) -> dict[str, Any]:
    """A double ``KeyValue``."""
    return {"key": key, "value": {"doubleValue": value}}


def kv_bool(key: str, value: bool) -> dict[str, Any]:
    """A bool ``KeyValue``."""
    return {"key": key, "value": {"boolValue": value}}


def resource(service: str, version: str) -> dict[str, Any]:
    """The resource every signal of ``service`` carries."""
    return {
        "attributes": [
            kv_str("service.name", service),
            kv_str("service.version", version),
            kv_str("deployment.environment", "production"),
        ]
    }
