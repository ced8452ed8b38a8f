"""Which columns become model features: the contract's feature columns and the derived columns a project's own stage
adds after validation; never a column that merely appeared in the data; never a text or datetime feature dropped
without a word."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.datasets import fair

from mlops_nb.contract import ColumnSpec, Contract, infer_contract
from mlops_nb.data import load_example, write_parquet
from mlops_nb.prepare import build_preprocessor, extra_columns, feature_kinds, unusable_features


@pytest.fixture(scope="module")
def cancer():
    df = load_example("breast-cancer")
    return df, infer_contract(df, "diagnosis")


def fitted_features(contract, df, derived=()) -> list:
    return build_preprocessor(contract, df, derived).fit(df).get_feature_names_out().tolist()


def test_a_leaked_column_is_never_a_feature(cancer):
    df, contract = cancer
    rng = np.random.default_rng(0)
    leaky = df.assign(leak=(df["diagnosis"] == "malignant") + rng.normal(0, 0.01, len(df)))  # the label plus noise
    _eq(fitted_features(contract, leaky), [c.name for c in contract.features])
    _eq("leak" in feature_kinds(contract, leaky), False)


def test_a_leaked_column_on_affairs_data_is_never_a_feature():
    data = fair.load_pandas().data
    labelled = data.drop(columns="affairs").assign(had_affair=np.where(data["affairs"] > 0, "yes", "no"))
    contract = infer_contract(labelled, "had_affair")
    later = labelled.assign(affairs=data["affairs"], source=np.where(data["affairs"] > 1, "survey-b", "survey-a"))  # known only afterwards
    _eq(fitted_features(contract, later), ["rate_marriage", "age", "yrs_married", "children", "religious", "educ", "occupation", "occupation_husb"])


def test_extra_columns_are_derived_only_when_made_after_validation():
    df = pd.DataFrame({"age": [30, 40, 50, 60] * 5, "plan": ["a", "b"] * 10, "churned": ["yes", "no", "no", "no"] * 5})
    contract = infer_contract(df, "churned")
    columns = ["age", "plan", "churned", "refund_amount", "age_over_40"]
    _eq(extra_columns(contract, columns, validated=["age", "plan", "churned", "refund_amount"]),
        {"derived": ["age_over_40"], "ignored": ["refund_amount"]})
    _eq(extra_columns(contract, columns, validated=["age", "plan", "churned"]), {"derived": ["refund_amount", "age_over_40"], "ignored": []})
    _eq(extra_columns(contract, columns), {"derived": [], "ignored": ["refund_amount", "age_over_40"]})  # no validate stage ran


def test_derived_columns_from_a_validated_parquet_become_features(cancer, tmp_path):
    df, contract = cancer
    validated = write_parquet(df.assign(extra_from_file=1.0), tmp_path / "data.parquet")  # an unknown column validate let through
    enriched = df.assign(extra_from_file=1.0, radius_per_texture=df["mean radius"] / df["mean texture"])
    extra = extra_columns(contract, enriched.columns, pq.read_schema(validated).names)
    _eq(extra, {"derived": ["radius_per_texture"], "ignored": ["extra_from_file"]})
    _eq(fitted_features(contract, enriched, extra["derived"]), [c.name for c in contract.features] + ["radius_per_texture"])


def test_derived_columns_get_kinds_from_their_dtype(cancer):
    df, contract = cancer
    enriched = df.assign(ratio=df["mean radius"] / df["mean texture"], large=df["mean area"] > 700,
                         size_band=np.where(df["mean area"] > 700, "large", "small"), note="x")
    kinds = feature_kinds(contract, enriched, ["ratio", "large", "size_band"])
    _eq({c: k for c, k in kinds.items() if c not in {s.name for s in contract.features}}, {"ratio": "numeric", "large": "numeric", "size_band": "categorical"})
    _eq(len(kinds), 33)  # "note" was not named as derived


def test_the_contract_governs_its_own_columns():
    df = pd.DataFrame({"customer_id": range(40), "spend": np.linspace(1, 40, 40), "churned": ["yes", "no"] * 20})
    contract = infer_contract(df, "churned")
    _eq(contract.column("customer_id").role, "ignore")  # a running integer id
    _eq(feature_kinds(contract, df, derived=["customer_id", "churned"]), {"spend": "numeric"})


def test_unusable_derived_columns_fail_with_their_name(cancer):
    df, contract = cancer
    _fail(lambda: feature_kinds(contract, df.assign(seen=pd.Timestamp("2024-01-01")), ["seen"]),
          contains="derived column 'seen' (datetime64")
    _fail(lambda: feature_kinds(contract, df.assign(code=[f"c{i}" for i in range(len(df))]), ["code"]),
          contains="derived column 'code' (str, 569 distinct values) is neither numbers, booleans nor text with at most 50 distinct values")
    _fail(lambda: feature_kinds(contract, df, ["ratio"]), contains="derived column 'ratio' is not in the data")


def test_text_and_datetime_features_are_named_and_refused():
    df = pd.DataFrame({"note": [f"free text {i}" for i in range(60)], "signed_up": pd.date_range("2024-01-01", periods=60).astype(str),
                       "spend": np.linspace(1, 60, 60), "churned": ["yes", "no", "no"] * 20})
    inferred = infer_contract(df, "churned")
    _eq([(c.name, c.kind, c.role) for c in inferred.columns[:2]], [("note", "text", "ignore"), ("signed_up", "datetime", "ignore")])
    _eq(unusable_features(inferred), [])
    edited = Contract(tuple(ColumnSpec(c.name, c.kind, "feature") if c.role == "ignore" else c for c in inferred.columns), "churned")
    lines = unusable_features(edited)
    _eq(lines, [("column 'note' has role feature but kind text, which a model cannot use as it is: set its role to ignore in the contract, "
                 "or make it categorical if it holds few distinct values, or derive numeric columns from it in a stage of your own"),
                ("column 'signed_up' has role feature but kind datetime, which a model cannot use as it is: set its role to ignore in the contract, "
                 "or derive numeric columns from it (year, month, day of week, days since an event) in a stage of your own")])
    with pytest.raises(ValueError) as refused: build_preprocessor(edited, df)
    _eq(str(refused.value), "\n".join(lines))
    with pytest.raises(ValueError) as refused: feature_kinds(edited, df)
    _eq(str(refused.value), "\n".join(lines))


@settings(max_examples=50, deadline=None)
@given(extras=st.dictionaries(st.text("abcdefgh_", min_size=1, max_size=6), st.sampled_from(["float", "bool", "few", "many", "date"]), max_size=6),
       derived_share=st.floats(0, 1))
def test_only_contract_features_and_usable_derived_columns_are_features(extras, derived_share):
    rng = np.random.default_rng(len(extras))
    base = pd.DataFrame({"spend": rng.normal(size=60), "plan": rng.choice(["a", "b", "c"], 60), "churned": ["yes", "no"] * 30})
    contract = infer_contract(base, "churned")
    makers = {"float": lambda: rng.normal(size=60), "bool": lambda: rng.random(60) > 0.5, "few": lambda: rng.choice(["x", "y"], 60),
              "many": lambda: [f"v{i}" for i in range(60)], "date": lambda: pd.date_range("2024-01-01", periods=60)}
    names = [n for n in extras if n not in base.columns]
    df = base.assign(**{n: makers[extras[n]]() for n in names})
    derived = names[: round(derived_share * len(names))]
    unusable = [n for n in derived if extras[n] in ("many", "date")]
    if unusable:
        _fail(lambda: feature_kinds(contract, df, derived), contains=f"derived column '{unusable[0]}'")
        return
    expected = {"spend": "numeric", "plan": "categorical", **{n: "categorical" if extras[n] == "few" else "numeric" for n in derived}}
    _eq(feature_kinds(contract, df, derived), expected)
