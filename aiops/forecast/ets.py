"""Damped-trend exponential smoothing, ETS(A,Ad,N), on a series with an optional seasonal profile.

statsmodels estimates the smoothing parameters by maximum likelihood (the expensive part, done
on a schedule); the state update between fits and the forecast with its analytic prediction
variance (Hyndman et al. 2008, class 1 models) are a few lines of numpy, so a watched series
costs microseconds per step. The damped trend keeps a short ramp from being extrapolated
forever; a seasonal profile (:class:`Season`, found by autocorrelation on a coarse long history,
removed before the fit and added back to the forecast) keeps a daily peak from reading as a
trend towards the line.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_FIT_POINTS = 10  # statsmodels' heuristic initialisation needs ten observations


@dataclass(frozen=True)
class Season:
    """An additive cycle learned on coarse buckets, readable at any fine step.

    ``profile[k]`` is the mean deviation of coarse bucket phase ``k``; one coarse bucket spans
    ``span`` fine steps and the centre of a phase-0 bucket falls on fine step ``origin``.
    Between bucket centres the profile is interpolated linearly, around the cycle.
    """

    profile: np.ndarray
    span: float
    origin: float

    def at(self, steps: np.ndarray) -> np.ndarray:
        """The cycle's value at these fine step indexes."""
        p = len(self.profile)
        x = ((np.asarray(steps, dtype=np.float64) - self.origin) / self.span) % p
        lo = np.floor(x).astype(np.int64) % p
        frac = x - np.floor(x)
        return self.profile[lo] * (1.0 - frac) + self.profile[(lo + 1) % p] * frac

    def state(self) -> dict[str, Any]:
        return {"profile": self.profile.tolist(), "span": self.span, "origin": self.origin}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Season:
        return cls(np.asarray(state["profile"], dtype=np.float64), float(state["span"]), float(state["origin"]))


