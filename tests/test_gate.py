"""The promotion gate fails closed: the champion comparison on rows the champion never saw, its paired bootstrap, the
tolerance budget against a slow ratchet downwards, and binary metrics about an explicit positive class. Also what the
train stage records for the gate: the lineage, and an input example without personal data.

Every champion here lives in a real MLflow SQLite store in a temporary folder and is a real scikit-learn model."""
from __future__ import annotations

import copy
import itertools
import json
import sqlite3
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
import sklearn
import skops.io as sio
import yaml
from conftest import fast, read_json, run_cli, run_dir_of, run_id_from, show
from fastcore.test import test_close as _close
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from mlflow.tracking import MlflowClient
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from mlops_nb.champion import (
    LINEAGE_DIR,
    SPENT_TAG,
    Champion,
    ComparisonRule,
    compare_with_champion,
    lineage_record,
    load_champion,
    paired_bootstrap,
    verdict,
)
from mlops_nb.data import row_hashes
from mlops_nb.evaluate import evaluate_model, gate, plot_precision_recall
from mlops_nb.metrics import METRICS, classification_metrics, cv_scorers, infer_positive_class, metric_on_resamples
from mlops_nb.registry import champion_version, register_version

NAME = "credit"
FEATURES = [f"x{i}" for i in range(8)] + ["age"]
COLUMNS = FEATURES + ["target"]
RULE = ComparisonRule(tolerance=0.01, confidence=0.95, min_rows=50, samples=2000, seed=42)


class Sneaky(LogisticRegression):
    "A classifier whose type is outside the trust list (defined in a test module, not in scikit-learn)."


def credit_frame(n: int, seed: int = 0) -> pd.DataFrame:
    "A credit-like table: 8 numeric features, an integer age, and a target where 5% of the rows are 'bad'."
    X, y = make_classification(n, n_features=8, n_informative=5, weights=[0.95], flip_y=0, class_sep=1.2, random_state=seed)
    frame = pd.DataFrame(X, columns=FEATURES[:-1])
    frame["age"] = np.random.default_rng(seed).integers(18, 80, n)
    frame["target"] = np.where(y == 1, "bad", "good")
    return frame


@pytest.fixture(scope="module")
def data():
    "Training rows of the champion, and fresh rows it never saw."
    frame = credit_frame(6000)
    return {"train": frame.iloc[:2000].reset_index(drop=True), "fresh": frame.iloc[2000:].reset_index(drop=True)}


def fit(frame: pd.DataFrame, columns=FEATURES, cls=LogisticRegression):
    return cls(max_iter=2000).fit(frame[columns], frame["target"])


@pytest.fixture
def store(tmp_path, monkeypatch):
    "A real MLflow SQLite store in a temporary folder, and a function that registers a model as the train stage logs it."
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # the fluent API logs here even if an earlier test set another store
    client = MlflowClient(uri)
    experiment = client.create_experiment("gate", artifact_location=str(tmp_path / "artifacts"))

    def register(model, lineage=None, champion=True, tags=None, rows_only=False, compared_with="current", spent=None):
        trusted = sio.get_untrusted_types(data=sio.dumps(model))
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops", skops_trusted_types=trusted,
                                            pip_requirements=[f"scikit-learn=={sklearn.__version__}"])
            if lineage is not None:
                folder = lineage.save(tmp_path / uuid.uuid4().hex / "lineage")
                if rows_only: (folder / "train_schema.json").unlink()  # as recorded before columns and dtypes were kept
                mlflow.log_artifacts(str(folder), LINEAGE_DIR)
        compared_with = champion_version(client, NAME) if compared_with == "current" else compared_with
        return register_version(client, NAME, info.model_uri, champion, compared_with, tags=tags, tolerance_spent=spent).version

    yield client, register, tmp_path
    mlflow.set_tracking_uri(None)


def compare(challenger, champion, test, columns=COLUMNS, rule=RULE):
    return compare_with_champion(challenger, champion, test, "target", columns, "roc_auc", "bad", rule)


# --- binary metrics name their positive class


