"Drift tests from counts: known answers against scipy on raw data, the auto defaults, per-column settings, edge cases and the version report."
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_close as _close
from fastcore.test import test_eq as _eq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.linear_model import LogisticRegression

from mlops_nb.config import MonitorSettings
from mlops_nb.contract import ColumnSpec, Contract
from mlops_nb.drift import TESTS, Binned, VersionReport, column_drift, register_test, score_window
from mlops_nb.prepare import build_preprocessor
from mlops_nb.profile import CategoricalProfile, NumericProfile, Profile, WindowAccumulator, build_profile
from mlops_nb.train import model_pipeline

SETTINGS = MonitorSettings()


def bare_profile(features: dict, predictions=(50, 50)) -> Profile:
    return Profile("m", 1, "", features, {}, "y", ("a", "b"), "b", (50, 50), tuple(predictions))


def counts_of(reference, window, kind="numeric", **profile_args):
    "(profile of one column, its window counts) from raw values."
    ref = NumericProfile.of(pd.Series(reference, dtype=float), **profile_args) if kind == "numeric" else \
        CategoricalProfile.of(pd.Series(reference, dtype=object), **profile_args)
    acc = WindowAccumulator(bare_profile({"c": ref}))
    acc.add(pd.DataFrame({"c": pd.Series(window, dtype=float if kind == "numeric" else object)}))
    return ref, acc.counts().features["c"]


def drift(reference, window, kind="numeric", settings=SETTINGS, **profile_args):
    return column_drift("c", *counts_of(reference, window, kind, **profile_args), settings)


RNG = np.random.default_rng(0)
REF, SAME, SHIFTED = RNG.normal(5, 2, 20_000), RNG.normal(5, 2, 5_000), RNG.normal(6, 2, 5_000)


def test_numeric_known_answers_against_scipy_on_raw_data():
    for window in (SAME, SHIFTED, SHIFTED * 1.5, RNG.exponential(3, 4000)):
        b = Binned.of(*counts_of(REF, window))
        exact_ks = stats.ks_2samp(REF, window, method="asymp")
        ks, p = TESTS["ks"].compute(b)
        _eq(0 <= exact_ks.statistic - ks <= 1 / 100 + 1e-12, True)  # the gap at the edges: at most one bin's share below
        _close(TESTS["ks"].compute(b)[1], stats.kstwo.sf(ks, round(len(REF) * len(window) / (len(REF) + len(window)))), eps=1e-12)
        _eq(p < 0.05, exact_ks.pvalue < 0.05)
        _close(TESTS["wasserstein"].compute(b)[0], stats.wasserstein_distance(REF, window) / REF.std(), eps=0.005)
    far = Binned.of(*counts_of(REF, REF + 100))  # entirely beyond the training range: exact
    _close(TESTS["wasserstein"].compute(far)[0], 100 / REF.std(), eps=1e-9)


def test_psi_equals_psi_of_raw_values_in_the_same_ten_groups():
    ref_profile, counts = counts_of(REF, SHIFTED)
    cumulative = np.cumsum(ref_profile.counts) / len(REF)
    bounds = [ref_profile.edges[np.argmax(cumulative >= k / 10 - 1e-12)] for k in range(1, 10)]
    p = np.maximum(np.bincount(np.searchsorted(bounds, REF, "left"), minlength=10) / len(REF), 1e-4)
    q = np.maximum(np.bincount(np.searchsorted(bounds, SHIFTED, "left"), minlength=10) / len(SHIFTED), 1e-4)
    _close(TESTS["psi"].compute(Binned.of(ref_profile, counts))[0], np.sum((q - p) * np.log(q / p)), eps=1e-12)


