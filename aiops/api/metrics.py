"""``/metrics``: the engine's own health in Prometheus' text format.

Counters the API sees itself (requests, refused credentials, bad Slack signatures, rejected
parameters) live here; the pipeline's and the notifier's figures are read from a snapshot
function at scrape time, so the hot path never touches a Prometheus object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

Snapshot = Callable[[], dict[str, float]]


class _Snapshot(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for name, value in sorted(self.snapshot().items()):
            metric, _, label = name.partition("|")  # "bad_records|reason=json" -> a labelled sample
            key, _, val = label.partition("=")
            family = families.get(metric)
            if family is None:
                family = families[metric] = GaugeMetricFamily(
                    f"aiops_{metric}", f"aiops {metric.replace('_', ' ')}", labels=[key] if key else None)
            family.add_metric([val] if key else [], float(value))
        yield from families.values()


class ApiMetrics:
    def __init__(self, snapshot: Snapshot) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("aiops_api_requests", "API requests", ["method", "route", "status"], registry=self.registry)
        self.auth_failures = Counter("aiops_api_auth_failures", "refused credentials", ["reason"], registry=self.registry)
        self.bad_signatures = Counter("aiops_slack_bad_signatures", "Slack actions refused", ["reason"],
                                      registry=self.registry)  # fmt: skip
        self.rejected_params = Counter("aiops_rejected_parameters", "requests refused as invalid", registry=self.registry)
        self.registry.register(_Snapshot(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)
