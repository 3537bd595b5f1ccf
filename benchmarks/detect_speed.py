"""Detector bank speed and memory at scale, against per-series river detectors (issue: 1 M points/s).

    python benchmarks/detect_speed.py [--series 100000] [--steps 20] [--profile]

Feed (synthetic, seeded): every series has its own level (log-normal over ~6 decades) and noise
(1-20 % of the level); all series are scraped every 10 s, so one call to ``bank.update`` carries
one point of every series; about one point in a thousand is a spike of 6-12 noise widths.
The bank is warmed up past its ``warmup`` (120 steps by default, so every view and range is
populated), then ``--steps`` calls are timed, three times; each figure is the best of the three
blocks (2 noisy cores: compare ratios within a run, not absolute numbers across runs).

Figures:

* ``bank_points_per_s``: ``bank.update`` only (score, then learn) with the ids in order;
  ``bank_onset_points_per_s`` adds :class:`OnsetFilter`; ``bank_shuffled_points_per_s`` sends the
  same series with the ids in a random order (the gathers and scatters lose locality).
* river baselines, one object per series, ``score`` then ``learn`` per point, in a Python loop over
  the same call arrays (``.tolist()`` first, which is the fastest way to walk them):
  ``river_zscore`` (``stats.Var``, whose ``.mean`` is the running mean: z = |x - mean| / std),
  ``river_ew_zscore`` (``stats.EWMean`` + ``stats.EWVar``, Rust-backed, alpha 0.1),
  ``river_gaussian`` (``anomaly.GaussianScorer``, river's univariate detector) and
  ``river_hst`` (``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees()`` on ``{"x": value}``,
  on a small sample: ~1 MB of state each). Per-point Python sets their pace, so a sample of
  series gives the rate for any number. ``ratio_vs_*`` is bank/river points/s in this run.
* memory: ``bank_bytes_per_series_layout`` (``nbytes_per_series()``), ``..._arrays`` (state array
  bytes / series), ``..._rss`` (resident-set growth from before the bank to after warm-up, which
  includes the OnsetFilter and allocator slack), ``bank_update_peak_bytes_per_series``
  (tracemalloc peak of one update: transient working memory); river's bytes per series by
  tracemalloc of warmed-up objects and by pickle length.
* diagnostics: ``bank_minor_faults_per_call`` and ``bank_sys_ms_per_call`` (kernel time within
  ``bank.update``, mean over the in-order timed calls): large temporaries that the allocator maps
  and unmaps on every call show up here as page faults.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import os
import pickle
import pstats
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _history import digest, report  # noqa: E402

from aiops.detect.bank import BankConfig, DetectorBank  # noqa: E402
from aiops.detect.filters import OnsetFilter  # noqa: E402

T0_NS = 1_700_000_000 * 1_000_000_000
STEP_NS = 10 * 1_000_000_000
SPIKE_RATE = 1e-3


class Feed:
    """Deterministic per-step points for ``n`` series: ``step(t)`` -> (ts int64 ns, values)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.n, self.seed = n, seed
        self.level = rng.lognormal(3.0, 3.0, n)
        self.noise = rng.uniform(0.01, 0.2, n) * self.level

    def step(self, t: int, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        n = self.n if n is None else n
        rng = np.random.default_rng([self.seed, t])
        x = self.level[:n] + self.noise[:n] * rng.standard_normal(n)
        spikes = np.flatnonzero(rng.random(n) < SPIKE_RATE)
        x[spikes] += rng.choice([-1.0, 1.0], len(spikes)) * rng.uniform(6, 12, len(spikes)) * self.noise[spikes]
        return np.full(n, T0_NS + t * STEP_NS, dtype=np.int64), x


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- the bank ----------------------------------------------------------------------------------
def bench_bank(feed: Feed, warm_steps: int, steps: int, repeats: int, profile: bool) -> dict[str, float]:
    n = feed.n
    ids = np.arange(n)
    shuffled = np.random.default_rng(feed.seed + 1).permutation(n)
    gc.collect()
    rss0 = rss_bytes()
    bank, onset = DetectorBank(BankConfig()), OnsetFilter(30.0)
    ts, x = feed.step(0)
    tracemalloc.start()
    s, _ = bank.update(ids, ts, x)
    onset.filter(ids, s)
    state_traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    warm = max(warm_steps, bank.config.warmup + 20)
    t0 = time.perf_counter()
    for t in range(1, warm):
        ts, x = feed.step(t)
        onset.filter(ids, bank.update(ids, ts, x)[0])
    warm_s = time.perf_counter() - t0
    gc.collect()
    rss1 = rss_bytes()
    ts, x = feed.step(warm)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    onset.filter(ids, bank.update(ids, ts, x)[0])
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()

    t = warm + 1
    best_bank = best_onset = best_shuf = math.inf
    alerts = spikes_hit = spikes = 0
    faults = sys_s = 0.0
    for _ in range(repeats):
        el_bank = el_onset = el_shuf = 0.0
        for _ in range(steps):
            ts, x = feed.step(t)
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            c0 = time.perf_counter()
            s, _ = bank.update(ids, ts, x)
            c1 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            faults += r1.ru_minflt - r0.ru_minflt
            sys_s += r1.ru_stime - r0.ru_stime
            onset.filter(ids, s)
            c2 = time.perf_counter()
            el_bank += c1 - c0
            el_onset += c2 - c0
            z = np.abs(x - feed.level) / feed.noise
            spikes += int((z > 6).sum())
            spikes_hit += int(((z > 6) & (s >= 0.5)).sum())
            alerts += int((s >= 0.5).sum())
            t += 1
        for _ in range(steps):  # same bank, same series, ids in a random order
            ts, x = feed.step(t)
            c0 = time.perf_counter()
            bank.update(shuffled, ts, x[shuffled])
            el_shuf += time.perf_counter() - c0
            t += 1
        best_bank, best_onset, best_shuf = min(best_bank, el_bank), min(best_onset, el_onset), min(best_shuf, el_shuf)

    if profile:
        pr = cProfile.Profile()
        for _ in range(steps):
            ts, x = feed.step(t)
            pr.enable()
            bank.update(ids, ts, x)
            pr.disable()
            t += 1
        print(f"--- cProfile: {steps} x bank.update of {n} series (tottime) ---", file=sys.stderr)
        pstats.Stats(pr, stream=sys.stderr).sort_stats("tottime").print_stats(12)

    array_bytes = sum(a.nbytes for a in bank.arrays.values())
    return {
        "series": n,
        "warmup_steps": warm,
        "warmup_s": warm_s,
        "bank_points_per_s": n * steps / best_bank,
        "bank_onset_points_per_s": n * steps / best_onset,
        "bank_shuffled_points_per_s": n * steps / best_shuf,
        "bank_ms_per_call": best_bank / steps * 1e3,
        "bank_minor_faults_per_call": faults / (repeats * steps),
        "bank_sys_ms_per_call": sys_s / (repeats * steps) * 1e3,
        "bank_bytes_per_series_layout": bank.nbytes_per_series(),
        "bank_bytes_per_series_arrays": array_bytes / bank.size,
        "bank_bytes_per_series_traced": state_traced / n,
        "bank_bytes_per_series_rss": (rss1 - rss0) / n,
        "onset_bytes_per_series": onset.recent.nbytes / n,
        "bank_update_peak_bytes_per_series": peak / n,
        "timed_alert_rate": alerts / (n * steps * repeats),
        "timed_spike_recall": spikes_hit / spikes if spikes else 0.0,
    }


# --- river -------------------------------------------------------------------------------------
def _river_pipelines() -> dict[str, tuple[Callable[[], Any], Callable[[Any, float], float]]]:
    from river import anomaly, preprocessing, stats

    def zscore_step(v: Any, x: float) -> float:
        var = v.get()
        z = abs(x - v.mean.get()) / math.sqrt(var) if var > 0 else 0.0
        v.update(x)
        return z

    def ew_make() -> Any:
        return stats.EWMean(0.1), stats.EWVar(0.1)

    def ew_step(o: Any, x: float) -> float:
        m, v = o
        var = v.get()
        z = abs(x - m.get()) / math.sqrt(var) if var > 0 else 0.0
        m.update(x)
        v.update(x)
        return z

    def gaussian_make() -> Any:
        return anomaly.GaussianScorer(grace_period=BankConfig().warmup)

    def gaussian_step(g: Any, x: float) -> float:
        s = g.score_one(None, x)
        g.learn_one(None, x)
        return s

    def hst_make() -> Any:
        return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)

    def hst_step(p: Any, x: float) -> float:
        d = {"x": x}
        s = p.score_one(d)
        p.learn_one(d)
        return s

    return {
        "zscore": (stats.Var, zscore_step),
        "ew_zscore": (ew_make, ew_step),
        "gaussian": (gaussian_make, gaussian_step),
        "hst": (hst_make, hst_step),
    }


