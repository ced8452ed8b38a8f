"""The whole path a user takes: a real pipeline run makes the champion, `mlops-nb serve` answers with it, `mlops-nb predict`
scores a file with it, and both give the predictions of the model the run logged."""
from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, run_dir_of, show, tracking_uri
from fastcore.test import test_eq as _eq
from mlflow.tracking import MlflowClient
from serving import running_server

from mlops_nb.data import load_skops


@pytest.fixture(scope="module")
def pipeline_project(example_run):
    "The bundled example run once by the real command (conftest's `example_run`): v1 is @champion."
    return example_run["project"], example_run["run_id"]


@pytest.mark.slow
def test_the_server_answers_with_the_model_the_pipeline_logged(pipeline_project):
    project, run_id = pipeline_project
    model = load_skops(run_dir_of(project, run_id) / "train" / "model.skops")
    test = pd.read_parquet(run_dir_of(project, run_id) / "prepare" / "test.parquet")
    features = list(model.feature_names_in_)
    rows = test[features].head(25)
    expected = model.predict_proba(rows)
    with running_server(project) as server:
        answer = httpx.post(f"{server.url}/predict", json={"dataframe_split": {"columns": features, "data": rows.to_numpy().tolist()}}, timeout=30)
        _eq(answer.status_code, 200)
        body = answer.json()
        _eq(body["version"], 1)
        _eq(answer.headers["X-Model-Version"], "1")
        _eq(body["predictions"], model.predict(rows).tolist())
        got = np.array([[p[str(c)] for c in model.classes_] for p in body["probabilities"]])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
        version = httpx.get(f"{server.url}/version", timeout=10).json()
        _eq(version["model"], "breast-cancer")


def test_batch_scoring_uses_the_same_model_and_conserves_rows(pipeline_project, tmp_path):
    project, run_id = pipeline_project
    model = load_skops(run_dir_of(project, run_id) / "train" / "model.skops")
    data = pd.read_csv(project / "data" / "breast-cancer.csv")
    data.loc[3, "mean radius"] = -50.0  # breaks the contract's tolerant range: quarantined, not scored
    source, scored = tmp_path / "in.csv", tmp_path / "scored.parquet"
    data.to_csv(source, index=False)
    code, out, err = run_cli("predict", "--project", project, "--input", source, "--output", scored, "-q")
    assert code == 0, show(code, out, err)
    accepted = pd.read_parquet(scored)
    quarantined = pd.read_parquet(tmp_path / "scored.quarantine.parquet")
    _eq(len(accepted) + len(quarantined), len(data))
    _eq(quarantined["_row"].tolist(), [3])
    _eq(accepted["model_version"].unique().tolist(), [1])
    features = list(model.feature_names_in_)
    _eq(accepted["prediction"].tolist(), model.predict(data.drop(index=3)[features]).tolist())


def test_a_version_is_registered_with_its_contract(pipeline_project):
    "The server validates with the contract the version was trained under: the train stage logs it beside the model."
    project, _ = pipeline_project
    client = MlflowClient(tracking_uri(project))
    mv = client.get_model_version("breast-cancer", "1")
    _eq([a.path for a in client.list_artifacts(mv.run_id, "contract")], ["contract/contract.yaml"])