@dataclass
class Fit:
    """Fitted parameters, the current state, and how well the fit did against a naive forecast."""

    alpha: float
    beta: float
    phi: float
    sigma: float  # one-step residual standard deviation
    level: float
    trend: float
    mae: float  # in-sample one-step mean absolute error
    naive_mae: float  # the same for "next = last" on the same (deseasonalised) data
    aic: float
    n: int
    fitted_step: int  # fine step index of the last observation fitted
    season: Season | None = None
    next_step: int = 0  # fine step index of the next observation

    @property
    def usable(self) -> bool:
        """A fit that cannot beat "the next value is the last one" must not be trusted for warnings."""
        return bool(np.isfinite(self.mae) and self.mae <= self.naive_mae)

    @property
    def model(self) -> str:
        return "ETS(A,Ad,N)" + (f"+season({len(self.season.profile)}x{self.season.span:g})" if self.season else "")

    def update(self, y: float) -> None:
        """One new observation, with the fitted parameters (no re-estimation)."""
        s = float(self.season.at(np.array([self.next_step]))[0]) if self.season else 0.0
        err = (y - s) - (self.level + self.phi * self.trend)
        self.level += self.phi * self.trend + self.alpha * err
        self.trend = self.phi * self.trend + self.beta * err
        self.next_step += 1

    def forecast(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of steps 1..h ahead."""
        j = np.arange(1, h + 1)
        phis = np.cumsum(self.phi**j)  # φ + φ² + … + φ^j
        mean = self.level + phis * self.trend
        if self.season:
            mean = mean + self.season.at(self.next_step + j - 1)
        c2 = (self.alpha + self.beta * phis) ** 2
        var = self.sigma**2 * (1.0 + np.r_[0.0, np.cumsum(c2[:-1])])
        return mean, np.sqrt(var)

    def metrics(self) -> dict[str, Any]:
        return {"model": self.model, "mae": self.mae, "naive_mae": self.naive_mae, "aic": self.aic, "n": self.n}

    def state(self) -> dict[str, Any]:
        return {**vars(self), "season": self.season.state() if self.season else None}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Fit:
        return cls(**{**state, "season": Season.from_state(state["season"]) if state["season"] else None})


@dataclass
class LinearFit:
    """A straight line through the few steps since a level shift: too few for ETS, enough for a slope.

    Ordinary least squares with its prediction variance (inflated to Student-t tails for so few
    points); refitted on every new step, which costs microseconds.
    """

    y: list[float]
    fitted_step: int
    MIN_POINTS = 4

    def __post_init__(self) -> None:
        self._solve()

    def _solve(self) -> None:
        y = np.asarray(self.y, dtype=np.float64)
        n = len(y)
        t = np.arange(n, dtype=np.float64)
        self.slope, self.icpt = (float(v) for v in np.polyfit(t, y, 1))
        resid = y - (self.slope * t + self.icpt)
        self.s2 = float(resid @ resid) / max(n - 2, 1)
        self.sxx = float(((t - t.mean()) ** 2).sum())
        self.mae = float(np.mean(np.abs(resid)))
        self.naive_mae = float(np.mean(np.abs(np.diff(y)))) if n > 1 else math.inf

    @property
    def usable(self) -> bool:
        return len(self.y) >= self.MIN_POINTS and self.mae <= self.naive_mae

    @property
    def model(self) -> str:
        return "linear trend since level shift"

    def update(self, y: float) -> None:
        self.y.append(float(y))
        self._solve()

    def forecast(self, h: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.y)
        x = n - 1 + np.arange(1, h + 1, dtype=np.float64)
        mean = self.icpt + self.slope * x
        var = self.s2 * (1.0 + 1.0 / n + (x - (n - 1) / 2) ** 2 / max(self.sxx, 1e-12))
        tails = _T95.get(n - 2, 1.0) if n - 2 < 8 else 1.0  # Student-t vs normal 95 % quantile
        return mean, np.sqrt(var) * tails

    def metrics(self) -> dict[str, Any]:
        return {"model": self.model, "mae": self.mae, "naive_mae": self.naive_mae, "aic": math.nan, "n": len(self.y)}

    def state(self) -> dict[str, Any]:
        return {"linear": True, "y": self.y, "fitted_step": self.fitted_step}


# t(0.95, dof) / z(0.95): how much wider a Student-t interval is with so few residual degrees of freedom
_T95 = {1: 3.86, 2: 1.78, 3: 1.43, 4: 1.29, 5: 1.22, 6: 1.18, 7: 1.14}


def fit_from_state(state: dict[str, Any]) -> Fit | LinearFit:
    if state.get("linear"):
        return LinearFit(list(state["y"]), int(state["fitted_step"]))
    return Fit.from_state(state)


def find_period(history: np.ndarray, min_period: int = 4, min_acf: float = 0.5) -> int:
    """The dominant cycle length in steps (0: none), from the autocorrelation of the detrended data.

    A cycle must show as an interior peak of the autocorrelation that went negative before it
    (half a cycle out of phase), which a ramp or a level shift never does; and the history must
    hold two cycles.
    """
    n = len(history)
    if n < 2 * min_period + 2:
        return 0
    t = np.arange(n)
    x = history - np.polyval(np.polyfit(t, history, 1), t)
    denom = float(x @ x)
    if denom <= 0:
        return 0
    spec = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(spec * np.conj(spec))[: n // 2 + 1] / denom
    lags = np.arange(min_period, n // 2)
    if not len(lags):
        return 0
    peaks = lags[(acf[lags] >= acf[lags - 1]) & (acf[lags] >= acf[lags + 1]) & (acf[lags] >= min_acf)]
    for p in peaks:
        if acf[1:p].min() < 0:
            return int(p)
    return 0


def seasonal_profile(history: np.ndarray, period: int) -> np.ndarray:
    """Mean deviation from a centred moving average at each phase; phase 0 is ``history[0]``'s."""
    kernel = np.ones(period) / period
    trend = np.convolve(history, kernel, mode="same")
    half = period // 2
    valid = np.zeros(len(history), dtype=bool)
    valid[half : len(history) - half] = True
    dev = np.where(valid, history - trend, np.nan)
    phases = np.arange(len(history)) % period
    sums = np.bincount(phases[valid], weights=dev[valid], minlength=period)
    counts = np.bincount(phases[valid], minlength=period)
    profile = np.divide(sums, counts, out=np.zeros(period), where=counts > 0)
    return profile - profile.mean()


def fit(y: np.ndarray, step: int, season: Season | None = None) -> Fit | None:
    """Fit ``y`` (oldest first; its last value is fine step ``step``); None if it cannot be fitted.

    With a ``season``, the fit and the forecast work on the data with the cycle taken out.
    """
    from statsmodels.tsa.exponential_smoothing.ets import (
        ETSModel,  # ~1 s to import: only when needed
    )

    y = np.asarray(y, dtype=np.float64)
    if len(y) < MIN_FIT_POINTS or not np.isfinite(y).all():
        return None
    adj = y - season.at(step - len(y) + 1 + np.arange(len(y))) if season else y
    scale = float(np.std(adj)) or 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = ETSModel(adj / scale, error="add", trend="add", damped_trend=True, initialization_method="heuristic")
            res = model.fit(disp=False, maxiter=200)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            return None
    params = dict(zip(res.param_names, np.asarray(res.params, dtype=np.float64), strict=True))
    resid = np.asarray(res.resid, dtype=np.float64) * scale
    level, trend = (float(v) * scale for v in np.asarray(res.states)[-1][:2])
    if not (np.isfinite(resid).all() and math.isfinite(level) and math.isfinite(trend)):
        return None
    return Fit(
        alpha=float(params["smoothing_level"]),
        beta=float(params["smoothing_trend"]),
        phi=float(params["damping_trend"]),
        sigma=float(np.sqrt(np.mean(resid**2))),
        level=level,
        trend=trend,
        mae=float(np.mean(np.abs(resid[1:]))),
        naive_mae=float(np.mean(np.abs(np.diff(adj)))),
        aic=float(res.aic),
        n=len(y),
        fitted_step=step,
        season=season,
        next_step=step + 1,
    )