def bench_river(feed: Feed, make: Callable[[], Any], step: Callable[[Any, float], float], n: int,
                warm_steps: int, steps: int, repeats: int) -> float:  # fmt: skip
    """points/s, best of ``repeats`` blocks of ``steps`` calls of ``n`` series each."""
    objs = [make() for _ in range(n)]
    ids = np.arange(n)

    def call(x: np.ndarray) -> None:
        for i, v in zip(ids.tolist(), x.tolist(), strict=True):
            step(objs[i], v)

    for t in range(warm_steps):
        call(feed.step(t, n)[1])
    best, t = math.inf, warm_steps
    for _ in range(repeats):
        el = 0.0
        for _ in range(steps):
            x = feed.step(t, n)[1]
            c0 = time.perf_counter()
            call(x)
            el += time.perf_counter() - c0
            t += 1
        best = min(best, el)
    return n * steps / best


def river_bytes(feed: Feed, make: Callable[[], Any], step: Callable[[Any, float], float], n: int,
                warm_steps: int) -> tuple[float, float]:  # fmt: skip
    """(tracemalloc bytes per warmed-up object, pickle bytes per object)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    objs = [make() for _ in range(n)]
    for t in range(warm_steps):
        for o, v in zip(objs, feed.step(t, n)[1].tolist(), strict=True):
            step(o, v)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    pickled = sum(len(pickle.dumps(o)) for o in objs[: min(n, 50)]) / min(n, 50)
    return traced / n, pickled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=20, help="timed calls per block (best of --repeats blocks)")
    ap.add_argument("--warmup-steps", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--river-series", type=int, default=2000, help="sample for the cheap river baselines")
    ap.add_argument("--hst-series", type=int, default=50, help="sample for HalfSpaceTrees (~1 MB each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="cProfile the bank updates (to stderr)")
    args = ap.parse_args()
    import river

    t_start = time.perf_counter()
    feed = Feed(args.series, args.seed)
    figures: dict[str, float] = bench_bank(feed, args.warmup_steps, args.steps, args.repeats, args.profile)
    t_bank = time.perf_counter()
    pipelines = _river_pipelines()
    hst_warm = 300  # past HalfSpaceTrees' first 250-point window, so its reference masses exist
    for name, (make, step) in pipelines.items():
        n = args.hst_series if name == "hst" else args.river_series
        warm = hst_warm if name == "hst" else args.warmup_steps
        steps = max(args.steps, 100) if name == "hst" else args.steps  # >= 5 000 points per timed block
        rate = bench_river(feed, make, step, n, warm, steps, args.repeats)
        figures[f"river_{name}_points_per_s"] = rate
        figures[f"ratio_vs_river_{name}"] = figures["bank_points_per_s"] / rate
        traced, pickled = river_bytes(feed, make, step, 20 if name == "hst" else 1000, warm)
        figures[f"river_{name}_bytes_per_series"] = traced
        figures[f"river_{name}_pickle_bytes_per_series"] = pickled
    cheap = max(figures[f"river_{k}_points_per_s"] for k in pipelines if k != "hst")
    figures["ratio_vs_fastest_river"] = figures["bank_points_per_s"] / cheap
    figures["bank_s"] = t_bank - t_start
    figures["river_s"] = time.perf_counter() - t_bank

    config = {
        "series": args.series, "steps": args.steps, "warmup_steps": figures["warmup_steps"], "repeats": args.repeats,
        "river_series": args.river_series, "hst_series": args.hst_series, "hst_warmup_steps": hst_warm, "hst_steps": max(args.steps, 100),
        "bank": BankConfig().to_json(), "onset_half_life": 30.0, "river": river.__version__,
        "numpy": np.__version__, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
    }  # fmt: skip
    data = {"feed": "lognormal(3, 3) levels, noise U(1 %, 20 %), 10 s steps", "spike_rate": SPIKE_RATE,
            "series": args.series, "seed": args.seed}  # fmt: skip
    report("detect_speed", config, f"synthetic {args.series} series, seed {args.seed}", digest(data), figures)


if __name__ == "__main__":
    main()
