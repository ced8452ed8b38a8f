"""Estimated performance (CBPE) and its calibration, realized performance with a bootstrap interval, and the PCA
multivariate drift signal: known answers on synthetic models, coverage of the intervals, covariate shift, edge
cases that must give a verdict (never NaN, never a crash) and JSON round trips."""
import json
import math
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from mlops_nb.estimate import (
    Calibration,
    Estimate,
    PcaReference,
    ReconstructionAccumulator,
    ScoreAccumulator,
    estimate_performance,
    fit_calibration,
    multivariate_drift,
    realized_performance,
)
from mlops_nb.metrics import METRICS, classification_metrics

BINARY = ["bad", "good"]


def binary(n, seed, spread=1.5, overconfident=1.0):
    "A logistic model: x ~ N(0, spread), P(bad | x) = sigmoid(2x); the model reports sigmoid(2 * overconfident * x)."
    rng = np.random.default_rng(seed)
    x = rng.normal(0, spread, n)
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-2 * x)), "bad", "good")
    q = 1 / (1 + np.exp(-2 * overconfident * x))
    return np.c_[q, 1 - q], y


def multiclass(n, seed, spread=1.0):
    "A calibrated three-class softmax model on two features; `spread` scales the features (covariate shift)."
    rng = np.random.default_rng(seed)
    x = rng.normal(0, spread, (n, 2))
    logits = x @ np.array([[2.0, -1.0, -1.0], [0.0, 1.7, -1.7]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array(["a", "b", "c"])[(rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)]
    return p, y


def identity(classes):
    k = len(classes)
    return Calibration(tuple(classes), ((0.0, 1.0),) * k, ((0.0, 1.0),) * k, False, "not calibrated")


def window_of(proba, classes, positive, calibration=None, chunks=1):
    acc = ScoreAccumulator(classes, positive, calibration or identity(classes))
    for part in np.array_split(proba, chunks): acc.add(part)
    return acc


def brier(proba, y, classes):
    return float(((proba - (np.asarray(y)[:, None] == np.asarray(classes)[None])) ** 2).sum(axis=1).mean())


# --- calibration ---------------------------------------------------------------------------------------------------

def test_calibration_is_kept_only_when_it_helps():
    honest = fit_calibration(*binary(2000, 0), BINARY)
    bold = fit_calibration(*binary(2000, 0, overconfident=3), BINARY)
    _eq((honest.used, bold.used), (False, True))
    assert honest.reason.startswith("not calibrated: the probabilities are as good without it (Brier score 0.2110 raw vs 0.2131")
    proba, y = binary(20000, 1, overconfident=3)  # fresh rows: the maps make the probabilities better
    _eq((round(brier(proba, y, BINARY), 4), round(brier(bold.apply(proba), y, BINARY), 4)), (0.2607, 0.2301))
    _eq(honest.apply(proba).tolist(), proba.tolist())
    _eq(np.allclose(bold.apply(proba).sum(axis=1), 1.0), True)


def test_calibration_multiclass_and_too_few_rows():
    p, y = multiclass(3000, 0)
    squeezed = p ** 3 / (p ** 3).sum(axis=1, keepdims=True)  # overconfident
    cal = fit_calibration(squeezed, y, ["a", "b", "c"])
    _eq(cal.used, True)
    _eq(np.allclose(cal.apply(squeezed).sum(axis=1), 1.0), True)
    fresh, fresh_y = multiclass(5000, 1)
    fresh = fresh ** 3 / (fresh ** 3).sum(axis=1, keepdims=True)
    assert brier(cal.apply(fresh), fresh_y, "abc") < brier(fresh, fresh_y, "abc") - 0.01
    few = fit_calibration(p[:99], y[:99], ["a", "b", "c"])
    _eq((few.used, few.reason.startswith("not calibrated: too few held-out rows (99 rows")), (False, True))
    rare = fit_calibration(p[:500], np.where(np.arange(500) < 5, "c", "a"), ["a", "b", "c"])
    _eq(rare.reason, "not calibrated: too few held-out rows (500 rows, 0 in the rarest class; calibration needs 100 rows and 10 per class)")
    _eq(Calibration.from_dict(json.loads(json.dumps(cal.to_dict()))), cal)


# --- CBPE ----------------------------------------------------------------------------------------------------------

def coverage(make, classes, positive, metrics, windows=20, rows=2000):
    "How many of `windows` seeded windows' realized metric fall inside the estimated 95% interval, per metric."
    hits = dict.fromkeys(metrics, 0)
    for seed in range(windows):
        proba, y = make(rows, 100 + seed)
        acc, realized = window_of(proba, classes, positive), classification_metrics(y, proba, classes, positive)
        for m in metrics:
            e = estimate_performance(acc, m, seed=seed)
            hits[m] += e.low <= realized[m] <= e.high
    return hits


def test_cbpe_intervals_cover_the_realized_metric_binary():
    "Binomial(20, 0.95): 19 hits expected, 17 or more with probability 0.98; every metric of METRICS is estimated."
    _eq(coverage(binary, BINARY, "bad", list(METRICS)),
        {"accuracy": 19, "balanced_accuracy": 19, "precision": 20, "recall": 19, "f1": 19, "roc_auc": 19, "pr_auc": 20, "log_loss": 19})


def test_cbpe_intervals_cover_the_realized_metric_multiclass():
    "Confusion-matrix metrics: 18 of 20 (186-188 of 200 windows); macro ROC AUC and PR AUC are conservative (199 of 200)."
    hits = coverage(multiclass, ["a", "b", "c"], None, list(METRICS))
    _eq(hits, {"accuracy": 18, "balanced_accuracy": 18, "precision": 18, "recall": 18, "f1": 18, "roc_auc": 20, "pr_auc": 20, "log_loss": 19})


@pytest.mark.parametrize("make,classes,positive", [(binary, BINARY, "bad"), (multiclass, ["a", "b", "c"], None)])
def test_cbpe_tracks_a_covariate_shift(make, classes, positive):
    "The features move (P(y | x) unchanged): the realized metrics drop, and the estimates drop with them."
    for metric in ("accuracy", "f1", "roc_auc"):
        (before, y0), (after, y1) = make(20000, 7), make(20000, 8, spread=0.4)
        was = classification_metrics(y0, before, classes, positive)[metric]
        now = classification_metrics(y1, after, classes, positive)[metric]
        guess_before = estimate_performance(window_of(before, classes, positive), metric)
        guess_after = estimate_performance(window_of(after, classes, positive, chunks=7), metric)
        assert was - now > 0.1, (metric, was, now)
        assert abs((guess_before.value - guess_after.value) - (was - now)) < 0.02, (metric, guess_before, guess_after, was, now)
        assert abs(guess_after.value - now) < guess_after.high - guess_after.low, (metric, guess_after, now)


def test_cbpe_with_calibration_corrects_an_overconfident_model():
    proba, y = binary(20000, 3, overconfident=3)
    truth = classification_metrics(y, proba, BINARY, "bad")["accuracy"]
    raw = estimate_performance(window_of(proba, BINARY, "bad"), "accuracy")
    calibrated = estimate_performance(window_of(proba, BINARY, "bad", fit_calibration(*binary(20000, 4, overconfident=3), BINARY)), "accuracy")
    assert raw.value - truth > 0.09, (raw, truth)
    assert abs(calibrated.value - truth) < 0.01, (calibrated, truth)


def test_accumulator_state_is_the_same_whatever_the_chunks_and_round_trips():
    proba, _ = multiclass(3000, 2)
    one, many = window_of(proba, "abc", None), window_of(proba, "abc", None, chunks=13)
    _eq(json.dumps(one.to_dict()) == json.dumps(many.to_dict()), False)  # float sums differ in the last bits ...
    for m in METRICS:  # ... but not the estimates
        a, b = estimate_performance(one, m), estimate_performance(many, m)
        assert math.isclose(a.value, b.value, rel_tol=1e-9) and (a.low, a.high) == pytest.approx((b.low, b.high), rel=1e-9), m
    copy = ScoreAccumulator.from_dict(json.loads(json.dumps(one.to_dict())))
    _eq(json.dumps(copy.to_dict()), json.dumps(one.to_dict()))
    _eq([estimate_performance(copy, m) for m in METRICS], [estimate_performance(one, m) for m in METRICS])


def test_cbpe_edge_cases_give_a_reason():
    cal = identity(BINARY)
    _eq(estimate_performance(ScoreAccumulator(BINARY, "bad", cal), "roc_auc"), Estimate("roc_auc", None, None, None, 0, "no rows to estimate from"))
    no_positive = window_of(np.array([[0.2, 0.8], [0.3, 0.7]]), BINARY, None)
    _eq(estimate_performance(no_positive, "roc_auc").reason, "roc_auc of a binary model needs a positive class")
    _eq(estimate_performance(no_positive, "accuracy").value, 0.75)
    never_bad = window_of(np.array([[0.2, 0.8], [0.3, 0.7], [0.0, 1.0]]), BINARY, "bad")
    _eq(estimate_performance(never_bad, "precision").reason, "precision is undefined on these rows (a class is never predicted or never expected)")
    certain = window_of(np.array([[0.0, 1.0]] * 5), BINARY, "bad")  # no expected positive: no curve
    _eq(estimate_performance(certain, "roc_auc").value, None)
    messy = window_of(np.array([[np.nan, np.nan], [-1.0, 2.0], [np.inf, 0.0], [0.6, 0.4]]), BINARY, "bad")
    _eq(messy.n, 4)
    for m in METRICS: json.dumps(estimate_performance(messy, m).to_dict(), allow_nan=False)
    _fail(lambda: never_bad.add(np.ones((2, 3))), contains="probabilities must have 2 columns (one per class); got 3")
    _fail(lambda: ScoreAccumulator(["x", "y"], None, cal), contains="the calibration is for classes ['bad', 'good']")
    _fail(lambda: estimate_performance(never_bad, "auc"), contains="Unknown metric 'auc'")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(2, 4), rows=st.integers(1, 40), seed=st.integers(0, 10**6), zeros=st.booleans())
def test_cbpe_never_nan_never_crashes(k, rows, seed, zeros):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.full(k, 0.3), rows)
    if zeros: proba[rng.random(proba.shape) < 0.3] = 0.0
    classes = [f"c{i}" for i in range(k)]
    acc = window_of(proba, classes, "c0" if k == 2 else None)
    for m in METRICS:
        e = estimate_performance(acc, m, samples=50)
        d = json.loads(json.dumps(e.to_dict(), allow_nan=False))
        _eq(Estimate.from_dict(d), e)
        assert e.value is None or (math.isfinite(e.value) and e.low is not None and e.low <= e.high), e


