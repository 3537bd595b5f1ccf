"""The detect stage: detector-bank math and contract, feedback, policy, episodes, onset filter, model files.

Synthetic series use nanosecond timestamps (60 s steps unless a test needs days). Thresholds
come from the bank's own configuration (``warmup``), never from copies of its defaults.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from aiops import __version__
from aiops.detect.bank import BankConfig, DetectorBank, config_from_json
from aiops.detect.episodes import EpisodeTracker
from aiops.detect.filters import OnsetFilter
from aiops.detect.models import FORMAT_VERSION, load_bank, save_bank, versions
from aiops.detect.policy import DetectionPolicy, PolicyTable, SeriesRule
from aiops.detect.series import rounds
from aiops.errors import StateError
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.ingest.records import Message
from aiops.pipeline import Pipeline

S = 10**9
MIN = 60 * S
HOUR = 3600 * S
DAY = 24 * HOUR
ALERT = 0.5  # the score at which a point is flagged (EpisodeTracker)


# --- helpers ----------------------------------------------------------------------------------------
def feed(bank: DetectorBank, values, sid: int = 0, t0: int = 0, step: int = MIN) -> tuple[np.ndarray, np.ndarray]:
    """Stream one series point by point (score, then learn); return the per-point scores and directions."""
    ids = np.array([sid])
    scores, dirs = np.empty(len(values)), np.empty(len(values), dtype=np.int8)
    for i, x in enumerate(values):
        s, d = bank.update(ids, np.array([t0 + i * step]), np.array([float(x)]))
        scores[i], dirs[i] = s[0], d[0]
    return scores, dirs


def feed_columns(bank: DetectorBank, values: np.ndarray, step: int = MIN) -> tuple[np.ndarray, np.ndarray]:
    """Stream several series (columns of ``values``) in lock step, one batch per time step."""
    n, k = values.shape
    ids = np.arange(k)
    scores, dirs = np.empty((n, k)), np.empty((n, k), dtype=np.int8)
    for i in range(n):
        scores[i], dirs[i] = bank.update(ids, np.full(k, i * step), values[i])
    return scores, dirs


def probe(bank: DetectorBank, x: float, sid: int = 0, t: int = 10**6 * MIN) -> tuple[float, int]:
    s, d = bank.score_batch(np.array([sid]), np.array([t]), np.array([float(x)]))
    return float(s[0]), int(d[0])


def trained(n: int = 500, seed: int = 0, level: float = 10.0, sd: float = 1.0) -> DetectorBank:
    bank = DetectorBank()
    feed(bank, level + np.random.default_rng(seed).normal(0, sd, n))
    return bank


def snapshot(bank: DetectorBank) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in bank.state().items()}


def assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert v.dtype == b[k].dtype, k
        np.testing.assert_array_equal(v, b[k], err_msg=k)


def ewm(x: np.ndarray, window: int) -> np.ndarray:
    """Exponentially weighted mean with alpha = 2 / (window + 1), seeded with the first value."""
    a, out, m = 2.0 / (window + 1), np.empty(len(x)), x[0]
    for i, v in enumerate(x):
        m = (1 - a) * m + a * v
        out[i] = m
    return out


# --- detector math -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "direction"),
    [
        (30.0, 1),
        (1e6, 1),
        (-10.0, -1),
        (-1e6, -1),
    ],
)
def test_a_point_far_outside_the_known_range_alerts_with_its_direction(value, direction):
    bank = trained()  # 10 +- 1
    score, d = probe(bank, value)
    assert score >= ALERT
    assert d == direction


def test_a_point_inside_the_known_range_does_not_alert_and_score_grows_with_the_distance():
    bank = trained()
    assert probe(bank, 10.0)[0] < ALERT
    scores = [probe(bank, x)[0] for x in np.linspace(10, 40, 61)]
    assert all(np.diff(scores) >= 0)  # every view's excess grows with the value above the mean
    assert scores[0] < ALERT <= scores[-1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_inside_the_learned_range_rarely_alerts(seed):
    bank = DetectorBank()
    scores, _ = feed(bank, 100 + 5 * np.random.default_rng(seed).normal(size=2000))
    alerts = int((scores >= ALERT).sum())
    assert alerts <= 20  # at most 1 % of i.i.d. Gaussian points; records get rarer as a series ages
    assert int((scores[1000:] >= ALERT).sum()) <= 5


def test_level_shift_up_alerts_at_onset_and_stops_once_the_series_lives_there():
    rng = np.random.default_rng(3)
    x = np.r_[10 + rng.normal(0, 1, 1000), 20 + rng.normal(0, 1, 1000)]
    bank = DetectorBank()
    scores, dirs = feed(bank, x)
    assert scores[1000] >= ALERT and dirs[1000] == 1
    # The new level is inside the widened extremes: after the moving averages catch up it is normal.
    assert (scores[1060:] >= ALERT).mean() <= 0.01
    assert np.median(scores[1060:]) < 0.1
    # What the engine reports (through the onset filter): the onset, and nothing for the next 100 points.
    f = OnsetFilter(half_life=30)
    news = np.array([f.filter(np.array([0]), np.array([s]))[0] for s in scores])
    assert news[1000] >= ALERT
    assert not (news[1001:1100] >= ALERT).any()


def test_level_shift_down_alerts_at_onset_pointing_down():
    rng = np.random.default_rng(3)
    x = np.r_[20 + rng.normal(0, 1, 1000), 10 + rng.normal(0, 1, 200)]
    scores, dirs = feed(DetectorBank(), x)
    assert scores[1000] >= ALERT
    flagged = np.flatnonzero(scores[1000:1030] >= ALERT) + 1000
    assert (dirs[flagged] == -1).all(), dirs[flagged]


def test_daily_pattern_is_learned_and_a_missing_peak_inside_the_band_is_caught_by_the_daily_view():
    step, per_day, days = 5 * MIN, 288, 8
    n = per_day * days
    hours = (np.arange(n) * step / HOUR) % 24
    rng = np.random.default_rng(0)
    normal = 100 + 50 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 2, n)
    broken = normal.copy()
    day = 6
    window = slice(day * per_day, (day + 1) * per_day)
    broken[window] = np.minimum(broken[window], 110.0)  # the peak (hours ~1.5..10.5) is missing on day 6
    changed = np.flatnonzero(broken != normal)
    scores, dirs = feed_columns(DetectorBank(), np.c_[normal, broken], step=step)

    # The pattern itself: quiet after the first two days.
    assert int((scores[2 * per_day :, 0] >= ALERT).sum()) <= 1
    # The break: flagged, pointing down, while the normal twin is quiet at those points.
    hits = changed[scores[changed, 1] >= ALERT]
    assert len(hits) >= 1
    assert (dirs[hits, 1] == -1).all()
    assert not (scores[changed, 0] >= ALERT).any()
    # ...and only the daily view can see it: the value and its moving means/std stay inside the ranges
    # they had already visited before the break.
    hist = slice(0, day * per_day)
    for w in (1, *BankConfig().windows):
        m = broken if w == 1 else ewm(broken, w)
        assert m[hist].min() <= m[changed].min() and m[changed].max() <= m[hist].max(), w
    for w in BankConfig().vol_windows:
        sd = np.sqrt(np.maximum(ewm(broken**2, w) - ewm(broken, w) ** 2, 0))
        assert sd[changed].max() <= sd[hist].max(), w


def test_slow_drift_out_of_the_range_is_caught_by_the_moving_averages_before_the_raw_record():
    rng = np.random.default_rng(5)
    base, slope = 10 + rng.normal(0, 1, 1000), 0.005
    drift = 10 + slope * np.arange(1, 1001) + rng.normal(0, 1, 1000)
    scores, dirs = feed(DetectorBank(), np.r_[base, drift])
    hits = np.flatnonzero(scores[1000:] >= ALERT)
    assert len(hits) and (dirs[1000 + hits[:5]] == 1).all()
    # the underlying level (without noise) is still below the largest value seen before the drift
    assert 10 + slope * (hits[0] + 1) < base.max()


@pytest.mark.parametrize(("level", "after"), [(5.0, 5.5), (0.0, 1e-3), (1e6, 1e6 + 1)])
def test_constant_series_then_a_step_up_alerts(level, after):
    x = np.r_[np.full(300, level), np.full(20, after)]
    scores, dirs = feed(DetectorBank(), x)
    assert not scores[:300].any()  # a flat line is never news
    assert scores[300] >= ALERT and dirs[300] == 1


def test_constant_series_then_a_step_down_alerts_pointing_down():
    x = np.r_[np.full(300, 5.0), np.full(20, 4.5)]
    scores, dirs = feed(DetectorBank(), x)
    assert scores[300] >= ALERT
    assert dirs[300] == -1


def test_warmup_scores_zero_then_scoring_starts():
    bank = DetectorBank()
    w = bank.config.warmup
    wild = np.where(np.arange(w) % 2, 1e6, -1e6) * np.arange(1, w + 1)  # every point a new record
    scores, _ = feed(bank, wild, step=10 * S)  # 30 points of 10 s: short of warmup_s, so points count
    assert (scores == 0).all()
    assert probe(bank, 1e12, t=w * 10 * S)[0] >= ALERT  # the first point after warm-up is scored


def test_sparse_series_warm_up_in_event_time():
    """A minute-scrape series is warm once it covers ``warmup_s`` (15 points), not after 30 minutes."""
    c = BankConfig()
    w = max(c.min_warmup, int(c.warmup_s // 60))
    assert w < c.warmup
    bank = DetectorBank()
    wild = np.where(np.arange(w) % 2, 1e6, -1e6) * np.arange(1, w + 1)
    scores, _ = feed(bank, wild, step=MIN)
    assert (scores == 0).all()
    assert probe(bank, 1e12, t=w * MIN)[0] >= ALERT
    dense = DetectorBank(BankConfig(warmup_s=1e9))  # never by time: the point count decides
    feed(dense, wild, step=MIN)
    assert probe(dense, 1e12, t=w * MIN)[0] == 0


def test_flat_series_never_alerts():
    scores, _ = feed(DetectorBank(), np.full(500, 42.0))
    assert (scores == 0).all()


# --- contract ---------------------------------------------------------------------------------------
def random_history(bank: DetectorBank, k: int = 20, n: int = 300, seed: int = 0) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, k)) * rng.uniform(0.1, 100, k) + rng.uniform(-1e3, 1e3, k)
    feed_columns(bank, x)
    return rng


def test_score_batch_does_not_mutate_state():
    bank = DetectorBank()
    rng = random_history(bank)
    before = snapshot(bank)
    ids = rng.permutation(20)[:12]
    scores, _ = bank.score_batch(ids, np.full(12, 400 * MIN), rng.normal(0, 1e4, 12))
    assert (scores >= ALERT).any()  # scoring far-out points (which learn would widen ranges for)
    assert_same_state(before, bank.state())


def test_scoring_an_unseen_series_adds_no_rows():
    bank = DetectorBank()
    random_history(bank, k=3)
    before = snapshot(bank)
    bank.score_batch(np.array([7]), np.array([400 * MIN]), np.array([1.0]))
    assert bank.size == 3
    assert_same_state(before, bank.state())


def test_update_is_score_then_learn():
    a, b = DetectorBank(), DetectorBank()
    rng = np.random.default_rng(1)
    for i in range(300):
        ids = np.sort(rng.choice(10, size=rng.integers(1, 11), replace=False))
        ts, x = np.full(len(ids), i * MIN), rng.normal(0, 1, len(ids)) + (i > 250) * 50
        got = a.update(ids, ts, x)
        want = b.score_batch(ids, ts, x)
        b.learn_batch(ids, ts, x)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    assert_same_state(a.state(), b.state())


def test_batched_update_with_repeated_ids_equals_a_per_point_loop():
    rng = np.random.default_rng(2)
    n = 3000
    ids = rng.integers(0, 25, n)  # many points per series, interleaved
    order = np.argsort(ids, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.searchsorted(ids[order], ids[order])  # k-th point of its series
    ts = rank * MIN
    x = rng.normal(0, 1, n) * (1 + ids) + 100 * (rng.random(n) < 0.01)  # with a few spikes

    batched, loop = DetectorBank(), DetectorBank()
    got_s, got_d = np.empty(n), np.empty(n, dtype=np.int8)
    for chunk in np.array_split(np.arange(n), 7):  # a few batches, each with repeated ids
        for idx in rounds(ids[chunk]):
            j = chunk[idx]
            got_s[j], got_d[j] = batched.update(ids[j], ts[j], x[j])
    want_s, want_d = np.empty(n), np.empty(n, dtype=np.int8)
    for j in range(n):
        s, d = loop.update(ids[j : j + 1], ts[j : j + 1], x[j : j + 1])
        want_s[j], want_d[j] = s[0], d[0]
    np.testing.assert_array_equal(got_s, want_s)
    np.testing.assert_array_equal(got_d, want_d)
    assert (want_s >= ALERT).any()  # the comparison covered alerting points too
    assert_same_state(batched.state(), loop.state())


def test_rounds_keeps_each_series_in_order_with_unique_ids_per_round():
    ids = np.array([5, 7, 5, 5, 2, 7])
    rs = rounds(ids)
    assert [r.tolist() for r in rs] == [[0, 1, 4], [2, 5], [3]]
    assert [r.tolist() for r in rounds(np.array([3, 1, 2]))] == [[0, 1, 2]]  # scrape-shaped: one round
    assert rounds(np.array([], dtype=np.int64)) == []


def test_scores_are_in_unit_interval_and_directions_are_signs():
    bank = DetectorBank()
    rng = np.random.default_rng(4)
    k = 30
    for i in range(1500):
        x = rng.normal(0, 1, k) * np.logspace(-3, 6, k)
        x[rng.random(k) < 0.02] *= 1e4  # huge excesses
        s, d = bank.update(np.arange(k), np.full(k, i * MIN), x)
        assert ((s >= 0) & (s <= 1)).all()
        assert np.isin(d, (-1, 1)).all()
        assert d.dtype == np.int8


def test_empty_batch():
    bank = DetectorBank()
    random_history(bank, k=3)
    before = snapshot(bank)
    e, ef = np.zeros(0, dtype=np.int64), np.zeros(0)
    s, d = bank.score_batch(e, e, ef)
    assert s.shape == (0,) and d.shape == (0,)
    s, d = bank.update(e, e, ef)
    assert s.shape == (0,) and d.shape == (0,)
    bank.learn_batch(e, e, ef)
    bank.set_sensitivity(e, ef)
    assert_same_state(before, bank.state())
    assert_same_state(DetectorBank().state(), {k: v[:0] for k, v in before.items()})  # a new bank is empty


def test_nan_is_refused_by_the_pipeline_before_the_bank():
    p, dead = pipeline()
    p.process([native(0, [point(0, "db", "cpu", 0.3)])])
    state = snapshot(p.bank)
    p.process([native(1, [point(1, "db", "cpu", "NaN"), point(1, "db", "cpu2", "Infinity")])])
    assert [r.reason for r in dead.rejects] == ["non-finite value nan", "non-finite value inf"]
    assert_same_state(state, p.bank.state())


def test_bank_assumes_finite_input_a_nan_poisons_only_its_own_series():
    """Documented behaviour, not a promise: the validator keeps NaN out, so the bank does not check."""
    bank = DetectorBank()
    random_history(bank, k=2)
    ts = np.full(2, 400 * MIN)
    s, _ = bank.update(np.array([0, 1]), ts, np.array([np.nan, 0.0]))
    assert np.isnan(s[0]) and np.isfinite(s[1])
    st = bank.state()
    assert not np.isfinite(st["hi"][0]).all()  # series 0 is poisoned for good: every later score is NaN
    assert all(np.isfinite(v[1]).all() for v in st.values())
    s, _ = bank.update(np.array([0, 1]), ts + MIN, np.array([0.0, 0.0]))
    assert np.isnan(s[0]) and not s[0] >= ALERT  # ...and so never alerts
    assert np.isfinite(s[1])


def _wild_run(scales: np.ndarray, n: int = 2000, seed: int = 6) -> DetectorBank:
    rng = np.random.default_rng(seed)
    k = len(scales)
    bank = DetectorBank()
    level = rng.normal(0, 1, k)
    for i in range(n):
        level = np.where(rng.random(k) < 0.002, rng.normal(0, 3, k), level)  # level shifts
        x = (level + rng.normal(0, 1, k)) * scales
        x[rng.random(k) < 0.01] *= 1e3  # spikes
        x[rng.random(k) < 0.01] = 0.0  # zeros
        x[:2] = scales[:2]  # two flat series
        s, d = bank.update(np.arange(k), np.full(k, i * 7 * MIN), x)  # 7 min: every hour bin visited
        assert ((s >= 0) & (s <= 1)).all() and np.isin(d, (-1, 1)).all()
    return bank


def test_finite_input_keeps_state_finite_from_tiny_to_large_values():
    scales = np.array([1.0, 1e-90, 1e-90, 1e-30, 1e-6, 1.0, 1e6, 1e15, 1e30])
    bank = _wild_run(scales)
    for k, v in bank.state().items():
        assert np.isfinite(v).all(), k


def test_finite_input_keeps_state_finite_for_values_up_to_the_validator_bound():
    scales = np.array([1e90, 1e90, 1e50])
    bank = _wild_run(scales, n=300)
    for k, v in bank.state().items():
        assert np.isfinite(v).all(), k


# --- memory --------------------------------------------------------------------------------------------
def test_per_series_state_is_at_most_1_kib_and_independent_of_the_bank_size():
    bank = DetectorBank()
    empty = bank.nbytes_per_series()
    random_history(bank, k=1000, n=3)
    assert bank.nbytes_per_series() == empty <= 1024
    total = sum(a[: bank.size].nbytes for a in bank.arrays.values())
    assert total == empty * bank.size


# --- feedback -----------------------------------------------------------------------------------------
def twins(n: int = 500, seed: int = 0) -> DetectorBank:
    """Series 0 and 1 with the same history, so their scores can be compared after feedback."""
    x = 10 + np.random.default_rng(seed).normal(0, 1, n)
    bank = DetectorBank()
    feed_columns(bank, np.c_[x, x])
    return bank


def test_false_positive_feedback_lowers_the_score_of_the_same_excess_and_missed_raises_it():
    for value in (14.0, 5.0):  # a modest excess, both ways
        bank = twins()
        base = probe(bank, value, sid=0)[0]
        assert probe(bank, value, sid=1)[0] == base and 0 < base < 1
        bank.feedback(1, "false_positive")
        fp = probe(bank, value, sid=1)[0]
        bank.feedback(1, "missed")
        assert probe(bank, value, sid=1)[0] == pytest.approx(base)  # the two verdicts cancel
        bank.feedback(1, "missed")
        missed = probe(bank, value, sid=1)[0]
        assert fp < base < missed
        assert probe(bank, value, sid=0)[0] == base  # the other series is untouched


def test_false_positive_feedback_reduces_alerts_on_a_replayed_stream():
    rng = np.random.default_rng(0)
    x = 10 + rng.normal(0, 1, 3000) + np.where(rng.random(3000) < 0.01, np.linspace(3, 12, 3000), 0)  # growing
    plain, told = DetectorBank(), DetectorBank()
    for _ in range(3):
        told.feedback(0, "false_positive")
    a, _ = feed(plain, x)
    b, _ = feed(told, x)
    assert (b <= a).all()  # sensitivity changes how a point is judged, not what is learned
    assert (a >= ALERT).sum() >= 10
    assert (b >= ALERT).sum() < (a >= ALERT).sum() / 2


def test_feedback_stays_bounded_after_many_calls():
    bank = twins()
    for _ in range(100):
        bank.feedback(0, "false_positive")
        bank.feedback(1, "missed")
    state = bank.state()
    sens = state["sens"] * state["fb"]
    assert sens[0] == pytest.approx(1 / 64) and sens[1] == 64
    s0, s1 = probe(bank, 14.0, 0)[0], probe(bank, 14.0, 1)[0]
    assert 0 <= s0 < s1 <= 1


def test_missed_feedback_never_lowers_a_configured_sensitivity():
    bank = twins()
    bank.set_sensitivity(np.array([0, 1]), np.array([100.0, 1 / 100]))
    bank.feedback(0, "missed")
    bank.feedback(1, "false_positive")
    state = bank.state()
    sens = state["sens"] * state["fb"]
    assert sens[0] >= 100  # got 64: "missed" made the series need a larger excess
    assert sens[1] <= 1 / 100  # got 1/64: "false_positive" made it alert more easily


def test_unknown_feedback_kind_raises_and_changes_nothing():
    bank = twins()
    before = snapshot(bank)
    with pytest.raises(ValueError, match="false_positive"):
        bank.feedback(0, "true_positive")
    assert_same_state(before, bank.state())


# --- pipeline ------------------------------------------------------------------------------------------
T0 = 1_700_000_000 * S


def pipeline(detection: DetectionPolicy | None = None) -> tuple[Pipeline, MemoryDeadLetter]:
    dead = MemoryDeadLetter()
    return Pipeline(dead, lambda inc: None, now_ns=lambda: T0 + 30 * DAY, detection=detection), dead


def point(i: int, service: str, metric: str, value, labels: dict | None = None) -> dict:
    return {"ts": (T0 + i * MIN) // S, "service": service, "metric": metric, "value": value, "labels": labels or {}}


def native(offset: int, lines: list[dict]) -> Message:
    return Message("metrics", "native", b"\n".join(json.dumps(x).encode() for x in lines), "kafka:m/0", offset)


def test_pipeline_feedback_retunes_a_known_series_and_refuses_an_unknown_one():
    p, _ = pipeline()
    p.process([native(i, [point(i, "db", "cpu", 0.3), point(i, "db", "query.duration", 0.05)]) for i in range(5)])
    cpu = p.series.index["db/cpu"]
    dur = p.series.index["db/query.duration"]
    def effective(i):
        state = p.bank.state()
        return state["sens"][i] * state["fb"][i]

    assert effective(cpu) == 1.0
    p.feedback("db/cpu", "false_positive")
    assert effective(cpu) == 0.5
    p.feedback("db/cpu", "missed")
    p.feedback("db/cpu", "missed")
    assert effective(cpu) == 2.0
    assert effective(dur) == 1.0
    with pytest.raises(KeyError):
        p.feedback("db/nope", "missed")
    assert "db/nope" not in p.series.index and len(p.series) == 2
    with pytest.raises(ValueError):
        p.feedback("db/cpu", "meh")


def test_rule_sensitivity_lands_in_the_bank_through_the_pipeline():
    rules = [SeriesRule(match="*cpu*", sensitivity=8), SeriesRule(match="web/*", sensitivity=0.25)]
    policy = DetectionPolicy(rules=rules)
    p, _ = pipeline(policy)
    p.process([native(0, [point(0, "db", "cpu", 0.3), point(0, "db", "query.duration", 0.05)])])
    p.process([native(1, [point(1, "web", "requests", 7.0), point(1, "web", "cpu", 0.5)])])
    sens = p.bank.state()["sens"]
    assert sens[p.series.index["db/cpu"]] == 8
    assert sens[p.series.index["db/query.duration"]] == 1
    assert sens[p.series.index["web/requests"]] == 0.25
    assert sens[p.series.index["web/cpu"]] == 8  # first matching rule wins


# --- policy ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "direction"),
    [
        ("api/http.server.duration", 1),
        ("db/query.latency{q=select}", 1),
        ("api/http.errors", 1),
        ("api/http.server.requests{http.status_code=503}", 1),
        ("api/log.records{severity=ERROR}", 1),
        ("web/system.cpu.utilization", 1),
        ("web/process.memory.usage", 1),
        ("api/http.server.requests{http.status_code=200}", 0),  # a rate: both ways
        ("web/queue.depth", 0),
    ],
)
def test_default_rules(key, direction):
    p = DetectionPolicy()
    windowed = "/log." in key or "/span." in key  # sampled 30 s windows must stay anomalous for three
    expected = (direction, 3 if windowed else p.default_min_duration, 1.0, np.inf, -np.inf, p.default_min_duration_s)
    assert p.resolve(key) == expected


def test_user_rules_come_before_defaults_field_by_field():
    policy = DetectionPolicy(
        rules=[
            SeriesRule(match="checkout/*duration*", direction="both", min_duration=4),
            SeriesRule(match="checkout/*", sensitivity=3.0, slo_above=2.5, min_duration=9),
        ]
    )
    t = policy.default_min_duration_s
    assert policy.resolve("checkout/http.server.duration") == (0, 4, 3.0, 2.5, -np.inf, t)
    assert policy.resolve("checkout/cpu") == (1, 9, 3.0, 2.5, -np.inf, t)  # direction still from the defaults
    assert policy.resolve("cart/cpu") == (1, policy.default_min_duration, 1.0, np.inf, -np.inf, t)
    no_defaults = DetectionPolicy(use_default_rules=False, default_direction="down", default_min_duration=5,
                                  default_min_duration_s=0)  # fmt: skip
    assert no_defaults.resolve("cart/cpu") == (-1, 5, 1.0, np.inf, -np.inf, 0.0)


def test_policy_rejects_bad_rules():
    with pytest.raises(ValueError):
        SeriesRule(match="*", direction="sideways")
    with pytest.raises(ValueError):
        SeriesRule(match="*", sensitivity=0)
    with pytest.raises(ValueError):
        SeriesRule(match="*", min_duration=0)
    with pytest.raises(ValueError):
        SeriesRule(match="*", colour="red")


def test_policy_table_resolves_new_keys_only():
    table = PolicyTable(DetectionPolicy(rules=[SeriesRule(match="a/*", slo_below=1.0)]))
    keys = ["a/x", "b/latency"]
    assert list(table.extend(keys)) == [0, 1]
    keys.append("b/y")
    assert list(table.extend(keys)) == [2]
    assert list(table.extend(keys)) == []
    assert table.direction.tolist() == [0, 1, 0]
    assert table.slo_below.tolist() == [1.0, -np.inf, -np.inf]


# --- episodes -------------------------------------------------------------------------------------------
class Track:
    """One EpisodeTracker over a few named series, fed one round at a time."""

    def __init__(self, keys: list[str], policy: DetectionPolicy | None = None, quiet_points: int = 3) -> None:
        self.keys, self.services = keys, [k.split("/")[0] for k in keys]
        self.table = PolicyTable(policy or DetectionPolicy(use_default_rules=False, default_min_duration=2, default_min_duration_s=0))
        self.table.extend(keys)
        self.tracker = EpisodeTracker(quiet_points)
        self.t = 0

    def step(self, scores, values=None, directions=None, ids=None):
        k = len(scores)
        ids = np.arange(k) if ids is None else np.asarray(ids)
        values = np.zeros(k) if values is None else np.asarray(values, dtype=float)
        directions = np.ones(k, dtype=np.int8) if directions is None else np.asarray(directions, dtype=np.int8)
        self.t += 1
        ts = np.full(k, self.t * MIN)
        scores = np.asarray(scores, dtype=float)
        return self.tracker.update(ids, ts, values, scores, directions, self.keys, self.services, self.table)


def test_one_anomaly_per_episode_and_a_new_one_after_quiet_points():
    tr = Track(["svc/a"])
    hi, lo = [0.9], [0.1]
    script = [hi, hi, hi, hi, lo, lo, hi, hi, lo, lo, lo, hi, hi, hi]
    acts = [tr.step(s) for s in script]
    opened = [(i, a.series, a.first_seen) for i, act in enumerate(acts) for a in act.opened]
    # min_duration 2: opens on the 2nd flagged point, first_seen is the 1st; two normal points do not
    # close it (quiet_points=3), three do; the next run is a new episode.
    assert opened == [(1, "svc/a", 1 * MIN), (12, "svc/a", 12 * MIN)]
    live = [len(act.active_ids) for act in acts]
    assert live == [0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1]
    a = acts[1].opened[0]
    assert (a.score, a.direction, a.service, a.id) == (0.9, 1, "svc", f"svc/a@{MIN}")


def test_a_single_flagged_point_does_not_open_an_episode_with_min_duration_2():
    tr = Track(["svc/a"])
    acts = [tr.step(s) for s in ([0.9], [0.1], [0.9], [0.1], [0.99], [0.2])]
    assert not any(act.opened for act in acts)


def test_min_duration_and_direction_from_rules():
    rule = SeriesRule(match="svc/slow*", min_duration=3, direction="up")
    policy = DetectionPolicy(rules=[rule], use_default_rules=False, default_min_duration=2, default_min_duration_s=0)
    tr = Track(["svc/slow", "svc/other"], policy)
    opened = []
    for i in range(4):
        act = tr.step([0.9, 0.9])
        opened += [(i, a.series, a.first_seen) for a in act.opened]
    assert opened == [(1, "svc/other", MIN), (2, "svc/slow", MIN)]
    # the up-only series ignores a downward excursion; the both-ways one does not
    tr2 = Track(["svc/slow", "svc/other"], policy)
    acts = [tr2.step([0.9, 0.9], directions=[-1, -1]) for _ in range(4)]
    assert [a.series for act in acts for a in act.opened] == ["svc/other"]


def test_slo_bounds_flag_a_point_whatever_the_detector_says():
    policy = DetectionPolicy(
        rules=[
            SeriesRule(match="svc/latency", slo_above=0.5, min_duration=1),
            SeriesRule(match="svc/free", slo_below=10.0, min_duration=1),
        ],
    )
    tr = Track(["svc/latency", "svc/free"], policy)
    act = tr.step([0.0, 0.0], values=[0.4, 11.0], directions=[-1, 1])
    assert act.opened == []
    act = tr.step([0.0, 0.0], values=[0.7, 3.0], directions=[-1, 1])
    got = {a.series: (a.score, a.direction, a.value) for a in act.opened}
    # the latency series only alarms upwards, yet a breach of slo_below on the other is always flagged
    assert got == {"svc/latency": (1.0, 1, 0.7), "svc/free": (1.0, -1, 3.0)}
    assert sorted(act.active_ids.tolist()) == [0, 1]


def test_an_anomaly_carries_the_value_just_before_its_episode():
    tr = Track(["svc/a"])
    acts = [tr.step([sc], values=[v]) for sc, v in ((0.1, 1.0), (0.1, 2.0), (0.9, 7.0), (0.9, 8.0))]
    (a,) = acts[3].opened
    assert (a.value, a.previous) == (8.0, 2.0)  # the point before the first flagged one, not the first
    fresh = Track(["svc/a"])
    (b,) = [x for act in (fresh.step([0.9], values=[5.0]), fresh.step([0.9], values=[6.0])) for x in act.opened]
    assert np.isnan(b.previous)  # nothing seen before the episode


def test_episode_tracker_state_round_trip():
    tr = Track(["svc/a", "svc/b"])
    for s in ([0.9, 0.1], [0.9, 0.9], [0.1, 0.9]):
        tr.step(s)
    copy = Track(["svc/a", "svc/b"])
    copy.tracker.load_state({k: v.copy() for k, v in tr.tracker.state().items()})
    copy.t = tr.t
    for s in ([0.1, 0.1], [0.1, 0.1], [0.9, 0.9], [0.9, 0.9]):
        a, b = tr.step(s, values=[3.0, 4.0]), copy.step(s, values=[3.0, 4.0])
        assert [(x.id, x.previous) for x in a.opened] == [(x.id, x.previous) for x in b.opened]
        np.testing.assert_array_equal(a.active_ids, b.active_ids)


# --- onset filter --------------------------------------------------------------------------------------
def run_filter(f: OnsetFilter, seq, sid: int = 0) -> list[float]:
    return [float(f.filter(np.array([sid]), np.array([s]))[0]) for s in seq]


def test_onset_filter_passes_only_what_beats_the_decayed_recent_max():
    f = OnsetFilter(half_life=10)
    assert run_filter(f, [0.9, 0.8, 0.5, 0.95, 0.9]) == [0.9, 0.0, 0.0, 0.95, 0.0]
    # after a 0.99, a 0.9 is news only once the 0.99 has decayed below it: one half-life (0.99 -> 0.9)
    early, late = OnsetFilter(half_life=10), OnsetFilter(half_life=10)
    assert run_filter(early, [0.99] + [0.0] * 5 + [0.9]) == [0.99] + [0.0] * 6
    assert run_filter(late, [0.99] + [0.0] * 15 + [0.9]) == [0.99] + [0.0] * 15 + [0.9]


def test_onset_filter_keeps_series_apart():
    f = OnsetFilter(half_life=10)
    out = f.filter(np.array([0, 3]), np.array([0.9, 0.7]))
    np.testing.assert_array_equal(out, [0.9, 0.7])
    out = f.filter(np.array([3, 1]), np.array([0.6, 0.6]))
    np.testing.assert_array_equal(out, [0.0, 0.6])
    assert len(f.state()["recent"]) == 4


def test_onset_filter_reports_a_plateau_once():
    f = OnsetFilter(half_life=10)
    assert run_filter(f, [0.9, 0.9, 0.8, 0.95]) == [0.9, 0.0, 0.0, 0.95]  # the class docstring's example
    g = OnsetFilter(half_life=200)
    assert sum(s > 0 for s in run_filter(g, [1.0] * 50)) == 1  # a long anomaly reports its onset


def test_onset_filter_state_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    a = OnsetFilter(half_life=7)
    for _ in range(50):
        a.filter(rng.integers(0, 5, 1), rng.random(1))
    np.savez(tmp_path / "f.npz", **a.state())
    b = OnsetFilter(half_life=7)
    with np.load(tmp_path / "f.npz", allow_pickle=False) as z:
        b.load_state({k: z[k] for k in z.files})
    for _ in range(100):
        ids, s = np.array([rng.integers(0, 6)]), np.array([rng.random()])
        np.testing.assert_array_equal(a.filter(ids, s), b.filter(ids, s))


# --- model files ----------------------------------------------------------------------------------------
def grown_bank(n: int = 200, k: int = 5, seed: int = 0) -> DetectorBank:
    bank = DetectorBank(BankConfig(warmup=20, windows=(4, 16)))  # a non-default config must round-trip too
    random_history(bank, k=k, n=n, seed=seed)
    bank.feedback(1, "missed")
    return bank


KEYS = [f"svc/m{i}" for i in range(5)]


def probe_all(bank: DetectorBank) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = rng.normal(0, 5e3, 5)
    return bank.score_batch(np.arange(5), np.full(5, 10**4 * MIN), x)


def test_save_then_load_scores_identically(tmp_path):
    bank = grown_bank()
    info = save_bank(tmp_path, "core", bank, KEYS, data_window=(0, 199 * MIN))
    loaded, keys, linfo = load_bank(tmp_path, "core")
    assert keys == KEYS and linfo.version == info.version == 1
    assert loaded.config == bank.config
    assert_same_state(bank.state(), loaded.state())
    s1, d1 = probe_all(bank)
    s2, d2 = probe_all(loaded)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(d1, d2)
    assert (s1 >= ALERT).any() and (s1 < ALERT).any()
    # and they keep learning the same way
    x = np.random.default_rng(0).normal(0, 1, 5)
    for b in (bank, loaded):
        b.update(np.arange(5), np.full(5, 300 * MIN), x)
    assert_same_state(bank.state(), loaded.state())
    assert sorted(p.name for p in (tmp_path / "core").iterdir()) == ["v1.json", "v1.npz"]  # no temp files left


def test_versions_increment_and_a_specific_version_loads(tmp_path):
    bank = grown_bank()
    first = probe_all(bank)
    assert versions(tmp_path, "core") == []
    assert save_bank(tmp_path, "core", bank, KEYS).version == 1
    random_history(bank, k=5, n=100, seed=5)  # learns more: scores change
    second = probe_all(bank)
    assert not np.array_equal(first[0], second[0])
    assert save_bank(tmp_path, "core", bank, KEYS).version == 2
    assert save_bank(tmp_path, "other", bank, KEYS).version == 1  # per bank name
    assert versions(tmp_path, "core") == [1, 2]
    v1, _, i1 = load_bank(tmp_path, "core", version=1)
    latest, _, i2 = load_bank(tmp_path, "core")
    assert (i1.version, i2.version) == (1, 2)
    np.testing.assert_array_equal(probe_all(v1)[0], first[0])
    np.testing.assert_array_equal(probe_all(latest)[0], second[0])


def test_metadata_describes_the_model(tmp_path):
    bank = grown_bank()
    info = save_bank(tmp_path, "core", bank, KEYS, data_window=(5 * MIN, 199 * MIN), extra={"trained_by": "test"})
    meta = json.loads((tmp_path / "core" / "v1.json").read_text())
    assert meta == json.loads(json.dumps(info.meta))
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["series_count"] == 5
    assert meta["data_window_unix_nano"] == [5 * MIN, 199 * MIN]
    assert meta["code_version"] == __version__
    assert meta["series_keys"] == KEYS
    assert meta["trained_by"] == "test"
    assert config_from_json(meta["config"]) == bank.config
    assert meta["config"]["windows"] == [4, 16]


def test_missing_model_is_a_state_error(tmp_path):
    with pytest.raises(StateError):
        load_bank(tmp_path, "core")
    save_bank(tmp_path, "core", grown_bank(), KEYS)
    with pytest.raises(StateError):
        load_bank(tmp_path, "core", version=7)


def saved(tmp_path: Path) -> Path:
    save_bank(tmp_path, "core", grown_bank(), KEYS)
    return tmp_path / "core"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: (d / "v1.json").write_text("{not json"), id="metadata-not-json"),
        pytest.param(lambda d: (d / "v1.json").write_text(""), id="metadata-empty"),
        pytest.param(lambda d: (d / "v1.npz").write_bytes(b"garbage" * 20), id="npz-garbage"),
        pytest.param(lambda d: (d / "v1.npz").unlink(), id="npz-missing"),
        pytest.param(lambda d: np.savez(d / "v1.npz", n=np.zeros(5, np.int32)), id="npz-lacks-arrays"),
        pytest.param(lambda d: _edit_state(d, hi=np.zeros((5, 2))), id="npz-wrong-shape"),
        pytest.param(lambda d: _edit_meta(d, series_keys=KEYS[:3]), id="keys-do-not-match-rows"),
        pytest.param(lambda d: _edit_meta(d, config={"warmup": 5, "colour": "red"}), id="config-unknown-key"),
        pytest.param(lambda d: _edit_meta(d, config={}) or _edit_state(d, mean=np.zeros((5, 7))), id="config-mismatch"),
    ],
)
def test_damaged_model_is_a_state_error(tmp_path, damage):
    folder = saved(tmp_path)
    damage(folder)
    with pytest.raises(StateError):
        load_bank(tmp_path, "core")


def _edit_meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / "v1.json").read_text())
    meta.update(changes)
    (folder / "v1.json").write_text(json.dumps(meta))


def _edit_state(folder: Path, **changes) -> None:
    with np.load(folder / "v1.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(folder / "v1.npz", **arrays)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: (d / "v1.npz").write_bytes((d / "v1.npz").read_bytes()[:200]), id="npz-truncated"),
        pytest.param(lambda d: _flip_byte(d / "v1.npz", 80), id="npz-bit-flip"),
        pytest.param(lambda d: (d / "v1.json").write_text("[1, 2]"), id="metadata-not-an-object"),
        pytest.param(lambda d: _edit_meta(d, config=None), id="metadata-config-null"),
    ],
)
def test_corrupted_model_file_is_a_state_error(tmp_path, damage):
    folder = saved(tmp_path)
    damage(folder)
    with pytest.raises(StateError):
        load_bank(tmp_path, "core")


def _flip_byte(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(("field", "value"), [("format_version", FORMAT_VERSION + 1), ("format_version", None),
                                              ("bank_version", DetectorBank.VERSION + 1)])  # fmt: skip
def test_unknown_format_version_is_refused(tmp_path, field, value):
    folder = saved(tmp_path)
    _edit_meta(folder, **{field: value})
    with pytest.raises(StateError, match="this code reads"):
        load_bank(tmp_path, "core")


def test_npz_is_loaded_without_pickle(tmp_path):
    folder = saved(tmp_path)
    with np.load(folder / "v1.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["n"] = np.array([{"evil": 1}] * 5, dtype=object)  # only loadable by unpickling
    np.savez(folder / "v1.npz", **arrays)
    with pytest.raises(StateError, match="unreadable arrays"):
        load_bank(tmp_path, "core")


def test_save_bank_never_writes_a_version_it_cannot_load(tmp_path):
    bank = grown_bank()
    try:
        save_bank(tmp_path, "core", bank, KEYS[:3])
    except (ValueError, StateError):
        assert versions(tmp_path, "core") == []
        return
    load_bank(tmp_path, "core")


def test_an_older_good_version_still_loads_after_a_bad_newer_one(tmp_path):
    folder = saved(tmp_path)
    save_bank(tmp_path, "core", grown_bank(seed=1), KEYS)
    (folder / "v2.json").write_text("{")
    with pytest.raises(StateError):
        load_bank(tmp_path, "core")
    bank, keys, info = load_bank(tmp_path, "core", version=1)
    assert info.version == 1 and keys == KEYS and bank.size == 5
    shutil.rmtree(folder)
    assert versions(tmp_path, "core") == []


@pytest.mark.parametrize(("step_s", "points_to_open"), [(10, 3), (60, 1), (300, 1)])
def test_min_duration_counts_time_so_slow_scrapes_open_on_one_point(step_s, points_to_open):
    table = PolicyTable(DetectionPolicy(use_default_rules=False))  # defaults: 1 point, 30 s
    table.extend(["svc/a"])
    tracker = EpisodeTracker()
    ids = np.array([0])
    opened_at = None
    for k in range(6):  # one calm point (sets the interval), then flagged points
        score = 0.0 if k == 0 else 0.9
        act = tracker.update(ids, np.array([1_700_000_000 * S + k * step_s * S]), np.array([1.0]), np.array([score]),
                             np.array([1], dtype=np.int8), ["svc/a"], ["svc"], table)  # fmt: skip
        if act.opened and opened_at is None:
            opened_at = k
    assert opened_at == points_to_open
