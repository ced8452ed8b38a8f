"""Property-based tests: whatever the frame and the contract, `validate` accounts for every row exactly once, gives every
quarantined row a reason, accepts exactly the values the contract allows (converted as documented), never lets an
exception escape, and gives the same answer on its few-rows path as on its many-rows path."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_nb.contract import MISSING_TOKENS, ColumnSpec, Contract, label_key, label_lookup
from mlops_nb.validate import DataQualityError, _validate, validate

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ------------------------------------------------------------------------------------------------ cells
MISSING = st.sampled_from([None, np.nan, pd.NA, pd.NaT, float("nan"), "", "  ", "NA", " n/a ", "null", "None", "nan", "?", "#N/A", "NaT"])
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2 ** 70), 2 ** 70),
                    st.sampled_from([1e308, -1e308, -1e-308, 5e-324, 0.0, -0.0, math.inf, -math.inf, 2.0 ** 63, -(2.0 ** 63)]))
NUMBER_TEXT = st.one_of(NUMBERS.map(str), NUMBERS.map(lambda x: f"  {x} "),
                        st.sampled_from(["1e3", " 2.5 ", "0x10", "1,5", "\u0663", "+1", "-0", "1_000", "Infinity", "1e999", "007"]))
BOOLEAN_LIKE = st.sampled_from([True, False, np.True_, np.False_, "true", "FALSE", " yes", "No", "t", "F", "1", "0", 1, 0, 1.0, "1.0"])
TEXT = st.text(max_size=6)
CONTAINERS = st.sampled_from([[1, 2], ["a"], [], {"x": 1}, (1,), ("a", "b"), frozenset({1})]) | st.builds(lambda: np.array([1.5, 2.5]))
DATES = st.sampled_from(["2024-01-02", "2024-02-30", "03/04/2021", "2024-01-02 10:30", "soon", "20240102", "Jan 5 2023", "0"])
MESSY = st.one_of(MISSING, NUMBERS, NUMBER_TEXT, BOOLEAN_LIKE, TEXT, CONTAINERS, DATES)


def spellings(value):
    "A category or label written the ways data files write it."
    options = [st.just(value), st.just(f" {value} "), st.just(str(value))]
    if isinstance(value, int) and not isinstance(value, bool): options += [st.just(float(value)), st.just(f"{value}.0")]
    if isinstance(value, str): options += [st.just(value.upper())]
    return st.one_of(*options)


def good_cells(spec:ColumnSpec):
    "Cells that a column should (mostly) accept."
    if spec.kind == "numeric":
        low, high = spec.min if spec.min is not None else -1e9, spec.max if spec.max is not None else 1e9
        return st.floats(low, high) | st.floats(low, high).map(str)
    if spec.kind == "integer":
        low, high = math.ceil(spec.min) if spec.min is not None else -10 ** 6, math.floor(spec.max) if spec.max is not None else 10 ** 6
        return st.integers(low, max(low, high)) | st.integers(low, max(low, high)).map(str)
    if spec.kind == "boolean": return BOOLEAN_LIKE
    if spec.kind == "datetime": return DATES
    if spec.categories: return st.sampled_from(spec.categories).flatmap(spellings)
    return TEXT


CATEGORY_VALUES = st.one_of(st.integers(-5, 50), st.sampled_from(["red", "blue", "green", "n/a?", "1.5", "caf\u00e9", "\u00c5ngstr\u00f6m", "\u65e5\u672c"]))
CLASSES = st.sampled_from([(0, 1), ("bad", "good"), (1, 2, 3), ("no", "yes"), ("\u00e9", "e")])


@st.composite
def contracts(draw):
    specs = []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["numeric", "integer", "categorical", "boolean", "datetime", "text"]))
        role = draw(st.sampled_from(["feature", "feature", "feature", "ignore"]))
        low, high = None, None
        if kind in ("numeric", "integer"):
            low, high = draw(st.none() | st.floats(-1e6, 1e6)), draw(st.none() | st.floats(-1e6, 1e6))
            if low is not None and high is not None and low > high: low, high = high, low
        categories = None
        if kind == "categorical":
            categories = tuple(draw(st.lists(CATEGORY_VALUES, min_size=1, max_size=4, unique_by=lambda v: label_key(v))))
            if len({str(c).strip() for c in categories}) < len(categories): categories = categories[:1]
        if kind == "boolean": categories = (False, True)
        specs.append(ColumnSpec(f"c{i}", kind, role, draw(st.booleans()), low, high, categories))
    specs.append(ColumnSpec("label", "categorical", "target", False, categories=draw(CLASSES)))
    order = draw(st.permutations(range(len(specs))))
    return Contract(tuple(specs[i] for i in order), "label")


def as_column(cells:list, how:str)->pd.Series:
    "A column as a frame would hold it: plain object cells, or what pandas infers from them."
    column = pd.Series(cells, dtype=object)
    if how == "infer": return column.infer_objects()
    if how == "nullable":
        try: return column.convert_dtypes()
        except (TypeError, ValueError): return column
    return column


@st.composite
def frames(draw, contract:Contract):
    n = draw(st.integers(0, 12))
    data = {}
    for spec in contract.columns:
        cells = [draw(st.one_of(good_cells(spec), good_cells(spec), MESSY)) for _ in range(n)]
        data[spec.name] = as_column(cells, draw(st.sampled_from(["object", "infer", "nullable"])))
    for j in range(draw(st.integers(0, 2))):
        data[f"extra{j}"] = as_column([draw(MESSY) for _ in range(n)], "object")
    df = pd.DataFrame(data)
    if n and draw(st.booleans()):  # duplicated rows
        df = pd.concat([df, df.iloc[draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4))]])
    columns = draw(st.permutations(list(df.columns)))
    df = df[list(columns)]
    df.index = draw(st.permutations(range(100, 100 + len(df)))) if len(df) else pd.RangeIndex(0)
    return df


@st.composite
def cases(draw):
    contract = draw(contracts())
    return contract, draw(frames(contract))


# ------------------------------------------------------------------------------------------------ an independent oracle
def is_missing(v)->bool:
    if isinstance(v, str): return v.strip().lower() in MISSING_TOKENS
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


CONTAINERS_TYPES = (list, tuple, dict, set, frozenset, np.ndarray)


def expect(v, spec:ColumnSpec, is_target:bool, utc:bool, exact:bool):
    "('missing',) or ('ok', coerced value) or ('bad',) for one cell, from the contract's documented rules."
    if spec.role == "ignore": return ("ok", v)
    if isinstance(v, CONTAINERS_TYPES): return ("bad",)
    if spec.kind == "text" and not is_target: return ("bad",) if is_missing(v) and not spec.nullable else ("ok", v)
    if is_missing(v): return ("bad",) if is_target or not spec.nullable else ("missing",)
    if spec.kind in ("numeric", "integer") and not is_target:
        if isinstance(v, (bool, np.bool_)): return ("bad",)
        if isinstance(v, (int, float, np.number)):
            try: x = float(v)
            except OverflowError: x = math.inf if v > 0 else -math.inf
        else:
            text = v.strip() if isinstance(v, str) else str(v)  # a plain decimal as float() reads it, other text as pandas does
            plain = re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", text)
            x = float(text) if plain else float(pd.to_numeric(text, errors="coerce"))
        if math.isnan(x) or math.isinf(x): return ("bad",)
        if spec.kind == "integer" and not (math.isfinite(x) and x == int(x) and -(2.0 ** 63) <= x < 2.0 ** 63): return ("bad",)
        if (spec.min is not None and x < spec.min) or (spec.max is not None and x > spec.max): return ("bad",)
        return ("ok", int(v) if exact else x)
    if spec.kind == "boolean" and not is_target:
        position = label_lookup((False, True))(v)
        return ("bad",) if position < 0 else ("ok", bool(position))
    if spec.kind == "datetime" and not is_target:
        date = pd.to_datetime(str(v).strip(), errors="coerce", format="mixed", utc=utc)
        return ("bad",) if pd.isna(date) else ("ok", date)
    position = label_lookup(spec.categories)(v)  # the contract's rule for which category a value stands for
    if position < 0: return ("bad",)
    return ("ok", spec.categories[position] if is_target else str(spec.categories[position]))


def cell_equal(actual, expected)->bool:
    if actual is expected: return True
    if isinstance(expected, float) and math.isnan(expected): return isinstance(actual, float) and math.isnan(actual)
    if isinstance(expected, (pd.Timestamp,)): return pd.Timestamp(actual) == expected
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray): return actual is expected
    try: return bool(actual == expected) and type(actual == expected) is not type(pd.NA)
    except (TypeError, ValueError): return actual is expected


def values(column:pd.Series)->list:
    return column.astype(object).tolist()


def check_result(df:pd.DataFrame, contract:Contract, result):
    acc, q, report = result.accepted, result.quarantined, result.report
    names = {c.name for c in contract.columns}
    # every row exactly once
    assert len(acc) + len(q) == len(df) == report.n_rows
    assert (report.n_accepted, report.n_quarantined) == (len(acc), len(q))
    assert set(acc.index).isdisjoint(set(q.index))
    assert sorted(acc.index.tolist() + q.index.tolist()) == sorted(df.index.tolist())
    positions = q["_row"].tolist()
    assert positions == sorted(positions) and df.index[positions].tolist() == q.index.tolist()
    # every quarantined row has reasons, each naming a contract column
    for reasons in q["_reasons"]:
        assert isinstance(reasons, str) and reasons
        for part in reasons.split("; "): assert part.split(": ", 1)[0] in names, reasons
    # quarantined rows keep every original column and value; accepted rows hold contract columns only
    assert q.columns.tolist() == df.columns.tolist() + ["_row", "_reasons"]
    assert q.drop(columns=["_row", "_reasons"]).astype(object).map(repr).equals(df.iloc[positions].astype(object).map(repr))
    assert acc.columns.tolist() == [c for c in df.columns if c in names]
    assert report.extra_columns == [str(c) for c in df.columns if c not in names]
    # the accepted rows are exactly those the rules allow, with the documented values
    expected_ok = np.ones(len(df), dtype=bool)
    for spec in contract.columns:
        is_target = spec.name == contract.target
        utc = spec.kind == "datetime" and isinstance(acc[spec.name].dtype, pd.DatetimeTZDtype)
        exact = spec.kind == "integer" and str(df[spec.name].dtype) in ("int64", "Int64")
        verdicts = [expect(v, spec, is_target, utc, exact) for v in values(df[spec.name])]
        expected_ok &= np.array([v[0] != "bad" for v in verdicts], dtype=bool)
        accepted = dict(zip(acc.index, values(acc[spec.name])))
        for label, verdict in zip(df.index, verdicts):
            if label not in accepted: continue
            if verdict[0] == "missing": assert pd.isna(accepted[label]), (spec, label, accepted[label])
            else: assert cell_equal(accepted[label], verdict[1]), (spec, df.at[label, spec.name], accepted[label], verdict)
        if spec.kind == "categorical" and spec.role == "feature" and not is_target:  # missing is never the text "None"
            assert not any(isinstance(v, str) and v.strip().lower() in MISSING_TOKENS for v in accepted.values())
    assert acc.index.tolist() == df.index[expected_ok].tolist()
    # the report agrees with the rows
    assert report.class_balance == {str(k): sum(1 for v in values(acc[contract.target]) if type(v) is type(k) and v == k)
                                    for k in contract.classes}
    assert report.duplicates == duplicates(df)


def same_value(v, row:int, column:int):
    "A cell as the duplicate count compares it: NA values alike, a boolean never a number, lists never alike."
    if isinstance(v, CONTAINERS_TYPES): return ("own", row, column)
    if pd.api.types.is_scalar(v) and pd.isna(v): return ("missing",)
    if isinstance(v, (bool, np.bool_)): return ("boolean", bool(v))
    return ("value", v)


def duplicates(df:pd.DataFrame)->int:
    rows = [tuple(same_value(v, i, j) for j, v in enumerate(row)) for i, row in enumerate(df.astype(object).itertuples(index=False))]
    return len(rows) - len(set(rows))


def same_result(a, b):
    for x, y in ((a.accepted, b.accepted), (a.quarantined, b.quarantined)):
        assert x.columns.tolist() == y.columns.tolist() and x.index.equals(y.index)
        assert x.dtypes.tolist() == y.dtypes.tolist()
        assert x.astype(object).map(repr).equals(y.astype(object).map(repr))
    assert a.report == b.report
    assert list(a.report.reasons.items()) == list(b.report.reasons.items())
    assert {k: list(v.items()) for k, v in a.report.unseen_categories.items()} == \
           {k: list(v.items()) for k, v in b.report.unseen_categories.items()}


# ------------------------------------------------------------------------------------------------ properties
@FUZZ
@given(cases())
def test_every_row_is_accounted_for_and_coerced_as_documented(case):
    contract, df = case
    check_result(df, contract, validate(df, contract))


@FUZZ
@given(cases())
def test_few_rows_path_gives_identical_results(case):
    contract, df = case
    same_result(_validate(df, contract, "ignore", small=True), _validate(df, contract, "ignore", small=False))


@settings(max_examples=60, deadline=None)
@given(cases(), st.data())
def test_missing_contract_column_is_the_only_escaping_error(case, data):
    contract, df = case
    checked = [c.name for c in contract.columns if c.role != "ignore"]
    gone = data.draw(st.sampled_from(checked))
    with pytest.raises(DataQualityError, match=f"missing contract columns \\['{gone}'\\]"):
        validate(df.drop(columns=[gone]), contract)


@settings(max_examples=60, deadline=None)
@given(cases())
def test_unknown_columns_fail_names_them(case):
    contract, df = case
    extra = [str(c) for c in df.columns if c not in {s.name for s in contract.columns}]
    if not extra:
        assert validate(df, contract, unknown_columns="fail").report.extra_columns == []
        return
    with pytest.raises(DataQualityError, match="contract does not list: " + ", ".join(extra)):
        validate(df, contract, unknown_columns="fail")


@settings(max_examples=40, deadline=None)
@given(cases(), st.integers(501, 700))
def test_many_rows_path_on_repeated_messy_rows(case, n):
    "The many-rows path (pd.factorize) on a frame big enough to take it, built by repeating a messy one."
    contract, df = case
    if not len(df): return
    big = df.iloc[np.arange(n) % len(df)]
    big.index = range(n)
    result = validate(big, contract)
    check_result(big, contract, result)
    same_result(result, _validate(big, contract, "ignore", small=True))


DECIMALS = st.from_regex(r"[+-]?[0-9]{1,25}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)  # long ones too
WORDS = st.one_of(NUMBER_TEXT, DECIMALS, TEXT, MISSING.filter(lambda v: isinstance(v, str)),
                  st.sampled_from(["\u3000NA\u3000", "\x1cnull\x1f", " 1e3\t", "\u00a0?\u00a0", "nan ", "N/A"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(WORDS, max_size=40))
def test_text_rules_read_many_values_as_they_read_a_few(words):
    "The vectorised branch used on many distinct values agrees with the per-value one; numbers read alike alone or together."
    import mlops_nb.validate as v
    many, few = v._stripped(words, many=True), v._stripped(words, many=False)
    for a, b in zip(many, few): assert a.tolist() == b.tolist()
    texts = [t for t, placeholder in zip(few[0], few[2]) if not placeholder]
    alone = [v._parse_numbers([t])[0] for t in texts]  # a text reads the same whatever it is read with
    np.testing.assert_array_equal(v._parse_numbers(texts), np.array(alone, dtype=float))
