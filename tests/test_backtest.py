"""Backtest splits: a cutoff trains on rows up to it and tests on rows after it, at most a horizon later; a date alone is
the end of that day; a cutoff that leaves no training rows, no test rows or a class only in the test part is a clear
error; without a cutoff nothing changes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.datasets import macrodata

from mlops_nb.contract import infer_contract
from mlops_nb.prepare import split_data


@pytest.fixture(scope="module")
def quarters():
    "US macroeconomic quarters 1959Q1-2009Q3 dated by the quarter's first day; label: did real GDP fall this quarter."
    data = macrodata.load_pandas().data
    start = pd.PeriodIndex.from_fields(year=data["year"].astype(int), quarter=data["quarter"].astype(int), freq="Q").to_timestamp()
    frame = data[["realcons", "realinv", "unemp", "infl"]].diff().fillna(0).assign(
        gdp=np.where(data["realgdp"].diff() < 0, "fell", "grew"), quarter_start=start)
    return frame, infer_contract(frame, "gdp", time_column="quarter_start")


def test_cutoff_trains_up_to_it_and_tests_within_the_horizon(quarters):
    frame, contract = quarters
    split = split_data(frame, contract, cutoff="1999-12-31", horizon="730d")
    _eq((len(split.train), len(split.test), split.n_unused), (164, 8, 31))  # 1959Q1-1999Q4; 2000Q1-2001Q4; 2002Q1-2009Q3
    _eq((split.train["quarter_start"].max(), split.test["quarter_start"].min(), split.test["quarter_start"].max()),
        (pd.Timestamp("1999-10-01"), pd.Timestamp("2000-01-01"), pd.Timestamp("2001-10-01")))
    _eq(sorted(split.train.index.tolist() + split.test.index.tolist()), list(range(172)))
    facts = split.to_dict()
    _eq({k: facts[k] for k in ("strategy", "time_column", "cutoff", "horizon", "test_from", "test_until", "n_unused", "n_train", "n_test")},
        {"strategy": "time", "time_column": "quarter_start", "cutoff": "1999-12-31", "horizon": "730d", "test_from": "2000-01-01",
         "test_until": "2001-10-01", "n_unused": 31, "n_train": 164, "n_test": 8})
    everything_after = split_data(frame, contract, cutoff="1999-12-31")
    _eq((len(everything_after.train), len(everything_after.test), everything_after.n_unused), (164, 39, 0))


def test_a_date_is_the_end_of_its_day_and_a_time_is_that_moment():
    hours = pd.date_range("2024-06-29", periods=72, freq="h")  # 29 June 00:00 to 1 July 23:00
    df = pd.DataFrame({"x": np.arange(72.0), "when": hours, "y": np.where(np.arange(72) % 2 == 0, "a", "b")})
    contract = infer_contract(df, "y", time_column="when")
    _eq(len(split_data(df, contract, cutoff="2024-06-30").train), 48)  # all of 29 and 30 June
    _eq(len(split_data(df, contract, cutoff="2024-06-30T00:00").train), 25)  # up to midnight starting 30 June
    _eq(len(split_data(df, contract, cutoff="2024-06-30T12:30", horizon="6h").test), 6)  # 13:00 to 18:00


def test_undated_rows_train_and_are_never_tested(quarters):
    frame, contract = quarters
    frame = frame.astype({"quarter_start": "object"})
    frame.loc[[3, 150, 171], "quarter_start"] = None
    split = split_data(frame, contract, cutoff="1999-12-31", horizon="730d")
    _eq((len(split.train), len(split.test), split.time_facts()["n_undated"]), (164 - 2 + 3, 7, 3))  # 2001Q4 is now undated: it trains
    _eq(split.test["quarter_start"].isna().sum(), 0)


def test_bad_cutoffs_are_clear_errors(quarters):
    frame, contract = quarters
    _fail(lambda: split_data(frame, contract, cutoff="1950-01-01"),
          contains="no rows of 'quarter_start' at or before the cutoff 1950-01-01: the data starts 1959-01-01; choose a later prepare.cutoff")
    _fail(lambda: split_data(frame, contract, cutoff="2009-07-01"),
          contains="no rows of 'quarter_start' after the cutoff 2009-07-01: the data ends 2009-07-01; choose an earlier prepare.cutoff")
    _fail(lambda: split_data(frame, contract, cutoff="2000-01-01", horizon="30d"),  # 2000Q2 starts 91 days after 1 January
          contains="after the cutoff 2000-01-01 and at most 30d after it: the data ends 2009-07-01; choose an earlier prepare.cutoff or a longer prepare.horizon")
    _fail(lambda: split_data(frame, contract, cutoff="1959-04-01"), contains="the training part holds a single class: choose a later prepare.cutoff")
    late = frame.assign(gdp=np.where(frame.index >= 190, "collapsed", frame["gdp"]))
    _fail(lambda: split_data(late, infer_contract(late, "gdp", time_column="quarter_start"), cutoff="2005-12-31"),
          contains="classes ['collapsed'] occur only in the test part, so no model can learn them: use more history, a later prepare.cutoff")
    _fail(lambda: split_data(frame, contract, horizon="90d"), contains="prepare.horizon needs prepare.cutoff")
    _fail(lambda: split_data(frame, contract, strategy="random", cutoff="1999-12-31"),
          contains="prepare.cutoff needs a time split, but prepare.split is random")
    _fail(lambda: split_data(frame.drop(columns="quarter_start"), infer_contract(frame.drop(columns="quarter_start"), "gdp"), cutoff="1999-12-31"),
          contains="a time split needs data.time_column")
    _fail(lambda: split_data(frame, contract, cutoff="end of 1999"), contains="prepare.cutoff 'end of 1999' is not an ISO date")


def test_without_a_cutoff_nothing_changes(quarters):
    frame, contract = quarters
    split = split_data(frame, contract, test_size=0.2)
    _eq((split.cutoff, split.horizon, split.n_unused), (None, None, 0))
    _eq(set(split.time_facts()), {"time_column", "test_from", "n_undated"})
    _eq(set(split.to_dict()), {"strategy", "n_train", "n_test", "time_column", "test_from", "n_undated", "balance"})


DAILY = infer_contract(pd.DataFrame({"x": [1.0, 2.0], "when": pd.to_datetime(["2024-01-01", "2024-01-02"]), "y": ["a", "b"]}),
                       "y", time_column="when")


@settings(max_examples=80, deadline=None)
@given(days=st.lists(st.one_of(st.none(), st.integers(0, 30)), min_size=4, max_size=40), cutoff=st.integers(-2, 32),
       horizon=st.one_of(st.none(), st.integers(1, 10)), labels=st.integers(0, 2**40))
def test_cutoff_split_matches_its_definition_or_is_a_clear_error(days, cutoff, horizon, labels):
    start = pd.Timestamp("2024-01-01")
    when = [None if d is None else start + pd.Timedelta(days=d) for d in days]
    y = ["a" if labels >> i & 1 else "b" for i in range(len(days))]
    df = pd.DataFrame({"x": np.arange(len(days), dtype=float), "when": pd.to_datetime(pd.Series(when, dtype="object")), "y": y})
    contract = DAILY
    cut = start + pd.Timedelta(days=cutoff)
    train = [i for i, d in enumerate(days) if d is None or d <= cutoff]
    test = [i for i, d in enumerate(days) if d is not None and d > cutoff and (horizon is None or d <= cutoff + horizon)]
    run = lambda: split_data(df, contract, cutoff=str(cut.date()), horizon=None if horizon is None else f"{horizon}d")
    if not any(d is not None and d <= cutoff for d in days): return _fail(run, contains="at or before the cutoff")
    if not test: return _fail(run, contains="after the cutoff")
    if len({y[i] for i in train}) < 2: return _fail(run, contains="the training part holds a single class")
    if {y[i] for i in test} - {y[i] for i in train}: return _fail(run, contains="occur only in the test part")
    split = run()
    _eq((sorted(split.train.index), sorted(split.test.index)), (train, test))
    _eq(split.n_unused, len(days) - len(train) - len(test))
