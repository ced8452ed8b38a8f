"""A registered version ready to answer: `ServedModel.load` fails closed with a reason for every unservable version,
`check` agrees with `validate(features_only=True)` on which rows are accepted and never raises on any JSON value, and
the numpy prediction path gives scikit-learn's probabilities for every candidate on several datasets."""
from __future__ import annotations

import json
import math
import re
import warnings

import mlflow
import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.models import infer_signature
from serving import add_version, project_client, served_project
from sklearn.linear_model import LogisticRegression

from mlops_nb.contract import ColumnSpec, Contract, infer_contract
from mlops_nb.data import load_example, trusted_types
from mlops_nb.prepare import build_preprocessor
from mlops_nb.served import Checked, ModelLoadError, ServedModel, contract_rows
from mlops_nb.train import CANDIDATES, model_pipeline
from mlops_nb.validate import DataQualityError, validate

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------------------------------------ loading, fail closed
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = served_project(tmp_path_factory.mktemp("served"))
    add_version(project)  # v1: a logistic regression, @champion
    return project


def _log(project, model, *, skops=True, contract=True, trusted=None, nested_contract=False) -> int:
    "Log and register `model` by hand (the ways the train stage never would), returning the version."
    client = project_client(project)
    name = client.search_registered_models()[0].name
    mlflow.set_tracking_uri(client.tracking_uri)
    frame = load_example("breast-cancer")
    features = [c for c in frame.columns if c != "diagnosis"]
    try:
        found = client.get_experiment_by_name("by-hand")  # its artifacts inside the project, never in the working directory
        experiment = found.experiment_id if found else client.create_experiment("by-hand", artifact_location=(project / "by-hand").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            if nested_contract: mlflow.log_artifact(str(project / "contract.yaml"), "contract")
            with mlflow.start_run(experiment_id=experiment, nested=True), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kwargs = {"serialization_format": "skops", "skops_trusted_types": trusted or trusted_types(model)} if skops \
                    else {"serialization_format": "cloudpickle"}
                info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(frame[features].head(2)),
                                                pip_requirements=["scikit-learn", "skops"], **kwargs)  # not inferred: no subprocess
                if contract is True: mlflow.log_artifact(str(project / "contract.yaml"), "contract")
                elif contract:
                    (project / "bad").mkdir(exist_ok=True)
                    (project / "bad" / "contract.yaml").write_text(contract)
                    mlflow.log_artifact(str(project / "bad" / "contract.yaml"), "contract")
        version = mlflow.register_model(info.model_uri, name).version
    finally:
        mlflow.set_tracking_uri("")
    return int(version)


def _fitted(estimator=None, frame=None, contract=None):
    frame = load_example("breast-cancer") if frame is None else frame
    contract = contract or infer_contract(frame, "diagnosis")
    features = [c.name for c in contract.features]
    return model_pipeline(build_preprocessor(contract, frame), estimator or LogisticRegression(max_iter=2000)).fit(frame[features], frame["diagnosis"])


class Shifted(LogisticRegression):
    "A classifier type outside the trusted list."


def test_load_registered_version(project):
    client = project_client(project)
    model = ServedModel.load(client, "served", 1)
    _eq((model.name, model.version, model.classes, model.fast, model.reason), ("served", 1, ["benign", "malignant"], True, None))
    _eq(model.contract, Contract.from_yaml(project / "contract.yaml"))
    _eq(len(model.features), 30)


def test_load_no_such_version(project):
    with pytest.raises(ModelLoadError): ServedModel.load(project_client(project), "served", 99)
    _fail(lambda: ServedModel.load(project_client(project), "served", 99), contains="there is no served v99 in the registry")
    _fail(lambda: ServedModel.load(project_client(project), "nothing", 1), contains="there is no nothing v1 in the registry")


def test_load_not_skops(project):
    version = _log(project, _fitted(), skops=False)
    _fail(lambda: ServedModel.load(project_client(project), "served", version),
          contains=f"served v{version} is not stored with skops (no model.skops), so it is not loaded")