# --- realized performance ------------------------------------------------------------------------------------------

def test_realized_performance_with_a_bootstrap_interval():
    proba, y = binary(1000, 5)
    r = realized_performance(y, proba, BINARY, "f1", "bad", seed=1)
    _eq(r.value, pytest.approx(classification_metrics(y, proba, BINARY, "bad")["f1"], abs=1e-12))
    assert r.low < r.value < r.high and r.high - r.low < 0.1, r
    _eq(realized_performance(y, proba, BINARY, "f1", "bad", seed=1), r)
    _eq(realized_performance(y, proba, BINARY, "f1", "bad", confidence=0.5, seed=1).high < r.high, True)
    _eq(Estimate.from_dict(json.loads(json.dumps(r.to_dict()))), r)


def test_realized_performance_fails_closed_with_a_reason():
    proba, y = binary(300, 6)
    _eq(realized_performance(y[:12], proba[:12], BINARY, "roc_auc", "bad"), Estimate("roc_auc", None, None, None, 12, "not enough labels yet (12 < 100)"))
    _eq(realized_performance(y[:12], proba[:12], BINARY, "roc_auc", "bad", min_labels=12).n, 12)
    one = np.full(300, "good")
    _eq(realized_performance(one, proba, BINARY, "roc_auc", "bad").reason, "roc_auc is undefined on these labels; no labelled rows of class 'bad'")
    recall = realized_performance(one, proba, BINARY, "recall", "bad")
    _eq((recall.value, recall.low, recall.high), (None, None, None))
    accuracy = realized_performance(one, proba, BINARY, "accuracy")
    _eq(accuracy.value, classification_metrics(one, proba, BINARY, "bad")["accuracy"])
    messy = np.r_[y[:200].astype(object), [None, np.nan, "?", 3]]
    r = realized_performance(messy, np.r_[proba[:200], proba[:4]], BINARY, "accuracy")
    _eq((r.n, r.reason), (200, "200 labelled rows; 95% interval from 500 stratified bootstrap resamples; 2 labels are not classes of the model and were skipped"))
    numbers = realized_performance(np.where(y == "bad", "1", "0"), proba[:, ::-1], [0, 1], "roc_auc", 1)  # labels read as text
    _eq(numbers.value, pytest.approx(classification_metrics(y, proba, BINARY, "bad")["roc_auc"], abs=1e-12))
    p3, y3 = multiclass(400, 1)
    missing_c = realized_performance(np.where(y3 == "c", "a", y3), p3, ["a", "b", "c"], "roc_auc")
    _eq((missing_c.value is not None, missing_c.reason.endswith("no labelled rows of class 'c'")), (True, True))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 60), seed=st.integers(0, 10**6), k=st.integers(2, 3))
