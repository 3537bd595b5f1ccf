"""The ``aiops`` command: ``demo`` (embedded simulator), ``replay`` (files), ``run`` (Kafka service)."""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aiops import __version__
from aiops.config import load_settings
from aiops.correlate.contract import Incident
from aiops.detect.models import versions
from aiops.errors import AiopsError
from aiops.ingest.deadletter import FileDeadLetter
from aiops.ingest.records import WIRE_FORMATS
from aiops.ingest.replay import ReplaySource
from aiops.pipeline import Pipeline, Stats
from aiops.sim.__main__ import fault_arg


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def describe(inc: Incident) -> str:
    """One human line per incident update, for terminals."""
    top = inc.root_causes[0] if inc.root_causes else None
    kind = " PREDICTED" if inc.kind == "predicted" else ""
    head = f"[{_when(inc.updated_at_unix_nano)}]{kind} incident {inc.id} {inc.status.upper()} {inc.severity}"
    body = f" services={','.join(inc.services)} anomalies={len(inc.anomalies)}"
    f = inc.forecast
    if f is not None:
        body += f"\n    forecast: {f.service} {f.slo}"
        if f.outcome == "pending":
            when = f.expected_breach_unix_nano or f.earliest_breach_unix_nano
            body += f" expected at {_when(when)[11:]}" if when else " within the horizon"
            body += f" (p={f.probability:.2f}, {f.model})"
        else:
            body += f": {f.outcome} at {_when(f.outcome_at_unix_nano or inc.updated_at_unix_nano)[11:]}"
    if top is not None and inc.status == "open":
        body += f"\n    root cause #1 {top.service} ({top.score:.2f}): {top.reason}"
        if inc.suggested_playbook:
            body += f"\n    suggested playbook: {inc.suggested_playbook}"
    return head + body


class _Progress:
    """Progress on stderr: one line redrawn 5 times a second on a terminal, a plain line every
    10 s otherwise (so logs of a long run still show it moving)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = 0.2 if self.tty else 10.0
        self.last = time.monotonic()

    def show(self, text: str) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.stream.write("\r\033[K" + text if self.tty else text + "\n")
            self.stream.flush()
            self.last = now

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _summary(stats: Stats, seconds: float) -> str:
    s = stats.summary()
    rate = (stats.points + stats.spans + stats.logs) / seconds if seconds > 0 else 0.0
    lines = [f"{k}: {v}" for k, v in s.items()]
    lines.append(f"points_per_s: {rate:,.0f}")
    lines += [f"  bad records, {reason}: {n}" for reason, n in stats.reasons.most_common(10)]
    return "\n".join(lines)


def cmd_replay(args: argparse.Namespace) -> int:
    out_path = Path(args.out) if args.out else None
    dl_path = Path(args.dead_letter) if args.dead_letter else (out_path.parent if out_path else Path(".")) / "deadletter.jsonl"
    source = ReplaySource(args.paths, args.format, args.batch_size)
    out = out_path.open("w", encoding="utf-8") if out_path else sys.stdout
    dead_letter = FileDeadLetter(dl_path)

    def write(inc: Incident) -> None:
        out.write(inc.model_dump_json() + "\n")

    settings = load_settings(args.config, topology_file=args.topology)
    pipeline = Pipeline(dead_letter, write, **settings.pipeline_options())
    if args.models and versions(args.models, "metrics"):
        info = pipeline.load_models(args.models)
        print(f"detectors warm-started from {info.path} ({info.meta['series_count']} series)", file=sys.stderr)
    progress = _Progress()
    t0 = time.perf_counter()
    try:
        for batch in source.batches():
            pipeline.process(batch)
            pct = 100.0 * source.read_bytes / max(source.total_bytes, 1)
            st = pipeline.stats
            progress.show(f"replay {pct:5.1f}%  records {st.messages:,}  bad {st.rejects:,}  "
                          f"anomalies {st.anomalies:,}  incidents {len(st.incident_ids):,}")  # fmt: skip
        pipeline.flush()
    finally:
        progress.done()
        dead_letter.close()
        if out is not sys.stdout:
            out.close()
    print(_summary(pipeline.stats, time.perf_counter() - t0), file=sys.stderr)
    print(f"dead letters: {dl_path}", file=sys.stderr)
    if args.models:
        for info in pipeline.save_versions(args.models):
            print(f"{info.bank} model saved: {info.path}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The closed loop on the built-in simulator: incidents, Slack messages (printed unless a
    webhook is configured), playbooks proposed, approved on the dashboard, by REST or in Slack,
    run against the simulator's control API, and the simulated service recovering."""
    from aiops.notify.transport import ConsoleTransport
    from aiops.service import Service
    from aiops.sim import Simulator, default_scenario
    from aiops.sim.control import ControlServer
    from aiops.sim.source import PacedSimulatorSource

    start = time.time_ns() - int(args.history * 1e9)
    if args.fault:
        sim = Simulator(args.services, args.seed, start, faults=args.fault)
    else:
        sim = default_scenario(start_unix_nano=start, n_services=args.services, seed=args.seed)
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="aiops-demo-"))
    token = args.token or secrets.token_hex(8)
    progress = _Progress()
    control = ControlServer(sim)
    base = load_settings(args.config)
    settings = base.model_copy(update={
        "data_dir": data_dir, "port": args.port, "api_tokens": {**base.api_tokens, token: "approver:demo"},
        "executor": base.executor.model_copy(update={"target": "sim", "sim_control_url": control.url,
                                                     "playbooks_dir": _playbooks_dir(base.executor)}),
    })  # fmt: skip

    def say(line: str) -> None:
        progress.done()
        print(line, flush=True)

    transport = None if settings.notify_config().webhook_url or settings.notify.bot_token else ConsoleTransport(say)
    service = Service(settings, lambda inc: say(describe(inc)), source=PacedSimulatorSource(sim, args.speed),
                      transport=transport, now_ns=lambda: sim.now_unix_nano, faults=sim)  # fmt: skip
    say(f"aiops {__version__} demo: {args.services} simulated services, {args.speed:g}x real time; "
        f"faults are injected on a schedule (Ctrl-C stops).")  # fmt: skip
    for f in sim.truth:
        say(f"  scheduled fault: {f['fault']} on {f['service']} at {_when(f['onset_unix_nano'])}")
    def announce() -> None:  # once the API is up: with --port 0 only then is the port known
        port_file = data_dir / "api.port"
        while not port_file.exists() and not stop.is_set():
            time.sleep(0.05)
        if port_file.exists():
            url = f"http://127.0.0.1:{port_file.read_text()}"
            say(f"  dashboard and API: {url}/  (approver token: {token})")
            say(f"  approve from a shell: curl -X POST {url}/approvals/ACTION_ID -H 'Authorization: Bearer {token}' "
                f"-H 'Content-Type: application/json' -d '{{\"decision\": \"approve\"}}'")  # fmt: skip

    stop = _stop_event()
    threading.Thread(target=announce, daemon=True).start()
    if args.duration is not None:
        timer = threading.Timer(args.duration, stop.set)
        timer.daemon = True  # Ctrl-C must not wait for it
        timer.start()
    t0 = time.monotonic()
    try:
        pipeline = service.run(stop)
    finally:
        control.close()
        progress.done()
    print(_summary(pipeline.stats, time.monotonic() - t0))
    print(f"state, audit log and models: {data_dir}")
    return 0


