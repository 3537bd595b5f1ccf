"""The detector bank: thousands of series in numpy arrays, one call per batch.

The question each point answers is "has this series ever done this before?" Per series the bank
keeps the extremes its history has reached, on several views of the data:

- the value and its moving averages over ~3, ~10 and ~30 points (spikes and dips, level shifts
  and slow drifts out of the usual band, each at the time scale it shows first);
- its moving standard deviation over ~30 points (noise that grows, or vanishes);
- the residual from an hour-of-day profile learned online (a daily pattern that breaks while
  staying inside the usual band).

A point's *excess* is how far it lands beyond the extreme of a view, as a share of that view's
historical range; its score is ``1 - 2 ** (-excess / half)``, with ``half = half_excess * (1 +
young / n)``: 0.5 when a series with a long history leaves its known range by ``half_excess``
(6 % by default), rising smoothly with how far it goes. Being relative to each series' own
range, the score is calibrated per series: a noisy series has a wide range and pages less.
Extremes forget slowly (``forget`` per point), so a series that moved to a new normal long ago
is judged against its recent history; an anomaly that widened the range makes the next, similar
one less novel, which is what an operator who already saw the first would want too.

This is extreme-value reasoning in its plainest form: the chance that an exchangeable series
sets a new record at point n is 1/n, so records get rarer as a series ages (hence the ``young``
margin) and a record by a clear margin is strong evidence of change. On NAB this beat a
SPOT-style peaks-over-threshold tail model on standardized residuals, which we built first
(benchmarks/README.md has both figures). Everything is scored before it is learned;
:meth:`DetectorBank.score_batch` never mutates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

_NS_HOUR = 3_600_000_000_000


@dataclass(frozen=True)
class BankConfig:
    """One configuration for every series; per-series sensitivity comes from policy and feedback."""

    warmup: int = 30  # points of history before any score ...
    warmup_s: float = 900.0  # ... or this much event time, for sparse series (a minute-scrape is warm
    min_warmup: int = 10  # after 15 points, a 10 s one still after 30), but never fewer points than this
    windows: tuple[int, ...] = (3, 10, 30)  # moving-average views, in points (EWMA, alpha = 2 / (w + 1))
    vol_windows: tuple[int, ...] = (30,)  # moving-std views (EW), in points
    half_excess: float = 0.06  # excess beyond the known range (share of the range) that scores 0.5
    young: float = 300.0  # a series with n points needs (1 + young / n) times the excess: records are common early
    forget: float = 1e-5  # per point, extremes move back toward the range by this share of it
    season_alpha: float = 0.1  # hour-of-day profile: weight of the newest visit to a bin
    rel_floor: float = 1e-6  # a range is never narrower than this share of the value's magnitude
    abs_floor: float = 1e-12

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def layout(self) -> dict[str, tuple[Any, tuple[int, ...]]]:
        """State arrays: name -> (dtype, per-series shape)."""
        views = 1 + len(self.windows) + len(self.vol_windows)
        return {
            "n": (np.int32, ()),
            "since": (np.int64, ()),  # event time of the first point (0: unknown, counts as old)
            "mean": (np.float64, (len(self.windows),)),  # EWMAs of the value
            "vmean": (np.float64, (len(self.vol_windows),)),  # EW means and mean squares, for EW std
            "vsq": (np.float64, (len(self.vol_windows),)),
            "hi": (np.float64, (views,)),  # highest each view has been (slowly forgotten)
            "lo": (np.float64, (views,)),
            "hour": (np.float64, (24,)),  # hour-of-day profile
            "hour_seen": (np.int32, ()),  # bit h: hour h has been visited (the profile is defined)
            "res_hi": (np.float64, ()),  # largest |residual| from the profile so far
            "sens": (np.float32, ()),  # > 1 alerts on smaller excesses: from configuration (policy)
            "fb": (np.float32, ()),  # and from expert feedback, within [1/64, 64]
        }


class DetectorBank:
    """Vectorized online anomaly detection for many series.

    >>> bank = DetectorBank(BankConfig(warmup=10))
    >>> ids, rng = np.array([0]), np.random.default_rng(0)
    >>> for i in range(200):
    ...     _ = bank.update(ids, np.array([i * 60_000_000_000]), np.array([10 + rng.normal()]))
    >>> score, direction = bank.score_batch(ids, np.array([200 * 60_000_000_000]), np.array([30.0]))
    >>> bool(score[0] > 0.5), int(direction[0])
    (True, 1)
    """

    VERSION = 2

    def __init__(self, config: BankConfig | None = None) -> None:
        self.config = config or BankConfig()
        self._layout = self.config.layout()
        self._alphas = np.array([2.0 / (w + 1) for w in self.config.windows])
        self._valphas = np.array([2.0 / (w + 1) for w in self.config.vol_windows])
        self.size = 0
        self.arrays: dict[str, np.ndarray] = {
            k: np.zeros((0, *shape), dtype=dt) for k, (dt, shape) in self._layout.items()
        }

    def _grow(self, size: int, track: bool = True) -> None:
        """Make room for ids < size; ``track`` also counts them as series (reads never do)."""
        cap = len(self.arrays["n"])
        if size > cap:
            new_cap = max(size, 2 * cap, 64)
            for k, (dt, shape) in self._layout.items():
                grown = np.zeros((new_cap, *shape), dtype=dt)
                grown[:cap] = self.arrays[k]
                if k in ("sens", "fb"):
                    grown[cap:] = 1.0
                self.arrays[k] = grown
        if track:
            self.size = max(self.size, size)

    def nbytes_per_series(self) -> int:
        return sum(a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)) for a in self.arrays.values())

    # --- the model ------------------------------------------------------------------------------
    def _step(self, ids: np.ndarray, ts: np.ndarray, x: np.ndarray, learn: bool) -> tuple[np.ndarray, np.ndarray]:
        """Score one point per series from the state as it is; then, if ``learn``, fold it in.

        State is read once per array; when the ids are a contiguous run (a scrape of a whole
        partition) the reads are views and the writes go in place, without gather copies.
        """
        c, A = self.config, self.arrays
        lo_id = int(ids[0])
        sel: slice | np.ndarray = ids
        if int(ids[-1]) - lo_id == len(ids) - 1 and (len(ids) < 2 or bool((np.diff(ids) == 1).all())):
            sel = slice(lo_id, lo_id + len(ids))
        n = A["n"][sel]
        mean0, vmean0, vsq0 = A["mean"][sel], A["vmean"][sel], A["vsq"][sel]
        hi, lo, res_hi = A["hi"][sel], A["lo"][sel], A["res_hi"][sel]
        old = (n > 0)[:, None]
        xc = x[:, None]
        mean = np.where(old, (1 - self._alphas) * mean0 + self._alphas * xc, xc)
        vmean = np.where(old, (1 - self._valphas) * vmean0 + self._valphas * xc, xc)
        vsq = np.where(old, (1 - self._valphas) * vsq0 + self._valphas * xc * xc, xc * xc)
        views = np.concatenate([xc, mean, np.sqrt(np.maximum(vsq - vmean * vmean, 0.0))], axis=1)
        hour = ((ts // _NS_HOUR) % 24).astype(np.intp)
        rows = np.arange(len(ids))
        seen = (A["hour_seen"][sel] >> hour) & 1 == 1
        profile = A["hour"][sel][rows, hour]
        residual = np.where(seen, x - profile, 0.0)
        res = np.abs(residual)

        # excess beyond the known range, per view and side, and the daily residual's
        floor = np.maximum(c.rel_floor * np.abs(views), c.abs_floor)
        span = np.maximum(hi - lo, floor)
        all_ex = np.concatenate(
            [(views - hi) / span, (lo - views) / span, np.where(seen, (res - res_hi) / np.maximum(res_hi, floor[:, 0]), 0.0)[:, None]],
            axis=1,
        )  # fmt: skip
        best = np.argmax(all_ex, axis=1)
        excess = np.maximum(all_ex[rows, best], 0.0)
        k = views.shape[1]
        # which way the value went: for level views the side of the range; for the spread (std)
        # view, the value against its previous longest moving average; for the daily view, the profile
        previous = mean0[:, -1] if len(c.windows) else hi[:, 0]
        drift = np.where(x >= previous, 1, -1)
        side = np.where(best < k, 1, -1)
        direction = np.where(best >= 2 * k, np.where(residual >= 0, 1, -1),
                             np.where(best % k < 1 + len(c.windows), side, drift)).astype(np.int8)  # fmt: skip
        half = c.half_excess * (1.0 + c.young / np.maximum(n, 1)) / (A["sens"][sel] * A["fb"][sel])
        since = A["since"][sel]
        warm = (n >= c.warmup) | ((n >= c.min_warmup) & (ts - since >= int(c.warmup_s * 1e9)))
        score = np.where(warm, 1.0 - np.exp2(-excess / half), 0.0)

        if learn:
            first = (n == 0)[:, None]
            shrink = c.forget * (hi - lo)
            new_hi = np.where(first, views, np.maximum(views, hi - shrink))
            new_lo = np.where(first, views, np.minimum(views, lo + shrink))
            new_res_hi = np.where(seen, np.maximum(res, res_hi * (1 - c.forget)), res_hi)
            new_profile = np.where(seen, profile + c.season_alpha * (x - profile), x)
            A["hi"][sel], A["lo"][sel], A["res_hi"][sel] = new_hi, new_lo, new_res_hi
            A["mean"][sel], A["vmean"][sel], A["vsq"][sel] = mean, vmean, vsq
            A["hour"][ids, hour] = new_profile
            A["hour_seen"][sel] |= (1 << hour).astype(np.int32)
            A["since"][sel] = np.where(n == 0, ts, since)
            A["n"][sel] = n + 1
        return score, direction

    # --- the contract ---------------------------------------------------------------------------
    def score_batch(self, ids: np.ndarray, ts: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(score in [0, 1], direction +1/-1) per point (ids unique), from state as it is."""
        if len(ids) == 0:
            return np.zeros(0), np.zeros(0, dtype=np.int8)
        self._grow(int(ids.max()) + 1, track=False)
        return self._step(ids, ts, x, learn=False)

    def learn_batch(self, ids: np.ndarray, ts: np.ndarray, x: np.ndarray) -> None:
        """Learn one point per series (ids unique within the call)."""
        if len(ids):
            self._grow(int(ids.max()) + 1)
            self._step(ids, ts, x, learn=True)

    def update(self, ids: np.ndarray, ts: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score then learn one point per series: the streaming step, in one pass over the state."""
        if len(ids) == 0:
            return np.zeros(0), np.zeros(0, dtype=np.int8)
        self._grow(int(ids.max()) + 1)
        return self._step(ids, ts, x, learn=True)

    def baseline(self, ids: np.ndarray) -> np.ndarray:
        """What each series has been doing lately: its longest moving average (NaN if none)."""
        if not len(self.config.windows) or len(ids) == 0:
            return np.full(len(ids), np.nan)
        return self.arrays["mean"][ids, -1].copy()

    def recent(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per tracked series: points seen, longest moving average and moving std (NaN if not kept).

        What self-monitoring compares with its own slower memory to tell a shifted input
        distribution from noise, without touching the points themselves.
        """
        A, size = self.arrays, self.size
        level = A["mean"][:size, -1] if len(self.config.windows) else np.full(size, np.nan)
        if len(self.config.vol_windows):
            vmean, vsq = A["vmean"][:size, -1], A["vsq"][:size, -1]
            spread = np.sqrt(np.maximum(vsq - vmean * vmean, 0.0))
        else:
            spread = np.full(size, np.nan)
        return A["n"][:size], level, spread

    # --- sensitivity ----------------------------------------------------------------------------
    def set_sensitivity(self, ids: np.ndarray, values: np.ndarray) -> None:
        """Per-series sensitivity from configuration (> 1: alert on smaller excesses)."""
        if len(ids):
            self._grow(int(ids.max()) + 1)
            self.arrays["sens"][ids] = values

    def feedback(self, series_id: int, kind: str, factor: float = 2.0) -> None:
        """An expert's verdict: ``false_positive`` makes the series need a larger excess to alert,
        ``missed`` a smaller one; bounded to [1/64, 64] times the configured sensitivity."""
        if kind not in ("false_positive", "missed"):
            raise ValueError(f"feedback kind must be 'false_positive' or 'missed', not {kind!r}")
        self._grow(series_id + 1)
        fb = self.arrays["fb"]
        change = 1 / factor if kind == "false_positive" else factor
        fb[series_id] = min(max(float(fb[series_id]) * change, 1 / 64), 64.0)

    # --- state ----------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {k: a[: self.size] for k, a in self.arrays.items()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        if "since" not in arrays and "n" in arrays:  # saved before series ages were kept: count as old
            arrays = {**arrays, "since": np.zeros(len(arrays["n"]), dtype=np.int64)}
        missing = set(self._layout) - set(arrays)
        if missing:
            raise KeyError(f"detector state lacks {sorted(missing)}")
        size = len(arrays["n"])
        for k, (_, shape) in self._layout.items():
            if np.shape(arrays[k]) != (size, *shape):
                raise ValueError(f"detector state {k!r} has shape {np.shape(arrays[k])}, expected {(size, *shape)}")
        self.arrays = {k: np.array(arrays[k], dtype=dt) for k, (dt, _) in self._layout.items()}
        self.size = size


def config_from_json(values: dict[str, Any]) -> BankConfig:
    known = {f.name for f in fields(BankConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown detector settings {sorted(unknown)}")
    return BankConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