def test_realized_never_nan_never_crashes(rows, seed, k):
    rng = np.random.default_rng(seed)
    classes = [f"c{i}" for i in range(k)]
    proba = rng.dirichlet(np.ones(k), rows)
    y = rng.choice([*classes, None], rows)
    for m in METRICS:
        e = realized_performance(y, proba, classes, m, "c1" if k == 2 else None, min_labels=5, samples=30)
        json.dumps(e.to_dict(), allow_nan=False)
        assert e.value is None or math.isfinite(e.value), e


# --- multivariate drift --------------------------------------------------------------------------------------------

def related(n, correlation, seed, north_rich=True):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = correlation * a + np.sqrt(1 - correlation ** 2) * rng.normal(size=n)
    region = rng.choice(["north", "south"], n)
    rich = (region == "north") if north_rich else (region == "south")
    return pd.DataFrame({"income": 3 * a + 10, "spend": b, "age": rng.normal(40, 9, n), "tenure": rng.exponential(2, n),
                         "region": region, "savings": np.where(rich, 2.0, -2.0) + rng.normal(size=n)})


NUMERIC = ["income", "spend", "age", "tenure", "savings"]


@pytest.fixture(scope="module")
def pca():
    return PcaReference.fit(related(5000, 0.8, 1), NUMERIC, {"region": ["north", "south"]}, related(2000, 0.8, 2))