def test_load_refused_types(project):
    import skops.io as sio
    model = _fitted(Shifted(max_iter=2000))
    version = _log(project, model, trusted=sio.get_untrusted_types(data=sio.dumps(model)))
    _fail(lambda: ServedModel.load(project_client(project), "served", version),
          contains=f"served v{version} is refused: model.skops holds types that are not trusted: test_served.Shifted")


def test_load_no_contract(project):
    version = _log(project, _fitted(), contract=False)
    _fail(lambda: ServedModel.load(project_client(project), "served", version),
          contains=f"served v{version} has no contract (neither its run nor its pipeline run logged one)")


def test_load_invalid_contract(project):
    version = _log(project, _fitted(), contract="target: diagnosis\ncolumns: []\n")
    _fail(lambda: ServedModel.load(project_client(project), "served", version),
          contains=f"served v{version}'s contract is not valid:")


def test_load_contract_from_pipeline_run(project):
    "An older version, whose run has no contract: the one its pipeline run logged is used."
    version = _log(project, _fitted(), contract=False, nested_contract=True)
    model = ServedModel.load(project_client(project), "served", version)
    _eq((model.version, model.contract), (version, Contract.from_yaml(project / "contract.yaml")))


def test_load_contract_does_not_match(project):
    frame = load_example("breast-cancer")
    contract = infer_contract(frame, "diagnosis")
    frame["ratio"] = frame["mean area"] / frame["mean radius"]  # a column a stage derived, not in the contract
    derived = model_pipeline(build_preprocessor(contract, frame, derived=["ratio"]), LogisticRegression(max_iter=2000))
    derived.fit(frame[[c.name for c in contract.features] + ["ratio"]], frame["diagnosis"])
    version = _log(project, derived)
    _fail(lambda: ServedModel.load(project_client(project), "served", version),
          contains=f"served v{version} uses columns that are not features of its contract: ratio")


def test_contract_mismatch_in_process():
    frame = load_example("breast-cancer")
    contract = infer_contract(frame, "diagnosis")
    pipeline = _fitted(frame=frame, contract=contract)
    more = Contract(contract.columns[:-1] + (ColumnSpec("extra", "numeric"), contract.columns[-1]), "diagnosis")
    _fail(lambda: ServedModel("m", 2, pipeline, more), contains="m v2 does not use contract features extra: its contract does not match it")
    recoded = Contract(tuple(ColumnSpec(c.name, "categorical", categories=("a", "b")) if c.name == "mean radius" else c
                             for c in contract.columns), "diagnosis")
    _fail(lambda: ServedModel("m", 2, pipeline, recoded), contains="m v2 treats mean radius differently from its contract")
    _fail(lambda: ServedModel("m", 2, pipeline.steps[-1][1], contract),
          contains="m v2 is not a pipeline of a column transformer and a classifier, so it is not served")


# ------------------------------------------------------------------------------------------------ check vs validate
CONTRACT = Contract((
    ColumnSpec("weight", "numeric", min=-2.5, max=98.5),
    ColumnSpec("free", "numeric"),
    ColumnSpec("count", "integer", nullable=False, min=-5, max=10 ** 12),
    ColumnSpec("color", "categorical", categories=("red", "blue", 1, 2.5, "NA-ish")),
    ColumnSpec("member", "boolean", nullable=False),
    ColumnSpec("label", "categorical", "target", False, categories=("no", "yes"))), "label")
FEATURES = [c.name for c in CONTRACT.features]


