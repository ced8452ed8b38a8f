"Reference profiles: bins, categories, pii, JSON and MLflow storage (fail closed), and the streaming window counts."
from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient
from serving import add_version, project_client, served_project
from sklearn.linear_model import LogisticRegression

from mlops_nb.contract import ColumnSpec, Contract
from mlops_nb.prepare import build_preprocessor
from mlops_nb.profile import (
    PROFILE_ARTIFACT,
    CategoricalProfile,
    NumericProfile,
    Profile,
    ProfileError,
    WindowAccumulator,
    _Binner,
    build_profile,
    load_profile,
    log_profile,
)
from mlops_nb.train import model_pipeline


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    return pd.DataFrame({"x": x, "n": rng.integers(0, 4, n), "city": rng.choice(["a", "b", "c", "d"], n, p=[.4, .3, .2, .1]),
                         "ssn": [f"{rng.integers(100, 999)}-{i:06d}" for i in range(n)], "y": np.where(x > 0, "pos", "neg")})


CONTRACT = Contract((ColumnSpec("x", "numeric"), ColumnSpec("n", "integer"), ColumnSpec("city", "categorical", categories=("a", "b", "c", "d")),
                     ColumnSpec("ssn", "categorical", pii=True), ColumnSpec("y", "categorical", role="target", categories=("neg", "pos"))), "y")


@pytest.fixture(scope="module")
def fitted():
    train, test = frame(800), frame(300, seed=1)
    feats = [c.name for c in CONTRACT.features]
    model = model_pipeline(build_preprocessor(CONTRACT, train), LogisticRegression()).fit(train[feats], train["y"])
    return train, test, model, build_profile(train, test, model, CONTRACT, "pos", bins=50, max_categories=3, name="m")


def test_numeric_bins_deduplicated_for_discrete_data():
    p = NumericProfile.of(pd.Series([0, 0, 0, 1, 1, 5, None, np.inf, -np.inf]), bins=100)
    _eq((p.edges, p.counts, p.sums, p.nulls, p.rows, p.min, p.max), ((0.0, 1.0, 5.0), (3, 2, 1, 0), (0.0, 2.0, 5.0, 0.0), 3, 9, 0.0, 5.0))
    q = NumericProfile.of(pd.Series(np.arange(1000.0)), bins=10)
    _eq((len(q.edges), q.counts[:3], q.counts[-1]), (11, (1, 99, 100), 0))  # 0 | 1..99 | 100..199 ...)


def test_categorical_profile_keeps_top_and_other():
    c = CategoricalProfile.of(pd.Series(["a"] * 4 + ["b"] * 3 + ["c", "d", "", None, 1.0, "1"]), max_categories=2)
    _eq((c.categories, c.counts, c.nulls, c.rare), (("a", "b"), (4, 3, 4), 2, ("1", "c", "d")))  # 1.0 and "1" are one value


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200), st.lists(st.floats(-2e6, 2e6), max_size=300))
def test_binner_equals_searchsorted(reference, values):
    edges = NumericProfile.of(pd.Series(reference)).edges
    x = np.asarray(values + list(edges), dtype=float)
    _eq(_Binner(edges)(x).tolist(), np.searchsorted(edges, x, "left").tolist())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 30), min_size=1, max_size=300), st.lists(st.integers(-5, 35), max_size=300))
def test_binner_bins_discrete_data_by_its_table(reference, values):
    edges = NumericProfile.of(pd.Series(reference, dtype=float)).edges
    x = np.asarray(values + list(edges), dtype=float)
    binner = _Binner(edges)
    _eq(binner(x).tolist(), np.searchsorted(edges, x, "left").tolist())
    _eq(binner.table is None, len(edges) < 2)  # values on the edges are binned by the table, not searched one by one


def test_binner_keeps_its_table_on_a_million_counts():
    edges = NumericProfile.of(pd.Series(np.random.default_rng(0).poisson(40, 100_000), dtype=float)).edges
    binner = _Binner(edges)
    x = np.random.default_rng(1).poisson(42, 1_000_000).astype(float)
    _eq(binner(x).tolist(), np.searchsorted(edges, x, "left").tolist())
    _eq(binner.table is None, False)


def _same(a, b, path="counts"):
    "Equal, floats to 1e-9 relative: Parquet text read dictionary-encoded chunks at row-group ends, so sums add in another order."
    if isinstance(a, dict) and isinstance(b, dict):
        _eq(sorted(a), sorted(b))
        for k in a: _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        _eq(len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)): _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float): assert a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b)), (path, a, b)
    else: _eq(a, b)