def drift(ref, frame, threshold=0.1, min_rows=30, chunk=300):
    acc = ReconstructionAccumulator(ref)
    for start in range(0, len(frame), chunk): acc.add(frame.iloc[start:start + chunk])
    return multivariate_drift(acc, threshold, min_rows)


def test_a_flipped_correlation_is_caught_that_no_column_shows(pca):
    same, flipped = related(2000, 0.8, 3), related(2000, -0.8, 4)
    _eq([c for c in NUMERIC if ks_2samp(same[c], flipped[c]).pvalue < 0.05], [])  # each column unchanged
    quiet, loud = drift(pca, same), drift(pca, flipped)
    _eq((quiet["drifted"], loud["drifted"]), (False, True))
    assert abs(quiet["statistic"]) < 0.05 and loud["statistic"] > 0.25, (quiet, loud)
    assert loud["reason"].startswith("drifted: mean reconstruction error"), loud


def test_a_changed_category_relation_is_caught(pca):
    "The rich region swaps: every column keeps its distribution, the one-hot region and savings no longer agree."
    swapped = related(2000, 0.8, 6, north_rich=False)
    before = related(2000, 0.8, 7)
    _eq(ks_2samp(before["savings"], swapped["savings"]).pvalue > 0.05, True)
    _eq(abs((before["region"] == "north").mean() - (swapped["region"] == "north").mean()) < 0.03, True)
    _eq(drift(pca, swapped)["drifted"], True)


