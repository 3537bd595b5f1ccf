"""Numenta Anomaly Benchmark (NAB v1.1) scorer, written from NAB's published rules.

Why our own: NAB's reference scorer needs pandas, a multiprocessing pool and its own results
layout; the engine's benchmark needs the same numbers in well under a second with numpy only.
The rules reproduced here (numenta/NAB ``nab/sweeper.py``, ``optimizer.py``,
``scorer.py``, ``runner.normalize``):

* Windows: ``labels/combined_windows.json`` gives [start, end] timestamps per data file; both
  must be rows of the file. A window covers rows start..end inclusive.
* Probation: the first ``min(floor(0.15 n), 0.15 * 5000)`` rows of a file are not scored at all
  (neither as detections nor as misses; a window only counts if it has a scored row).
* Per-row weight, were the row a detection:
    - in a window of width w ending at row R: ``sig(-(R - i + 1) / w) * tpWeight / sig(-1)``,
      ``sig(x) = 2 / (1 + exp(5x)) - 1``; so a detection on the first window row earns exactly
      tpWeight (the raw sigmoid there is 0.98661), on the last row ~0.
    - outside windows, after a window of width w ending at row R: ``sig((i - R) / (w - 1)) *
      fpWeight`` (-1 beyond 3 widths): an FP right after a window costs little, far after ~fpWeight.
    - before the first window of the file: ``-fpWeight``.
* File score at a threshold (detection = score >= threshold): each scored window contributes
  the best weight among its detected rows, or ``-fnWeight`` if none; every detected row outside
  windows adds its (negative) weight. Only the best detection in a window counts; later ones
  in the same window are free.
* Threshold: one per profile for the whole corpus, the one maximising the corpus total; ties go
  to the highest threshold (NAB sorts the sweep stably by score). "No detections" is the
  candidate threshold 1.1 (NAB's starting point).
* Normalisation: ``100 * (raw - null) / (perfect - null)`` with null = the null detector's raw
  score (no detections: ``-fnWeight`` per scored window) and perfect = ``tpWeight`` per window.
  NAB takes both over the whole label file; here they are taken over the files scored, which
  is the same for the full corpus and keeps subsets meaningful.

Checked against NAB's published results (``golden/``): the sweep reproduces the scoreboard within
1e-10 for numenta Standard/Low-FN and all three windowedGaussian figures. For numenta Low-FP
the scoreboard's 63.117 was scored at the hill-climbing optimiser's threshold 0.5752 (stored in
``config/thresholds.json``); the exhaustive sweep finds 0.5431, worth 63.209. Scoring at the
stored thresholds (``thresholds=`` / ``--published-thresholds``) reproduces all six figures.

CLI: ``python benchmarks/nab_scorer.py NAB_DIR --results DIR --detector NAME
[--published-thresholds]``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
LABELS = {"standard": "Standard", "reward_low_FP_rate": "Reward-Low-FP",
          "reward_low_FN_rate": "Reward-Low-FN"}  # fmt: skip
PROBATION_PERCENT = 0.15
NO_DETECTION_THRESHOLD = 1.1  # NAB's sweep starts here: the "detect nothing" candidate


@dataclass(frozen=True)
class DataFile:
    """One NAB series: raw timestamp/value text (kept to write result files verbatim)."""

    name: str  # relative, e.g. "realKnownCause/nyc_taxi.csv"
    timestamps: np.ndarray  # datetime64[us]
    timestamp_text: list[str]
    value_text: list[str]
    windows: list[tuple[int, int]]  # inclusive row ranges, in order

    @property
    def n(self) -> int:
        return len(self.timestamp_text)

    @property
    def values(self) -> np.ndarray:
        return np.array([float(v) for v in self.value_text])

    def labels(self) -> np.ndarray:
        """1 inside windows, else 0 (NAB's ``label`` column)."""
        lab = np.zeros(self.n, dtype=np.int8)
        for lo, hi in self.windows:
            lab[lo : hi + 1] = 1
        return lab


@dataclass(frozen=True)
class Corpus:
    """NAB data files with their windows, and the profiles' cost matrices."""

    root: Path
    files: dict[str, DataFile]
    profiles: dict[str, dict[str, float]] = field(default_factory=dict)
    probation_percent: float = PROBATION_PERCENT

    @property
    def timestamps(self) -> dict[str, np.ndarray]:
        return {k: f.timestamps for k, f in self.files.items()}

    @property
    def windows(self) -> dict[str, list[tuple[int, int]]]:
        return {k: f.windows for k, f in self.files.items()}


def probation_length(n: int, percent: float = PROBATION_PERCENT) -> float:
    """Rows ``i < probation_length(n)`` are never scored (NAB: min(floor(p n), p * 5000))."""
    return min(math.floor(percent * n), percent * 5000)


def _parse_times(text: list[str]) -> np.ndarray:
    return np.array([t.strip().replace("T", " ").rstrip("Z") for t in text], dtype="datetime64[us]")


def _window_rows(ts: np.ndarray, limits: list[list[str]], name: str) -> list[tuple[int, int]]:
    """Map [start, end] timestamps to row indices; NAB requires both to be rows of the file."""
    rows = []
    for start, end in limits:
        bounds = []
        for t in (start, end):
            hit = np.flatnonzero(ts == _parse_times([t])[0])
            if hit.size == 0:
                raise ValueError(f"{name}: window timestamp {t!r} is not a row of the data file")
            bounds.append(int(hit[0]))
        if bounds[1] < bounds[0]:
            raise ValueError(f"{name}: window {start}..{end} ends before it starts")
        rows.append((bounds[0], bounds[1]))
    rows.sort()
    for (_, hi), (lo, _) in itertools.pairwise(rows):
        if lo <= hi:
            raise ValueError(f"{name}: overlapping windows")
    return rows


def _read_csv_columns(path: Path, columns: tuple[str, ...]) -> list[list[str]]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        idx = [header.index(c) for c in columns]
        out: list[list[str]] = [[] for _ in columns]
        for row in reader:
            if not row:
                continue
            for o, j in zip(out, idx):
                o.append(row[j])
    return out


def load_corpus(nab_dir: Path, windows_file: str = "labels/combined_windows.json") -> Corpus:
    """Read ``data/``, the windows file and ``config/profiles.json`` of a NAB checkout."""
    nab_dir = Path(nab_dir)
    limits: dict[str, list[list[str]]] = json.loads((nab_dir / windows_file).read_text())
    files = {}
    for name in sorted(limits):
        ts_text, val_text = _read_csv_columns(nab_dir / "data" / name, ("timestamp", "value"))
        ts = _parse_times(ts_text)
        files[name] = DataFile(name, ts, ts_text, val_text, _window_rows(ts, limits[name], name))
    raw = json.loads((nab_dir / "config" / "profiles.json").read_text())
    profiles = {p: {k: float(v) for k, v in d["CostMatrix"].items()} for p, d in raw.items()}
    return Corpus(nab_dir, files, profiles)


def _scaled_sigmoid(pos: np.ndarray) -> np.ndarray:
    """NAB's 2*sigmoid(-5 pos) - 1, clamped to -1 past 3 widths."""
    with np.errstate(over="ignore"):
        val = 2.0 / (1.0 + np.exp(5.0 * pos)) - 1.0
    return np.where(pos > 3.0, -1.0, val)


MAX_TP = float(_scaled_sigmoid(np.array([-1.0]))[0])


@dataclass
class _Rows:
    """Scored (post-probation) rows of all files, with unweighted sweep weights."""

    score: np.ndarray  # anomaly score
    window: np.ndarray  # global window id, -1 outside windows
    unweighted: np.ndarray  # sigmoid weight before the profile's tp/fp weight
    n_windows: int  # windows with at least one scored row
    n_windows_all: int  # all windows of the scored files (NAB's "perfect" count)


def _file_rows(f: DataFile, s: np.ndarray, first_window_id: int,
               probation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Per-row window id and unweighted weight for one file, probation rows dropped."""
    n = f.n
    i = np.arange(n)
    window = np.full(n, -1, dtype=np.int64)
    unweighted = np.full(n, -1.0)  # before any window: -1 (as if infinitely far)
    for k, (lo, hi) in enumerate(f.windows):
        width = hi - lo + 1
        inside = slice(lo, hi + 1)
        window[inside] = first_window_id + k
        unweighted[inside] = _scaled_sigmoid(-(hi - i[inside] + 1) / width)
        nxt = f.windows[k + 1][0] if k + 1 < len(f.windows) else n
        after = slice(hi + 1, nxt)
        # FP distance is in units of (width - 1); a width-1 window would divide by zero in NAB,
        # here every FP after it counts as far (-1).
        dist = i[after] - hi
        unweighted[after] = _scaled_sigmoid(dist / (width - 1) if width > 1 else np.inf + dist)
    keep = i >= probation
    return s[keep], window[keep], unweighted[keep]


def _collect(corpus: Corpus, scores: dict[str, np.ndarray]) -> _Rows:
    unknown = set(scores) - set(corpus.files)
    if unknown:
        raise KeyError(f"scores for files not in the corpus: {sorted(unknown)[:5]}")
    if not scores:
        raise ValueError("no scores given")
    parts, wid = [], 0
    for name in sorted(scores):
        f = corpus.files[name]
        s = np.asarray(scores[name], dtype=np.float64)
        if s.shape != (f.n,):
            raise ValueError(f"{name}: {s.shape[0] if s.ndim else 0} scores for {f.n} rows")
        if not np.isfinite(s).all():
            raise ValueError(f"{name}: non-finite (NaN/inf) anomaly scores")
        parts.append(_file_rows(f, s, wid, probation_length(f.n, corpus.probation_percent)))
        wid += len(f.windows)
    score = np.concatenate([p[0] for p in parts])
    window = np.concatenate([p[1] for p in parts])
    unweighted = np.concatenate([p[2] for p in parts])
    # Renumber windows that kept scored rows densely; fully-probationary ones vanish (as in NAB).
    used, window_dense = np.unique(window[window >= 0], return_inverse=True)
    window = window.copy()
    window[window >= 0] = window_dense
    return _Rows(score, window, unweighted, len(used), wid)


@dataclass
class _Sweep:
    """Corpus-wide rows in descending score order, shared by all profiles."""

    rows: _Rows
    order: np.ndarray
    cut: np.ndarray  # candidate k: rows order[:k] detected; cut[0] = 0 (no detection)
    thresholds: np.ndarray  # threshold of each candidate


def _prepare(rows: _Rows) -> _Sweep:
    order = np.argsort(-rows.score, kind="stable")
    s = rows.score[order]
    # Threshold t detects every row with score >= t: candidates end where the score changes.
    ends = np.flatnonzero(np.diff(s) != 0) + 1
    cut = np.concatenate([[0], ends, [len(s)]]) if len(s) else np.array([0])
    top = s[0] if len(s) else 0.0
    first = NO_DETECTION_THRESHOLD if top < NO_DETECTION_THRESHOLD else np.nextafter(top, np.inf)
    thresholds = np.concatenate([[first], s[cut[1:] - 1]]) if len(s) else np.array([first])
    return _Sweep(rows, order, cut, thresholds)


def _sweep_profile(sw: _Sweep, cost: dict[str, float], threshold: float | None = None) -> dict:
    """Corpus total at every threshold, updated incrementally down the sorted rows; pick the
    best (or, given ``threshold``, the total with rows scoring >= threshold detected)."""
    r = sw.rows
    tp_w, fp_w, fn_w = cost["tpWeight"], cost["fpWeight"], cost["fnWeight"]
    win = r.window[sw.order]
    weight = np.where(win >= 0, r.unweighted[sw.order] * tp_w / MAX_TP,
                      r.unweighted[sw.order] * fp_w)  # fmt: skip
    delta = np.where(win >= 0, 0.0, weight)  # an FP adds its weight when it turns on
    # A window's part is max(-fnWeight, best detected weight): it only rises when a detection
    # beats the window's running best. Per window, running max in sorted order.
    inside = np.flatnonzero(win >= 0)
    by_window = inside[np.argsort(win[inside], kind="stable")]
    bounds = np.flatnonzero(np.diff(win[by_window])) + 1
    for seg in np.split(by_window, bounds):
        if seg.size:
            best = np.maximum.accumulate(np.maximum(weight[seg], -fn_w))
            delta[seg] = np.diff(best, prepend=-fn_w)
    null = -fn_w * r.n_windows  # the null detector: nothing detected, every window missed
    running = null + np.concatenate([[0.0], np.cumsum(delta)])  # total with k rows detected
    if threshold is None:
        total = running[sw.cut]
        best_k = int(np.argmax(total))  # first max = highest threshold, as NAB's stable sort
        k, chosen = int(sw.cut[best_k]), float(sw.thresholds[best_k])
    else:
        # Rows are sorted descending: those scoring >= threshold are a prefix.
        k, chosen = int(np.searchsorted(-r.score[sw.order], -threshold, side="right")), threshold
    raw = float(running[k])
    n_in = int((win >= 0).sum())
    tp = int((win[:k] >= 0).sum())
    fp = k - tp
    perfect = tp_w * r.n_windows_all
    return {
        # No windows among the scored files: nothing to normalise against.
        "score": 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan"),
        "threshold": chosen,
        "raw": raw,
        "tp": tp,
        "fp": fp,
        "fn": n_in - tp,
        "tn": len(win) - n_in - fp,
        "null": null,
        "perfect": perfect,
    }


def score_corpus(corpus: Corpus, scores: dict[str, np.ndarray],
                 profiles: dict[str, dict[str, float]] | None = None,
                 thresholds: dict[str, float] | None = None) -> dict[str, dict]:  # fmt: skip
    """Per profile: normalised NAB score at the corpus-best threshold, with raw score and counts.

    ``scores`` maps relative data file names to anomaly-score arrays aligned with the data rows
    (any subset of the corpus). Counts (tp/fp/fn/tn) are rows after probation, as NAB reports.
    ``thresholds`` (profile -> threshold) skips the sweep for those profiles and scores at the
    given threshold instead: NAB's published scoreboard was scored at the thresholds in
    ``config/thresholds.json``, found by an older hill-climbing optimiser, not always the
    sweep's optimum (see ``published_thresholds``).
    """
    profiles = profiles if profiles is not None else corpus.profiles
    thresholds = thresholds or {}
    sw = _prepare(_collect(corpus, scores))
    return {name: _sweep_profile(sw, cost, thresholds.get(name)) for name, cost in profiles.items()}


def published_thresholds(nab_dir: Path, detector: str) -> dict[str, float]:
    """Per-profile thresholds NAB's scoreboard used for ``detector`` (config/thresholds.json)."""
    table = json.loads((Path(nab_dir) / "config" / "thresholds.json").read_text())
    if detector not in table:
        raise KeyError(f"{detector!r} not in {nab_dir}/config/thresholds.json")
    return {p: float(d["threshold"]) for p, d in table[detector].items()}


def _result_name(category: str, detector: str, fname: str) -> str:
    prefix = detector + "_"
    if not fname.startswith(prefix):
        raise ValueError(f"result file {category}/{fname} lacks the {prefix!r} prefix")
    return f"{category}/{fname[len(prefix):]}"


def read_results_dir(results_dir: Path, detector: str) -> dict[str, np.ndarray]:
    """Read ``DIR/<detector>/<category>/<detector>_<file>.csv`` into score arrays per data file.

    Only files one level down (categories) are read, so NAB's ``*_scores.csv`` summaries that
    sit in ``DIR/<detector>/`` are skipped.
    """
    base = Path(results_dir) / detector
    if not base.is_dir():
        raise FileNotFoundError(f"no results directory {base}")
    out = {}
    for path in sorted(base.glob("*/*.csv")):
        (col,) = _read_csv_columns(path, ("anomaly_score",))
        out[_result_name(path.parent.name, detector, path.name)] = np.array(col, dtype=np.float64)
    return out


def write_results_dir(results_dir: Path, detector: str, corpus: Corpus,
                      scores: dict[str, np.ndarray]) -> list[Path]:  # fmt: skip
    """Write NAB-format result files so NAB's own scorer can check us (label is informative)."""
    written = []
    for name, s in sorted(scores.items()):
        f = corpus.files[name]
        s = np.asarray(s, dtype=np.float64)
        if s.shape != (f.n,):
            raise ValueError(f"{name}: {s.shape} scores for {f.n} rows")
        category, fname = name.split("/", 1)
        path = Path(results_dir) / detector / category / f"{detector}_{fname}"
        path.parent.mkdir(parents=True, exist_ok=True)
        lab = f.labels()
        rows = zip(f.timestamp_text, f.value_text, s.tolist(), lab.tolist())
        with path.open("w", newline="") as fh:
            fh.write("timestamp,value,anomaly_score,label\n")
            fh.writelines(f"{t},{v},{x!r},{b}\n" for t, v, x, b in rows)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("nab_dir", type=Path, help="NAB checkout with data/, labels/, config/")
    ap.add_argument("--results", type=Path, required=True, help="results root (DIR/<detector>/...)")
    ap.add_argument("--detector", required=True)
    ap.add_argument("--published-thresholds", action="store_true",
                    help="score at NAB's config/thresholds.json thresholds instead of sweeping")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    corpus = load_corpus(args.nab_dir)
    scores = read_results_dir(args.results, args.detector)
    t1 = time.perf_counter()
    fixed = published_thresholds(args.nab_dir, args.detector) if args.published_thresholds else None
    result = score_corpus(corpus, scores, thresholds=fixed)
    t2 = time.perf_counter()
    print(f"files: {len(scores)}")
    print(f"load_seconds: {t1 - t0:.2f}")
    print(f"score_seconds: {t2 - t1:.2f}")
    for p, r in result.items():
        print(f"{p}: threshold={r['threshold']:.6g} raw={r['raw']:.4f} tp={r['tp']} "
              f"fp={r['fp']} fn={r['fn']} tn={r['tn']}")  # fmt: skip
    for p in PROFILES:
        if p in result:
            print(f"{LABELS[p]}: {result[p]['score']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
