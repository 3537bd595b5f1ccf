"""The engine watching itself: figures for ``/metrics`` and checks for ``/healthz``.

The pipeline thread calls :meth:`EngineMonitor.observe` after each batch (and
:meth:`EngineMonitor.observe_kafka` in the same loop); both read totals the pipeline already
keeps and do per-batch work independent of the points in it, plus one numpy pass over the
series per drift interval. The API thread reads :meth:`snapshot` and :meth:`health`, which
only copy what the pipeline thread left behind, under a lock, plus process and model-file
figures of their own.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiops.ingest.kafka import KafkaSource
from aiops.ingest.records import Message
from aiops.monitor.drift import DriftTracker, SourceDrift
from aiops.monitor.lag import KafkaLag
from aiops.monitor.model_age import ModelAge, ModelAges
from aiops.monitor.process import cpu_seconds, memory
from aiops.monitor.rates import Rates
from aiops.pipeline import Pipeline


@dataclass(frozen=True)
class MonitorConfig:
    rate_windows_s: tuple[float, ...] = (10.0, 60.0)  # the first is also the per-source window
    drift_interval_s: float = 60.0  # event time between drift evaluations
    drift_window: int = 10  # intervals: silent this long = vanished; "new" and "vanished" count this long
    drift_ref_intervals: float = 30.0  # how slowly a series' reference level follows it
    shift_z: float = 4.0  # reference spreads a level must move to count as shifted
    shift_alarm: float = 0.3  # share of a source's series shifted that alarms
    churn_alarm: float = 0.2  # share of a source's series new (or vanished) that alarms
    model_max_age_s: float = 7200.0  # latest model version older than this is stale
    max_lag: int = 100_000  # records behind on any partition that count as lagging
    max_reject_ratio: float = 0.05  # dead-lettered share of input over the longest rate window
    lag_refresh_s: float = 5.0
    models_refresh_s: float = 10.0


def _source_name(source: str) -> str:
    """A message source without its partition: ``kafka:otlp_metrics/2`` -> ``kafka:otlp_metrics``."""
    head, sep, tail = source.rpartition("/")
    return head if sep and source.startswith("kafka:") and tail.isdigit() else source


def nonfinite(reasons: dict[str, int]) -> Counter[str]:
    """Rejects for NaN/Inf values (points and histogram sums) by value, from the pipeline's reject classes.

    >>> dict(nonfinite({"non-finite value nan": 2, "histogram sum inf is non-finite or out of range": 1, "json": 5}))
    {'nan': 2, 'inf': 1}
    """
    out: Counter[str] = Counter()
    for reason, count in reasons.items():
        words = reason.split()
        if len(words) > 2 and reason.startswith(("non-finite value ", "histogram sum ")):
            try:
                value = float(words[2])
            except ValueError:
                continue
            if not math.isfinite(value):
                out[repr(value)] += count
    return out


class EngineMonitor:
    def __init__(self, pipeline: Pipeline, models_dir: str | Path | None = None, config: MonitorConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.pipeline = pipeline
        self.config = c = config or MonitorConfig()
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()
        self._rates = Rates(c.rate_windows_s)
        self._drift = DriftTracker(c.drift_interval_s, c.drift_window, c.drift_ref_intervals, c.shift_z)
        self._lag = KafkaLag(c.lag_refresh_s)
        self._ages = ModelAges(models_dir, c.model_max_age_s) if models_dir is not None else None
        self._models: list[ModelAge] = []
        self._models_at = float("-inf")
        self._by_source: Counter[str] = Counter()
        self._figures: dict[str, float] = {}
        self._sources: dict[str, SourceDrift] = {}
        self._lags: dict[str, int] = {}
        self._rejects = 0

    # --- the pipeline thread -------------------------------------------------------------------
    def observe(self, messages: Sequence[Message]) -> None:
        """After ``pipeline.process(messages)``: fold the batch's totals in (cheap; call every batch)."""
        p, now = self.pipeline, self._clock()
        st = p.stats
        self._by_source.update(_source_name(m.source) for m in messages)
        totals = {"records": float(st.messages), "points": float(st.points), "series_points": float(st.series_points),
                  "dead_letters": float(st.rejects), "inputs": float(st.points + st.logs + st.spans + st.rejects),
                  "cpu": cpu_seconds()}  # fmt: skip
        totals |= {f"source|{k}": float(v) for k, v in self._by_source.items()}
        figures = {"detectors": float(p.bank.size)}
        if st.rejects != self._rejects:  # reject classes can be many: re-read them only when they grew
            self._rejects = st.rejects
            figures |= {f"nonfinite_values|value={k}": float(v) for k, v in nonfinite(st.reasons).items()}
        watermark = p.validator.watermark
        sources = None
        if watermark and self._drift.due(watermark):
            self._drift.tick(watermark, p.series.keys, *p.bank.recent())
            sources = dict(self._drift.sources)
            watched = p.forecaster.watch
            figures["forecast_watched"] = float(len(watched))
            figures["forecast_fitted"] = float(sum(w.fit is not None for w in watched.values()))
        with self._lock:
            self._rates.add(now, totals)
            self._figures = {**self._figures, **figures}
            if sources is not None:
                self._sources = sources

    def observe_kafka(self, source: KafkaSource) -> None:
        """In the pipeline loop, beside :meth:`observe`: refresh consumer lag (at most every ``lag_refresh_s``)."""
        if self._lag.refresh(source, self._clock()):
            with self._lock:
                self._lags = dict(self._lag.lag)

    # --- any thread ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, float]:
        """Figures as ``name|label=value`` gauges (:mod:`aiops.api.metrics`)."""
        now = self._clock()
        with self._lock:
            out = dict(self._figures)
            for w in self.config.rate_windows_s:
                r, tag = self._rates.rates(now, w), f"{w:g}s"
                out |= {f"{name}_per_s|window={tag}": r.get(name, 0.0)
                        for name in ("records", "points", "series_points", "dead_letters")}  # fmt: skip
                out[f"process_cpu_ratio|window={tag}"] = r.get("cpu", 0.0)
            short = self._rates.rates(now, self.config.rate_windows_s[0])
            out |= {f"source_records_per_s|source={k[7:]}": v for k, v in short.items() if k.startswith("source|")}
            out |= {f"source_records|source={k}": float(v) for k, v in self._by_source.items()}
            for name, d in self._sources.items():
                out |= {f"drift_active_series|source={name}": d.active, f"drift_new_series|source={name}": d.new,
                        f"drift_vanished_series|source={name}": d.vanished, f"drift_shift|source={name}": d.shift}  # fmt: skip
            lags = dict(self._lags)
        if lags:
            out |= {f"kafka_lag|partition={k}": float(v) for k, v in lags.items()}
            out["kafka_lag_total"] = float(sum(lags.values()))
        out |= {"process_cpu_seconds": cpu_seconds(), **memory()}
        for m in self._read_models():
            out |= {f"model_version|model={m.name}": m.version, f"model_updated_unix|model={m.name}": m.created_unix,
                    f"model_age_seconds|model={m.name}": m.age_s, f"model_stale|model={m.name}": float(m.stale)}  # fmt: skip
        return out

    def health(self) -> dict[str, dict[str, Any]]:
        """Checks with an ``ok`` flag each: consumer lag, stale models, input drift, reject rate."""
        c, now = self.config, self._clock()
        with self._lock:
            lags, sources = dict(self._lags), dict(self._sources)
            r = self._rates.rates(now, max(c.rate_windows_s))
        checks: dict[str, dict[str, Any]] = {}
        if lags:
            worst = max(lags, key=lags.__getitem__)
            checks["kafka_lag"] = {"ok": lags[worst] <= c.max_lag, "total": sum(lags.values()), "worst_partition": worst,
                                   "worst": lags[worst], "max": c.max_lag}  # fmt: skip
        if self._ages is not None:
            models = self._read_models()
            checks["models"] = {"ok": not any(m.stale for m in models), "max_age_s": c.model_max_age_s,
                                "stale": [m.name for m in models if m.stale],
                                "age_s": {m.name: round(m.age_s) for m in models}}  # fmt: skip
        alarms = {name: why for name, d in sources.items() if (why := self._drift_alarm(d))}
        checks["input_drift"] = {"ok": not alarms, "alarms": alarms}
        inputs = r.get("inputs", 0.0)
        ratio = r.get("dead_letters", 0.0) / inputs if inputs else 0.0
        checks["input_rejects"] = {"ok": ratio <= c.max_reject_ratio, "ratio": round(ratio, 4),
                                   "max": c.max_reject_ratio, "window_s": max(c.rate_windows_s)}  # fmt: skip
        return checks

    def _drift_alarm(self, d: SourceDrift) -> str:
        c, known = self.config, d.active + d.vanished
        why = []
        if d.warm and d.new > c.churn_alarm * max(d.active, 1):
            why.append(f"{d.new} new series (of {d.active} active)")
        if known and d.vanished > c.churn_alarm * known:
            why.append(f"{d.vanished} series vanished (of {known})")
        if d.shift > c.shift_alarm:
            why.append(f"{d.shift:.0%} of series shifted")
        return "; ".join(why)

    def _read_models(self) -> list[ModelAge]:
        """Model ages, re-listing ``models/`` at most every ``models_refresh_s`` (outside the lock: file reads)."""
        now = self._clock()
        if self._ages is not None and now - self._models_at >= self.config.models_refresh_s:
            self._models_at = now
            self._models = self._ages.read(self._wall())
        return self._models
