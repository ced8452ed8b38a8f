"""Edge cases of `validate` that once broke it or let bad data through: nested Parquet cells, columns the contract does
not list, booleans mistaken for numbers, integers too big for int64, missing categories written as "None", duplicates."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from sklearn.datasets import load_breast_cancer

import mlops_nb.validate as validate_module
from mlops_nb.contract import ColumnSpec, Contract, infer_contract
from mlops_nb.prepare import feature_kinds
from mlops_nb.validate import SMALL_BATCH, DataQualityError, _validate, validate

LABEL = ColumnSpec("label", "categorical", "target", False, categories=("churn", "stay"))


def both_paths(df:pd.DataFrame, contract:Contract, unknown_columns:str="ignore"):
    "The results of the few-rows and the many-rows path, checked identical; the many-rows one is returned."
    few, many = _validate(df, contract, unknown_columns, small=True), _validate(df, contract, unknown_columns, small=False)
    pd.testing.assert_frame_equal(few.accepted, many.accepted, check_exact=True)
    pd.testing.assert_frame_equal(few.quarantined.astype(object).map(repr), many.quarantined.astype(object).map(repr))
    _eq(few.report, many.report)
    return many


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(as_frame=True).frame


# ------------------------------------------------------------------------------------------------ nested cells
@pytest.mark.parametrize("repeat", [1, SMALL_BATCH])
def test_parquet_list_and_struct_cells_are_quarantined_with_a_reason(tmp_path, repeat):
    nested = pd.DataFrame({"color": ["red", "blue", "red", "blue"], "label": ["churn", "stay", "stay", "churn"],
                           "tags": [["a", "b"], None, ["c"], []], "extra": [{"x": 1}, {"x": 2}, None, None]})
    nested = pd.concat([nested] * repeat, ignore_index=True)
    nested.to_parquet(tmp_path / "nested.parquet")
    data = pd.read_parquet(tmp_path / "nested.parquet")
    _eq(type(data.loc[0, "tags"]), np.ndarray)  # what a Parquet list column becomes
    _eq(type(data.loc[0, "extra"]), dict)  # and a struct column
    contract = Contract((ColumnSpec("color", "categorical", categories=("blue", "red")), ColumnSpec("tags", "text"),
                         ColumnSpec("extra", "categorical", categories=("x",)), LABEL), "label")
    result = both_paths(data, contract)
    reasons = ["tags: not a single value (list); extra: not a single value (dict)", "extra: not a single value (dict)",
               "tags: not a single value (list)", "tags: not a single value (list)"]
    _eq(result.quarantined["_reasons"].tolist(), reasons * repeat)
    _eq(result.report.type_errors, {"tags": 3 * repeat, "extra": 2 * repeat})
    _eq(result.report.reasons, {"tags: not a single value": 3 * repeat, "extra: not a single value": 2 * repeat})
    _eq(len(result.accepted), 0)
    _eq(result.report.duplicates, 0)  # a list is never the same value as another list


@pytest.mark.parametrize("repeat", [1, SMALL_BATCH])
def test_lists_among_numbers_and_dates(repeat):
    df = pd.DataFrame({"size": pd.Series([1.5, [2.0], np.array([3.0]), 4.0], dtype=object),
                       "seen": pd.Series(["2024-01-02", "2024-01-03", {"d": 1}, "2024-01-05"], dtype=object),
                       "label": ["churn"] * 4})
    df = pd.concat([df] * repeat, ignore_index=True)
    result = both_paths(df, Contract((ColumnSpec("size", "numeric"), ColumnSpec("seen", "datetime"), LABEL), "label"))
    _eq(result.quarantined["_reasons"].tolist(),
        ["size: not a single value (list)", "size: not a single value (list); seen: not a single value (dict)"] * repeat)
    _eq(result.accepted["size"].tolist(), [1.5, 4.0] * repeat)
    _eq(result.accepted["seen"].dt.day.tolist(), [2, 5] * repeat)


def test_nested_cells_in_an_ignored_column_pass_through(tmp_path):
    pd.DataFrame({"tags": [["a"], ["b", "c"]], "label": ["churn", "stay"]}).to_parquet(tmp_path / "t.parquet")
    data = pd.read_parquet(tmp_path / "t.parquet")
    result = both_paths(data, Contract((ColumnSpec("tags", "text", "ignore"), LABEL), "label"))
    _eq(len(result.accepted), 2)
    _eq(result.accepted["tags"].map(list).tolist(), [["a"], ["b", "c"]])


# ------------------------------------------------------------------------------------------------ unknown columns
def test_unknown_column_is_ignored_reported_and_never_a_feature(cancer):
    contract = infer_contract(cancer, "target")
    rng = np.random.default_rng(0)
    leaky = cancer.assign(leak=cancer["target"] + rng.normal(0, 0.01, len(cancer)))  # the label plus noise
    result = validate(leaky, contract)
    _eq(result.accepted.columns.tolist(), cancer.columns.tolist())
    _eq(result.report.extra_columns, ["leak"])
    _eq("leak" in feature_kinds(contract, result.accepted), False)
    _eq("<b>Ignored columns</b> (not in the contract, never used as features): leak" in result.report._repr_html_(), True)


def test_quarantined_rows_keep_unknown_columns():
    df = pd.DataFrame({"color": ["red", "pink"], "label": ["churn", "stay"], "note": ["kept", "also kept"]})
    result = both_paths(df, Contract((ColumnSpec("color", "categorical", categories=("red",)), LABEL), "label"))
    _eq(result.accepted.columns.tolist(), ["color", "label"])
    _eq(result.quarantined.columns.tolist(), ["color", "label", "note", "_row", "_reasons"])
    _eq(result.quarantined["note"].tolist(), ["also kept"])


def test_unknown_columns_fail_names_them_and_says_how_to_proceed():
    df = pd.DataFrame({"refund_amount": [1.0], "color": ["red"], "label": ["churn"], "notes": ["x"]})
    contract = Contract((ColumnSpec("color", "categorical", categories=("red",)), LABEL), "label")
    _fail(lambda: validate(df, contract, unknown_columns="fail"),
          contains="the data has 2 columns that the contract does not list: refund_amount, notes. Add them to contract.yaml "
                   "(with their kinds and roles) to use them, or remove them from the data")
    with pytest.raises(DataQualityError):
        validate(df, contract, unknown_columns="fail")
    _eq(validate(df[["color", "label"]], contract, unknown_columns="fail").report.n_accepted, 1)


def test_unknown_column_names_in_the_report_are_escaped():
    df = pd.DataFrame({"label": ["churn"], "<b>odd</b>": [1]})
    page = validate(df, Contract((LABEL,), "label")).report._repr_html_()
    _eq("&lt;b&gt;odd&lt;/b&gt;" in page and "<b>odd</b>" not in page, True)


def test_bad_unknown_columns_setting_is_refused():
    _fail(lambda: validate(pd.DataFrame({"label": ["churn"]}), Contract((LABEL,), "label"), unknown_columns="keep"),
          contains="unknown_columns must be one of ignore, fail, got 'keep'")


# ------------------------------------------------------------------------------------------------ values
@pytest.mark.parametrize("cells", [[True, 1], [1, True], [1.0, np.True_, "1"]])
def test_a_boolean_is_not_a_number_in_any_order(cells):
    df = pd.DataFrame({"x": pd.Series(cells, dtype=object), "label": ["churn"] * len(cells)})
    result = both_paths(df, Contract((ColumnSpec("x", "numeric"), LABEL), "label"))
    booleans = [i for i, v in enumerate(cells) if isinstance(v, (bool, np.bool_))]
    _eq(result.quarantined["_row"].tolist(), booleans)
    _eq(result.quarantined["_reasons"].tolist(), ["x: not a number ('True')"] * len(booleans))
    _eq(result.accepted["x"].tolist(), [1.0] * (len(cells) - len(booleans)))


def test_a_boolean_is_not_the_label_one():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": pd.Series([1, True, "1.0"], dtype=object)})
    result = both_paths(df, Contract((ColumnSpec("x", "numeric"), ColumnSpec("y", "categorical", "target", False, categories=(0, 1))), "y"))
    _eq(result.quarantined["_reasons"].tolist(), ["y: unknown label 'True'"])
    _eq(result.accepted["y"].tolist(), [1, 1])
    _eq(result.report.class_balance, {"0": 0, "1": 2})


def test_integers_stay_exact_and_within_int64():
    big = 2 ** 62 + 1  # not a float: exact only if never converted to one
    df = pd.DataFrame({"n": np.array([big, 5], dtype=np.int64), "m": pd.Series([2 ** 63, 7], dtype=object), "label": ["churn", "stay"]})
    contract = Contract((ColumnSpec("n", "integer"), ColumnSpec("m", "integer"), LABEL), "label")
    result = both_paths(df, contract)
    _eq(result.quarantined["_reasons"].tolist(), ["m: 9.22337e+18 outside the int64 range"])
    _eq(result.accepted["n"].tolist(), [5])
    _eq(result.accepted["m"].tolist(), [7])
    exact = both_paths(df.drop(columns=["m"]), Contract((ColumnSpec("n", "integer"), LABEL), "label"))
    _eq(exact.accepted["n"].tolist(), [big, 5])


def test_huge_tiny_and_infinite_numbers(cancer):
    df = pd.DataFrame({"x": pd.Series([1e308, -1e-308, "inf", 10 ** 400, "1e999", -np.inf], dtype=object),
                       "label": ["churn"] * 6})
    result = both_paths(df, Contract((ColumnSpec("x", "numeric", min=-1e300, max=1e308), LABEL), "label"))
    _eq(result.quarantined["_reasons"].tolist(), ["x: not a finite number ('inf')", "x: not a finite number ('inf')",
                                                  "x: not a finite number ('inf')", "x: not a finite number ('-inf')"])
    _eq(result.quarantined["_row"].tolist(), [2, 3, 4, 5])
    _eq(result.accepted["x"].tolist(), [1e308, -1e-308])
    _eq(result.report.type_errors, {"x": 4})
    _eq(result.report.out_of_range, {})


@pytest.mark.parametrize("kind", ["numeric", "integer"])
def test_infinite_numbers_are_refused_without_bounds_and_nan_is_missing(kind):
    "No min/max: ±inf in any form is 'not a finite number'; NaN (a float or the text 'nan') is a missing value."
    finite = lambda sign: f"x: not a finite number ('{sign}inf')"
    cells = pd.Series([1.0, math.inf, -math.inf, "inf", " -Infinity", "1e999", -(10 ** 400), math.nan, "nan", 2.0], dtype=object)
    floats = pd.Series([1.0, math.inf, -math.inf, math.nan, 2.0])
    for column, bad, reasons, missing in [(cells, [1, 2, 3, 4, 5, 6], ["", "-", "", "-", "", "-"], [7, 8]),
                                          (floats, [1, 2], ["", "-"], [3])]:
        df = pd.DataFrame({"x": column, "label": ["churn"] * len(column)})
        result = both_paths(df, Contract((ColumnSpec("x", kind), LABEL), "label"))
        _eq(result.quarantined["_row"].tolist(), bad)
        _eq(result.quarantined["_reasons"].tolist(), [finite(sign) for sign in reasons])
        _eq(result.report.type_errors, {"x": len(bad)})
        accepted = [i for i in range(len(column)) if i not in bad]
        _eq(result.accepted.index.tolist(), accepted)
        _eq(result.accepted["x"].isna().tolist(), [i in missing for i in accepted])
        strict = validate(df, Contract((ColumnSpec("x", kind, nullable=False), LABEL), "label"))
        _eq(strict.quarantined["_row"].tolist(), sorted(bad + missing))
        _eq(strict.quarantined["_reasons"].tolist()[-len(missing):], ["x: missing (not nullable)"] * len(missing))


@pytest.mark.parametrize("pandas2", [False, True])
def test_a_missing_category_is_missing_never_the_text_none(monkeypatch, pandas2):
    if pandas2: monkeypatch.setattr(validate_module, "_PANDAS_2", True)  # the pandas 2 code paths
    df = pd.DataFrame({"color": pd.Series(["red", None, np.nan, pd.NA, " NA ", "blue"], dtype=object), "label": ["churn"] * 6})
    for result in (_validate(df, Contract((ColumnSpec("color", "categorical", categories=("blue", "red")), LABEL), "label"), "ignore", small)
                   for small in (True, False)):
        colors = result.accepted["color"]
        _eq(colors.isna().tolist(), [False, True, True, True, True, False])
        _eq([c for c in colors if isinstance(c, str)], ["red", "blue"])
        _eq(str(colors.dtype), "object" if validate_module._PANDAS_2 else "str")


def test_free_text_categories_keep_missing_values_missing():
    df = pd.DataFrame({"city": pd.Series([" Lyon", None, "None", "Oslo"], dtype=object), "label": ["churn"] * 4})
    result = both_paths(df, Contract((ColumnSpec("city", "categorical"), LABEL), "label"))
    _eq(result.accepted["city"].isna().tolist(), [False, True, True, False])
    _eq(result.accepted["city"].dropna().tolist(), ["Lyon", "Oslo"])


# ------------------------------------------------------------------------------------------------ duplicates
def test_duplicates_are_exact_on_both_paths():
    rows = pd.DataFrame({"x": pd.Series([0.0, -0.0, np.nan, None, True, 1, [1], [1]], dtype=object),
                         "y": [1.0, 1.0, np.nan, np.nan, 2.0, 2.0, 3.0, 3.0], "label": ["churn"] * 8})
    contract = Contract((ColumnSpec("x", "text", "ignore"), ColumnSpec("y", "numeric"), LABEL), "label")
    # 0.0 and -0.0 are one value, NaN and None are one missing value, True is not 1, lists are never alike
    _eq(both_paths(rows, contract).report.duplicates, 2)
    many = pd.concat([rows] * 100, ignore_index=True)
    _eq(both_paths(many, contract).report.duplicates, 800 - 4 - 200)  # 4 distinct rows, 200 with lists


def test_breast_cancer_at_the_size_boundary_is_identical_on_both_paths(cancer):
    contract = infer_contract(cancer, "target")
    raw = cancer.sample(SMALL_BATCH + 1, replace=True, random_state=0).astype(str).reset_index(drop=True)
    raw.iloc[::7, 0] = "n/a"
    raw.iloc[::11, -1] = "2"
    result = both_paths(raw, contract)
    _eq(result.report.n_quarantined, len(raw.index[::11].union(raw.index[::7])))


# ------------------------------------------------------------------------------------------------ frames as they come
@pytest.mark.parametrize("repeat", [1, SMALL_BATCH])
def test_repeated_index_labels_and_non_text_column_names(repeat):
    df = pd.DataFrame({"x": [1.0, 9.0, 2.0, 3.0] * repeat, "t": pd.Series(["u", "v", "w", None] * repeat, dtype=object),
                       "label": ["churn", "stay", "stay", "churn"] * repeat, 5: [1, 2, 3, 4] * repeat})
    df.index = [7, 7, 8, 8] * repeat
    contract = Contract((ColumnSpec("x", "numeric", max=5), ColumnSpec("t", "text", "ignore"), LABEL), "label")
    result = both_paths(df, contract)
    _eq(result.accepted.columns.tolist(), ["x", "t", "label"])
    _eq(result.accepted.index.tolist(), [7, 8, 8] * repeat)
    _eq(result.accepted["t"].tolist(), ["u", "w", None] * repeat)
    _eq(result.accepted["t"].dtype, np.dtype(object))
    _eq(result.report.extra_columns, ["5"])
    _eq(result.quarantined[5].tolist(), [2] * repeat)


def test_a_frame_made_from_a_two_dimensional_array(cancer):
    "Its columns are strided views of one array; validation must read them the same."
    contract = infer_contract(cancer, "target")
    strided = pd.DataFrame(cancer.to_numpy(), columns=cancer.columns).astype({"target": "int64"})
    strided = pd.concat([strided] * 2, ignore_index=True)
    strided.iloc[::50, 3] = -1.0
    result = both_paths(strided, contract)
    _eq(result.quarantined["_row"].tolist(), list(range(0, len(strided), 50)))
    _eq(result.accepted.to_numpy().tolist(), strided.drop(index=range(0, len(strided), 50)).to_numpy().tolist())


def test_a_quarantine_file_validated_again():
    "Its `_row` and `_reasons` columns are not in the contract: they are replaced in the new quarantine, not repeated."
    df = pd.DataFrame({"color": ["red", "pink", "blue"], "label": ["churn", "stay", "stay"]})
    contract = Contract((ColumnSpec("color", "categorical", categories=("blue", "red")), LABEL), "label")
    first = both_paths(df, contract).quarantined
    again = both_paths(pd.concat([first, first.assign(color="red")], ignore_index=True), contract)
    _eq(again.quarantined.columns.tolist(), ["color", "label", "_row", "_reasons"])
    _eq(again.quarantined[["_row", "_reasons"]].values.tolist(), [[0, "color: unseen category 'pink'"]])
    _eq(again.accepted.columns.tolist(), ["color", "label"])
    _eq(again.report.extra_columns, ["_row", "_reasons"])


@pytest.mark.parametrize("repeat", [1, SMALL_BATCH])
@pytest.mark.parametrize("pandas2", [False, True])
def test_text_with_a_nul_character_is_its_own_value(monkeypatch, repeat, pandas2):
    "pandas 2 compares factorized text as C strings, where 'a' and 'a\\x00b' are equal; they are two values here."
    if pandas2: monkeypatch.setattr(validate_module, "_PANDAS_2", True)  # the pandas 2 code paths
    df = pd.DataFrame({"x": pd.Series(["1.5", "", "\x00", "2\x00"] * repeat, dtype=object), "label": ["churn"] * 4 * repeat})
    result = both_paths(df, Contract((ColumnSpec("x", "numeric"), LABEL), "label"))
    _eq(result.quarantined["_reasons"].tolist(), ["x: not a number ('\x00')", "x: not a number ('2\x00')"] * repeat)
    _eq(result.accepted["x"].isna().tolist(), [False, True] * repeat)
