"""Time-to-breach forecasts for series under an SLO, on a bounded budget.

Each watched series is averaged into ``step_s`` buckets (event time). When a bucket closes:

1. a cheap screen (least-squares line over the last ``screen_steps``) asks whether the series
   could reach its SLO line within the horizon; most series never pass it and cost nothing more;
2. a series that passes gets an ETS fit (:mod:`aiops.forecast.ets`), refitted every
   ``refit_every_s`` and ten steps after the detector bank flags a level shift on it (on the
   data since the shift), never more than ``refit_budget`` fits per step across all series;
3. a fit that is worse in-sample than the naive forecast is not used (counted in ``stats``);
4. a usable fit forecasts the horizon; the breach probability is the largest per-step
   probability of being past the line. Crossing ``open_probability`` emits a ``predicted``
   event with the expected breach time and its interval; the first step mean past the line
   emits ``breached`` (one noisy scrape is not a broken SLO); staying under
   ``close_probability`` for ``close_after_steps`` emits ``averted``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import ndtr, ndtri

from aiops.forecast.ets import (
    MIN_FIT_POINTS,
    Fit,
    LinearFit,
    Season,
    find_period,
    fit,
    fit_from_state,
    seasonal_profile,
)
from aiops.forecast.slo import SloRule

log = logging.getLogger(__name__)


class ForecastConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    step_s: float = Field(default=60.0, gt=0, description="series are forecast on means over this step")
    window_steps: int = Field(default=90, ge=20, description="the fit uses this many recent steps")
    season_step_s: float = Field(default=600.0, gt=0, description="cycles are looked for on means over this step")
    season_steps: int = Field(default=288, ge=10, description="how many are kept (two days at 10 min)")
    min_steps: int = Field(default=20, ge=10, description="no forecast for a series with less data")
    screen_steps: int = Field(default=20, ge=5, description="the cheap screen's line is fitted on this many")
    horizon_s: float = Field(default=1800.0, gt=0, description="how far ahead a breach is looked for")
    refit_every_s: float = Field(default=600.0, gt=0)
    refit_budget: int = Field(default=20, ge=1, description="at most this many model fits per step")
    open_probability: float = Field(default=0.9, gt=0, le=1)
    close_probability: float = Field(default=0.3, ge=0, lt=1)
    close_after_steps: int = Field(default=5, ge=1)
    interval: float = Field(default=0.9, gt=0, lt=1, description="coverage of the breach-time interval")
    max_gap_steps: int = Field(default=5, ge=0, description="longer gaps restart a series' history")


@dataclass(slots=True)
class Prediction:
    """One change in a forecast's life, for the incident stage."""

    event: Literal["predicted", "breached", "averted"]
    series: str
    service: str
    ts: int  # event time
    rule: SloRule
    probability: float
    value: float  # the latest step mean (the breaching value for ``breached``)
    baseline: float = float("nan")  # where the fitted window started: what the trend is measured against
    expected_breach: int | None = None
    earliest_breach: int | None = None
    latest_breach: int | None = None
    trend_start: int = 0  # event time the trend left its baseline (estimated): the onset for ranking
    fit: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Ring:
    """The last ``len(data)`` values of a stream, oldest first on read."""

    data: np.ndarray
    n: int = 0

    def push(self, x: float) -> None:
        self.data[self.n % len(self.data)] = x
        self.n += 1

    def recent(self, k: int) -> np.ndarray:
        k = min(k, self.n, len(self.data))
        idx = (self.n - k + np.arange(k)) % len(self.data)
        return self.data[idx].astype(np.float64)


@dataclass(slots=True)
class _Watch:
    rule: int
    fine: _Ring  # step means: what models are fitted on
    coarse: _Ring  # season-step means over days: where cycles are found
    bucket: int = -1  # the open step (event time // step)
    acc: float = 0.0
    cnt: int = 0
    c_bucket: int = -1  # the open season step
    c_acc: float = 0.0
    c_cnt: int = 0
    fit: Fit | LinearFit | None = None
    since_shift: int = -1  # steps since the detector bank last flagged a jump (-1: none in the window)
    predicted: bool = False
    low: int = 0
    hold: int = 0  # steps to stay quiet after a breach: the breach is the detector's incident now

    @property
    def n(self) -> int:
        return self.fine.n

    def recent(self, k: int) -> np.ndarray:
        return self.fine.recent(k)