TEXT = st.sampled_from(["a", "b", "c", "zz", "", "NA", " a", "null", "1", "1.0", "TRUE", "true"]) | st.none()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(-1e12, 1e12) | st.sampled_from([np.nan, np.inf, -np.inf]) | st.none(), st.integers(-2**60, 2**60) | st.none(),
                          st.booleans() | st.none(), TEXT, TEXT), min_size=1, max_size=400),
       st.integers(1, 120), st.booleans())
def test_arrow_tables_count_like_the_frames_read(tmp_path_factory, rows, chunk_rows, large):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops_nb.batch import read_chunks, read_tables
    x, n, flag, city, code = zip(*rows)
    text = pa.large_string() if large else pa.string()
    table = pa.table({"x": pa.array(x, pa.float64()), "n": pa.array(n, pa.int64()), "flag": pa.array(flag, pa.bool_()),
                      "city": pa.array(city, text), "code": pa.array(code, text), "other": pa.array(range(len(rows)))})
    path = tmp_path_factory.mktemp("arrow") / "window.parquet"
    pq.write_table(table, path, row_group_size=97)
    reference = pd.DataFrame({"x": [0.5, 1.0, 1e300, -3.0], "n": [1, 2, 3, 4], "flag": [True, False, True, True], "city": ["a", "b", "b", "1"],
                              "code": ["1", "2", "x", "3"]})
    features = {"x": NumericProfile.of(reference.x), "flag": NumericProfile.of(reference.flag), "code": NumericProfile.of(reference.code),
                "n": CategoricalProfile.of(reference.n, 2), "city": CategoricalProfile.of(reference.city, 1), "gone": CategoricalProfile.of(reference.city)}
    profile = Profile("m", 1, "", features, {}, "y", ("a", "b"), None, (1, 1), (1, 1))
    frames, arrow = WindowAccumulator(profile), WindowAccumulator(profile)
    for _, frame in read_chunks(path, chunk_rows): frames.add(frame)
    for chunk in read_tables(path, chunk_rows, columns=list(features)): arrow.add(chunk)
    _eq(str(next(read_tables(path, chunk_rows, columns=["city"])).schema.field("city").type).startswith("dictionary"), True)
    _same(arrow.counts().to_dict(), frames.counts().to_dict())


def test_arrow_tables_give_the_multivariate_signal_of_the_frames(fitted, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops_nb.batch import read_chunks, read_tables
    profile = fitted[3]
    window = pd.concat([frame(900, seed=5), frame(700, seed=6).assign(x=lambda d: d.x + 1)], ignore_index=True)
    window.loc[::13, "city"] = None
    pq.write_table(pa.Table.from_pandas(window, preserve_index=False), tmp_path / "w.parquet", row_group_size=500)
    frames, arrow = WindowAccumulator(profile), WindowAccumulator(profile)
    for _, chunk in read_chunks(tmp_path / "w.parquet", 300): frames.add(chunk)
    for chunk in read_tables(tmp_path / "w.parquet", 300, columns=list(profile.features)): arrow.add(chunk)
    _eq(profile.multivariate is None, False)
    _same(arrow.counts().to_dict(), frames.counts().to_dict())  # the reconstruction error sums included
    _eq(arrow.counts().reconstruction.n, 1600)


def test_build_profile_skips_pii_and_counts_outputs(fitted):
    train, test, model, profile = fitted
    _eq((sorted(profile.features), profile.skipped), (["city", "n", "x"], {"ssn": "pii"}))
    _eq(profile.labels, ((train.y == "neg").sum(), (train.y == "pos").sum()))
    predicted = model.predict(test[[c.name for c in CONTRACT.features]])
    _eq(profile.predictions, ((predicted == "neg").sum(), (predicted == "pos").sum()))
    _eq((profile.performance["n_test"], profile.features["city"].categories, profile.features["n"].edges), (300, ("a", "b", "c"), (0.0, 1.0, 2.0, 3.0)))
    text = json.dumps(profile.to_dict(), allow_nan=False)
    _eq(any(s in text for s in train.ssn), False)
    _eq(Profile.from_dict(json.loads(text)), profile)


def test_all_null_training_column_is_skipped_with_reason(fitted):
    train, test, _, _ = fitted
    contract = Contract(CONTRACT.columns + (ColumnSpec("gone", "numeric"),), "y")
    feats = [c.name for c in contract.features]
    train = train.assign(gone=np.nan)
    model = model_pipeline(build_preprocessor(contract, train), LogisticRegression()).fit(train[feats], train["y"])
    profile = build_profile(train, test.assign(gone=np.nan), model, contract, "pos")
    _eq(profile.skipped, {"ssn": "pii", "gone": "all null in training"})


def test_log_and_load_profile_fail_closed(fitted, tmp_path):
    profile = fitted[3]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    client.create_registered_model("m")
    runs = [client.create_run(experiment).info.run_id for _ in range(4)]
    for run in runs: client.create_model_version("m", f"runs:/{run}/model", run_id=run)
    log_profile(client, runs[0], profile)
    client.log_text(runs[2], "[1, 2", PROFILE_ARTIFACT)
    client.log_text(runs[3], json.dumps({"format": 99}), PROFILE_ARTIFACT)
    _eq(load_profile(client, "m", 1), replace(profile, version=1))
    _fail(lambda: load_profile(client, "m", 2), contains="m v2 has no reference profile (trained before profiles were stored): re-run the pipeline")
    _fail(lambda: load_profile(client, "m", 3), contains="m v3's reference profile is unreadable (JSONDecodeError")
    _fail(lambda: load_profile(client, "m", 4), contains="m v4's reference profile is unreadable (ValueError)")
    _fail(lambda: load_profile(client, "m", 7), contains="there is no m v7 in the registry")
    with pytest.raises(ProfileError): load_profile(client, "nope", 1)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 600), max_size=4))
