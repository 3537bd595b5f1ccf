"""Forecasting: time-to-breach on known ramps, silence on flat and seasonal series, predicted
incidents converting to detected or averted, model governance, state and models/ versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiops.config import load_settings
from aiops.correlate.changes import ChangeIndex
from aiops.correlate.incidents import IncidentManager
from aiops.detect.episodes import Activity, Anomaly
from aiops.forecast import ForecastConfig, Forecaster, Prediction, SloPolicy, SloRule
from aiops.forecast.ets import Fit, find_period, fit
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.ingest.records import ChangeEvent
from aiops.pipeline import Pipeline
from aiops.rca.graph import DependencyGraph
from aiops.sim import FaultSpec, Simulator
from aiops.sim.source import SimulatorSource

S = 10**9
MIN = 60 * S
T = 1_700_000_000 * S
RULE = SloRule(match="*", above=0.9, kind="saturation", name="memory of limit")
KEY, SVC = "api/process.memory.utilization", "api"


def feed(values: np.ndarray, every_s: float = 10.0, config: ForecastConfig | None = None,
         shifts: tuple[int, ...] = ()) -> tuple[Forecaster, list[Prediction]]:  # fmt: skip
    """One series through a fresh forecaster; ``shifts`` are point indexes where the bank flags a jump."""
    fc = Forecaster([RULE], config)
    events: list[Prediction] = []
    for i, v in enumerate(values):
        if i in shifts:
            fc.level_shift(0)
        ts = np.array([T + int(i * every_s * S)])
        events += fc.observe(np.array([0]), ts, np.array([float(v)]), np.array([0], dtype=np.int32), [KEY], [SVC])
    return fc, events


def ramp(rng: np.random.Generator, flat_min: int, ramp_min: int, top: float, after_min: int = 20) -> np.ndarray:
    """10 s points: flat at 0.5, a linear rise to ``top``, then flat there."""
    y = np.r_[np.full(flat_min * 6, 0.5), np.linspace(0.5, top, ramp_min * 6), np.full(after_min * 6, top)]
    return y + rng.normal(0, 0.01, len(y))


def first_breach(values: np.ndarray, every_s: float = 10.0) -> int:
    """Event time at which the first one-minute mean past the line is known (its minute's end)."""
    minute = (T + (np.arange(len(values)) * every_s * S).astype(np.int64)) // MIN
    for m in np.unique(minute)[:-1]:  # the last minute has not closed
        if values[minute == m].mean() > RULE.threshold:
            return int((m + 1) * MIN)
    raise AssertionError("no breach")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_known_ramp_predicts_the_breach_time_within_its_interval(seed):
    y = ramp(np.random.default_rng(seed), flat_min=60, ramp_min=40, top=1.0)
    _, events = feed(y)
    breach = first_breach(y)
    (warning,) = [e for e in events if e.event == "predicted"]
    assert warning.ts <= breach - 5 * MIN, "warned at least five minutes ahead"
    assert warning.earliest_breach <= breach <= (warning.latest_breach or breach)
    assert abs(warning.expected_breach - breach) <= 5 * MIN
    assert warning.fit["mae"] <= warning.fit["naive_mae"]
    assert [e.event for e in events] == ["predicted", "breached"]
    assert next(e for e in events if e.event == "breached").ts == breach


@pytest.mark.parametrize("seed", range(4))
def test_flat_noisy_series_never_predict(seed):
    rng = np.random.default_rng(seed)
    y = 0.6 + rng.normal(0, 0.06, 6 * 60 * 6)  # six hours, noise at 30 % of the gap to the line
    fc, events = feed(y)
    assert events == []
    assert fc.stats["predictions"] == 0


@pytest.mark.parametrize("period_min", [60, 90])
def test_seasonal_peaks_under_the_slo_do_not_predict(period_min):
    """Once the cycle has been seen (two of them, on 10-minute means), its rising halves are not trends.

    Before that, a rise is a rise: no forecaster can tell the first cycle from a ramp.
    """
    rng = np.random.default_rng(3)
    t = np.arange(6 * 60 * 10)  # ten hours of 10 s points, a cycle peaking at 0.8
    y = 0.5 + 0.3 * np.sin(2 * np.pi * t / (6 * period_min)) + rng.normal(0, 0.01, len(t))
    fc, events = feed(y)
    learned = T + 3 * period_min * MIN
    assert fc.stats["fits"] > 10, "the rising halves pass the screen and get a model"
    assert [e for e in events if e.ts > learned] == []
    assert "season" in fc.watch[0].fit.model if fc.watch[0].fit else True


def test_cycles_are_found_and_ramps_are_not_cycles():
    rng = np.random.default_rng(0)
    t = np.arange(600)
    assert find_period(np.sin(2 * np.pi * t / 60) + rng.normal(0, 0.1, 600)) == 60
    assert find_period(np.r_[np.zeros(400), np.linspace(0, 1, 200)] + rng.normal(0, 0.01, 600)) == 0
    assert find_period(rng.normal(0, 1, 600)) == 0


def test_the_analytic_interval_matches_statsmodels():
    pd = pytest.importorskip("pandas")
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    rng = np.random.default_rng(0)
    y = np.r_[np.full(60, 0.5), 0.5 + np.arange(30) * 0.01] + rng.normal(0, 0.01, 90)
    ours = fit(y, 0)
    assert ours is not None and ours.usable
    mean, sd = ours.forecast(20)
    ref = ETSModel(pd.Series(y), error="add", trend="add", damped_trend=True, initialization_method="heuristic")
    frame = ref.fit(disp=False).get_prediction(start=90, end=109).summary_frame(alpha=0.1)
    np.testing.assert_allclose(mean, frame["mean"].to_numpy(), rtol=1e-3)
    np.testing.assert_allclose(1.645 * sd, (frame["pi_upper"] - frame["mean"]).to_numpy(), rtol=1e-2)


def test_a_step_is_not_a_trend():
    """A jump the bank flags (a latency step) must not be extrapolated as a ramp into the line."""
    rng = np.random.default_rng(4)
    y = np.r_[np.full(360, 0.3), np.full(360, 0.7)] + rng.normal(0, 0.01, 720)
    _, events = feed(y, shifts=(360,))
    assert events == []


def test_a_trend_that_reverses_is_averted():
    rng = np.random.default_rng(5)
    up = np.linspace(0.5, 0.86, 30 * 6)
    y = np.r_[np.full(360, 0.5), up, np.linspace(0.86, 0.5, 10 * 6), np.full(30 * 6, 0.5)] + rng.normal(0, 0.005, 360 + 180 + 60 + 180)
    _, events = feed(y)
    assert [e.event for e in events] == ["predicted", "averted"]


def test_a_fit_worse_than_naive_is_not_used(monkeypatch):
    def bad_fit(y, step, history=None):
        return Fit(alpha=0.5, beta=0.5, phi=0.98, sigma=0.001, level=float(y[-1]), trend=0.05, mae=0.2, naive_mae=0.1,
                   aic=0.0, n=len(y), fitted_step=step)  # fmt: skip

    monkeypatch.setattr("aiops.forecast.engine.fit", bad_fit)
    y = ramp(np.random.default_rng(0), flat_min=60, ramp_min=40, top=1.0)
    fc, events = feed(y)
    assert fc.stats["fits"] > 0 and fc.stats["fits_rejected"] == fc.stats["fits"]
    assert [e.event for e in events] == []


def test_the_refit_budget_caps_model_fits_per_step():
    n = 50
    fc = Forecaster([RULE], ForecastConfig(refit_budget=3))
    keys, services = [f"s{i}/m" for i in range(n)], [f"s{i}" for i in range(n)]
    for step in range(6 * 50):
        x = 0.5 + np.full(n, 0.002) * max(0, step - 6 * 25)
        fc.observe(np.arange(n), np.full(n, T + step * 10 * S), x, np.zeros(n, dtype=np.int32), keys, services)
    assert 0 < fc.stats["fits"] <= 3 * 50 // 1  # at most three per one-minute step
    per_step = fc.stats["fits"] / max(1, 50 - 26)
    assert per_step <= 3


# --- incidents ---------------------------------------------------------------------------------


def prediction(event: str, ts: int, **kw) -> Prediction:
    base = {"series": KEY, "service": SVC, "ts": ts, "rule": RULE, "probability": 0.95, "value": 0.7,
            "baseline": 0.5, "expected_breach": ts + 10 * MIN, "earliest_breach": ts + 6 * MIN,
            "latest_breach": ts + 15 * MIN, "trend_start": ts - 20 * MIN,
            "fit": {"model": "ETS(A,Ad,N)", "mae": 0.01, "naive_mae": 0.02, "aic": -100.0, "n": 90}}  # fmt: skip
    return Prediction(event, **(base | kw))  # type: ignore[arg-type]


def test_predicted_incident_converts_to_detected_on_breach():
    m = IncidentManager(ChangeIndex())
    (opened,) = m.on_predictions([prediction("predicted", T)])
    assert opened.kind == "predicted" and opened.status == "open"
    assert opened.anomalies == [] and opened.services == [SVC]
    assert opened.root_causes[0].service == SVC and opened.suggested_playbook == "scale-out"
    f = opened.forecast
    assert f is not None and f.outcome == "pending" and f.expected_breach_unix_nano == T + 10 * MIN
    assert f.slo == "memory of limit > 0.9" and f.fit["mae"] == 0.01
    assert m.tick(T + 60 * MIN) == [], "a pending warning keeps its incident open"
    (converted,) = m.on_predictions([prediction("breached", T + 9 * MIN, value=0.92)])
    assert converted.id == opened.id and converted.kind == "detected"
    assert converted.forecast.outcome == "breached" and converted.forecast.outcome_at_unix_nano == T + 9 * MIN
    (resolved,) = m.tick(T + 9 * MIN + 300 * S)
    assert resolved.status == "resolved" and resolved.kind == "detected"


def test_predicted_incident_resolves_as_averted():
    m = IncidentManager(ChangeIndex())
    (opened,) = m.on_predictions([prediction("predicted", T)])
    (averted,) = m.on_predictions([prediction("averted", T + 8 * MIN, probability=0.1)])
    assert averted.id == opened.id and averted.status == "resolved" and averted.kind == "predicted"
    assert averted.forecast.outcome == "averted"
    assert m.open == {}


def test_a_warning_joins_the_incident_already_holding_its_service():
    m = IncidentManager(ChangeIndex())
    a = Anomaly("api/http.server.request.duration:p99", SVC, T, 0.9, 1, 0.4, 0.2)
    empty = np.zeros(0, dtype=np.int64)
    (detected,) = m.on_activity(Activity([a], empty, empty, np.zeros(0)), [a.series])
    (updated,) = m.on_predictions([prediction("predicted", T + MIN)])
    assert updated.id == detected.id and updated.kind == "detected"
    assert updated.forecast.series == KEY and [x.series for x in updated.anomalies] == [a.series]
    (again,) = m.on_predictions([prediction("predicted", T + 2 * MIN, series="api/other")])
    assert again.id == detected.id and again.forecast.series == KEY, "the first warning stays the incident's forecast"


def test_related_warnings_share_one_predicted_incident():
    graph = DependencyGraph()
    graph.g.add_edge("web", "api", calls=1, errors=0, last_seen=T, pinned=True)
    m = IncidentManager(ChangeIndex(), graph)
    (first,) = m.on_predictions([prediction("predicted", T, series="web/http.server.request.count:error_ratio",
                                            service="web", trend_start=T - 2 * MIN)])  # fmt: skip
    (joined,) = m.on_predictions([prediction("predicted", T + MIN, trend_start=T - 8 * MIN)])
    assert joined.id == first.id and joined.kind == "predicted" and joined.services == ["api", "web"]
    assert joined.forecast.service == "web", "the incident keeps its first forecast"
    assert joined.root_causes[0].service == "api", "the callee's trend began first and explains its caller"
    assert m.on_predictions([prediction("averted", T + 5 * MIN, series="web/http.server.request.count:error_ratio",
                                        service="web")])[0].status == "open", "api's warning still stands"  # fmt: skip
    (closed,) = m.on_predictions([prediction("averted", T + 6 * MIN)])
    assert closed.status == "resolved"


def test_a_deploy_before_the_trend_suggests_rollback():
    changes = ChangeIndex()
    changes.add([ChangeEvent(T - 25 * MIN, SVC, "deployment", "v2", {})])
    m = IncidentManager(changes)
    (opened,) = m.on_predictions([prediction("predicted", T)])
    assert opened.suggested_playbook == "rollback"
    assert "deployed v2" in opened.root_causes[0].reason


# --- configuration, pipeline, models/ -------------------------------------------------------------


def test_slo_rules_from_the_config_file(tmp_path):
    cfg = tmp_path / "aiops.yaml"
    cfg.write_text("slos:\n  rules:\n    - {match: 'checkout/*duration:p99', above: 0.5, kind: latency}\n"
                   "forecast:\n  horizon_s: 900\n  refit_budget: 5\n")  # fmt: skip
    s = load_settings(cfg)
    assert s.slos.rules[0].threshold == 0.5 and s.forecast.horizon_s == 900
    assert s.slos.resolve("checkout/http.server.request.duration:p99") == 0
    assert s.slos.all_rules()[s.slos.resolve("cart/process.memory.utilization")].above == 0.9
    with pytest.raises(ValueError, match="exactly one"):
        SloRule(match="*", above=1.0, below=0.0)
    assert SloPolicy(use_default_rules=False).resolve("cart/process.memory.utilization") == -1


def slow_leak() -> Simulator:
    fault = FaultSpec("catalog", "memory_leak", 1800.0, 1800.0, 0.98)
    return Simulator(6, 3, T, faults=[fault])


def run_pipeline(sim: Simulator, seconds: float, stop_at: float | None = None, models=None):
    published = []
    p = Pipeline(MemoryDeadLetter(), published.append, now_ns=lambda: sim.now_unix_nano)
    batches = SimulatorSource(sim, sim.steps_for(seconds)).batches()
    for k, batch in enumerate(batches):
        p.process(batch)
        if stop_at is not None and k == sim.steps_for(stop_at):
            blob = p.snapshot()
            p = Pipeline(MemoryDeadLetter(), published.append, now_ns=lambda: sim.now_unix_nano)
            p.restore(blob)
    return p, published


def test_a_slow_leak_in_the_simulator_is_forecast_and_survives_a_restart(tmp_path):
    whole, published = run_pipeline(slow_leak(), 3900)
    warned = [i for i in published if i.forecast and i.forecast.series == "catalog/process.memory.utilization"]
    assert warned, "the leak was forecast"
    first, last = warned[0], warned[-1]
    assert first.forecast.outcome == "pending" and first.suggested_playbook == "scale-out"
    assert last.forecast.outcome == "breached" and last.kind == "detected"
    assert last.forecast.outcome_at_unix_nano - first.forecast.predicted_at_unix_nano >= 5 * MIN
    _, again = run_pipeline(slow_leak(), 3900, stop_at=2700)
    assert [i.model_dump() for i in again] == [i.model_dump() for i in published], "a restart changes nothing"
    info = whole.save_forecasts(tmp_path)
    meta = json.loads(info.path.read_text())
    assert info.version == 1 and meta["stats"]["fits"] == whole.forecaster.stats["fits"]
    assert all({"mae", "naive_mae", "aic", "n"} <= set(f) for f in meta["fits"].values())
    assert whole.save_forecasts(tmp_path).version == 2
