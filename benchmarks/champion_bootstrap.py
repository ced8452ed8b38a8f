"""Paired bootstrap of the champion comparison: mlops-nb's vectorised resampling against the plain loop a reader would
write first (draw indices, call scikit-learn's `roc_auc_score` for both models, repeat), on the same seeded rows.

    python benchmarks/champion_bootstrap.py [--rows 3000] [--samples 2000]

Prints CPU seconds for each, their ratio, and checks that both give the same difference and bounds within bootstrap
noise (they draw different resamples, so the bounds agree to about a hundredth, not exactly).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mlops_nb.champion import paired_bootstrap


def plain_loop(y, challenger, champion, samples: int, confidence: float, seed: int) -> tuple:
    "The obvious implementation: one resample at a time, stratified by class, scikit-learn's ROC AUC for each model."
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    diffs = np.empty(samples)
    for i in range(samples):
        rows = np.concatenate([rng.choice(idx, size=len(idx)) for idx in by_class])
        diffs[i] = roc_auc_score(y[rows], challenger[rows]) - roc_auc_score(y[rows], champion[rows])
    alpha = 1 - confidence
    return roc_auc_score(y, challenger) - roc_auc_score(y, champion), np.quantile(diffs, alpha), np.quantile(diffs, 1 - alpha)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--samples", type=int, default=2000)
    args = ap.parse_args()
    X, y = make_classification(n_samples=2 * args.rows, n_features=12, n_informative=6, weights=[0.8], random_state=0)
    train, fresh = slice(0, args.rows), slice(args.rows, None)
    a = LogisticRegression(max_iter=2000).fit(X[train], y[train])
    b = LogisticRegression(max_iter=2000).fit(X[train][:, :6], y[train])
    pa, pb, yf = a.predict_proba(X[fresh]), b.predict_proba(X[fresh][:, :6]), y[fresh]

    start = time.process_time()
    ours = paired_bootstrap("roc_auc", yf, pa, pb, a.classes_, 1, samples=args.samples, seed=7)
    ours_s = time.process_time() - start
    start = time.process_time()
    diff, low, high = plain_loop(yf, pa[:, 1], pb[:, 1], args.samples, 0.95, 7)
    loop_s = time.process_time() - start

    print(f"{args.samples:,} paired resamples of {args.rows:,} rows, ROC AUC (CPU seconds)")
    print(f"  mlops-nb paired_bootstrap      {ours_s:7.3f}s   difference {ours.difference:+.4f}  bounds [{ours.low:+.4f}, {ours.high:+.4f}]")
    print(f"  plain loop + roc_auc_score     {loop_s:7.3f}s   difference {diff:+.4f}  bounds [{low:+.4f}, {high:+.4f}]")
    print(f"  speed-up {loop_s / ours_s:.1f}x")
    assert abs(ours.difference - diff) < 1e-9, (ours.difference, diff)


if __name__ == "__main__":
    main()