def _playbooks_dir(executor: Any) -> Path:
    """The configured playbooks if they exist here, else the ones beside this package (a source checkout)."""
    if executor.playbooks_dir.is_dir():
        return Path(executor.playbooks_dir)
    return Path(__file__).resolve().parents[1] / "playbooks"


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, data_dir=Path(args.data_dir) if args.data_dir else None, role=args.role)
    stop = _stop_event()
    print_incident = lambda inc: print(inc.model_dump_json(), flush=True)  # noqa: E731
    if settings.role == "detect":
        from aiops.scale.detect import DetectWorker
        from aiops.scale.health import serve

        worker = DetectWorker(settings)
        server = serve(worker)
        try:
            worker.run(stop)
        finally:
            server.stop()
    elif settings.role == "incidents":
        from aiops.scale.incidents import run_incidents

        run_incidents(settings, stop, print_incident)
    else:
        from aiops.service import Service

        Service(settings, on_incident=print_incident).run(stop)
    return 0


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiops", description=__doc__)
    p.add_argument("--version", action="version", version=f"aiops {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the whole pipeline on the built-in simulator (no setup)")
    d.add_argument("--port", type=int, default=8080, help="API and dashboard port (0: any free port)")
    d.add_argument("--data-dir", help="keep SQLite, models and dead letters here (default: a fresh temporary folder)")
    d.add_argument("--token", help="the approver token to print and accept (default: a random one)")
    d.add_argument("--config", help="YAML settings file (a Slack webhook, SLOs, detection rules ...)")
    d.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    d.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    d.add_argument("--services", type=int, default=8, help="number of simulated services")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--history", type=float, default=3600.0, help="start simulated time this many seconds ago")
    d.add_argument("--fault", type=fault_arg, action="append", metavar="SERVICE:KIND:START:DURATION[:MAG[:RAMP]]",
                   help="inject this fault instead of the default schedule (repeatable; START in s from the start)")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("replay", help="run recorded payloads through the pipeline as fast as possible")
    r.add_argument("paths", nargs="+", help="files, or directories holding metrics.jsonl/logs.jsonl/traces.jsonl")
    r.add_argument("--format", choices=WIRE_FORMATS, default=None, help="wire format (default: by file)")
    r.add_argument("--out", help="incidents JSONL (default: stdout)")
    r.add_argument("--dead-letter", help="refused records JSONL (default: deadletter.jsonl beside --out)")
    r.add_argument("--batch-size", type=int, default=256)
    r.add_argument("--config", help="YAML settings file (detection rules, topology_file)")
    r.add_argument("--topology", help='static call graph to add to the learned one: {"edges": [[caller, callee], ...]}')
    r.add_argument("--models", help="models/ folder: warm-start detectors from its latest version, save a new one at the end")
    r.set_defaults(func=cmd_replay)

    u = sub.add_parser("run", help="the service: Kafka in, incidents out (settings: --config and AIOPS_*)")
    u.add_argument("--config", help="YAML settings file")
    u.add_argument("--data-dir", help="where SQLite, models/ and checkpoints live (AIOPS_DATA_DIR)")
    u.add_argument("--role", choices=("all", "detect", "incidents"),
                   help="all (default): the whole engine in this process; detect: detectors for the telemetry "
                        "partitions this process gets; incidents: correlation, RCA, Slack, API and playbooks, "
                        "one active process with standbys (AIOPS_ROLE)")  # fmt: skip
    u.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    try:
        return int(args.func(args))
    except AiopsError as e:
        print(f"aiops: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
