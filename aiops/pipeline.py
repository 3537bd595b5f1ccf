"""The embedded pipeline: decode → validate → derive → detect → correlate, in one process.

Sources hand it batches of :class:`~aiops.ingest.records.Message`; it hands refused records to a
dead-letter sink and incidents (when opened, when their root causes change, when resolved) and
anomaly episodes to callbacks. Its whole state round-trips through :meth:`snapshot` /
:meth:`restore` as JSON plus named numpy arrays (never pickle), which is what lets a Kafka
consumer store state and offsets together and resume without re-learning or re-alerting.
"""

from __future__ import annotations

import functools
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aiops.correlate.changes import ChangeIndex
from aiops.correlate.contract import Incident, RootCause
from aiops.correlate.incidents import IncidentManager
from aiops.detect.bank import BankConfig, DetectorBank, config_from_json
from aiops.detect.episodes import Activity, Anomaly, EpisodeTracker
from aiops.detect.models import ModelInfo, load_bank, save_bank, save_json_model
from aiops.detect.policy import DetectionPolicy, PolicyTable
from aiops.detect.series import SeriesIndex, rounds
from aiops.errors import StateError
from aiops.forecast.engine import ForecastConfig, Forecaster, Prediction
from aiops.forecast.slo import SloPolicy
from aiops.learn.recorder import SeriesRecorder
from aiops.ingest.aggregate import LogMetrics, SpanMetrics
from aiops.ingest.deadletter import DeadLetterSink
from aiops.ingest.decode import decode
from aiops.ingest.derive import Deriver
from aiops.ingest.records import Message, MetricBatch, Reject, series_key
from aiops.ingest.validate import ValidationPolicy, Validator
from aiops.rca.graph import DependencyGraph

SNAPSHOT_VERSION = 2  # 2: forecaster state


def _prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


@dataclass
class Stats:
    messages: int = 0
    points: int = 0  # metric points accepted (raw, before derivation)
    logs: int = 0
    spans: int = 0
    changes: int = 0
    series_points: int = 0  # points scored by the detectors (incl. derived series)
    rejects: int = 0
    no_value_points: int = 0
    anomalies: int = 0
    predictions: int = 0  # SLO breaches forecast
    first_ts: int = 0  # event time of the first metric point: the start of the data window
    incident_ids: set[str] = field(default_factory=set)
    reasons: Counter[str] = field(default_factory=Counter)

    def state(self) -> dict[str, Any]:
        counts = {k: v for k, v in vars(self).items() if isinstance(v, int)}
        return {**counts, "incident_ids": sorted(self.incident_ids), "reasons": dict(self.reasons)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Stats:
        counts = {k: int(v) for k, v in state.items() if k not in ("incident_ids", "reasons")}
        return cls(**counts, incident_ids=set(state["incident_ids"]), reasons=Counter(state["reasons"]))

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "points": self.points, "logs": self.logs, "spans": self.spans,
            "changes": self.changes, "series_points": self.series_points, "bad_records": self.rejects,
            "anomalies": self.anomalies, "predictions": self.predictions, "incidents": len(self.incident_ids),
        }  # fmt: skip


@functools.lru_cache(maxsize=1 << 16)
def evidence_of(key: str, service: str) -> str:
    """The service a series is evidence about: a client-side metric naming its callee
    (``rpc.client.duration{peer.service=cart}``) measures the callee as its caller sees it, so,
    like a CLIENT span, it is the callee's; a network delay shows only there.

    >>> evidence_of("frontend/rpc.client.duration.p50{peer.service=cart}", "frontend")
    'cart'
    """
    head, _, attrs = key.partition("{")
    if not attrs or "client" not in head.split("/", 1)[-1]:
        return service
    for pair in attrs.rstrip("}").split(","):
        name, _, value = pair.partition("=")
        if name == "peer.service" and value:
            return value
    return service


def _reason_class(reason: str) -> str:
    return reason.split(":", 1)[0][:60]


class Correlator(Protocol):
    """What detection tells: the in-process :class:`IncidentManager`, or the detect role's
    :class:`~aiops.scale.findings.FindingsWriter`, which ships the same calls to the incident stage.

    Built from the pipeline's change index, call graph and set of monitored services.
    """

    def on_activity(self, activity: Activity, keys: list[str], may_open: bool = True) -> list[Incident]: ...
    def on_predictions(self, predictions: list[Prediction]) -> list[Incident]: ...
    def tick(self, watermark: int) -> list[Incident]: ...
    def state(self) -> dict[str, Any]: ...
    def load_state(self, state: dict[str, Any]) -> None: ...