@pytest.fixture(scope="module")
def checker():
    rows = contract_rows(CONTRACT, 300, seed=3)
    frame = pd.DataFrame(rows)
    frame["color"] = frame["color"].map(lambda v: None if v is None else str(v))
    frame["label"] = np.where(np.arange(len(frame)) % 2 == 0, "no", "yes")
    pipeline = model_pipeline(build_preprocessor(CONTRACT, frame), LogisticRegression(max_iter=2000)).fit(frame[FEATURES], frame["label"])
    return ServedModel("fuzz", 1, pipeline, CONTRACT)


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2 ** 80), 2 ** 80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([98.5, 98.50001, -2.5, 1e308, 2.0 ** 63, -(2.0 ** 63), 10 ** 12, 10 ** 12 + 1, 1.5, 3, 0, 1, 2.5]),
    st.text(max_size=8),
    st.sampled_from(["", " ", "NA", " n/a ", "null", "None", "nan", "?", "1e999", "Infinity", "-inf", " 12 ", "12.0", "0x10", "1_000",
                     "red", " BLUE", "blue ", "1", "1.0", "2.50", "NA-ish", "true", "No", "t", "F", "yes", "maybe", "٣"]))
JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=6)
CELL = st.one_of(JSON_SCALARS, JSON_SCALARS, st.lists(JSON_SCALARS, max_size=2), st.dictionaries(st.text(max_size=3), JSON_SCALARS, max_size=2))
ROWS = st.lists(st.fixed_dictionaries({name: CELL for name in FEATURES}), min_size=1, max_size=12)


def _object_frame(rows):
    return pd.DataFrame({name: pd.Series([r[name] for r in rows], dtype=object) for name in FEATURES})


@FUZZ
@given(rows=ROWS)
def test_check_agrees_with_validate(checker, rows):
    checked = checker.check(rows)
    for frame in (_object_frame(rows), pd.DataFrame(rows, columns=FEATURES)):  # object columns, and the dtypes pandas infers
        result = validate(frame, CONTRACT, features_only=True)
        _eq(checked.positions, result.accepted.index.tolist())
        reasons = dict(zip(result.quarantined["_row"].tolist(), result.quarantined["_reasons"].tolist()))
        first = {}
        for p in checked.problems: first.setdefault(p["row"], p["field"])
        _eq(sorted(first), sorted(reasons))
        for row, field in first.items(): _eq(reasons[row].startswith(f"{field}: "), True)
    _eq(sorted(checked.positions + sorted(first)), list(range(len(rows))))


KNOWN_REASONS = re.compile(r"not a number|not a finite number|not an integer|outside the int64 range|(below min|above max) -?[0-9.e+]+|missing \(not nullable\)|"
                           r"missing field|not a single value|unseen category|not a boolean|not a row \(a JSON object of feature values\)|"
                           r"not a list of rows")


@FUZZ
@given(value=JSON, rows=st.lists(st.dictionaries(st.sampled_from(FEATURES + ["other"]), JSON, max_size=7), max_size=4))
def test_check_never_raises_and_never_echoes(checker, value, rows):
    for request in (value, [value], rows, [*rows, value]):
        checked = checker.check(request)
        _eq(type(checked), Checked)
        n = len(request) if isinstance(request, list) else 1
        _eq(len(checked.positions) + len({p["row"] for p in checked.problems}), n)
        for p in checked.problems: _eq(bool(KNOWN_REASONS.fullmatch(p["reason"])), True)
        json.dumps(checked.problems)
        if checked.accepted: _eq(len(checker.predict([a for a in checked.accepted if _finite(a)])[0]), sum(map(_finite, checked.accepted)))


def _finite(row):
    return all(not isinstance(v, float) or math.isfinite(v) for v in row.values())