def test_categorical_known_answers_against_scipy_on_raw_data():
    ref = RNG.choice(["x", "y", "z", "w"], 5000, p=[.4, .3, .2, .1])
    cur = RNG.choice(["x", "y", "z", "new"], 800, p=[.3, .3, .3, .1])
    b = Binned.of(*counts_of(ref, cur, "categorical"))
    keys = ["x", "y", "z", "w", "new"]
    table = np.array([[np.sum(ref == k) for k in keys], [np.sum(cur == k) for k in keys]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    _close(TESTS["chi2"].compute(b), (chi2, p), eps=1e-9)
    _close(TESTS["jensen_shannon"].compute(b)[0], jensenshannon(table[0] / 5000, table[1] / 800), eps=1e-12)
    shares_p, shares_q = np.maximum(table[0] / 5000, 1e-4), np.maximum(table[1] / 800, 1e-4)
    _close(TESTS["psi"].compute(b)[0], np.sum((shares_q - shares_p) * np.log(shares_q / shares_p)), eps=1e-12)


@pytest.mark.parametrize("test", ["psi", "ks", "wasserstein", "jensen_shannon", "chi2"])
def test_a_shifted_sample_is_detected_and_an_identical_one_is_not(test):
    kind = "categorical" if test == "chi2" else "numeric"
    ref, same, moved = (REF, SAME, SHIFTED) if kind == "numeric" else \
        (RNG.choice(list("abc"), 5000), RNG.choice(list("abc"), 3000), RNG.choice(list("abc"), 3000, p=[.5, .3, .2]))
    config = MonitorSettings(columns={"c": {"test": test}})
    calm, shifted = drift(ref, same, kind, config), drift(ref, moved, kind, config)
    _eq((calm.test, calm.drifted, shifted.test, shifted.drifted), (test, False, test, True))
    _eq(shifted.reason.startswith(test), True)


def test_auto_judges_p_values_below_large_n_and_effect_sizes_from_it():
    _eq([drift(REF, SHIFTED[:n]).test for n in (999, 1000)], ["ks", "wasserstein"])
    cats = RNG.choice(list("abc"), 5000)
    _eq([drift(cats, cats[:n], "categorical").test for n in (999, 1000)], ["chi2", "jensen_shannon"])
    _eq(drift(REF[:500], SHIFTED).test, "ks")  # the smaller side decides
    big = drift(REF, REF + 0.05 * REF.std())  # significant at this n, but a small effect: no drift
    _eq((big.test, big.drifted, TESTS["ks"].compute(Binned.of(*counts_of(REF, REF + 0.05 * REF.std())))[1] < 0.05), ("wasserstein", False, True))
    _eq(drift(REF, SHIFTED, settings=MonitorSettings(numeric_test="psi")).test, "psi")


def test_per_column_settings_none_threshold_and_wrong_kind():
    _eq(drift(REF, SHIFTED, settings=MonitorSettings(columns={"c": {"test": "none"}})).reason, "not tested (monitor.columns says none)")
    strict = drift(REF, SHIFTED, settings=MonitorSettings(columns={"c": {"test": "wasserstein", "threshold": 0.9}}))
    _eq((strict.threshold, strict.drifted), (0.9, False))
    wrong = drift(list("aab") * 100, list("abb") * 100, "categorical", MonitorSettings(columns={"c": {"test": "ks"}}))
    _eq((wrong.drifted, wrong.reason), (None, "ks does not apply to categorical columns"))


def test_register_a_test_by_name():
    register_test("mean_shift", lambda b: (abs(b.current_sums.sum() / b.current.sum() - b.reference_sums.sum() / b.reference.sum()) / b.scale, None),
                  ("numeric",), threshold="wasserstein")
    try:
        c = drift(REF, SHIFTED, settings=MonitorSettings(columns={"c": {"test": "mean_shift"}}))
        _eq((c.test, c.drifted, round(c.statistic, 1)), ("mean_shift", True, 0.5))
    finally:
        TESTS.pop("mean_shift")


def test_edge_cases_each_give_a_verdict_with_a_reason():
    constant = drift(np.full(2000, 7.0), np.full(2000, 7.0))
    _eq((constant.drifted, constant.statistic, constant.reason), (False, 0.0, "wasserstein 0 < 0.1"))
    _eq(drift(np.full(2000, 7.0), np.full(2000, 7.5)).drifted, True)
    empty_bins = drift(REF, np.full(2000, 5.0), settings=MonitorSettings(columns={"c": {"test": "psi"}}))  # 9 of 10 groups empty
    _eq((empty_bins.drifted, np.isfinite(empty_bins.statistic)), (True, True))
    all_null = drift(REF, np.full(500, np.nan))
    _eq((all_null.drifted, all_null.n, all_null.reason), (True, 0, "null rate 0.0% -> 100.0%; no value in the window (all null)"))
    three = drift(REF, SHIFTED[:3])
    _eq((three.drifted, three.reason), (None, "not enough rows (3 < 30)"))
    few_values = drift(REF, np.r_[SHIFTED[:10], np.full(40, np.nan)], settings=MonitorSettings(thresholds={**SETTINGS.thresholds, "null_rate": 0.9}))
    _eq((few_values.drifted, few_values.reason), (None, "not enough values (10 < 30)"))
    ref = NumericProfile.of(pd.Series(REF))
    acc = WindowAccumulator(bare_profile({"c": ref}))
    acc.add(pd.DataFrame({"other": np.ones(100)}))
    missing = column_drift("c", ref, acc.counts().features["c"], SETTINGS)
    _eq((missing.drifted, missing.null_rate, missing.reason), (True, (0.0, 1.0), "missing from the window: every row lacks it"))


def test_null_rate_change_and_unseen_categories_drift_a_column():
    nulls = drift(REF, np.where(np.arange(5000) % 5 == 0, np.nan, SAME))
    _eq((nulls.drifted, nulls.null_drift, nulls.reason.split("; ")[1]), (True, True, "null rate 0.0% -> 20.0%"))
    cats = np.random.default_rng(5).choice(list("abc"), 5000)
    window = np.r_[cats[:2940], ["never"] * 60]
    unseen = drift(cats, window, "categorical")
    _eq((unseen.drifted, unseen.unseen, round(unseen.unseen_share, 3)), (True, {"never": 60}, 0.02))
    _eq(unseen.reason.endswith("2.0% of values never seen in training"), True)


@pytest.fixture(scope="module")
def model_and_profile():
    rng = np.random.default_rng(1)
    n = 1500
    x = rng.normal(0, 1, n)
    frame = pd.DataFrame({"x": x, "z": rng.normal(0, 1, n), "k": rng.choice(list("pqr"), n), "y": np.where(x + rng.normal(0, .5, n) > 0, "b", "a")})
    contract = Contract((ColumnSpec("x", "numeric"), ColumnSpec("z", "numeric"), ColumnSpec("k", "categorical", categories=("p", "q", "r")),
                         ColumnSpec("y", "categorical", role="target", categories=("a", "b"))), "y")
    train, test = frame.iloc[:1000], frame.iloc[1000:]
    model = model_pipeline(build_preprocessor(contract, train), LogisticRegression()).fit(train[["x", "z", "k"]], train["y"])
    return model, build_profile(train, test, model, contract, "b", name="m", version=3), test


def report_of(model, profile, window, labelled=True, chunks=3):
    acc = WindowAccumulator(profile)
    for part in np.array_split(np.arange(len(window)), chunks):
        rows = window.iloc[part]
        proba = model.predict_proba(rows[["x", "z", "k"]])
        acc.add(rows, model.classes_[proba.argmax(axis=1)], proba, rows["y"] if labelled else None)
    return score_window(profile, acc.counts(), MonitorSettings(min_labels=50), "accuracy")


def test_score_window_ranks_drift_and_judges_prediction_and_performance(model_and_profile):
    model, profile, test = model_and_profile
    calm = report_of(model, profile, test)
    _eq((calm.version, calm.rows, calm.verdict, calm.drifted, calm.drift_share, calm.prediction.drifted, calm.performance["dropped"]),
        (3, 500, "no drift", (), 0.0, False, False))
    _eq((calm.performance["realized"]["n"], calm.performance["estimated"]["n"], calm.multivariate["drifted"]), (500, 500, False))
    moved = report_of(model, profile, test.assign(z=test.z * 3 + 1, k="r", x=test.x + 0.3))
    _eq((moved.verdict, moved.drifted[:2], len(moved.drifted), round(moved.drift_share, 3)), ("drift", ("k", "z"), 3, 1.0))
    flipped = report_of(model, profile, test.assign(y=test.y.map({"a": "b", "b": "a"})))
    _eq((flipped.performance["dropped"], flipped.verdict, flipped.reason), (True, "drift", "0 of 3 columns drifted; performance dropped"))
    _eq(VersionReport.from_dict(json.loads(json.dumps(flipped.to_dict(), allow_nan=False))), flipped)


def test_window_of_one_class_and_of_three_rows(model_and_profile):
    model, profile, test = model_and_profile
    only_b = report_of(model, profile, test[test.y == "b"])
    _eq((only_b.prediction.drifted, only_b.performance["realized"]["value"] is not None), (True, True))
    tiny = report_of(model, profile, test.iloc[:3], chunks=1)
    _eq((tiny.verdict, tiny.reason, tiny.drift_share, tiny.prediction.drifted, tiny.performance["dropped"]),
        ("not enough rows", "not enough rows (3 < 30)", None, None, None))
    _eq({c.reason for c in tiny.columns}, {"not enough rows (3 < 30)"})
    unlabelled = report_of(model, profile, test, labelled=False)
    _eq((unlabelled.performance["realized"], unlabelled.performance["dropped"]), (None, False))


values = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3), st.sampled_from(["a", "b", "", "NA", "zz"]), st.booleans())
frames = hpd.data_frames([hpd.column("n", elements=values, dtype=object), hpd.column("m", elements=st.floats(-5, 5) | st.just(float("nan")), dtype=float),
                          hpd.column("c", elements=values, dtype=object)], index=hpd.range_indexes(max_size=60))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames, frames, st.integers(1, 100), st.sampled_from(["auto", "psi", "ks", "wasserstein", "jensen_shannon", "chi2"]))