def test_credit_metrics_are_about_the_bad_minority(data):
    train, test = data["train"], data["fresh"]
    positive = infer_positive_class(train["target"])
    _eq((positive, float((train["target"] == "bad").mean())), ("bad", 0.0475))
    model = fit(train)
    _eq(list(model.classes_), ["bad", "good"])  # "the second label" would be "good"
    proba, pred, y = model.predict_proba(test[FEATURES]), model.predict(test[FEATURES]), test["target"]
    metrics = classification_metrics(y, proba, model.classes_, positive)
    _close(metrics["precision"], precision_score(y, pred, pos_label="bad"), eps=1e-12)
    _close(metrics["recall"], recall_score(y, pred, pos_label="bad"), eps=1e-12)
    _close(metrics["f1"], f1_score(y, pred, pos_label="bad"), eps=1e-12)
    _close(metrics["pr_auc"], average_precision_score(y == "bad", proba[:, 0]), eps=1e-12)
    _close(metrics["roc_auc"], roc_auc_score(y == "bad", proba[:, 0]), eps=1e-12)
    _eq(metrics["f1"] < f1_score(y, pred, pos_label="good") - 0.2, True)  # the class nobody is trying to catch looks fine
    _fail(lambda: classification_metrics(y, proba, model.classes_), contains="set data.positive_class to 'bad' or 'good'")
    _close(cv_scorers(["f1"], positive_class="bad")["f1"](model, test[FEATURES], y), metrics["f1"], eps=1e-12)
    _fail(lambda: cv_scorers(["f1"])["f1"](model, test[FEATURES], y), contains="need a positive class")
    evaluation = evaluate_model(model, test[FEATURES], y, positive_class="bad")
    _eq((evaluation.positive_class, evaluation.metrics), ("bad", metrics))
    legend = plot_precision_recall(evaluation).axes[0].get_legend().get_texts()
    _eq([t.get_text() for t in legend], [f"bad (AP = {metrics['pr_auc']:.3f}, base rate 0.05)"])


def test_infer_positive_class_rules():
    _eq([infer_positive_class(y) for y in (["good"] * 19 + ["bad"], [1, 1, 0], ["No", "Yes", "No"], [True, False, True],
                                           ["b", "a", "a", "b"], [0, 1, 2])], ["bad", 1, "Yes", True, "a", None])


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(st.data())
def test_metrics_on_resamples_equal_metrics_on_the_resampled_rows(draw):
    k = draw.draw(st.integers(2, 4), label="classes")
    n = draw.draw(st.integers(2, 25), label="rows")
    y = draw.draw(arrays(np.int64, n, elements=st.integers(0, k - 1)), label="y")
    raw = draw.draw(arrays(np.float64, (n, k), elements=st.sampled_from([0.05, 0.1, 0.2, 0.5, 1.0])), label="proba")  # ties
    proba = raw / raw.sum(axis=1, keepdims=True)
    rows = draw.draw(arrays(np.int64, (3, n), elements=st.integers(0, n - 1)), label="resamples")
    counts = np.stack([np.bincount(r, minlength=n) for r in rows])
    positive = draw.draw(st.integers(0, 1)) if k == 2 else None
    for name in METRICS:
        each = [classification_metrics(y[r], proba[r], np.arange(k), positive)[name] for r in rows]
        got = metric_on_resamples(name, y, proba, np.arange(k), counts, positive)
        assert np.allclose(got, each, rtol=0, atol=1e-12, equal_nan=True), (name, got, each)


# --- no champion, and every way a champion can fail to be comparable


def test_no_champion_passes(store, data):
    client, register, _ = store
    challenger = fit(data["train"])
    _eq((load_champion(client, NAME).version, load_champion(client, NAME).problem), (None, None))
    first = compare(challenger, load_champion(client, NAME), data["fresh"])
    _eq((first.outcome, first.passed, first.champion_version, first.tolerance_spent), ("no champion yet", True, None, 0.0))
    register(challenger, champion=False)  # a registered model without a champion
    _eq(compare(challenger, load_champion(client, NAME), data["fresh"]).outcome, "no champion yet")


def test_registry_error_fails_closed(store, data):
    client, register, tmp = store
    register(fit(data["train"]), lineage_record(data["train"], COLUMNS))
    with sqlite3.connect(tmp / "mlflow.db") as db: db.execute("DROP TABLE registered_model_aliases")
    champion = load_champion(client, NAME)
    _eq(champion.version, None)
    _eq(champion.problem.startswith("the model registry could not be read (MlflowException: "), True)
    result = compare(fit(data["train"]), champion, data["fresh"])
    _eq((result.outcome, result.passed, result.tolerance_spent), ("cannot compare", False, RULE.tolerance))
    _eq(result.detail.endswith("so whether there is a champion is unknown. The challenger is not promoted; "
                               "a forced promotion with a reason overrides."), True)
    verdict_ = gate({"roc_auc": 0.99}, {"roc_auc": 0.5}, result.check())
    _eq((verdict_.passed, verdict_.summary), (False, "failed: roc_auc vs champion: cannot compare"))


