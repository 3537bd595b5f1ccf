"""RobustBank (score before learn, batch = per-point loop) and EpisodeTracker (one anomaly per episode)."""

from __future__ import annotations

import numpy as np
import pytest

from aiops.detect.episodes import EpisodeTracker, default_direction
from aiops.detect.robust import RobustBank
from aiops.detect.series import SeriesIndex, rounds

S = 10**9
T = 1_700_000_000 * S


def copy_state(bank):
    return {k: v.copy() for k, v in bank.state().items()}


def warm(bank, n_series=1, n=40, level=10.0, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(n_series)
    for _ in range(n):
        bank.learn_batch(ids, level + rng.normal(0, 1, n_series))
    return ids


# --- RobustBank ------------------------------------------------------------------------------
def test_score_batch_does_not_mutate_state():
    bank = RobustBank(warmup=5)
    ids = warm(bank, n_series=4)
    before = copy_state(bank)
    scores, _ = bank.score_batch(ids, np.array([10.0, 50.0, -30.0, 1e6]))
    assert scores[1] > 0.5
    after = bank.state()
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)


def test_score_before_learn_spike_is_judged_against_the_old_baseline():
    bank = RobustBank(warmup=5)
    ids = warm(bank)
    x = np.array([40.0])
    s1, d1 = bank.score_batch(ids, x)
    assert s1[0] > 0.5 and d1[0] == 1
    bank.learn_batch(ids, x)
    s2, _ = bank.score_batch(ids, x)
    assert s2[0] > 0.5  # one flagged point barely moves a protected baseline


def test_warmup_scores_zero():
    bank = RobustBank(warmup=20)
    ids = np.array([0, 1])
    for i in range(19):
        scores, _ = bank.score_batch(ids, np.array([1e9 * (i % 2), -1e9 * i]))
        assert scores.tolist() == [0.0, 0.0]
        bank.learn_batch(ids, np.array([10.0 + i % 3, 5.0]))
    bank.learn_batch(ids, np.array([10.0, 5.0]))
    assert (bank.score_batch(ids, np.array([1e6, 1e6]))[0] > 0.5).all()


def test_scores_in_unit_interval_and_directions():
    bank = RobustBank(warmup=5)
    warm(bank, n_series=1)
    xs = np.array([-1e6, -100.0, -5.0, 9.0, 10.0, 11.0, 15.0, 100.0, 1e6])
    scores, dirs = bank.score_batch(np.zeros(len(xs), dtype=np.int64), xs)
    assert ((scores >= 0) & (scores < 1)).all()
    assert np.all(np.diff(scores[xs >= 10.5]) > 0) and np.all(np.diff(scores[xs <= 9.5]) < 0)  # monotone in |z|
    assert dirs[:4].tolist() == [-1] * 4 and dirs[5:].tolist() == [1] * 4
    assert scores[4] < 0.1 and scores[-1] > 0.99


def test_flagged_points_move_the_level_only_a_little():
    bank = RobustBank(warmup=5, alpha=0.05, protect=0.1)
    ids = warm(bank)
    level = bank.level[0]
    bank.learn_batch(ids, np.array([1000.0]))
    assert bank.level[0] - level == pytest.approx(0.05 * 0.1 * (1000.0 - level))


def test_level_shift_rebaselines():
    bank = RobustBank(warmup=5, rebaseline_after=10)
    ids = warm(bank)
    flagged = []
    for _ in range(10):
        s, _ = bank.score_batch(ids, np.array([100.0]))
        flagged.append(s[0] >= 0.5)
        bank.learn_batch(ids, np.array([100.0]))
    assert all(flagged)
    assert bank.level[0] == 100.0 and bank.run[0] == 0
    s, _ = bank.score_batch(ids, np.array([100.5]))
    assert s[0] < 0.5


def test_no_rebaseline_before_enough_points():
    bank = RobustBank(warmup=5, rebaseline_after=10)
    ids = warm(bank)
    for _ in range(9):
        bank.learn_batch(ids, np.array([100.0]))
    assert bank.level[0] < 50 and bank.run[0] == 9
    bank.learn_batch(ids, np.array([10.0]))  # a normal point resets the run
    assert bank.run[0] == 0


def per_point(bank, ids, x):
    scores = np.empty(len(ids))
    for k in range(len(ids)):
        s, _ = bank.score_batch(ids[k : k + 1], x[k : k + 1])
        bank.learn_batch(ids[k : k + 1], x[k : k + 1])
        scores[k] = s[0]
    return scores


def batched(bank, ids, x):
    scores = np.empty(len(ids))
    for idx in rounds(ids):
        s, _ = bank.score_batch(ids[idx], x[idx])
        bank.learn_batch(ids[idx], x[idx])
        scores[idx] = s
    return scores


def test_batch_equals_per_point_loop():
    rng = np.random.default_rng(7)
    n = 2000
    ids = rng.integers(0, 37, size=n)
    x = rng.normal(100, 5, size=n) + (ids * 3.0)
    x[rng.random(n) < 0.02] += 200  # some spikes
    x[ids == 5] = np.where(np.arange((ids == 5).sum()) > 20, 500.0, 100.0)  # a level shift
    a, b = RobustBank(warmup=10, rebaseline_after=8), RobustBank(warmup=10, rebaseline_after=8)
    sa, sb = per_point(a, ids, x), batched(b, ids, x)
    np.testing.assert_allclose(sb, sa, rtol=0, atol=1e-12)
    assert (sa > 0.5).sum() > 10  # the data did exercise flagged/protected updates
    for k, v in a.state().items():
        np.testing.assert_allclose(b.state()[k][:37], v[:37], rtol=0, atol=1e-9)


