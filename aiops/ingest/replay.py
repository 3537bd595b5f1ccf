"""Recorded Kafka payloads from files, merged across files in event time.

JSON formats hold one message per line. ``otlp_proto`` files hold varint-length-delimited
messages (protobuf's ``writeDelimitedTo`` framing). A directory holding ``metrics.jsonl``,
``logs.jsonl`` and ``traces.jsonl`` (or any ``*.jsonl`` / ``*.pb`` files; other files such as
``truth.json`` are ignored) is one system's feed.
Files are merged by each message's first timestamp, so a system recorded per signal replays as
it happened.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from pathlib import Path

from aiops.ingest.native import ts_ns
from aiops.ingest.otlp import decode_otlp_proto
from aiops.ingest.records import Message, Signal, WireFormat

_SIGNAL_BY_NAME = {"metrics": "metrics", "logs": "logs", "traces": "spans", "spans": "spans"}
# A point's own time first: a cumulative point's startTimeUnixNano is its process start, hours back.
_JSON_TS = [re.compile(rb'"%s"\s*:\s*"?(\d+)' % f) for f in (b"timeUnixNano", b"startTimeUnixNano", b"observedTimeUnixNano")]
_NATIVE_TS = re.compile(rb'"ts"\s*:\s*("[^"]*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)')
_SNIFF = ((b'"resourceMetrics"', "metrics"), (b'"resourceLogs"', "logs"), (b'"resourceSpans"', "spans"))
_MAX_MESSAGE = 64 * 1024 * 1024


def _files(paths: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix in (".jsonl", ".pb", ".bin") and f.is_file())
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or directory: {p}")
    return out


def _signal_of(path: Path, payload: bytes) -> Signal:
    for word, signal in _SIGNAL_BY_NAME.items():
        if word in path.stem.lower():
            return signal  # type: ignore[return-value]
    head = payload[:4096]
    for marker, signal in _SNIFF:
        if marker in head:
            return signal  # type: ignore[return-value]
    return "metrics"  # native lines: the decoder tells metrics from logs itself


def _read_delimited(data: bytes) -> Iterator[bytes]:
    """Varint-length-prefixed messages; a truncated tail is yielded as-is so it gets refused."""
    pos = 0
    while pos < len(data):
        length, shift, start = 0, 0, pos
        while pos < len(data):
            b = data[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80 or shift > 63:
                break
        if length > _MAX_MESSAGE or pos + length > len(data):
            yield data[start:]
            return
        yield data[pos : pos + length]
        pos += length


class ReplaySource:
    """Yields batches of messages from files, in event-time order across files."""

    def __init__(self, paths: list[str | Path], fmt: WireFormat | None = None, batch_size: int = 256) -> None:
        self.files = _files(paths)
        self.format = fmt
        self.batch_size = batch_size
        self.total_bytes = sum(f.stat().st_size for f in self.files)
        self.read_bytes = 0

    def _format_of(self, path: Path) -> WireFormat:
        if self.format:
            return self.format
        if path.suffix in (".pb", ".bin"):
            return "otlp_proto"
        with path.open("rb") as fh:
            head = fh.read(4096)
        return "otlp_json" if any(marker in head for marker, _ in _SNIFF) else "native"

    def _messages(self, path: Path) -> Iterator[tuple[int, int, Message]]:
        fmt = self._format_of(path)
        source = f"file:{path}"
        with path.open("rb") as fh:
            payloads = _read_delimited(fh.read()) if fmt == "otlp_proto" else (line.rstrip(b"\r\n") for line in fh)
            signal: Signal | None = None
            last_ts = 0
            for n, payload in enumerate(payloads, start=1):
                self.read_bytes += len(payload) + 1
                if fmt != "otlp_proto" and not payload.strip():
                    continue
                signal = signal or _signal_of(path, payload)
                last_ts = max(last_ts, _first_ts(payload, fmt, signal) or last_ts)  # unreadable lines keep their place
                yield last_ts, n, Message(signal, fmt, payload, source, n)

    def batches(self) -> Iterator[list[Message]]:
        merged = heapq.merge(*(self._messages(f) for f in self.files), key=lambda t: (t[0], t[1]))
        batch: list[Message] = []
        for _, _, msg in merged:
            batch.append(msg)
            if len(batch) >= self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def _first_ts(payload: bytes, fmt: WireFormat, signal: Signal) -> int:
    if fmt == "otlp_proto":
        d = decode_otlp_proto(Message(signal, fmt, payload, "", 0))
        times = [int(d.metrics.ts.min())] if len(d.metrics) else []
        times += [r.ts for r in (*d.histograms, *d.logs, *d.changes)] + [s.start_ts for s in d.spans]
        return min(times, default=0)
    for pattern in _JSON_TS:
        m = pattern.search(payload)
        if m:
            return int(m.group(1))
    m = _NATIVE_TS.search(payload)
    if m is None:
        return 0
    raw = m.group(1)
    try:
        return ts_ns(raw[1:-1].decode() if raw.startswith(b'"') else float(raw) if b"." in raw or b"e" in raw.lower() else int(raw))
    except (ValueError, UnicodeDecodeError, OverflowError):
        return 0