def test_corrupt_champion_artifact_fails_closed(store, data):
    client, register, tmp = store
    register(fit(data["train"]), lineage_record(data["train"], COLUMNS))
    (skops_file,) = (tmp / "artifacts").rglob("model.skops")
    skops_file.write_bytes(b"this is not a skops file")
    champion = load_champion(client, NAME)
    _eq((champion.version, champion.model), (1, None))
    _eq(champion.problem.startswith("champion v1's model could not be loaded safely ("), True)
    result = compare(fit(data["train"]), champion, data["fresh"])
    _eq((result.outcome, result.passed, result.check().name), ("cannot compare", False, "roc_auc vs champion v1"))
    _eq(result.detail.startswith("cannot compare: champion v1's model could not be loaded safely ("), True)


def test_champion_of_a_refused_type_fails_closed(store, data):
    client, register, _ = store
    register(fit(data["train"], cls=Sneaky), lineage_record(data["train"], COLUMNS))
    champion = load_champion(client, NAME)
    _eq((champion.version, champion.model), (1, None))
    _eq(champion.problem.startswith("champion v1's model could not be loaded safely ("), True)
    _eq("Sneaky" in champion.problem, True)
    result = compare(fit(data["train"]), champion, data["fresh"])
    _eq((result.outcome, result.passed), ("cannot compare", False))


def test_missing_lineage_fails_closed(store, data):
    client, register, _ = store
    register(fit(data["train"]))
    result = compare(fit(data["train"]), load_champion(client, NAME), data["fresh"])
    _eq((result.outcome, result.passed), ("cannot compare", False))
    _eq(result.detail, "cannot compare: champion v1 has no lineage record (the rows it trained on, with their columns and "
        "dtypes), so rows it never saw cannot be told apart from its training rows. The challenger is not promoted; "
        "a forced promotion with a reason overrides.")


def test_lineage_without_columns_and_dtypes_fails_closed(store, data):
    client, register, _ = store
    register(fit(data["train"]), lineage_record(data["train"], COLUMNS), rows_only=True)
    champion = load_champion(client, NAME)
    _eq(champion.problem, "champion v1 has an incomplete lineage record: its training rows were recorded without the "
        "columns and dtypes they were hashed over")
    _eq(compare(fit(data["train"]), champion, data["fresh"]).passed, False)


def test_missing_column_fails_closed(store, data):
    client, register, _ = store
    register(fit(data["train"]), lineage_record(data["train"], COLUMNS), tags={SPENT_TAG: 0.0})
    test = data["fresh"].drop(columns=["age"])
    challenger = fit(data["train"], FEATURES[:-1])
    result = compare(challenger, load_champion(client, NAME), test, FEATURES[:-1] + ["target"])
    _eq((result.outcome, result.passed, result.schema_changes), ("cannot compare", False, ("'age' removed",)))
    _eq(result.detail, "cannot compare: the rows champion v1 trained on cannot be recognised: the data lacks 'age', which "
        "the training rows were recorded with. Note: the schema changed since champion v1 was trained ('age' removed).")


def test_too_few_unseen_rows_fails_closed(store, data):
    client, register, _ = store
    train = data["train"]
    register(fit(train), lineage_record(train, COLUMNS), tags={SPENT_TAG: 0.003})
    test = pd.concat([train.iloc[:300], data["fresh"].iloc[:49]], ignore_index=True)
    result = compare(fit(train), load_champion(client, NAME), test)
    _eq((result.outcome, result.passed, result.n_rows, result.left_out), ("not enough evidence", False, 49, 300))
    _eq(result.fresh, np.arange(len(test)) >= 300)
    _eq(result.detail, "not enough evidence: only 49 of the 349 test rows are new to champion v1 (300 were in its training "
        "data); a comparison needs at least 50 (evaluate.min_comparison_rows).")
    _eq((result.margin, result.tolerance_spent), (0.01 - 0.003, 0.003))