def test_small_windows_and_noise_are_not_drift(pca):
    _eq(drift(pca, related(3, -0.8, 8)), {"statistic": None, "threshold": 0.1, "drifted": None, "n": 3, "error": None,
                                          "reference": pca.reference[0], "missing": [], "reason": "not enough rows (3 < 30)"})
    tiny = drift(pca, related(40, 0.8, 9), threshold=0.01, min_rows=30)  # over the threshold but within noise
    _eq((tiny["drifted"], tiny["reason"].startswith("within sampling noise")), (False, True))


def test_sampling_keeps_the_mean_error(pca):
    "The first 2000 rows, then row i with chance 2000 / (i + 1): about 2000 * (1 + ln 30) = 8802 of 60000 rows scored."
    frame = related(60000, -0.8, 10)
    exact = float(pca.errors(frame).mean())
    acc = ReconstructionAccumulator(pca, sample=2000)
    for start in range(0, len(frame), 25000): acc.add(frame.iloc[start:start + 25000])
    _eq((acc.n, acc.scored), (60000, 8876))
    assert abs(acc.total / acc.mass - exact) / exact < 0.01, (acc.total / acc.mass, exact)
    assert 3800 < acc.mass ** 2 / acc.weights < 4200, acc.weights  # Kish's effective size: about 2 * sample
    copy = ReconstructionAccumulator.from_dict(json.loads(json.dumps(acc.to_dict())))
    _eq(multivariate_drift(copy, 0.1, 30), multivariate_drift(acc, 0.1, 30))



@pytest.mark.parametrize("correlation", [0.8, -0.8])
def test_the_statistic_does_not_depend_on_how_the_window_is_chunked(pca, correlation):
    "The same 25,000 rows in chunks of 1k, 7k (the last one short) or at once: the same rows scored, the same statistic."
    frame = related(25000, correlation, 13)
    results = []
    for chunk in (1000, 7000, 25000):
        acc = ReconstructionAccumulator(pca)
        for start in range(0, len(frame), chunk): acc.add(frame.iloc[start:start + chunk])
        results.append((acc.n, acc.scored, multivariate_drift(acc, 0.1, 30)))
    _eq([(n, scored) for n, scored, _ in results], [(25000, 13129)] * 3)
    first = results[0][2]
    for _, _, other in results[1:]:
        _eq(other["drifted"], first["drifted"])
        assert abs(other["statistic"] - first["statistic"]) <= 1e-12, (other["statistic"], first["statistic"])
        assert abs(other["error"] - first["error"]) <= 1e-12, (other["error"], first["error"])
    exact = (float(pca.errors(frame).mean()) - pca.reference[0]) / pca.reference[0]
    assert abs(first["statistic"] - exact) < 0.01, (first["statistic"], exact)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(1, 11999), max_size=12), seed=st.integers(0, 3))
def test_any_chunking_gives_the_same_statistic(pca, cuts, seed):
    frame = related(12000, -0.8, 14)
    def statistic(bounds):
        acc = ReconstructionAccumulator(pca, sample=1000, seed=seed)
        for a, b in pairwise(bounds): acc.add(frame.iloc[a:b])
        return acc.scored, multivariate_drift(acc, 0.1, 30)["statistic"]
    whole = statistic([0, len(frame)])
    chunked = statistic(sorted({0, len(frame), *cuts}))
    _eq(chunked[0], whole[0])
    assert abs(chunked[1] - whole[1]) <= 1e-12, (chunked, whole)
    copy = ReconstructionAccumulator(pca, sample=1000, seed=seed)
    copy.add(frame.iloc[:5000])
    copy = ReconstructionAccumulator.from_dict(json.loads(json.dumps(copy.to_dict())))  # a window resumed from its state
    copy.add(frame.iloc[5000:])
    assert abs(multivariate_drift(copy, 0.1, 30)["statistic"] - whole[1]) <= 1e-12


