"""One entry point for every wire format; plugins add formats through ``aiops.decoders``."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from aiops.ingest.native import decode_native
from aiops.ingest.otlp import decode_otlp_json, decode_otlp_proto
from aiops.ingest.records import Decoded, Message, Reject

Decoder = Callable[[Message], Decoded]

DECODERS: dict[str, Decoder] = {
    "otlp_json": decode_otlp_json,
    "otlp_proto": decode_otlp_proto,
    "native": decode_native,
}
DECODERS.update({ep.name: ep.load() for ep in entry_points(group="aiops.decoders")})


def decode(msg: Message) -> Decoded:
    """Decode with the message's format; an unknown format is itself a reject, not a crash."""
    decoder = DECODERS.get(msg.format)
    if decoder is None:
        return Decoded(rejects=[Reject(msg.source, msg.offset, f"unknown format {msg.format!r}", msg.payload)])
    return decoder(msg)