def correlate_here(changes: ChangeIndex, graph: DependencyGraph, own: set[str]) -> IncidentManager:
    return IncidentManager(changes, graph, own.__contains__)


class Pipeline:
    detects = True  # runs the detectors itself (the incident stage of a scaled-out install does not)

    def __init__(
        self,
        dead_letter: DeadLetterSink,
        on_incident: Callable[[Incident], None],
        on_anomaly: Callable[[Anomaly], None] | None = None,
        now_ns: Callable[[], int] = time.time_ns,
        policy: ValidationPolicy | None = None,
        window_s: float = 30.0,
        bank_config: BankConfig | None = None,
        detection: DetectionPolicy | None = None,
        topology: str | Path | None = None,
        slos: SloPolicy | None = None,
        forecast: ForecastConfig | None = None,
        record_points: int = 180,
        correlator: Callable[[ChangeIndex, DependencyGraph, set[str]], Correlator] = correlate_here,
    ) -> None:
        self.dead_letter = dead_letter
        self.on_incident = on_incident
        self.on_anomaly = on_anomaly
        self._policy, self._now_ns, self._window_s = policy, now_ns, window_s
        self._bank_config, self._detection, self._topology = bank_config, detection, topology
        self._slos, self._forecast, self._correlator = slos, forecast, correlator
        self.recorder = SeriesRecorder(record_points)  # recent points, to replay a model change on
        self._install(self._fresh())

    def _fresh(self) -> dict[str, Any]:
        """Every stateful stage, new; :meth:`restore` loads into these before swapping them in."""
        changes = ChangeIndex()
        graph = DependencyGraph()
        if self._topology is not None:
            graph.load_static(self._topology)
        own: set[str] = set()  # services with series of their own (not only callers' views of them)
        policy = PolicyTable(self._detection, self._slos)
        return {
            "graph": graph,
            "own": own,
            "validator": Validator(self._policy, self._now_ns),
            "deriver": Deriver(),
            "span_metrics": SpanMetrics(self._window_s, self._window_s),
            "log_metrics": LogMetrics(self._window_s, self._window_s),
            "series": SeriesIndex(),
            "bank": DetectorBank(self._bank_config),
            "policy": policy,
            "forecaster": Forecaster(policy.slo_rules, self._forecast),
            "episodes": EpisodeTracker(),
            "changes": changes,
            "incidents": self._correlator(changes, graph, own),
            "stats": Stats(),
        }

    def _install(self, stages: dict[str, Any]) -> None:
        self.validator: Validator = stages["validator"]
        self.deriver: Deriver = stages["deriver"]
        self.span_metrics: SpanMetrics = stages["span_metrics"]
        self.log_metrics: LogMetrics = stages["log_metrics"]
        self.series: SeriesIndex = stages["series"]
        self.bank: DetectorBank = stages["bank"]
        self.policy: PolicyTable = stages["policy"]
        self.forecaster: Forecaster = stages["forecaster"]
        self.episodes: EpisodeTracker = stages["episodes"]
        self.changes: ChangeIndex = stages["changes"]
        self.incidents: Any = stages["incidents"]  # an IncidentManager unless the correlator says otherwise
        self.stats: Stats = stages["stats"]
        self.graph: DependencyGraph = stages["graph"]
        self._own: set[str] = stages["own"]

    def process(self, messages: Iterable[Message]) -> None:
        """Run one batch of messages through every stage."""
        metrics: list[MetricBatch] = []
        histograms, changes, rejects, late = [], [], [], []
        for msg in messages:
            self.stats.messages += 1
            d = self.validator.validate(decode(msg), msg.source, msg.offset)
            metrics.append(d.metrics)
            histograms.extend(d.histograms)
            changes.extend(d.changes)
            self.stats.logs += len(d.logs)
            self.stats.spans += len(d.spans)
            rejects.extend(d.rejects)
            self.stats.no_value_points += d.no_value_points
            if d.spans:
                self.graph.observe(d.spans)
                self.span_metrics.add(d.spans, msg.source, msg.offset, late)
            if d.logs:
                self.log_metrics.add(d.logs, msg.source, msg.offset, late)
        raw = MetricBatch.concat(metrics)
        if len(raw) and not self.stats.first_ts:
            self.stats.first_ts = int(raw.ts.min())
        self.stats.points += len(raw) + len(histograms)
        self.stats.changes += len(changes)
        self.changes.add(changes)
        self._reject(rejects + late)
        self._new_templates()
        watermark = self.validator.watermark
        self._detect(MetricBatch.concat([
            self.deriver.derive(raw, histograms),
            self.span_metrics.flush(),
            self.log_metrics.flush(),
        ]))  # fmt: skip
        self._publish(self.incidents.tick(watermark))
        self.graph.prune(watermark)

    def flush(self) -> None:
        """End of stream: close every window so its series are scored too."""
        self._detect(MetricBatch.concat([self.span_metrics.flush(final=True), self.log_metrics.flush(final=True)]))

    def _new_templates(self) -> None:
        """A never-seen WARN/ERROR log template is evidence by itself: an anomaly, no detector needed."""
        found = [
            Anomaly(series_key(service, "log.new_template", {"severity": cls, "template": tid, "text": text[:80]}),
                    service, ts, 0.9, 1, 1.0, 0.0)
            for ts, service, tid, text, cls in self.log_metrics.take_new_templates()
        ]  # fmt: skip
        if found:
            empty = np.zeros(0, dtype=np.int64)
            self._opened(Activity(found, empty, empty, np.zeros(0)), may_open=False)

    def _opened(self, activity: Activity, may_open: bool = True, keys: list[str] | None = None) -> None:
        """Hand a round of detector output on; ``keys`` name ``activity``'s series ids (default: ours)."""
        self.stats.anomalies += len(activity.opened)
        if self.on_anomaly is not None:
            for a in activity.opened:
                self.on_anomaly(a)
        self._publish(self.incidents.on_activity(activity, self.series.keys if keys is None else keys, may_open))

    def _reject(self, rejects: list[Reject]) -> None:
        if rejects:
            self.dead_letter.write(rejects)
            self.stats.rejects += len(rejects)
            self.stats.reasons.update(_reason_class(r.reason) for r in rejects)

    def _detect(self, batch: MetricBatch) -> None:
        if not len(batch):
            return
        self.stats.series_points += len(batch)
        ids = self.series.ids(batch.keys, [evidence_of(k, s) for k, s in zip(batch.keys, batch.services, strict=True)])
        keys, services = self.series.keys, self.series.services
        new = np.asarray(self.policy.extend(keys), dtype=np.int64)
        self.bank.set_sensitivity(new, self.policy.sensitivity[new])
        self._own.update(keys[j].split("/", 1)[0] for j in new)
        for idx in rounds(ids):
            i, x, ts = ids[idx], batch.values[idx], batch.ts[idx]
            scores, directions = self.bank.update(i, ts, x)
            self.recorder.record(i, ts, x)
            activity = self.episodes.update(i, ts, x, scores, directions, keys, services, self.policy,
                                            self.bank.baseline(i))  # fmt: skip
            self._opened(activity)
            for a in activity.opened:  # a jump makes the forecast model stale
                self.forecaster.level_shift(self.series.index[a.series])
            predictions = self.forecaster.observe(i, ts, x, self.policy.slo_rule, keys, services)
            if predictions:
                self.stats.predictions += sum(p.event == "predicted" for p in predictions)
                self._publish(self.incidents.on_predictions(predictions))

    def feedback(self, series: str, kind: str) -> None:
        """An expert's verdict on a series' anomaly (``false_positive`` or ``missed``): retunes that series."""
        sid = self.series.index.get(series)
        if sid is None:
            raise KeyError(f"unknown series {series!r}")
        self.bank.feedback(sid, kind)

    def rank(self, anomalies: list[Anomaly]) -> list[RootCause]:
        """Root causes for a given set of anomalies ranked together (see :meth:`IncidentManager.rank`)."""
        return self.incidents.rank(anomalies)

    def _publish(self, incidents: list[Incident]) -> None:
        for inc in incidents:
            self.stats.incident_ids.add(inc.id)
            self.on_incident(inc)

    # --- models/ ------------------------------------------------------------------------------
    def save_models(self, models_dir: str | Path, bank_name: str = "metrics", change: dict[str, Any] | None = None) -> ModelInfo:
        """Write the detector bank as the next version under ``models_dir/bank_name``.

        ``change`` (what an expert changed and its before/after figures) goes into the metadata.
        """
        window = (self.stats.first_ts, self.validator.watermark) if self.stats.first_ts else None
        return save_bank(models_dir, bank_name, self.bank, self.series.keys, window, {"change": change} if change else None)

    def revert_models(self, models_dir: str | Path, version: int, who: str, bank_name: str = "metrics") -> ModelInfo:
        """Put the learned state of every series a saved version knows back into the live bank.

        Series born after that version keep what they learned since. The result is saved as a new
        version, so the history only grows and a revert can itself be reverted.
        """
        old, keys, _ = load_bank(models_dir, bank_name, version)
        ours = [self.series.index.get(k) for k in keys]
        rows = np.array([i for i, j in enumerate(ours) if j is not None], dtype=np.int64)
        into = np.array([j for j in ours if j is not None], dtype=np.int64)
        for name, arr in old.state().items():
            self.bank.arrays[name][into] = arr[rows]
        return self.save_models(models_dir, bank_name, {"kind": "revert", "to_version": version, "who": who,
                                                        "series": len(into)})  # fmt: skip

    def save_versions(self, models_dir: str | Path) -> list[ModelInfo]:
        """A new version of every model under ``models_dir``: the detector bank and the forecast fits."""
        return [self.save_models(models_dir), self.save_forecasts(models_dir)]

    def save_forecasts(self, models_dir: str | Path) -> ModelInfo:
        """Write the current forecast fits with their fit metrics as the next ``forecast/v<N>.json``."""
        window = [self.stats.first_ts, self.validator.watermark] if self.stats.first_ts else None
        return save_json_model(models_dir, "forecast", {
            "data_window_unix_nano": window,
            "config": self.forecaster.config.model_dump(),
            "stats": self.forecaster.stats,
            "fits": self.forecaster.fits(self.series.keys),
        })  # fmt: skip

    def load_models(self, models_dir: str | Path, bank_name: str = "metrics", version: int | None = None) -> ModelInfo:
        """Warm-start a fresh pipeline's detectors from a saved version (its series keep their rows)."""
        if len(self.series):
            raise StateError("load_models needs a fresh pipeline: series are already being tracked")
        bank, keys, info = load_bank(models_dir, bank_name, version)
        services = [k.split("/", 1)[0] for k in keys]
        self.series.load_state({"keys": keys, "services": services})
        self.bank = bank
        self.policy.extend(keys)
        self._own.update(services)
        return info

    # --- state -------------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """All learned state as one ``.npz`` blob (arrays + a JSON document), no pickle."""
        forecast_meta, forecast_arrays = self.forecaster.state()
        meta = {
            "version": SNAPSHOT_VERSION,
            "validator": self.validator.state(),
            "deriver": self.deriver.state(),
            "span_metrics": self.span_metrics.state(),
            "log_metrics": self.log_metrics.state(),
            "series": self.series.state(),
            "changes": self.changes.state(),
            "incidents": self.incidents.state(),
            "graph": self.graph.state(),
            "forecast": forecast_meta,
            "bank_config": self.bank.config.to_json(),
            "stats": self.stats.state(),
            "extra": self._extra_state(),
        }
        arrays = {f"bank.{k}": v for k, v in self.bank.state().items()}
        arrays |= {f"episodes.{k}": v for k, v in self.episodes.state().items()}
        arrays |= {f"forecast.{k}": v for k, v in forecast_arrays.items()}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    def restore(self, blob: bytes) -> None:
        """Load a :meth:`snapshot`; all or nothing, and any damage is a :class:`StateError`."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("meta").tobytes())
            if not isinstance(meta, dict) or meta.get("version") != SNAPSHOT_VERSION:
                version = meta.get("version") if isinstance(meta, dict) else None
                raise StateError(f"pipeline snapshot version {version!r} is not {SNAPSHOT_VERSION}")
            stages = self._fresh()
            stages["bank"] = DetectorBank(config_from_json(meta["bank_config"]))
            for name in ("validator", "deriver", "span_metrics", "log_metrics", "series", "changes", "incidents", "graph"):
                stages[name].load_state(meta[name])
            stages["policy"].extend(stages["series"].keys)
            stages["own"].update(k.split("/", 1)[0] for k in stages["series"].keys)
            stages["stats"] = Stats.from_state(meta["stats"])
            for name in ("bank", "episodes"):
                stages[name].load_state(_prefixed(arrays, f"{name}."))
            stages["forecaster"].load_state(meta["forecast"], _prefixed(arrays, "forecast."))
        except StateError:
            raise
        except Exception as e:  # a damaged blob can fail in any loader, in any way
            raise StateError(f"unreadable pipeline snapshot: {type(e).__name__}: {e}") from e
        self._install(stages)
        self._load_extra(meta.get("extra") or {})

    def _extra_state(self) -> dict[str, Any]:
        """State a subclass keeps besides the stages' (saved in :meth:`snapshot`)."""
        return {}

    def _load_extra(self, extra: dict[str, Any]) -> None:
        """Load what :meth:`_extra_state` saved."""