def test_schema_change_uses_only_rows_the_champion_never_saw(store, data):
    client, register, _ = store
    train = data["train"]
    register(fit(train), lineage_record(train, COLUMNS))
    # the next month: a new column, and `age` edited from integer to numeric, so the table holds floats
    old, new = train.iloc[100:400], data["fresh"].iloc[:500]
    test = pd.concat([new.iloc[:200], old, new.iloc[200:]], ignore_index=True)
    test = test.assign(age=test["age"].astype(float), refund_amount=np.random.default_rng(1).random(len(test)))
    columns = COLUMNS + ["refund_amount"]
    _eq(int(np.isin(row_hashes(test[columns]), lineage_record(train, COLUMNS).rows).sum()), 0)  # naive hashes: all "new"
    challenger = fit(test.iloc[:200], FEATURES + ["refund_amount"])
    result = compare(challenger, load_champion(client, NAME), test, columns)
    expected = np.ones(len(test), bool)
    expected[200:500] = False
    _eq(result.fresh, expected)
    _eq((result.n_rows, result.left_out), (500, 300))
    _eq(result.schema_changes, ("'refund_amount' added", "'age' was int64, now float64"))
    _eq("Note: the schema changed since champion v1 was trained ('refund_amount' added; 'age' was int64, now float64), "
        "so its training rows were recognised by the columns and dtypes it recorded." in result.detail, True)
    fresh = test[expected]
    _close(result.bootstrap.champion, roc_auc_score(fresh["target"] == "bad",
           load_champion(client, NAME).model.predict_proba(fresh[FEATURES])[:, 0]), eps=1e-12)


def test_spent_tag_missing_counts_as_zero_and_unreadable_fails_closed(store, data):
    client, register, _ = store
    train = data["train"]
    register(fit(train), lineage_record(train, COLUMNS))
    result = compare(fit(train), load_champion(client, NAME), data["fresh"])
    _eq((result.outcome, result.margin, result.tolerance_spent), ("not worse", 0.01, 0.0))
    _eq(result.detail.endswith("Note: champion v1 has no tolerance_spent tag, so its spent tolerance counts as 0."), True)
    client.set_model_version_tag(NAME, "1", SPENT_TAG, "a lot")
    broken = compare(fit(train), load_champion(client, NAME), data["fresh"])
    _eq((broken.outcome, broken.passed), ("cannot compare", False))
    _eq(broken.detail.startswith("cannot compare: champion v1's tolerance_spent tag 'a lot' is not a number >= 0"), True)


def test_champion_with_other_classes_fails_closed(data):
    train = data["train"]
    relabelled = train.assign(target=train["target"].map({"bad": "default", "good": "paid"}))
    champion = Champion(4, fit(relabelled), lineage_record(train, COLUMNS))
    result = compare(fit(train), champion, data["fresh"])
    _eq((result.outcome, result.passed, result.n_rows), ("cannot compare", False, 4000))
    _eq(result.detail, "cannot compare: champion v4 predicts the classes ['default', 'paid'], the challenger ['bad', 'good'].")


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_lineage_recognises_training_rows_across_schema_edits(draw):
    n = draw.draw(st.integers(1, 25), label="rows")
    numbers = draw.draw(arrays(np.int64, (n, 2), elements=st.integers(-1000, 1000)), label="numbers")
    words = draw.draw(st.lists(st.text(max_size=4), min_size=n, max_size=n), label="words")
    train = pd.DataFrame({"a": numbers[:, 0], "b": numbers[:, 1], "w": pd.Series(words, dtype="category"),
                          "target": np.where(numbers[:, 0] % 2 == 0, "yes", "no")})
    lineage = lineage_record(train, ["a", "b", "w", "target"])
    # the next table: rows shuffled, columns reordered, `a` now float, `w` plain text, a new column
    edited = train.iloc[::-1][["target", "w", "b", "a"]].assign(a=lambda f: f["a"].astype(float), w=lambda f: f["w"].astype(str), new=1.5)
    assert np.isin(lineage.hashes(edited), lineage.rows).all()
    unseen = edited.assign(b=edited["b"] + 5000)  # outside the range the training rows were drawn from
    assert not np.isin(lineage.hashes(unseen), lineage.rows).any()


# --- the statistical comparison


