"""What the stages' work keeps while it does less: the dataset record's schema, the saved models, the logged model."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_nb.data import deciding_rows, load_skops, pandas_dataset, save_skops, stored_types, trusted_types

MISSING = st.sampled_from([None, np.nan, pd.NA])


def _column(kind: str, values: list):
    if kind == "float": return pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64")
    if kind == "int": return pd.Series([0 if v is None else int(v) for v in values], dtype="int64")
    if kind == "nullable_int": return pd.Series([pd.NA if v is None else int(v) for v in values], dtype="Int64")
    if kind == "bool": return pd.Series([bool(v) if v is not None else False for v in values], dtype=bool)
    if kind == "datetime": return pd.to_datetime(pd.Series([None if v is None else f"2024-01-{v % 28 + 1:02d}" for v in values]))
    if kind == "str": return pd.Series([None if v is None else f"c{v}" for v in values], dtype="str")
    if kind == "text_object": return pd.Series([v if isinstance(v, str) else None for v in values], dtype=object)
    return pd.Series(values, dtype=object)  # "mixed": numbers, text and missing values in one object column


@st.composite
def frames(draw):
    rows = draw(st.integers(0, 40))
    columns = {}
    for i, kind in enumerate(draw(st.lists(st.sampled_from(["float", "int", "nullable_int", "bool", "datetime", "str",
                                                             "text_object", "mixed"]), min_size=1, max_size=6))):
        if kind == "mixed":
            values = draw(st.lists(st.one_of(st.integers(0, 9), st.text(max_size=3), MISSING), min_size=rows, max_size=rows))
        elif kind == "text_object":
            values = draw(st.lists(st.one_of(st.text(max_size=3), MISSING), min_size=rows, max_size=rows))
        else:
            values = draw(st.lists(st.one_of(st.integers(0, 9), st.none()), min_size=rows, max_size=rows))
        columns[f"{kind}_{i}"] = _column(kind, values)
    return pd.DataFrame(columns)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_the_deciding_rows_give_the_schema_of_the_whole_table(df):
    from mlflow.types.utils import _infer_schema
    def schema_or_error(frame):
        try: return _infer_schema(frame)
        except Exception as e:  # noqa: BLE001 - a table MLflow cannot type must fail the same way from the deciding rows
            return type(e).__name__
    _eq(schema_or_error(deciding_rows(df)), schema_or_error(df))


def test_the_dataset_record_is_mlflows_with_the_schema_inferred_once():
    import mlflow
    from mlflow.types import utils
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=5000), "city": rng.choice(["Oslo", "Rome", None], 5000), "label": rng.choice(["a", "b"], 5000)})
    ours, theirs = pandas_dataset(df, "data/table.csv", "table.csv", "f" * 32, "label"), mlflow.data.from_pandas(
        df, source="data/table.csv", name="table.csv", digest="f" * 32, targets="label")
    def values_looked_at(work):
        with mock.patch.object(utils, "_is_none_or_nan", wraps=utils._is_none_or_nan) as look:
            work()
        return look.call_count
    _eq(list(deciding_rows(df).index), sorted({0, int(df.city.isna().argmax()), int(df.city.notna().argmax())}))
    once = values_looked_at(lambda: utils._infer_schema(deciding_rows(df)))
    _eq(values_looked_at(lambda: (ours.to_dict(), ours.to_dict())), once)  # inferred once, from those rows, for both records
    _eq(ours.to_dict(), theirs.to_dict())
    _eq(ours.targets, "label")


@pytest.fixture(scope="module")
def fitted():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=list("abcd"))
    return make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=5)).fit(X, X["a"] > 0), X


def test_a_model_is_serialised_once_to_be_saved(fitted, tmp_path):
    import skops.io._persist as persist
    model, X = fitted
    with mock.patch.object(persist, "_save", wraps=persist._save) as serialise:
        path = save_skops(model, tmp_path / "model.skops")
        _eq(serialise.call_count, 1)
        _eq(stored_types(path), trusted_types(model))
    _eq(load_skops(path).predict(X), model.predict(X))
    _eq(sorted(p.name for p in tmp_path.iterdir()), ["model.skops"])


def test_records_run_at_low_priority_and_the_rest_is_made_at_once_when_needed():
    "The recording thread runs at nice 19; at the end, records it has not begun are made by the caller, in order."
    import os
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from mlops_nb.pipeline import _exporter, _low_priority, _Record
    made = []
    def record(i):
        made.append((i, threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        time.sleep(0.2)
        return i
    with ThreadPoolExecutor(1, thread_name_prefix="recorder", initializer=_low_priority) as pool:
        records = [_Record(pool, record, i) for i in range(3)]
        time.sleep(0.05)  # the thread has begun the first one
        for r in records: r.take()
        _eq([r.result() for r in records], [0, 1, 2])
    base = os.getpriority(os.PRIO_PROCESS, 0)
    _eq(made, [(0, "recorder_0", 19), (1, "MainThread", base), (2, "MainThread", base)])
    _eq(_exporter() is _exporter(), True)  # one HTML exporter per process


def test_the_command_line_loads_neither_mlflow_nor_scikit_learn_before_a_command_needs_them():
    "`mlops-nb --help` stays quick and `run` starts its kernel before the heavy imports: the CLI and pipeline modules import neither."
    import subprocess
    import sys
    code = ("import sys, mlops_nb.cli, mlops_nb.pipeline\n"
            "print(sorted(m for m in ('mlflow', 'sklearn', 'matplotlib', 'papermill', 'jupyter_client') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    _eq(out.strip(), "[]")
