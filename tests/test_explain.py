"Explanations of single decisions: they add up to the model's output for every candidate kind, and /explain serves them safely."
import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_close as _close
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st
from serving import add_version, served_project
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from starlette.testclient import TestClient

from mlops_nb.contract import infer_contract
from mlops_nb.data import load_example
from mlops_nb.explain import ExplanationError, explain, global_importance
from mlops_nb.prepare import build_preprocessor
from mlops_nb.serve import create_app
from mlops_nb.train import model_pipeline

CANDIDATES = {"logistic_regression": lambda: LogisticRegression(max_iter=3000),
              "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=30, random_state=0, early_stopping=False),
              "random_forest": lambda: RandomForestClassifier(n_estimators=25, random_state=0)}


def messy(n: int = 300, seed: int = 0, classes=("no", "yes")) -> pd.DataFrame:
    "Numbers with gaps, categories with rare values, a label made from some of them."
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"amount": rng.gamma(2, 500, n), "city": rng.choice(["Recife", "São Paulo", "Porto Alegre", "Belém", "Natal"], n, p=[.4, .3, .2, .07, .03]),
                       "age": rng.integers(18, 90, n).astype(float), "noise": rng.normal(size=n)})
    df.loc[rng.choice(n, n // 10, replace=False), "amount"] = np.nan
    df.loc[rng.choice(n, n // 20, replace=False), "city"] = np.nan
    score = (df.amount.fillna(1000) / 1000) + (df.city == "Recife") * 1.0 - df.age / 60
    df["label"] = np.asarray(classes)[np.digitize(score + rng.normal(scale=0.3, size=n), np.quantile(score, np.linspace(0, 1, len(classes) + 1)[1:-1]))]
    return df


def fitted(df: pd.DataFrame, name: str):
    contract = infer_contract(df, "label")
    features = [c.name for c in contract.features]
    return model_pipeline(build_preprocessor(contract, df), CANDIDATES[name]()).fit(df[features], df["label"]), df[features]


def expected_output(model, X: pd.DataFrame, decided: list, scale: str) -> np.ndarray:
    "The decided class's score, computed independently of `explain`."
    classes = list(model.classes_)
    at = [classes.index(c) for c in decided]
    rows = np.arange(len(X))
    if scale == "probability": return model.predict_proba(X)[rows, at]
    scores = model.decision_function(X)
    if scores.ndim == 1: return np.where(np.asarray(at) == 1, scores, -scores)
    return scores[rows, at]


@pytest.mark.parametrize("name", list(CANDIDATES))
@pytest.mark.parametrize("classes", [("no", "yes"), ("low", "mid", "high")])
def test_contributions_add_up_to_the_model_output(name, classes):
    model, X = fitted(messy(classes=classes), name)
    e = explain(model, X.head(60))
    _eq(list(e.contributions.columns), ["amount", "city", "age", "noise"])
    _eq(e.decided, model.predict(X.head(60)).tolist())
    _eq(e.scale, "probability" if name == "random_forest" else "log-odds")
    _close(e.output, expected_output(model, X.head(60), e.decided, e.scale), eps=1e-9)
    _close(e.contributions.sum(axis=1).to_numpy() + e.base, e.output, eps=1e-6)


def test_linear_contribution_is_weight_times_scaled_value_and_one_hot_columns_are_summed():
    model, X = fitted(messy(), "logistic_regression")
    e = explain(model, X.head(5))
    pre, lr = model[0], model[-1]
    names = list(pre.get_feature_names_out())
    Xt = pre.transform(X.head(5))
    sign = np.where(model.predict(X.head(5)) == "yes", 1, -1)
    age = lr.coef_[0][names.index("age")] * Xt[:, names.index("age")] * sign
    city = (lr.coef_[0] * Xt)[:, [i for i, n in enumerate(names) if n.startswith("city_")]].sum(axis=1) * sign
    amount = (lr.coef_[0] * Xt)[:, [names.index("amount"), names.index("missingindicator_amount")]].sum(axis=1) * sign
    _close(e.contributions.age.to_numpy(), age, eps=1e-12)
    _close(e.contributions.city.to_numpy(), city, eps=1e-12)
    _close(e.contributions.amount.to_numpy(), amount, eps=1e-12)
    _close(e.base, lr.intercept_[0] * sign, eps=1e-12)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(list(CANDIDATES)), st.integers(2, 3))
def test_any_seeded_frame_adds_up(seed, name, n_classes):
    model, X = fitted(messy(120, seed, ("a", "b", "c")[:n_classes]), name)
    e = explain(model, X)
    _close(e.contributions.sum(axis=1).to_numpy() + e.base, expected_output(model, X, e.decided, e.scale), eps=1e-6)


def test_contributions_that_do_not_add_up_are_refused():
    model, X = fitted(messy(), "random_forest")
    honest = model[-1].predict_proba
    model[-1].predict_proba = lambda Xt: honest(Xt) * 0.9 + 0.05  # what the trees say is no longer what the model outputs
    _fail(lambda: explain(model, X.head(4)), contains="the contributions do not add up to the model's output")


def test_unexplainable_models_are_refused_with_a_reason():
    model, X = fitted(messy(), "logistic_regression")
    _fail(lambda: explain(model[-1], X), contains="explanations need the model as a scikit-learn Pipeline")
    _fail(lambda: explain(model, X.iloc[:0]), contains="at least one row")
    contract = infer_contract(messy(), "label")
    knn = model_pipeline(build_preprocessor(contract, messy()), KNeighborsClassifier()).fit(X, messy()["label"])
    with pytest.raises(ExplanationError, match="cannot explain a KNeighborsClassifier"): explain(knn, X.head(3))


def test_global_importance_ranks_the_features_the_label_was_made_from():
    df = messy(600)
    for name in CANDIDATES:
        model, X = fitted(df, name)
        importance = global_importance(model, X)
        _eq(list(importance.values()), sorted(importance.values(), reverse=True))
        _eq(set(importance), {"amount", "city", "age", "noise"})
        if name == "logistic_regression": _eq(list(importance)[-1], "noise")
    wine = load_example("wine")
    model = model_pipeline(build_preprocessor(infer_contract(wine, "cultivar"), wine), LogisticRegression(max_iter=5000))
    model.fit(wine.drop(columns="cultivar"), wine.cultivar)
    _eq(len(global_importance(model, wine.drop(columns="cultivar"))), 13)


def test_global_importance_falls_back_to_permutation_importance_only_with_labels():
    df = messy(300)
    contract = infer_contract(df, "label")
    X = df[[c.name for c in contract.features]]
    knn = model_pipeline(build_preprocessor(contract, df), KNeighborsClassifier()).fit(X, df.label)
    importance = global_importance(knn, X, df.label)
    _eq(set(importance), {"amount", "city", "age", "noise"})
    _eq(list(importance.values()), sorted(importance.values(), reverse=True))
    _fail(lambda: global_importance(knn, X), contains="cannot explain a KNeighborsClassifier")


PLANTED = "planted-value-7f3a"


@pytest.fixture(scope="module")
def app_project(tmp_path_factory):
    project = served_project(tmp_path_factory.mktemp("explain"))
    _eq(add_version(project, HistGradientBoostingClassifier(max_iter=20, random_state=0, early_stopping=False)), 1)
    return project


def test_explain_endpoint_follows_the_predict_rules(app_project, monkeypatch):
    monkeypatch.setenv("MLOPS_NB_TOKEN", "a-serving-token")
    frame = pd.read_csv(app_project.parent / "breast-cancer.csv").drop(columns="diagnosis")
    rows = frame.head(3).to_dict("records")
    auth = {"Authorization": "Bearer a-serving-token"}
    with TestClient(create_app(app_project, {"serve": {"max_rows": 5}})) as client:
        _eq(client.app.state.worker.wait_ready(60), True)
        _eq(client.post("/explain", json=rows).status_code, 401)
        r = client.post("/explain", json=rows, headers=auth)
        _eq((r.status_code, r.json()["version"], len(r.json()["explanations"])), (200, 1, 3))
        first = r.json()["explanations"][0]
        _eq((first["scale"], len(first["reasons"])), ("log-odds", 5))
        _eq(first["decision"], client.post("/predict", json=rows[0], headers=auth).json()["predictions"][0])
        bad = {**rows[1], "mean radius": PLANTED}
        r = client.post("/explain", json=[rows[0], bad], headers=auth)
        _eq((r.status_code, r.json()["explanations"][1], [p["field"] for p in r.json()["rejected"]]), (200, None, ["mean radius"]))
        refused = {"all rejected": client.post("/explain", json=[bad], headers=auth),
                   "too many rows": client.post("/explain", json=rows * 2, headers=auth),
                   "not json": client.post("/explain", content=b"{" + PLANTED.encode(), headers={**auth, "content-type": "application/json"}),
                   "text": client.post("/explain", content=PLANTED.encode(), headers={**auth, "content-type": "text/plain"})}
        _eq({k: r.status_code for k, r in refused.items()}, {"all rejected": 422, "too many rows": 413, "not json": 400, "text": 415})
        for r in refused.values(): _eq(PLANTED in r.text, False)
        _eq(PLANTED in r.text, False)
        metrics = client.get("/metrics", headers=auth).text
        _eq('mlops_nb_requests_total{route="/explain",status="200",version="1"} 2.0' in metrics, True)


def test_a_decision_that_cannot_be_explained_is_refused_with_the_reason(app_project, monkeypatch):
    import mlops_nb.serve

    def refuse(model, X): raise ExplanationError("the contributions do not add up to the model's output (off by 0.5 on row 0): no reasons are given")
    monkeypatch.setattr(mlops_nb.serve, "explain", refuse)
    monkeypatch.delenv("MLOPS_NB_TOKEN", raising=False)
    row = pd.read_csv(app_project.parent / "breast-cancer.csv").drop(columns="diagnosis").iloc[0].to_dict()
    with TestClient(create_app(app_project)) as client:
        _eq(client.app.state.worker.wait_ready(60), True)
        r = client.post("/explain", json=row)
        _eq((r.status_code, r.json()["error"]), (501, ("the decisions of v1 cannot be explained: the contributions do not add up to the "
                                                      "model's output (off by 0.5 on row 0): no reasons are given")))
        _eq(client.post("/predict", json=row).status_code, 200)  # predictions go on

    def crash(model, X): raise RuntimeError(f"out of memory near {PLANTED}")
    monkeypatch.setattr(mlops_nb.serve, "explain", crash)
    with TestClient(create_app(app_project), raise_server_exceptions=False) as client:
        _eq(client.app.state.worker.wait_ready(60), True)
        r = client.post("/explain", json=row)
        _eq((r.status_code, r.json()["error"], PLANTED in r.text), (503, "the model could not explain this request; it has been logged", False))


def test_a_pii_feature_is_never_shown_and_a_logged_decision_using_one_is_refused(app_project):
    "A feature tagged pii keeps its values for the model; an explanation masks it, and the log (which protects it) cannot be used."
    import dataclasses

    from mlops_nb.config import UsageError, load_config
    from mlops_nb.contract import Contract
    from mlops_nb.governance import explain_decision
    from mlops_nb.privacy import MASK
    path = app_project / "contract.yaml"
    original = path.read_text()
    contract = Contract.from_yaml(path)
    try:
        Contract(tuple(dataclasses.replace(c, pii=True) if c.name == "mean radius" else c for c in contract.columns), contract.target).to_yaml(path)
        cfg = load_config(app_project)
        version, explanation, values = explain_decision(cfg, row=0)
        raw = pd.read_csv(app_project.parent / "breast-cancer.csv").iloc[0]
        _eq((version, values["mean radius"], values["mean texture"]), (1, MASK, raw["mean texture"]))
        _eq(len(explanation.reasons(0, 30)), 30)  # the model still saw the real value: every feature has its contribution
        with pytest.raises(UsageError, match=r"the prediction log keeps mean radius protected \(pii features\)"):
            explain_decision(cfg, request_id="any")
    finally:
        path.write_text(original)
