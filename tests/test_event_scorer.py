"""Event-level precision/recall/F1: hand-built cases, a brute-force check of the threshold
sweep, and loading the Microsoft cloud monitoring files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, require_shared_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import event_scorer as es

MS_DIR = SHARED_DATA / "ms_cloud_monitoring"


def arr(s: str) -> np.ndarray:
    """'0011100' -> int array (spaces ignored), for readable cases."""
    return np.array([int(c) for c in s.replace(" ", "")])


def test_runs() -> None:
    assert es.runs(arr("0110011101")).tolist() == [[1, 2], [5, 7], [9, 9]]
    assert es.runs(arr("000")).shape == (0, 2)


def test_hit_inside_event() -> None:
    #          labels: two events, [2..4] and [10..10]
    labels = arr("0011100000 100000")
    alerts = arr("0001000000 000000")  # hits the first, misses the second
    assert es.event_scores(labels, alerts, delay=0) == (1, 0, 1)


def test_one_event_counted_once_however_many_alerts() -> None:
    labels = arr("0011111000")
    alerts = arr("0010101000")  # three alert runs, all inside one event
    assert es.event_scores(labels, alerts, delay=0) == (1, 0, 0)


def test_delay_after_event_end() -> None:
    labels = arr("0011000000")
    late2 = arr("0000010000")  # 2 points after the end (row 5)
    assert es.event_scores(labels, late2, delay=1) == (0, 1, 1)  # outside the tolerance: FP
    assert es.event_scores(labels, late2, delay=2) == (1, 0, 0)
    assert es.event_scores(labels, late2) == (1, 0, 0)  # default delay 7


def test_before_tolerance() -> None:
    labels = arr("0000011000")
    early = arr("0001000000")  # 2 points before the start
    assert es.event_scores(labels, early) == (0, 1, 1)  # default: early alerts do not count
    assert es.event_scores(labels, early, before=2) == (1, 0, 0)


def test_false_positive_alert_events() -> None:
    labels = arr("0000000000 0011000000")
    alerts = arr("1100110000 0000000001")
    # Runs [0,1] and [4,5] are far from the event [12,13]; [19] is within its 7-point delay.
    assert es.event_scores(labels, alerts) == (1, 2, 0)
    assert es.event_scores(labels, alerts, delay=0) == (0, 3, 1)


def test_alert_run_reaching_into_an_event_is_not_a_false_positive() -> None:
    labels = arr("0000011000")
    alerts = arr("0111111000")  # starts early but runs into the event: one hit, no FP
    assert es.event_scores(labels, alerts, delay=0) == (1, 0, 0)


def test_max_lag_is_ren_et_al_rule() -> None:
    # Ren et al. 2019: detected only if flagged within the first max_lag+1 points of the event.
    labels = arr("0111111110")
    late = arr("0000001000")  # 5 points after the start
    assert es.event_scores(labels, late, delay=0, max_lag=7) == (1, 0, 0)
    assert es.event_scores(labels, late, delay=0, max_lag=4) == (0, 0, 1)  # missed, but not FP
    after_end = arr("0000000001")
    assert es.event_scores(labels, after_end, delay=0, max_lag=7) == (0, 1, 1)


def test_corpus_f1_micro_average() -> None:
    r = es.corpus_f1({"a": (3, 1, 1), "b": (1, 3, 0)})
    assert (r["tp"], r["fp"], r["fn"]) == (4, 4, 1)
    assert r["precision"] == pytest.approx(0.5)
    assert r["recall"] == pytest.approx(0.8)
    assert r["f1"] == pytest.approx(2 * 0.5 * 0.8 / 1.3)
    assert es.corpus_f1([(0, 0, 0)])["f1"] == 0.0  # undefined -> 0, no warning
    r = es.corpus_f1([(1, 0, 1, 10, 4)])  # 5-tuples add point precision and composite F1
    assert r["point_precision"] == pytest.approx(0.4)
    assert r["composite_f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)


def test_best_f1_hand_built() -> None:
    labels = {"a": arr("0001100000 0000001000"), "b": arr("0000000000")}
    scores = {
        "a": np.array([0, 0, 0, 0.9, 0.2, 0, 0, 0, 0, 0, 0, 0.5, 0, 0, 0, 0, 0.3, 0, 0, 0]),
        "b": np.array([0, np.nan, 0, np.nan, 0.4, np.nan, 0, np.nan, 0, np.nan]),
    }
    # t=0.9: 1/2 events, no FP -> F1 .667; t=0.5: FP at row 11 -> .5; t=0.4: + FP in b -> .4;
    # t=0.3: 2 events, 2 FPs -> .667; t=0.2 adds nothing new (row 4 is in the first event);
    # t=0: series a is one alert run hitting both events, b five FP runs -> 4/9.
    r = es.best_f1(scores, labels, delay=0)
    assert r["threshold"] == 0.9  # ties keep the highest threshold
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["alert_rate"] == pytest.approx(1 / 30)
    at = es.f1_at(scores, labels, 0.3, delay=0)
    assert (at["tp"], at["fp"], at["fn"], at["f1"]) == (2, 2, 0, pytest.approx(2 / 3))


def test_alert_everything_games_event_precision_not_point_precision() -> None:
    # One endless alert run is one alert event: event F1 is perfect, point precision is not.
    labels = {"a": arr("0000000000 0000000000 0110000000")}
    scores = {"a": np.ones(30)}
    r = es.best_f1(scores, labels, delay=2)
    assert r["f1"] == 1.0 and r["alert_rate"] == 1.0
    assert r["point_precision"] == pytest.approx(4 / 30)  # the zone is rows 21..24
    c = es.best_f1(scores, labels, delay=2, objective="composite_f1")
    assert c["composite_f1"] == pytest.approx(2 * (4 / 30) / (1 + 4 / 30))


def test_nan_scores_never_alert() -> None:
    labels = {"a": arr("00100")}
    scores = {"a": np.array([np.nan, np.nan, np.nan, 0.1, np.nan])}
    r = es.best_f1(scores, labels, delay=0)
    # The only alert would be an FP (F1 0 either way): alerting on nothing wins the tie.
    assert (r["tp"], r["fp"], r["fn"], r["threshold"]) == (0, 0, 1, np.inf)
    assert es.best_f1(scores, labels, delay=1)["tp"] == 1


def naive_counts(labels: np.ndarray, alerts: np.ndarray, delay: int, before: int,
                 max_lag: int | None) -> tuple[int, int, int]:  # fmt: skip
    """The rules, read literally, one event and one alert run at a time."""
    n = len(labels)
    events = es.runs(labels == 1)
    zone = np.zeros(n, dtype=bool)
    tp = 0
    for s, e in events:
        lo, hi = max(s - before, 0), min(e + delay, n - 1)
        zone[lo : hi + 1] = True
        if max_lag is not None:
            hi = min(hi, s + max_lag)
        tp += bool(alerts[lo : hi + 1].any())
    fp = sum(1 for s, e in es.runs(alerts) if not zone[s : e + 1].any())
    return tp, fp, len(events) - tp


def test_event_scores_and_sweep_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    for _ in range(150):
        scores, labels = {}, {}
        for j in range(int(rng.integers(1, 4))):
            n = int(rng.integers(1, 40))
            labels[j] = (rng.random(n) < rng.random() * 0.4).astype(int)
            scores[j] = np.round(rng.random(n) * rng.integers(1, 6)) / 5  # ties
            if rng.random() < 0.3:
                scores[j][rng.random(n) < 0.2] = np.nan
        delay, before = int(rng.integers(0, 4)), int(rng.integers(0, 3))
        max_lag = [None, 0, 1, 3][int(rng.integers(0, 4))]
        finite = {x for v in scores.values() for x in v.tolist() if not np.isnan(x)}
        cands = sorted(finite | {np.inf}, reverse=True)
        best: dict[str, tuple[float, float]] = {}
        for t in cands:
            counts = []
            for k, v in scores.items():
                alerts = v >= t
                got = es.event_scores(labels[k], alerts, delay, before, max_lag)
                assert got == naive_counts(labels[k], alerts, delay, before, max_lag)
                counts.append(got)
            f1 = es.corpus_f1(counts)["f1"]
            if "f1" not in best or f1 > best["f1"][0]:
                best["f1"] = (f1, t)
            comp = es.f1_at(scores, labels, t, delay, before, max_lag)["composite_f1"]
            if "composite_f1" not in best or comp > best["composite_f1"][0]:
                best["composite_f1"] = (comp, t)
        for objective, (value, t) in best.items():
            r = es.best_f1(scores, labels, delay, before, max_lag, objective=objective)
            assert r[objective] == pytest.approx(value, abs=1e-12)
            assert r["threshold"] == t


def test_input_validation() -> None:
    with pytest.raises(ValueError):
        es.event_scores(arr("010"), arr("01"))
    with pytest.raises(ValueError):
        es.event_scores(arr("010"), arr("010"), delay=-1)
    with pytest.raises(KeyError):
        es.best_f1({"a": np.zeros(3)}, {"b": arr("010")})
    with pytest.raises(ValueError, match="objective"):
        es.best_f1({"a": np.zeros(3)}, {"a": arr("010")}, objective="auc")


def test_load_series_handles_quotes_blanks_and_zulu(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.csv").write_text(
        '"TimeStamp","Value","Label"\n'
        '"2018-04-25T00:00:00Z","1.5","0"\n'
        '"2018-04-25T00:01:00Z","","1"\n'
    )
    (tmp_path / "d" / "y.csv").write_text("TimeStamp,Value,Label\n2018-07-03 14:00:00,2,1\n")
    (tmp_path / "d" / "x.csv-metadata.json").write_text("{}")
    got = es.load_series(tmp_path)
    assert list(got) == ["d/x.csv", "d/y.csv"]
    ts, vals, labels = got["d/x.csv"]
    assert ts[1] == np.datetime64("2018-04-25T00:01:00")
    assert vals[0] == 1.5 and np.isnan(vals[1])
    assert labels.tolist() == [0, 1]


def test_ms_cloud_monitoring_loads() -> None:
    require_shared_data("ms_cloud_monitoring", "data")
    series = es.load_series(MS_DIR / "data")
    assert len(series) == 60
    n_events = sum(len(es.runs(lab == 1)) for _, _, lab in series.values())
    assert n_events == 299
    # A detector that alerts on every point: near-perfect event F1, useless point precision.
    scores = {k: np.where(np.isnan(v), np.nan, 1.0) for k, (_, v, _) in series.items()}
    labels = {k: lab for k, (_, _, lab) in series.items()}
    r = es.f1_at(scores, labels, 0.5)
    assert r["recall"] == 1.0 and r["f1"] > 0.9
    assert r["point_precision"] < 0.05