def test_bootstrap_outcomes(store, data):
    client, register, _ = store
    train, fresh = data["train"], data["fresh"]
    strong, weak = fit(train), fit(train, ["x5", "age"])
    register(weak, lineage_record(train, COLUMNS))
    better = compare(strong, load_champion(client, NAME), fresh)
    register(strong, lineage_record(train, COLUMNS), tags={SPENT_TAG: 0.0})
    worse = compare(weak, load_champion(client, NAME), fresh)
    few = compare(weak, load_champion(client, NAME), fresh.iloc[:49])
    p_strong, p_weak = strong.predict_proba(fresh[FEATURES])[:, 0], weak.predict_proba(fresh[["x5", "age"]])[:, 0]
    d = roc_auc_score(fresh["target"] == "bad", p_strong) - roc_auc_score(fresh["target"] == "bad", p_weak)
    _eq([(r.outcome, r.passed, r.n_rows) for r in (better, worse, few)],
        [("better", True, 4000), ("worse", False, 4000), ("not enough evidence", False, 49)])
    _close(better.bootstrap.difference, d, eps=1e-12)
    _close(worse.bootstrap.difference, -d, eps=1e-12)
    _eq((better.bootstrap.low > 0, worse.bootstrap.high < -0.01), (True, True))
    _eq((better.tolerance_spent, worse.tolerance_spent), (0.0, -worse.bootstrap.difference))
    _eq(few.bootstrap, None)
    _eq(gate({"roc_auc": 0.9}, {}, worse.check()).summary, "failed: roc_auc vs champion v2: worse")


def test_close_models_on_few_rows_are_not_enough_evidence(data):
    train, fresh = data["train"], data["fresh"].iloc[:400]
    champion = Champion(1, fit(train), lineage_record(train, COLUMNS))
    result = compare(fit(train, [c for c in FEATURES if c not in ("x0", "x6")]), champion, fresh)
    b = result.bootstrap
    _eq((result.outcome, result.passed, result.n_rows), ("not enough evidence", False, 400))
    _eq((round(b.difference, 4), round(b.low, 4), round(b.high, 4)), (-0.0073, -0.0286, 0.0172))
    _eq(result.detail.startswith(f"not enough evidence: the bounds are {b.high - b.low:.4f} apart and straddle "
                                 "-margin -0.0100; more fresh rows would narrow them."), True)


def test_bootstrap_is_paired_seeded_and_oriented(data):
    fresh = data["fresh"].iloc[:3000]
    a, b = fit(data["train"]), fit(data["train"], FEATURES[:4])
    pa, pb, y = a.predict_proba(fresh[FEATURES]), b.predict_proba(fresh[FEATURES[:4]]), fresh["target"]
    first = paired_bootstrap("roc_auc", y, pa, pb, a.classes_, "bad", samples=2000, seed=7)  # speed: benchmarks/champion_bootstrap.py
    _eq(paired_bootstrap("roc_auc", y, pa, pb, a.classes_, "bad", samples=2000, seed=7), first)
    _eq(paired_bootstrap("roc_auc", y, pa, pa, a.classes_, "bad").low, 0.0)  # same model: every paired draw differs by 0
    ll = paired_bootstrap("log_loss", y, pa, pb, a.classes_)
    _close(ll.difference, ll.champion - ll.challenger, eps=1e-15)  # lower log loss is better: oriented champion - challenger
    _eq(verdict(first.low, first.high, 0.01), "better")


# --- no slow ratchet downwards


