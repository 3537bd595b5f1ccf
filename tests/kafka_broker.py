"""A real single-node Apache Kafka broker (KRaft) for integration tests.

Nothing Kafka-shaped is installed on the test machines, so the broker's jars come from Maven
Central through ``tests/kafka/pom.xml`` (Maven's ``~/.m2`` and a local cache dir make that a
one-time cost) and the broker runs as a plain ``java`` subprocess bound to 127.0.0.1 only.
Emulators are deliberately not used: they diverge from Kafka on offsets, group joins and
restarts, which is exactly what the ingestion tests need to exercise.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

POM = Path(__file__).parent / "kafka" / "pom.xml"
JARS_ENV = "AIOPS_KAFKA_JARS"
# Written into the libs dir only after a complete copy, holding the pom's hash, so an
# interrupted or outdated copy is redone instead of yielding a broken classpath.
MARKER = ".aiops-jars-complete"
STARTED_LINE = "Kafka Server started"
# Root at WARN keeps the log small; KafkaRaftServer at INFO emits STARTED_LINE.
LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""


class KafkaBrokerError(RuntimeError):
    """The broker could not be provisioned or started (missing Java/Maven, mvn failure, timeout)."""


def kafka_version(pom: Path = POM) -> str:
    """The Kafka version pinned in the pom, so the pom stays the single source of truth."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(pom).getroot().findtext("m:properties/m:kafka.version", namespaces=ns)
    if not version:
        raise KafkaBrokerError(f"no <kafka.version> property in {pom}")
    return version.strip()


def default_jars_dir() -> Path:
    """``$AIOPS_KAFKA_JARS`` or ``~/.cache/aiops/kafka-<version>/libs``."""
    if override := os.environ.get(JARS_ENV):
        return Path(override).expanduser()
    return Path.home() / ".cache" / "aiops" / f"kafka-{kafka_version()}" / "libs"


