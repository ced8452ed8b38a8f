"""Time-ordered splits and cross-validation: rows sharing a timestamp never straddle a train/test or fold boundary,
the cut is the timestamp boundary nearest the requested share, undated rows only train, and the positive class reaches
the cross-validation scorers."""
from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_close as _close
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score
from sklearn.model_selection import TimeSeriesSplit
from statsmodels.datasets import macrodata

from mlops_nb.contract import infer_contract
from mlops_nb.prepare import build_preprocessor, split_data
from mlops_nb.train import get_candidate, model_pipeline, search_candidate, time_folds, train_candidates


def dated_frame(counts, start="2024-01-01") -> pd.DataFrame:
    "`counts[i]` rows on day i; labels alternate row by row, so a day with two rows or more holds both classes."
    days = np.repeat(pd.date_range(start, periods=len(counts), freq="D"), counts)
    n = len(days)
    return pd.DataFrame({"x": np.arange(n) * 1.5, "when": days, "label": np.where(np.arange(n) % 2 == 0, "a", "b")})


def contract_of(df):
    return infer_contract(df, "label", time_column="when")


@pytest.fixture(scope="module")
def macro():
    "US macroeconomic quarters 1959-2009; label: did real GDP fall this quarter; dated by year (4 rows share a timestamp)."
    data = macrodata.load_pandas().data
    X = data[["realcons", "realinv", "unemp", "infl", "realint"]].diff().fillna(0)
    y = pd.Series(np.where(data["realgdp"].diff() < 0, "fell", "grew"), name="gdp")
    years = pd.to_datetime(data["year"].astype(int).astype(str))
    return {"X": X, "y": y, "years": years, "frame": X.assign(gdp=y, year=years),
            "preprocessor": build_preprocessor(infer_contract(X.assign(gdp=y), "gdp"), X)}


# --- the train/test split ---

def test_time_split_cuts_at_a_timestamp_boundary():
    df = dated_frame([10] * 8 + [25])  # 105 rows: 20% is 21, which would cut the last day in two
    split = split_data(df, contract_of(df), test_size=0.2)
    _eq((len(split.train), len(split.test)), (80, 25))
    _eq(set(split.train["when"]) & set(split.test["when"]), set())
    _eq(split.test["when"].min(), pd.Timestamp("2024-01-09"))


def test_time_split_takes_the_nearest_boundary_and_the_smaller_part_on_a_tie():
    df = dated_frame([4] * 5)  # 30% of 20 rows is 6: boundaries give 4 or 8 test rows, equally near
    _eq(len(split_data(df, contract_of(df), test_size=0.3).test), 4)
    df = dated_frame([3, 3, 3, 3, 8])  # 35% of 20 is 7: 8 is nearer than 11
    _eq(len(split_data(df, contract_of(df), test_size=0.35).test), 8)


def test_time_split_fails_when_one_timestamp_holds_most_rows():
    df = dated_frame([5, 5, 5, 85])
    _fail(lambda: split_data(df, contract_of(df), test_size=0.2),
          contains="no timestamp boundary in 'when' holds out close to 20% of the rows: the nearest, 2024-01-04, holds out 85% (85 of 100), "
                   "because 2024-01-04 alone has 85 rows (85%)")
    early = dated_frame([85, 5, 5, 5])  # a crowded first timestamp trains: 15 test rows, within 10%-60%
    _eq(len(split_data(early, contract_of(early), test_size=0.2).test), 15)
    single = dated_frame([40])
    _fail(lambda: split_data(single, contract_of(single)), contains="at least two distinct timestamps in 'when', found 1")