def test_chain_of_gradually_worse_models_stops_within_the_tolerance(store):
    client, register, _ = store
    X, y = make_classification(7000, n_features=10, n_informative=6, n_redundant=2, class_sep=1.5, flip_y=0.02, random_state=7)
    frame = pd.DataFrame(X).add_prefix("f").assign(target=np.where(y == 1, "yes", "no"))
    features, train, fresh = [f"f{i}" for i in range(10)], frame.iloc[:3000], frame.iloc[3000:]
    lineage = lineage_record(train, features + ["target"])
    base = LogisticRegression(max_iter=1000).fit(train[features], train["target"])
    direction = np.random.default_rng(0).normal(size=base.coef_.shape)
    direction *= np.linalg.norm(base.coef_) / np.linalg.norm(direction)

    def tilted(t):  # the fitted model with its coefficients turned a little towards a random direction
        model = copy.deepcopy(base)
        model.coef_ = base.coef_ + t * direction
        return model

    chain = [tilted(t) for t in (0.0, 0.165, 0.233, 0.286, 0.330, 0.369)]
    auc = [roc_auc_score(fresh["target"] == "yes", m.predict_proba(fresh[features])[:, 1]) for m in chain]
    _eq(np.all(np.diff(auc) < -0.003), True)  # each link a little worse than the last
    register(chain[0], lineage, tags={SPENT_TAG: 0.0})
    outcomes = []
    for model in chain[1:]:
        result = compare_with_champion(model, load_champion(client, NAME), fresh, "target", features + ["target"], "roc_auc", "yes", RULE)
        register(model, lineage, champion=result.passed, compared_with=result.champion_version, spent=result.tolerance_spent)
        outcomes.append((result.outcome, result.champion_version))
    _eq(outcomes, [("not worse", 1), ("not worse", 2), ("worse", 3), ("worse", 3), ("worse", 3)])
    champion = client.get_model_version_by_alias(NAME, "champion")
    _eq(int(champion.version), 3)
    _close(float(champion.tags[SPENT_TAG]), auc[0] - auc[2], eps=1e-12)  # spent = the point drop below the first champion
    assert auc[0] - auc[2] <= 0.01 < auc[0] - auc[5], auc
    # judged link by link with the full tolerance each time, every challenger would have been promoted
    links = [paired_bootstrap("roc_auc", fresh["target"], new.predict_proba(fresh[features]), old.predict_proba(fresh[features]),
                              base.classes_, "yes") for old, new in itertools.pairwise(chain)]
    _eq([verdict(b.low, b.high, 0.01) for b in links], ["not worse"] * 5)


# --- what the train stage records


@pytest.mark.slow
def test_train_stage_records_lineage_and_masks_pii_in_the_input_example(tmp_path, breast_cancer_frame):
    frame = breast_cancer_frame.assign(email=[f"patient{i}@clinic.example" for i in range(len(breast_cancer_frame))])
    frame.to_csv(tmp_path / "cancer.csv", index=False)
    project = tmp_path / "project"
    code, out, err = run_cli("init", project, "--data", tmp_path / "cancer.csv", "--target", "diagnosis")
    assert code == 0, show(code, out, err)
    contract = yaml.safe_load((project / "contract.yaml").read_text())
    pii = {c["name"]: c for c in contract["columns"] if c.get("pii")}
    _eq(list(pii), ["email"])  # found by init, and kept out of the features
    for column in contract["columns"]:
        if column["name"] == "mean radius": column["pii"] = True  # a feature tagged as personal data by hand
    (project / "contract.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    code, out, err = run_cli("run", "--project", project, *fast)
    assert code == 0, show(code, out, err)
    assert "input example: mean radius masked (pii in the contract)" in out, out
    (example_file,) = project.rglob("input_example.json")
    example = json.loads(example_file.read_text())
    values = dict(zip(example["columns"], zip(*example["data"])))
    _eq([np.isnan(v) for v in values["mean radius"]], [True] * 5)  # missing values, as the column is a float
    run_dir = run_dir_of(project, run_id_from(out))
    _eq(values["mean texture"], tuple(pd.read_parquet(run_dir / "prepare" / "train.parquet")["mean texture"].head(5)))
    snapshot = pd.read_parquet(run_dir / "ingest" / "data.parquet")
    _eq(snapshot["mean radius"].tolist(), breast_cancer_frame["mean radius"].tolist())  # a feature keeps its values to train on
    _eq(snapshot["email"].str.match(r"^h:[0-9a-f]{32}$").all(), True)  # an identifier is hashed before the snapshot
    ingest_notebook = next((run_dir / "notebooks").glob("*ingest.ipynb")).read_text()
    _eq(("PERSONAL DATA KEPT FOR TRAINING: mean radius" in ingest_notebook, "@clinic.example" in ingest_notebook), (True, False))
    _eq("email" in values or "@clinic.example" in example_file.read_text(), False)
    lineage = json.loads((run_dir / "train" / "lineage" / "train_schema.json").read_text())
    _eq(lineage["columns"][-1], "diagnosis")
    _eq(("email" in lineage["columns"], lineage["dtypes"]["mean radius"]), (False, "float64"))
    _eq(read_json(run_dir / "evaluate" / "gate.json")["comparison"]["outcome"], "no champion yet")
