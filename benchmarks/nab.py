"""NAB: stream all 58 series through one detector bank and score them as NAB does.

    python benchmarks/nab.py ../shared/data/nab [--out results/]

One configuration (the bank's defaults) for the whole corpus; series stream in lockstep as one
bank, each point scored before it is learned; labels are read only by the scorer. The reported
anomaly score is the bank's score passed through :class:`aiops.detect.filters.OnsetFilter`, the
engine's own "is this news" stage, so a long anomaly reports its onset once. Writes NAB-format
result files (``DIR/aiops/<category>/aiops_<file>.csv``) and prints ``Standard: x``,
``Reward-Low-FP: y``, ``Reward-Low-FN: z``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _history import report  # noqa: E402
from _series import stream  # noqa: E402
from nab_scorer import load_corpus, score_corpus, write_results_dir  # noqa: E402

from aiops.detect.bank import BankConfig  # noqa: E402

PROFILES = {"standard": "Standard", "reward_low_FP_rate": "Reward-Low-FP", "reward_low_FN_rate": "Reward-Low-FN"}
DETECTOR = "aiops"


def run(nab_dir: Path, config: BankConfig, half_life: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(onset scores, raw scores) per relative file name."""
    corpus = load_corpus(nab_dir)
    names = sorted(corpus.files)
    series = [(corpus.files[n].timestamps.astype("datetime64[ns]").astype(np.int64), corpus.files[n].values) for n in names]
    raw, news = stream(series, config, half_life)
    return dict(zip(names, news, strict=True)), dict(zip(names, raw, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nab_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="where to write NAB-format results (default: a temp dir)")
    ap.add_argument("--half-life", type=float, default=30.0, help="OnsetFilter half-life, points")
    args = ap.parse_args()
    config = BankConfig()
    t0 = time.perf_counter()
    corpus = load_corpus(args.nab_dir)
    onset, raw = run(args.nab_dir, config, args.half_life)
    elapsed = time.perf_counter() - t0
    out = args.out or Path(tempfile.mkdtemp(prefix="nab-"))
    write_results_dir(out, DETECTOR, corpus, onset)
    results = score_corpus(corpus, onset)
    raw_results = score_corpus(corpus, raw)
    points = sum(len(v) for v in onset.values())
    figures: dict[str, float] = {"files": len(onset), "points": points, "stream_points_per_s": points / elapsed}
    for key, label in PROFILES.items():
        figures[f"{label} (no onset filter)"] = round(raw_results[key]["score"], 2)
    for key, label in PROFILES.items():
        figures[f"{label} threshold"] = round(results[key]["threshold"], 4)
    for key, label in PROFILES.items():
        figures[label] = round(results[key]["score"], 2)
    data_hash = hashlib.sha256("".join(sorted(corpus.files)).encode() + str(points).encode()).hexdigest()[:12]
    print(f"results: {out}", file=sys.stderr)
    report("nab", {**config.to_json(), "half_life": args.half_life}, "NAB v1.1 (58 series)", data_hash, figures)


if __name__ == "__main__":
    main()