def test_check_reasons_exact(checker):
    row = {"weight": 1.0, "free": None, "count": 3, "color": "red", "member": True}
    checked = checker.check([row, {**row, "weight": "heavy", "count": 2.5, "color": "green", "member": None},
                             {**row, "weight": 99, "count": 10 ** 13}, {k: v for k, v in row.items() if k != "color"}, {**row, "count": " n/a "}])
    _eq(checked.positions, [0])
    _eq(checked.accepted, [{"weight": 1.0, "free": None, "count": 3, "color": "red", "member": True}])
    _eq(checked.problems, [
        {"row": 1, "field": "weight", "reason": "not a number"}, {"row": 1, "field": "count", "reason": "not an integer"},
        {"row": 1, "field": "color", "reason": "unseen category"}, {"row": 1, "field": "member", "reason": "missing (not nullable)"},
        {"row": 2, "field": "weight", "reason": "above max 98.5"}, {"row": 2, "field": "count", "reason": "above max 1000000000000"},
        {"row": 3, "field": "color", "reason": "missing field"}, {"row": 4, "field": "count", "reason": "missing (not nullable)"}])
    _eq(checker.check({**row, "color": " 2.50", "member": "no"}).accepted, [{**row, "color": "2.5", "member": False}])


def test_check_refuses_infinite_numbers_and_reads_nan_as_missing(checker):
    row = {"weight": 1.0, "free": 2.0, "count": 3, "color": "red", "member": True}
    rows = [{**row, "free": math.inf}, {**row, "free": "-inf"}, {**row, "free": " Infinity"}, {**row, "free": "1e999"},
            {**row, "free": -(10 ** 400)}, {**row, "weight": -math.inf}, {**row, "count": math.inf}, {**row, "free": math.nan},
            {**row, "free": "nan"}, {**row, "count": math.nan}]
    checked = checker.check(rows)
    _eq(checked.problems, [{"row": i, "field": "free", "reason": "not a finite number"} for i in range(5)] +
        [{"row": 5, "field": "weight", "reason": "not a finite number"}, {"row": 6, "field": "count", "reason": "not a finite number"},
         {"row": 9, "field": "count", "reason": "missing (not nullable)"}])
    _eq(checked.positions, [7, 8])
    _eq(checked.accepted, [{**row, "free": None}] * 2)
    result = validate(_object_frame(rows), CONTRACT, features_only=True)
    _eq(result.quarantined["_reasons"].tolist(), ["free: not a finite number ('inf')", "free: not a finite number ('-inf')",
                                                  "free: not a finite number ('inf')", "free: not a finite number ('inf')",
                                                  "free: not a finite number ('-inf')", "weight: not a finite number ('-inf')",
                                                  "count: not a finite number ('inf')", "count: missing (not nullable)"])
    _eq(result.accepted.index.tolist(), [7, 8])


def test_validate_features_only():
    frame = pd.DataFrame(contract_rows(CONTRACT, 20, seed=1))
    _fail(lambda: validate(frame, CONTRACT), contains="missing contract columns ['label']")
    result = validate(frame, CONTRACT, features_only=True)
    _eq((result.report.n_accepted, result.report.class_balance, result.report.missing_columns), (20, {}, []))
    _eq(result.accepted.columns.tolist(), FEATURES)
    with_label = validate(frame.assign(label="not a label"), CONTRACT, features_only=True)
    _eq((with_label.report.n_accepted, with_label.accepted.columns.tolist()), (20, FEATURES))
    _fail(lambda: validate(frame.drop(columns=["color"]), CONTRACT, features_only=True), contains="missing contract columns ['color']")
    with pytest.raises(DataQualityError): validate(frame.drop(columns=["color"]), CONTRACT, features_only=True)


# ------------------------------------------------------------------------------------------------ the numpy path
def _messy():
    rng, n = np.random.default_rng(0), 600
    messy = pd.DataFrame({"age": rng.integers(18, 90, n).astype(float), "income": rng.lognormal(10, 1, n),
                          "city": rng.choice(["paris", "lyon", "nice", "lille", "brest", "pau"], n, p=[.4, .3, .2, .09, .005, .005]),
                          "member": rng.choice([True, False], n), "visits": rng.integers(0, 20, n)})
    messy.loc[rng.random(n) < .1, "income"] = np.nan
    messy.loc[rng.random(n) < .1, "city"] = None
    messy["plan"] = np.where(messy["income"].fillna(0) > 25000, "gold", np.where(messy["visits"] > 9, "silver", "basic"))
    return messy