def test_undated_rows_train_and_are_counted():
    df = dated_frame([10] * 10).astype({"when": "object"})
    df.loc[df.index[-4:], "when"] = None  # the last day keeps 6 dated rows
    contract = infer_contract(dated_frame([10] * 10), "label", time_column="when")
    split = split_data(df, contract, test_size=0.2)  # 20 of 100: boundaries give 6, 16 or 26 test rows
    _eq((len(split.train), len(split.test)), (84, 16))
    _eq(split.train["when"].isna().sum(), 4)
    _eq(split.time_facts(), {"time_column": "when", "test_from": "2024-01-09", "n_undated": 4})
    facts = split.to_dict()
    _eq((facts["strategy"], facts["time_column"], facts["test_from"], facts["n_undated"]), ("time", "when", "2024-01-09", 4))
    _eq(split_data(df.assign(when=dated_frame([10] * 10)["when"]), contract, strategy="stratified").time_facts(), {})


def test_time_split_on_macro_quarters_dated_by_year(macro):
    frame = macro["frame"]
    split = split_data(frame, infer_contract(frame, "gdp", time_column="year"), test_size=0.2)  # 40.6 rows: 39 (from 2000) is nearest
    _eq((len(split.train), len(split.test), split.time_facts()["test_from"]), (164, 39, "2000-01-01"))
    _eq(split.train["year"].max(), pd.Timestamp("1999-01-01"))


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(2, 20), min_size=2, max_size=25), test_size=st.floats(0.05, 0.95))
def test_time_split_is_the_nearest_boundary_or_a_clear_error(counts, test_size):
    df = dated_frame(counts)
    sizes = [sum(counts[k:]) for k in range(len(counts) - 1, 0, -1)]  # test rows per boundary, latest first
    best = min(sizes, key=lambda s: abs(s - test_size * len(df)))  # min keeps the first: the smaller part on a tie
    if not test_size / 2 <= best / len(df) <= (1 + test_size) / 2:
        _fail(lambda: split_data(df, contract_of(df), test_size=test_size), contains="no timestamp boundary in 'when'")
        return
    split = split_data(df, contract_of(df), test_size=test_size)
    _eq(len(split.test), best)
    _eq(len(split.train) + len(split.test), len(df))
    assert split.train["when"].max() < split.test["when"].min()


# --- time-ordered folds ---

def test_time_folds_on_macro_years_start_at_year_boundaries(macro):
    years = macro["years"]
    folds = time_folds(years, n_splits=3)  # TimeSeriesSplit would start blocks at rows 53, 103, 153, inside a year
    _eq([len(t) for t, _ in folds], [52, 104, 152])
    _eq([b.tolist() for _, b in folds], [list(range(52, 104)), list(range(104, 152)), list(range(152, 203))])
    _eq([(years[b].min().year, years[b].max().year) for _, b in folds], [(1972, 1984), (1985, 1996), (1997, 2009)])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 300), n_splits=st.integers(2, 8))
def test_time_folds_with_unique_timestamps_are_time_series_split(n, n_splits):
    times = pd.Series(pd.date_range("2020-01-01", periods=n, freq="h"))
    if n // (n_splits + 1) == 0:
        _fail(lambda: time_folds(times, n_splits), contains="cannot make")
        return
    expected = [(t.tolist(), v.tolist()) for t, v in TimeSeriesSplit(n_splits).split(np.zeros(n))]
    _eq([(t.tolist(), v.tolist()) for t, v in time_folds(times, n_splits)], expected)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(1, 15), min_size=1, max_size=30), n_splits=st.integers(2, 6),
       undated=st.integers(0, 5), seed=st.integers(0, 10))
def test_time_folds_never_split_a_timestamp(counts, n_splits, undated, seed):
    days = list(np.repeat(pd.date_range("2024-01-01", periods=len(counts), freq="D"), counts)) + [pd.NaT] * undated
    times = pd.Series(days).sample(frac=1, random_state=seed).reset_index(drop=True)  # any row order
    try: folds = time_folds(times, n_splits)
    except ValueError as e:
        assert "cannot make" in str(e), e
        return
    _eq(len(folds), n_splits)
    no_time = set(np.flatnonzero(times.isna()).tolist())
    blocks = []
    for train, block in folds:
        assert len(train) and len(block)
        assert times[train].max() < times[block].min()  # NaT is skipped by max
        assert no_time <= set(train.tolist()) and not no_time & set(block.tolist())
        _eq(set(train.tolist()) | set(block.tolist()) | set(np.flatnonzero(times > times[block].max()).tolist()), set(range(len(times))))
        blocks.append(block)
    for earlier, later in pairwise(blocks):
        assert times[earlier].max() < times[later].min()