def test_no_crash_and_no_nan_on_any_frame(reference, window, min_rows, test):
    features = {}
    for name, kind in (("n", "numeric"), ("m", "numeric"), ("c", "categorical")):
        one = NumericProfile.of(reference[name], bins=10) if kind == "numeric" else CategoricalProfile.of(reference[name], max_categories=3)
        if one is not None: features[name] = one
    profile = bare_profile(features, predictions=(len(reference), 0))
    acc = WindowAccumulator(profile)
    for part in (window.iloc[: len(window) // 2], window.iloc[len(window) // 2:].drop(columns=["m"])):
        acc.add(part, predictions=np.where(np.arange(len(part)) % 3 == 0, "a", "b"))
    settings_ = MonitorSettings(min_rows=min_rows, large_n=20, columns={"n": {"test": test}, "c": {"test": test}})
    report = score_window(profile, acc.counts(), settings_, "accuracy")
    text = json.dumps(report.to_dict(), allow_nan=False)
    _eq(VersionReport.from_dict(json.loads(text)).verdict, report.verdict)
    _eq(report.verdict in ("drift", "no drift", "not enough rows"), True)
    _eq(all(c.reason for c in report.columns), True)
    _eq(report.verdict == "not enough rows", len(window) < min_rows)


def test_the_estimate_is_judged_against_its_own_held_out_value():
    "An uncalibrated model's estimate is biased: compared with the held-out realized value it would cry wolf on unchanged data."
    from sklearn.ensemble import RandomForestClassifier

    from mlops_nb.contract import infer_contract
    from mlops_nb.data import load_example

    wine = load_example("wine").sample(frac=1, random_state=0)
    contract = infer_contract(wine, target="cultivar")
    inputs = [c.name for c in contract.features]
    train, held_out = wine.iloc[:120], wine.iloc[120:]
    model = model_pipeline(build_preprocessor(contract, train), RandomForestClassifier(random_state=0)).fit(train[inputs], train.cultivar)
    profile = build_profile(train, held_out, model, contract)
    _eq((profile.calibration.used, profile.performance["accuracy"], profile.expected["accuracy"] < 0.95), (False, 1.0, True))
    for labelled in (False, True):
        acc = WindowAccumulator(profile)
        proba = model.predict_proba(held_out[inputs])
        acc.add(held_out, model.classes_[proba.argmax(axis=1)], proba, held_out.cultivar if labelled else None)
        performance = score_window(profile, acc.counts(), MonitorSettings(min_labels=20), "accuracy").performance
        _eq((performance["dropped"], performance["reason"].split(" ")[0]), (False, "realized" if labelled else "estimated"))