def _datasets():
    import statsmodels.api as sm
    fair = sm.datasets.fair.load_pandas().data.assign(affairs=lambda d: np.where(d["affairs"] > 0, "yes", "no"))
    anes = sm.datasets.anes96.load_pandas().data[["popul", "TVnews", "selfLR", "age", "educ", "income", "vote"]]
    anes = anes.assign(educ=anes["educ"].astype(int).astype(str), vote=anes["vote"].astype(int))
    return {"breast-cancer": (load_example("breast-cancer"), "diagnosis"), "wine": (load_example("wine"), "cultivar"),
            "messy": (_messy(), "plan"), "fair": (fair.sample(1500, random_state=0).reset_index(drop=True), "affairs"), "anes96": (anes, "vote")}


DATASETS = _datasets()


@pytest.mark.parametrize("candidate", list(CANDIDATES))
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_numpy_path_equals_sklearn(dataset, candidate):
    frame, target = DATASETS[dataset]
    contract = infer_contract(frame, target)
    accepted = validate(frame, contract).accepted
    features = [c.name for c in contract.features]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = model_pipeline(build_preprocessor(contract, accepted), CANDIDATES[candidate].make(0)).fit(accepted[features], accepted[target])
    model = ServedModel("m", 1, pipeline, contract)
    _eq((model.fast, model.reason), (True, None))
    rows = frame[features].astype(object).where(frame[features].notna(), None).to_dict("records")
    checked = model.check(rows)
    _eq(checked.positions, accepted.index.tolist())
    labels, proba = model.predict(checked.accepted)
    reference = pipeline.predict_proba(accepted[features])
    _eq(float(np.abs(proba - reference).max()) <= 1e-9, True)
    _eq(labels, pipeline.predict(accepted[features]).tolist())
    one_label, one = model.predict(checked.accepted[:1])
    _eq((one_label, one.shape), (labels[:1], (1, len(model.classes))))
    singles = [model.predict([row]) for row in checked.accepted[:60]]  # a one-row request takes a path of its own
    _eq(float(np.abs(np.vstack([p for _, p in singles]) - reference[:60]).max()) <= 1e-9, True)
    _eq([label for one_label, _ in singles for label in one_label], labels[:60])


def test_unsupported_estimator_falls_back_to_sklearn():
    from sklearn.naive_bayes import GaussianNB
    frame = load_example("breast-cancer")
    contract = infer_contract(frame, "diagnosis")
    model = ServedModel("m", 1, _fitted(GaussianNB(), frame, contract), contract)
    _eq((model.fast, model.reason), (False, "estimator: GaussianNB has no numpy path"))
    features = [c.name for c in contract.features]
    _, proba = model.predict(model.check(frame[features].to_dict("records")).accepted)
    _eq(float(np.abs(proba - model.pipeline.predict_proba(frame[features])).max()) <= 1e-12, True)


def test_numpy_path_that_differs_is_not_used():
    class Tempered(LogisticRegression):
        def predict_proba(self, X): return np.sqrt(super().predict_proba(X)) / np.sqrt(super().predict_proba(X)).sum(axis=1, keepdims=True)
    frame = load_example("breast-cancer")
    contract = infer_contract(frame, "diagnosis")
    model = ServedModel("m", 1, _fitted(Tempered(max_iter=2000), frame, contract), contract)
    _eq(model.fast, False)
    _eq(bool(re.fullmatch(r"the numpy path differs from scikit-learn by [0-9.e+-]+ on rows made from the contract", model.reason)), True)
    features = [c.name for c in contract.features]
    _eq(float(np.abs(model.predict(model.check(frame[features].to_dict("records")).accepted)[1]
                     - model.pipeline.predict_proba(frame[features])).max()) <= 1e-12, True)


def test_warm_and_empty(checker):
    checker.warm()
    labels, proba = checker.predict([])
    _eq((labels, proba.shape), ([], (0, 2)))