def test_time_folds_fail_when_timestamps_are_too_few():
    _fail(lambda: time_folds(pd.Series(pd.to_datetime(["2024-01-01"] * 6 + ["2024-01-02"] * 2)), 3),
          contains="cannot make 3 folds without splitting a timestamp: the 8 dated training rows have 2 distinct timestamps; 2024-01-01 alone has 6")


# --- cross-validation in the search ---

def test_search_uses_time_folds_and_train_reports_them(macro):
    result, search = search_candidate(get_candidate("logistic_regression"), macro["preprocessor"], macro["X"], macro["y"], "roc_auc",
                                      n_splits=3, n_iter=1, seed=0, time=macro["years"], positive_class="fell")
    _eq([(t.tolist(), b.tolist()) for t, b in search.cv], [(t.tolist(), b.tolist()) for t, b in time_folds(macro["years"], 3)])
    _eq(len(result.fold_scores), 3)
    trained = train_candidates(macro["X"], macro["y"], macro["preprocessor"], ["logistic_regression"], n_splits=3, n_iter=1, seed=0,
                               time=macro["years"], positive_class="fell")
    _eq((trained.cv, trained.to_dict()["cv"], trained.n_splits, trained.notes), ("time-ordered", "time-ordered", 3, ()))
    _eq(trained.results[0].fold_scores, result.fold_scores)
    stratified = train_candidates(macro["X"], macro["y"], macro["preprocessor"], ["logistic_regression"], n_splits=3, n_iter=1, seed=0,
                                  positive_class="fell")
    _eq(stratified.cv, "stratified")


def test_a_fold_whose_training_part_lacks_a_class_fails_clearly(macro):
    sixties = macro["years"].dt.year.between(1961, 1970).to_numpy()  # GDP first falls in 1969
    _fail(lambda: train_candidates(macro["X"][sixties], macro["y"][sixties], macro["preprocessor"], ["logistic_regression"], n_splits=3,
                                   time=macro["years"][sixties]),
          contains="time-ordered fold 1 of 3 trains on the rows before 1963-01-01, which lack class 'fell': every training part needs every class")
    _fail(lambda: train_candidates(macro["X"], macro["y"], macro["preprocessor"], time=macro["years"][:10]), contains="time has 10 values but X has 203 rows")


def test_time_ordered_search_on_a_sample_keeps_time_order(macro):
    trained = train_candidates(macro["X"], macro["y"], macro["preprocessor"], ["logistic_regression"], n_splits=3, n_iter=1, seed=0,
                               max_cv_rows=150, time=macro["years"], positive_class="fell")
    _eq((trained.cv, trained.n_cv_rows, trained.notes), ("time-ordered", 150, ("hyperparameters tuned on a stratified sample of 150 rows",)))


@pytest.mark.parametrize("positive_class", ["fell", "grew"])
def test_positive_class_reaches_the_cv_scorers(macro, positive_class):
    X, y, years, pre = macro["X"], macro["y"], macro["years"], macro["preprocessor"]
    result, _ = search_candidate(get_candidate("logistic_regression"), pre, X, y, "pr_auc", n_splits=3, n_iter=1, seed=0,
                                 time=years, positive_class=positive_class)
    expected = []
    for train, block in time_folds(years, 3):
        model = model_pipeline(pre, get_candidate("logistic_regression").make(0)).set_params(**{f"model__{k}": v for k, v in result.best_params.items()})
        proba = model.fit(X.iloc[train], y.iloc[train]).predict_proba(X.iloc[block])[:, list(model.classes_).index(positive_class)]
        expected.append(average_precision_score(y.iloc[block] == positive_class, proba))
    _close(list(result.fold_scores), expected, eps=1e-9)
