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

    def counts(self) -> dict[str, float]:
        """The API's own counters in the snapshot's ``name|label=value`` form, for pages that show
        figures without scraping: successful reads by route (who consumes the output) and the
        security signals (refused credentials, bad Slack signatures, rejected parameters)."""
        out: dict[str, float] = {}
        for family in (f for c in (self.requests, self.auth_failures, self.bad_signatures, self.rejected_params)
                       for f in c.collect()):  # not the snapshot collector: counts() may feed a snapshot
            for s in family.samples:
                if not s.name.endswith("_total"):
                    continue
                name, value = s.name[len("aiops_"):-len("_total")], s.value
                if name == "api_requests":
                    if s.labels["method"] == "GET" and s.labels["status"].startswith("2"):
                        key = f"api_reads|route={s.labels['route']}"
                        out[key] = out.get(key, 0.0) + value
                elif "reason" in s.labels:
                    out[f"{name}|reason={s.labels['reason']}"] = value
                else:
                    out[name] = value
        return out

    def render(self) -> bytes:
        return generate_latest(self.registry)