def test_window_chunks_add_up_to_the_whole(fitted, cuts):
    _, test, _, profile = fitted
    window = pd.concat([test, frame(300, seed=2)], ignore_index=True)
    window.loc[::7, "city"] = "zz"
    window.loc[::11, "x"] = np.nan
    whole = WindowAccumulator(profile)
    whole.add(window, window["y"])
    parts = WindowAccumulator(profile)
    bounds = [0, *sorted(cuts), len(window)]
    for a, b in itertools.pairwise(bounds):
        parts.add(window.iloc[a:b], window["y"].iloc[a:b])
    one, many = whole.counts(), parts.counts()
    _eq({k: (v.counts, v.nulls, v.rows, v.unseen, v.min, v.max) for k, v in one.features.items()},
        {k: (v.counts, v.nulls, v.rows, v.unseen, v.min, v.max) for k, v in many.features.items()})
    _eq((many.rows, many.predictions, many.features["city"].unseen, many.features["x"].nulls),
        (600, ((window.y == "neg").sum(), (window.y == "pos").sum()), {"zz": 86}, 55))


def test_window_unseen_top_20_missing_columns_and_pii_never_counted(fitted):
    profile = fitted[3]
    rng = np.random.default_rng(0)
    window = frame(3000, seed=3).drop(columns=["n"])
    window["city"] = np.where(rng.random(3000) < 0.5, [f"new{i % 40}" for i in range(3000)], window["city"])
    acc = WindowAccumulator(profile)
    acc.add(window.iloc[:1000]); acc.add(window.iloc[1000:].drop(columns=["x"]))
    counts = acc.counts()
    _eq((counts.missing, counts.features["n"].absent, counts.features["x"].absent, counts.features["x"].nulls), (("n",), 3000, 2000, 2000))
    _eq(len(counts.features["city"].unseen), 20)
    _eq(counts.features["city"].counts[-1], int(window.city.str.startswith("new").sum()))
    _eq("ssn" in counts.features or any(v.startswith("1") for v in counts.features["city"].unseen), False)
    _eq("ssn" in json.dumps(counts.to_dict()), False)


def test_labelled_rows_are_a_bounded_uniform_sample(fitted):
    _, _, model, profile = fitted
    feats = [c.name for c in CONTRACT.features]
    acc = WindowAccumulator(profile, max_labelled=100)
    for seed in range(5):
        chunk = frame(300, seed=10 + seed)
        labels = chunk["y"].where(np.arange(300) % 2 == 0)  # half the rows are labelled
        acc.add(chunk, probabilities=model.predict_proba(chunk[feats]), labels=labels)
    counts = acc.counts()
    _eq((counts.n_labelled, len(counts.labels), counts.labelled_proba.shape, set(counts.labels)), (750, 100, (100, 2), {"neg", "pos"}))
    _eq(sum(sum(v) for v in counts.probabilities.values()), 2 * 1500)


def test_add_version_logs_a_profile(tmp_path):
    project = served_project(tmp_path)
    version = add_version(project)
    profile = load_profile(project_client(project), "served", version)
    _eq((profile.version, profile.model, len(profile.features) > 0, profile.performance["n_test"]), (version, "served", True, 569))
    _eq(Path(tmp_path / "project" / "mlflow.db").exists(), True)