class Forecaster:
    def __init__(self, rules: list[SloRule], config: ForecastConfig | None = None) -> None:
        self.rules = rules
        self.config = config or ForecastConfig()
        c = self.config
        self._step_ns = int(c.step_s * 1e9)
        self._season_ns = max(self._step_ns, int(c.season_step_s * 1e9))
        self._fine_len = max(c.window_steps, c.screen_steps, c.min_steps)
        self._horizon = max(1, round(c.horizon_s / c.step_s))
        self._refit_steps = max(1, round(c.refit_every_s / c.step_s))
        self._z = float(ndtri(0.5 + c.interval / 2))  # two-sided: 0.9 -> 1.645
        self.watch: dict[int, _Watch] = {}
        self._budget_step, self._budget_used = -1, 0
        self.stats = {"fits": 0, "fits_rejected": 0, "fits_failed": 0, "fit_seconds": 0.0, "predictions": 0,
                      "screened": 0}  # fmt: skip

    def observe(self, ids: np.ndarray, ts: np.ndarray, values: np.ndarray, rule_of: np.ndarray,
                keys: list[str], services: list[str]) -> list[Prediction]:  # fmt: skip
        """Raw points of one detection round (ids unique); only series with an SLO (``rule_of`` >= 0) are kept."""
        if not self.config.enabled:
            return []
        sel = np.flatnonzero(rule_of[ids] >= 0)
        out: list[Prediction] = []
        for i in sel.tolist():
            sid, t, v = int(ids[i]), int(ts[i]), float(values[i])
            w = self.watch.get(sid)
            if w is None:
                w = self.watch[sid] = self._new_watch(int(rule_of[sid]))
            b = t // self._step_ns
            if w.bucket >= 0 and b > w.bucket:
                self._close(sid, w, b, keys, services, out)
            if b >= w.bucket:
                w.bucket = b
                w.acc += v
                w.cnt += 1
        return out

    def _new_watch(self, rule: int) -> _Watch:
        return _Watch(rule, _Ring(np.zeros(self._fine_len, np.float32)),
                      _Ring(np.zeros(self.config.season_steps, np.float32)))  # fmt: skip

    def level_shift(self, sid: int) -> None:
        """The detector bank saw this series jump: its fit describes the past.

        A jump inside the fitted window reads as a steep trend, so forecasts after it use only the
        steps after the jump: a straight line while they are few, then ETS. A ramp keeps rising
        through them; a step does not. A ramp also trips the bank again and again as it climbs, so
        only the first jump in a window counts, and none while a warning is pending.
        """
        w = self.watch.get(sid)
        if w is not None and w.since_shift < 0 and not w.predicted:
            w.since_shift, w.fit = 0, None

    def _close(self, sid: int, w: _Watch, new_bucket: int, keys: list[str], services: list[str],
               out: list[Prediction]) -> None:  # fmt: skip
        gap = new_bucket - w.bucket - 1
        if gap > self.config.max_gap_steps:
            w.fine.n, w.fit, w.predicted, w.low = 0, None, False, 0  # a restart, not a trend
        mean = w.acc / w.cnt
        w.acc, w.cnt = 0.0, 0
        rule = self.rules[w.rule]
        if rule.sign * (mean - rule.threshold) > 0:  # a step mean past the line is the breach
            w.hold = self.config.close_after_steps
            if w.predicted:
                w.predicted, w.low = False, 0
                out.append(Prediction("breached", keys[sid], services[sid], int((w.bucket + 1) * self._step_ns), rule,
                                      1.0, mean, fit=self._fit_info(w)))  # fmt: skip
        elif w.hold:
            w.hold -= 1
        self._season_push(w, mean)
        for _ in range(min(gap, self.config.max_gap_steps) + 1):  # short gaps: carry the last mean
            w.fine.push(mean)
            if w.fit is not None:
                w.fit.update(mean)
            if w.since_shift >= 0:
                w.since_shift = w.since_shift + 1 if w.since_shift < self.config.window_steps else -1
        if w.n >= self.config.min_steps:
            self._evaluate(sid, w, w.bucket, keys, services, out)

    def _season_push(self, w: _Watch, mean: float) -> None:
        """Fold the closed step into its season step; gaps carry the last value so phases stay aligned."""
        cb = w.bucket * self._step_ns // self._season_ns
        if w.c_cnt and cb > w.c_bucket:
            last = w.c_acc / w.c_cnt
            gap = cb - w.c_bucket - 1
            if gap >= len(w.coarse.data):
                w.coarse.n = 0  # away longer than the whole season history: start over
            else:
                for _ in range(gap + 1):
                    w.coarse.push(last)
            w.c_acc, w.c_cnt = 0.0, 0
        w.c_bucket = cb
        w.c_acc += mean
        w.c_cnt += 1

    def _season(self, w: _Watch) -> Season | None:
        """The cycle in the series' season history, if there is one, readable at fine steps."""
        hist = w.coarse.recent(w.coarse.n)
        period = find_period(hist)
        if not period:
            return None
        span = self._season_ns / self._step_ns
        first = w.c_bucket - len(hist)  # season index of hist[0] (the open season step is not in it)
        return Season(seasonal_profile(hist, period), span, (first + 0.5) * span - 0.5)

    def _screen(self, w: _Watch, rule: SloRule) -> bool:
        """Could a straight line through the recent steps reach the SLO within the horizon?"""
        y = w.recent(self.config.screen_steps)
        t = np.arange(len(y), dtype=np.float64)
        slope, icpt = np.polyfit(t, y, 1)
        resid = y - (slope * t + icpt)
        sd = float(np.sqrt(np.mean(resid**2)))
        end = slope * t[-1] + icpt
        reach = max(end, end + slope * self._horizon) if rule.sign > 0 else min(end, end + slope * self._horizon)
        return bool(rule.sign * (reach - rule.threshold) + 3.0 * sd >= 0)

    def _evaluate(self, sid: int, w: _Watch, step: int, keys: list[str], services: list[str],
                  out: list[Prediction]) -> None:  # fmt: skip
        c, rule = self.config, self.rules[w.rule]
        stale = w.fit is None or isinstance(w.fit, LinearFit) or step - w.fit.fitted_step >= self._refit_steps
        usable = w.n if w.since_shift < 0 else w.since_shift - 1  # not the step the jump fell in
        if 0 <= w.since_shift and usable < MIN_FIT_POINTS:
            w.fit = LinearFit(list(w.recent(usable)), step) if usable >= LinearFit.MIN_POINTS else None
        elif stale and usable >= MIN_FIT_POINTS and (w.predicted or self._screen(w, rule)):
            self.stats["screened"] += 1
            if self._spend(step):
                self._refit(w, step, min(usable, c.window_steps))
        elif stale and not w.predicted:
            w.fit = None  # nothing trending: free the model
        now = int((step + 1) * self._step_ns)
        if w.fit is None or not w.fit.usable:  # no trustworthy trend: nothing to warn of, nothing to uphold
            if w.predicted:
                self._lower(sid, w, now, 0.0, keys, services, out)
            return
        mean, sd = w.fit.forecast(self._horizon)
        past = rule.sign * (mean - rule.threshold)
        p = float(ndtr(past / np.maximum(sd, 1e-12)).max())
        if not w.predicted and not w.hold and p >= c.open_probability:
            baseline = float(w.recent(c.window_steps)[:5].mean())
            w.predicted, w.low = True, 0
            self.stats["predictions"] += 1
            when = self._first(past)
            early = self._first(past + self._z * sd)
            late = self._first(past - self._z * sd)
            out.append(Prediction(
                "predicted", keys[sid], services[sid], now, rule, p, float(w.recent(1)[0]),
                baseline=baseline,
                expected_breach=None if when is None else now + when * self._step_ns,
                earliest_breach=None if early is None else now + early * self._step_ns,
                latest_breach=None if late is None else now + late * self._step_ns,
                trend_start=now - self._trend_age(w, baseline) * self._step_ns,
                fit=self._fit_info(w),
            ))  # fmt: skip
        elif w.predicted:
            self._lower(sid, w, now, p, keys, services, out)

    def _lower(self, sid: int, w: _Watch, now: int, p: float, keys: list[str], services: list[str],
               out: list[Prediction]) -> None:  # fmt: skip
        """A pending prediction whose breach probability stays low for long enough was averted."""
        w.low = w.low + 1 if p < self.config.close_probability else 0
        if w.low >= self.config.close_after_steps:
            w.predicted, w.low = False, 0
            out.append(Prediction("averted", keys[sid], services[sid], now, self.rules[w.rule], p,
                                  float(w.recent(1)[0]), fit=self._fit_info(w)))  # fmt: skip

    def _trend_age(self, w: _Watch, baseline: float) -> int:
        """Steps since the trend began: since the jump that started it, else since the fitted line
        left the window's opening level (level minus baseline, over the trend per step)."""
        span = min(w.n, self.config.window_steps)
        if w.since_shift >= 0:
            return min(w.since_shift, span)
        f = w.fit
        if isinstance(f, Fit) and f.trend * (f.level - baseline) > 0:
            return int(min(span, max(1.0, (f.level - baseline) / f.trend)))
        return span

    @staticmethod
    def _first(past: np.ndarray) -> int | None:
        hit = np.flatnonzero(past >= 0)
        return int(hit[0]) + 1 if len(hit) else None

    def _spend(self, step: int) -> bool:
        if step != self._budget_step:
            self._budget_step, self._budget_used = step, 0
        if self._budget_used >= self.config.refit_budget:
            return False
        self._budget_used += 1
        return True

    def _refit(self, w: _Watch, step: int, steps: int) -> None:
        t0 = time.process_time()
        new = fit(w.recent(steps), step, self._season(w))
        self.stats["fit_seconds"] += time.process_time() - t0
        self.stats["fits"] += 1
        if new is None:
            self.stats["fits_failed"] += 1
        elif not new.usable:
            self.stats["fits_rejected"] += 1
            log.info("forecast fit not used: in-sample MAE %.4g worse than naive %.4g", new.mae, new.naive_mae)
        w.fit = new

    def _fit_info(self, w: _Watch) -> dict[str, Any]:
        return w.fit.metrics() if w.fit is not None else {}

    def fits(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Every current fit with its metrics, by series key: what ``models/forecast`` records."""
        def finite(m: dict[str, Any]) -> dict[str, Any]:
            return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in m.items()}

        return {keys[sid]: {**finite(w.fit.metrics()), "usable": w.fit.usable, "state": w.fit.state()}
                for sid, w in self.watch.items() if w.fit is not None}  # fmt: skip

    # --- state ---------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        sids = sorted(self.watch)
        meta = {
            "stats": self.stats,
            "budget": [self._budget_step, self._budget_used],
            "watch": [
                {"sid": s, "rule": w.rule, "n": w.fine.n, "bucket": w.bucket, "acc": w.acc, "cnt": w.cnt,
                 "c_n": w.coarse.n, "c_bucket": w.c_bucket, "c_acc": w.c_acc, "c_cnt": w.c_cnt,
                 "since_shift": w.since_shift, "predicted": w.predicted, "low": w.low, "hold": w.hold,
                 "fit": None if w.fit is None else w.fit.state()}
                for s, w in ((s, self.watch[s]) for s in sids)
            ],
        }  # fmt: skip
        fine = np.stack([self.watch[s].fine.data for s in sids]) if sids else np.zeros((0, self._fine_len), np.float32)
        coarse = (np.stack([self.watch[s].coarse.data for s in sids]) if sids
                  else np.zeros((0, self.config.season_steps), np.float32))  # fmt: skip
        return meta, {"fine": fine, "coarse": coarse}

    def load_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.stats = dict(meta["stats"])
        self._budget_step, self._budget_used = (int(x) for x in meta["budget"])
        self.watch = {}
        for fine, coarse, m in zip(arrays["fine"], arrays["coarse"], meta["watch"], strict=True):
            self.watch[int(m["sid"])] = _Watch(
                int(m["rule"]), _Ring(np.array(fine, dtype=np.float32), int(m["n"])),
                _Ring(np.array(coarse, dtype=np.float32), int(m["c_n"])), int(m["bucket"]), float(m["acc"]),
                int(m["cnt"]), int(m["c_bucket"]), float(m["c_acc"]), int(m["c_cnt"]),
                None if m["fit"] is None else fit_from_state(m["fit"]), int(m["since_shift"]), bool(m["predicted"]),
                int(m["low"]), int(m["hold"]),
            )  # fmt: skip
