"""Built-in microservice simulator emitting OTLP/JSON telemetry with injected faults.

It stands in for a real system behind an OTel Collector's kafka exporter: ``Simulator.step()``
returns the Kafka message payloads of one window, ``write_replay`` writes a replay folder, and
every run carries ground truth for scoring detection and root-cause ranking.
"""

from .faults import DEFAULT_MAGNITUDE, FAULT_KINDS, FaultKind, FaultSpec
from .replay import write_replay
from .simulator import (
    DEFAULT_LEAD_IN_SECONDS,
    DEFAULT_SCENARIO_SECONDS,
    DEFAULT_START_UNIX_NANO,
    SimMessage,
    Simulator,
    default_scenario,
)
from .topology import Edge, Service, Topology, build_topology

__all__ = [
    "DEFAULT_LEAD_IN_SECONDS",
    "DEFAULT_MAGNITUDE",
    "DEFAULT_SCENARIO_SECONDS",
    "DEFAULT_START_UNIX_NANO",
    "FAULT_KINDS",
    "Edge",
    "FaultKind",
    "FaultSpec",
    "Service",
    "SimMessage",
    "Simulator",
    "Topology",
    "build_topology",
    "default_scenario",
    "write_replay",
]