def ensure_jars(jars_dir: Path, pom: Path = POM, timeout: float = 900.0) -> Path:
    """Fill ``jars_dir`` with the broker's runtime classpath unless a complete copy is there."""
    marker = jars_dir / MARKER
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    if marker.is_file() and marker.read_text().strip() == digest:
        return jars_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaBrokerError(f"Maven ('mvn') is not on PATH and {jars_dir} has no Kafka jars")
    jars_dir.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for stale in jars_dir.glob("*.jar"):  # a different pom may pin other versions
        stale.unlink()
    cmd = [mvn, "-B", "-q", "dependency:copy-dependencies", f"-DoutputDirectory={jars_dir}",
           "-DincludeScope=runtime", "-f", str(pom)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise KafkaBrokerError(f"mvn timed out after {timeout:g} s: {' '.join(cmd)}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise KafkaBrokerError(f"mvn failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    if not any(jars_dir.glob("kafka_2.13-*.jar")):
        raise KafkaBrokerError(f"mvn succeeded but {jars_dir} has no kafka_2.13 jar")
    marker.write_text(digest + "\n")
    return jars_dir


def _free_ports(count: int) -> list[int]:
    """Distinct free 127.0.0.1 ports; all sockets are held open together so none repeats."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _die_with_parent_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL`` where available: a killed pytest leaves no 0.5 GB JVM behind.

    Not ``preexec_fn``, which forks the whole (multi-threaded) interpreter. The signal fires
    when the *thread* that spawned the JVM exits, so start brokers on the main thread.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "KILL"] if setpriv else []


class KafkaBroker:
    """One KRaft broker+controller on two free 127.0.0.1 ports, with data under ``work_dir``.

    Ports and ``log.dirs`` are fixed for the object's lifetime, so ``restart()`` brings back the
    same cluster with its data and clients can keep using ``bootstrap``.
    """

    def __init__(self, work_dir: Path, *, jars_dir: Path | None = None,
                 start_timeout: float = 90.0, heap: str = "512m") -> None:
        self.work_dir = Path(work_dir)
        self.jars_dir = jars_dir if jars_dir is not None else default_jars_dir()
        self.start_timeout = start_timeout
        self.heap = heap
        self.port, self.controller_port = _free_ports(2)
        self.log_path = self.work_dir / "broker.log"
        self.data_dir = self.work_dir / "data"
        self.config_path = self.work_dir / "server.properties"
        self.log4j_path = self.work_dir / "log4j2.properties"
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        """``bootstrap_servers`` value for kafka-python clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Provision jars, format storage on first start, launch and block until ready."""
        if self.running:
            return
        java = self._java()
        ensure_jars(self.jars_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if not self._formatted:
            self._write_config()
            self._format(java)
            self._formatted = True
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [*_die_with_parent_prefix(), *self._java_cmd(java), "kafka.Kafka",
                 str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.work_dir)
        try:
            self._wait_started(offset)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM for a clean shutdown (flushes logs), SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same ports and ``log.dirs``; data survives."""
        self.stop()
        self.start()

    def create_topics(self, names: Iterable[str], partitions: int = 1) -> None:
        """Create topics and wait until every partition has a leader, so producing can start."""
        # Imported here, not at module level: conftest imports this module before
        # pytest_configure can add the warning filter kafka-python's import needs (conftest.py).
        from kafka.admin import KafkaAdminClient

        topics = {name: {"num_partitions": partitions, "replication_factor": 1} for name in names}
        with KafkaAdminClient(bootstrap_servers=self.bootstrap,
                              client_id="aiops-test-admin") as admin:
            admin.create_topics(topics, wait_for_metadata=True)

    def log_excerpt(self, offset: int = 0, tail: int = 15) -> str:
        """ERROR/``Caused by`` lines plus the last lines of the log from ``offset`` on.

        A bare tail is usually the middle of a stack trace; the cause sits above it.
        """
        if not self.log_path.exists():
            return "(no broker log)"
        with self.log_path.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        causes = list(dict.fromkeys(
            line for line in lines if " ERROR " in line or line.startswith("Caused by:")))[:10]
        return "\n".join([*causes, "...", *lines[-tail:]] if causes else lines[-tail:])

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java or not Path(java).is_file():
            raise KafkaBrokerError("Java ('java', 17+) is not on PATH or under $JAVA_HOME")
        return java

    def _java_cmd(self, java: str) -> list[str]:
        return [java, f"-Xmx{self.heap}", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.log4j_path}", "-cp", f"{self.jars_dir}/*"]

    def _write_config(self) -> None:
        listeners = (f"PLAINTEXT://127.0.0.1:{self.port},"
                     f"CONTROLLER://127.0.0.1:{self.controller_port}")
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": listeners,
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
        }
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.log4j_path.write_text(LOG4J2_PROPERTIES)

    def _format(self, java: str) -> None:
        """Format once: the controller endpoint and cluster id are baked into ``log.dirs``."""
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cmd = [*self._java_cmd(java), "kafka.tools.StorageTool", "format", "--standalone",
               f"--cluster-id={cluster_id}", "-c", str(self.config_path)]  # "=": an id may start with "-"
        with self.log_path.open("ab") as log:
            try:
                code = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, timeout=120, check=False).returncode
            except subprocess.TimeoutExpired as exc:
                raise KafkaBrokerError(
                    f"Kafka StorageTool format timed out\n{self.log_excerpt()}") from exc
        if code != 0:
            raise KafkaBrokerError(
                f"Kafka StorageTool format failed ({code})\n{self.log_excerpt()}")

    def _wait_started(self, offset: int) -> None:
        """Poll this run's part of the log for STARTED_LINE; fail fast if the JVM exits."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                if STARTED_LINE.encode() in log.read():
                    return
            if self._proc.poll() is not None:
                raise KafkaBrokerError(
                    f"Kafka broker exited with code {self._proc.returncode} during startup "
                    f"(log: {self.log_path})\n{self.log_excerpt(offset)}")
            time.sleep(0.2)
        raise KafkaBrokerError(
            f"Kafka broker not ready within {self.start_timeout:g} s (log: {self.log_path})\n"
            f"{self.log_excerpt(offset)}")