def test_pca_edge_columns(pca):
    frame = related(400, 0.8, 11).assign(flat=5.0, empty=np.nan, words=lambda d: d["region"])
    ref = PcaReference.fit(frame, [*NUMERIC, "flat", "empty", "words"], {"region": ["north", "south"], "gone": ["x"]}, frame)
    _eq((ref.means[-3:], ref.stds[-3:]), ((5.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
    window = related(300, 0.8, 12).assign(flat=7.0)  # the constant column moves; empty and words are missing
    window.loc[:50, "income"] = np.nan
    window.loc[:20, "region"] = None
    result = drift(ref, window)
    _eq((result["drifted"], result["missing"]), (True, ["empty", "gone", "words"]))
    assert "3 columns missing from the window were imputed (empty, gone, words)" in result["reason"]
    _eq(np.isfinite(ref.errors(window.assign(income=np.inf, spend="text"))).all(), True)
    _eq(ref.errors(window.iloc[:0]).shape, (0,))
    nothing = PcaReference.fit(frame, [], {}, frame)
    _eq(drift(nothing, frame)["reason"], "no multivariate baseline: the training rows have no reconstruction error to compare with")
    empty_held = PcaReference.fit(frame, NUMERIC, {}, frame.iloc[:0])
    _eq(drift(empty_held, frame)["drifted"], None)
    _eq(PcaReference.from_dict(json.loads(json.dumps(pca.to_dict()))), pca)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(1, 40), seed=st.integers(0, 10**6))
def test_pca_never_nan_never_crashes(rows, seed):
    rng = np.random.default_rng(seed)
    def messy(n):
        return pd.DataFrame({"x": rng.choice([1.0, np.nan, np.inf, 3.5], n), "y": rng.normal(size=n),
                             "c": rng.choice(["a", "b", None], n), "k": np.ones(n)})
    ref = PcaReference.fit(messy(rows), ["x", "y", "k"], {"c": ["a", "b"]}, messy(max(1, rows // 2)))
    acc = ReconstructionAccumulator(ref)
    acc.add(messy(rows))
    result = json.loads(json.dumps(multivariate_drift(acc, 0.1, 5), allow_nan=False))
    assert result["drifted"] in (None, True, False) and result["reason"], result


def test_a_wide_unchanged_window_is_not_drift():
    rng = np.random.default_rng(0)
    def frame(n):
        return pd.DataFrame({**{f"n{i}": rng.normal(size=n) for i in range(25)},
                             **{f"c{i}": rng.choice([f"v{j}" for j in range(10)], n) for i in range(25)}})
    ref = PcaReference.fit(frame(20000), [f"n{i}" for i in range(25)], {f"c{i}": [f"v{j}" for j in range(10)] for i in range(25)}, frame(5000))
    big = frame(1_000_000)
    acc = ReconstructionAccumulator(ref)
    for chunk in range(0, len(big), 100_000): acc.add(big.iloc[chunk:chunk + 100_000])
    _eq(multivariate_drift(acc, 0.1, 30)["drifted"], False)  # speed: benchmarks/drift.py


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(0, 300), k=st.integers(2, 4), seed=st.integers(0, 10**6), skew=st.floats(0.2, 5))
def test_calibration_never_crashes(rows, k, seed, skew):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(k), rows) ** skew
    y = rng.choice([*range(k), None], rows)
    cal = fit_calibration(proba, y, list(range(k)), min_rows=20)
    out = cal.apply(proba)
    _eq((out.shape, bool(np.isfinite(out).all()), bool(np.allclose(out.sum(axis=1), 1.0))), ((rows, k), True, True))
    _eq(Calibration.from_dict(json.loads(json.dumps(cal.to_dict(), allow_nan=False))), cal)


def test_labels_match_classes_by_text():
    "Integer classes with labels that arrived as text (JSON feedback): matched, positive class too."
    proba, y = binary(400, 9)
    classes, labels = [1, 0], np.where(y == "bad", "1", "0")
    acc = window_of(proba, classes, "1")
    _eq(acc.positive_class, 1)
    _eq(estimate_performance(acc, "f1").value, estimate_performance(window_of(proba, BINARY, "bad"), "f1").value)
    r = realized_performance(labels, proba, classes, "f1", 1)
    _eq(r.value, pytest.approx(classification_metrics(y, proba, BINARY, "bad")["f1"], abs=1e-12))
    _eq(fit_calibration(proba, labels, classes).reason, fit_calibration(proba, y, BINARY).reason)
    _fail(lambda: realized_performance(labels[:10], proba, classes, "f1", 1), contains="proba has 400 rows and y has 10")