def test_state_round_trip():
    a = RobustBank(warmup=5)
    ids = warm(a, n_series=3)
    b = RobustBank(warmup=5)
    b.load_state(a.state())
    x = np.array([10.0, 30.0, -5.0])
    np.testing.assert_array_equal(a.score_batch(ids, x)[0], b.score_batch(ids, x)[0])


def test_rounds_keep_series_order_and_unique_ids():
    ids = np.array([3, 1, 3, 3, 2, 1, 9])
    rs = rounds(ids)
    assert [r.tolist() for r in rs] == [[0, 1, 4, 6], [2, 5], [3]]
    assert rounds(np.array([4, 5, 6])) [0].tolist() == [0, 1, 2] and rounds(np.array([], dtype=np.int64)) == []


def test_series_index():
    idx = SeriesIndex()
    assert idx.ids(["a/x", "b/y", "a/x"], ["a", "b", "a"]).tolist() == [0, 1, 0]
    assert idx.ids(["c/z", "b/y"], ["c", "b"]).tolist() == [2, 1]
    assert (idx.keys, idx.services) == (["a/x", "b/y", "c/z"], ["a", "b", "c"])
    again = SeriesIndex()
    again.load_state(idx.state())
    assert again.ids(["c/z", "d/w"], ["c", "d"]).tolist() == [2, 3]


# --- EpisodeTracker --------------------------------------------------------------------------
def test_default_direction():
    assert default_direction("cart/http.server.duration:p99{route=/}") == 1
    assert default_direction("cart/span.server:error_ratio") == 1
    assert default_direction("cart/lat:mean") == 1
    assert default_direction("cart/http.requests:rate{route=/error}") == 0  # labels do not count
    assert default_direction("cart/log.records:rate{severity=ERROR}") == 0


class Feed:
    """Feeds one series a sequence of (score, direction) points."""

    def __init__(self, keys, **kw):
        self.tracker = EpisodeTracker(**kw)
        self.keys = keys
        self.services = [k.split("/")[0] for k in keys]
        self.t = 0

    def step(self, scores, directions=None):
        self.t += 1
        n = len(scores)
        ids = np.arange(n)
        dirs = np.ones(n, dtype=np.int8) if directions is None else np.array(directions, dtype=np.int8)
        return self.tracker.update(ids, np.full(n, T + self.t * S), np.arange(n) + 0.5, np.array(scores, dtype=float),
                                   dirs, self.keys, self.services)  # fmt: skip


def test_one_anomaly_per_episode():
    f = Feed(["a/req:rate"], min_duration=2, quiet_points=3)
    opened = []
    for score in [0.1, 0.9, 0.2, 0.9, 0.9, 0.9, 0.1, 0.9, 0.9, 0.2, 0.1, 0.1, 0.1, 0.9, 0.9]:
        opened.append(f.step([score]).opened)
    assert [i for i, o in enumerate(opened) if o] == [4, 14]
    first, second = opened[4][0], opened[14][0]
    assert (first.series, first.service, first.first_seen) == ("a/req:rate", "a", T + 4 * S)  # onset, not confirmation
    assert first.score == 0.9 and first.direction == 1 and first.value == 0.5
    assert second.first_seen == T + 14 * S
    assert first.id != second.id


def test_single_flag_does_not_open():
    f = Feed(["a/req:rate"], min_duration=2)
    assert all(not f.step([s]).opened for s in [0.9, 0.1, 0.9, 0.1, 0.9, 0.1])


def test_latency_is_up_only():
    f = Feed(["a/http.duration:p99", "a/req:rate"], min_duration=2)
    out = [f.step([0.99, 0.99], [-1, -1]) for _ in range(5)]
    assert [a.series for o in out for a in o.opened] == ["a/req:rate"]  # a latency drop is no anomaly
    f2 = Feed(["a/http.duration:p99"], min_duration=2)
    assert [len(f2.step([0.99], [1]).opened) for _ in range(3)] == [0, 1, 0]


def test_active_ids_while_in_episode_and_close_after_quiet():
    f = Feed(["a/x", "b/y"], min_duration=2, quiet_points=2)
    f.step([0.9, 0.1])
    act = f.step([0.9, 0.1])
    assert act.active_ids.tolist() == [0] and act.active_ts.tolist() == [T + 2 * S]
    assert f.step([0.1, 0.1]).active_ids.tolist() == []
    assert f.tracker.active.tolist() == [True, False]
    f.step([0.1, 0.1])
    assert f.tracker.active.tolist() == [False, False]


def test_quiet_gap_shorter_than_quiet_points_keeps_the_episode():
    f = Feed(["a/x"], min_duration=2, quiet_points=3)
    opened = [len(f.step([s]).opened) for s in [0.9, 0.9, 0.1, 0.1, 0.9, 0.9, 0.9]]
    assert sum(opened) == 1


def test_episode_state_round_trip():
    f = Feed(["a/x"], min_duration=2, quiet_points=3)
    f.step([0.9])
    g = Feed(["a/x"], min_duration=2, quiet_points=3)
    g.tracker.load_state(f.tracker.state())
    g.t = f.t
    assert len(g.step([0.9]).opened) == 1
