"""The bundled examples end to end through the real command: outputs, MLflow records, registry, reproducibility and the gate."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import artifact_paths, client_for, fast, read_json, run_cli, run_dir_of, run_id_from, set_stages, show, stage_runs, tracking_uri

import mlops_nb
from mlops_nb.data import fingerprint, read_table
from mlops_nb.metrics import METRICS

STAGES = ["ingest", "validate", "prepare", "train", "evaluate", "register"]
MODEL = "breast-cancer"


def _run(project, *extra):
    code, out, err = run_cli("run", "--example", "breast-cancer", "--project", project, *extra)
    assert code == 0, show(code, out, err)
    run_id = run_id_from(out)
    return {"code": code, "out": out, "err": err, "run_id": run_id, "run_dir": run_dir_of(project, run_id)}


def _snapshot(project, run: dict) -> dict:
    "What `runs`, `models` and the registry's aliases show right after `run`: later runs of the same project change them."
    run["runs"] = run_cli("runs", "--project", project)
    run["models"] = run_cli("models", "--project", project)
    run["aliases"] = {a: int(v) for a, v in client_for(project).get_registered_model(MODEL).aliases.items()}
    return run


# The runs below build on each other (one project, one registry); each fixture asks for the one before it and keeps what
# the commands showed right after its own run, so every test reads its own evidence whatever order tests run in.
@pytest.fixture(scope="session")
def bc(tmp_path_factory):
    "One breast-cancer project: the first run."
    project = tmp_path_factory.mktemp("bc") / "project"
    return {"project": project, "first": _snapshot(project, _run(project, *fast))}


@pytest.fixture(scope="session")
def bc_second(bc):
    "A second run of the same project, same data and settings, with the cache off so that every stage runs again."
    return _snapshot(bc["project"], _run(bc["project"], *fast, "--no-cache"))


@pytest.fixture(scope="session")
def bc_third(bc_second, bc):
    "A third run whose gate cannot pass (an unreachable threshold): only evaluate and register run, the rest is cached."
    return _snapshot(bc["project"], _run(bc["project"], *fast, "--set", "evaluate.thresholds={roc_auc: 0.99999}"))


@pytest.fixture(scope="session")
def bc_fourth(bc_third, bc):
    "A fourth run with another seed, so another split: part of its test rows trained the champion."
    return _snapshot(bc["project"], _run(bc["project"], *fast, "--set", "seed=7"))


def test_first_run_output(bc):
    project, out = bc["project"], bc["first"]["out"]
    for i, stage in enumerate(STAGES, 1):
        assert re.search(rf"\[{i}/6\] {stage}\s+ok\s+\d+\.\ds", out), f"no progress line for {stage}:\n{out}"
    assert re.search(r"model\s+breast-cancer v1 \(@champion, @challenger\)", out), out
    assert re.search(r"gate\s+passed", out), out
    assert re.search(r"test\s+roc_auc 0\.9\d{3}\s+pr_auc \d\.\d{4}\s+accuracy \d\.\d{4}", out), out
    assert f"mlflow ui --backend-store-uri sqlite:///{project.resolve()}/mlflow.db" in out
    assert "sqlite:////" in out
    run_dir = bc["first"]["run_dir"]
    assert f"folder    {run_dir}" in out
    assert sorted(p.name for p in run_dir.iterdir() if p.is_dir()) == sorted(STAGES + ["notebooks"])
    assert sorted(p.name for p in (run_dir / "notebooks").iterdir()) == [f"{i:02d}_{s}.ipynb" for i, s in enumerate(STAGES, 1)]
    assert not list(run_dir.glob(".*.partial")) and not list(run_dir.glob("*.failed"))
    info = read_json(run_dir / "run.json")
    assert info["status"] == "FINISHED" and info["error"] is None
    assert [s["name"] for s in info["stages"]] == STAGES and {s["status"] for s in info["stages"]} == {"ok"}


def test_first_run_stderr_has_no_log_chatter(bc):
    # cli.main sets MLFLOW_LOGGING_LEVEL=WARNING to hide the store's set-up chatter; a clean run prints nothing on stderr
    assert "INFO" not in bc["first"]["err"], bc["first"]["err"]


def test_first_run_mlflow_records(bc):
    project, run_id = bc["project"], bc["first"]["run_id"]
    client = client_for(project)
    exp = client.get_experiment_by_name("breast-cancer")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`mlops_nb.pipeline` = 'true'")
    assert run_id in [p.info.run_id for p in parents]
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow's UI opens it on its training runs
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mlops_nb.version"] == mlops_nb.__version__
    assert (parent.data.tags["git_commit"], parent.data.tags["git_dirty"]) == ("", "")  # the tmp project is no git repository
    top = artifact_paths(client, run_id)
    assert "mlops.yaml" in top and "run.json" in top
    assert "environment/requirements.txt" in artifact_paths(client, run_id, "environment")
    requirements = Path(client.download_artifacts(run_id, "environment/requirements.txt")).read_text()
    assert re.search(r"^mlflow==", requirements, re.MULTILINE) and re.search(r"^scikit-learn==", requirements, re.MULTILINE | re.IGNORECASE)

    children = stage_runs(client, run_id)
    assert sorted(children) == sorted(STAGES)
    for i, stage in enumerate(STAGES, 1):
        child = children[stage]
        assert child.info.status == "FINISHED", stage
        notebook = artifact_paths(client, child.info.run_id, "notebook")
        assert f"notebook/{i:02d}_{stage}.ipynb" in notebook and f"notebook/{i:02d}_{stage}.html" in notebook, (stage, notebook)

    ingest = children["ingest"]
    assert len(ingest.inputs.dataset_inputs) == 1, ingest.inputs.dataset_inputs
    digest = fingerprint(read_table(project / "data" / "breast-cancer.csv"))  # computed here, from the file
    assert ingest.data.tags["data_fingerprint"] == digest
    assert {t.key: t.value for t in ingest.inputs.dataset_inputs[0].tags}["fingerprint"] == digest
    assert parent.data.tags["data_fingerprint"] == digest

    train = children["train"]
    model = read_json(bc["first"]["run_dir"] / "train" / "model.json")
    assert model["model_uri"].startswith("models:/m-")
    logged = client.get_logged_model(model["model_uri"].removeprefix("models:/"))
    assert logged.source_run_id == train.info.run_id
    assert model["model_id"] in [o.model_id for o in train.outputs.model_outputs]

    mv = client.get_model_version(MODEL, "1")
    assert mv.tags["pipeline_run_id"] == run_id
    assert mv.tags["data_fingerprint"] == digest
    assert mv.tags["git_commit"] == "not a git repository"
    assert mv.tags["gate"] == "passed"
    assert mv.run_id == train.info.run_id
    for heading in ("# Model card: breast-cancer v1", "## Intended use", "## Training data", "## Held-out metrics",
                    "## Promotion gate", "## Limitations"):
        assert heading in mv.description, heading
    assert digest in mv.description
    assert bc["first"]["aliases"] == {"champion": 1, "challenger": 1}


def test_first_run_model_card_mentions_no_missing_champion(bc):
    # With no champion yet the gate's champion check is labelled "champion vNone" in gate.json and in the model card
    gate = read_json(bc["first"]["run_dir"] / "evaluate" / "gate.json")
    assert (gate["champion_version"], gate["comparison"]["outcome"]) == (None, "no champion yet")
    card = (bc["first"]["run_dir"] / "register" / "model_card.md").read_text()
    assert "vNone" not in " ".join(c["name"] for c in gate["checks"]), gate["checks"]
    assert "vNone" not in card, card


def test_first_run_listed_by_runs_and_models(bc):
    run_id = bc["first"]["run_id"]
    code, out, err = bc["first"]["runs"]
    assert code == 0, show(code, out, err)
    rows = [line for line in out.splitlines() if run_id in line]
    assert len(rows) == 1 and "FINISHED" in rows[0] and "passed" in rows[0] and rows[0].split()[-1] == "1", out
    code, out, err = bc["first"]["models"]
    assert code == 0, show(code, out, err)
    lines = out.splitlines()
    assert len(lines) == 2, out  # header + version 1
    assert re.match(r"\s*1\s+@challenger, @champion\s+passed\s", lines[1]), out
    assert run_id in lines[1]


@pytest.mark.slow
def test_second_run_is_reproducible(bc, bc_second):
    client = client_for(bc["project"])
    first, second = client.get_run(bc["first"]["run_id"]), client.get_run(bc_second["run_id"])
    assert first.info.run_id != second.info.run_id
    test_metrics = {k: v for k, v in first.data.metrics.items() if k.startswith("test_")}
    assert sorted(test_metrics) == sorted(f"test_{m}" for m in METRICS)
    assert {k: v for k, v in second.data.metrics.items() if k.startswith("test_")} == test_metrics
    assert second.data.tags["data_fingerprint"] == first.data.tags["data_fingerprint"]
    assert second.data.params["best_candidate"] == first.data.params["best_candidate"]
    assert bc_second["run_dir"] != bc["first"]["run_dir"]


def test_second_run_compared_with_champion_and_registered(bc, bc_second):
    gate = read_json(bc_second["run_dir"] / "evaluate" / "gate.json")
    assert gate["champion_version"] == 1
    first_metrics = read_json(bc["first"]["run_dir"] / "run.json")["summary"]["metrics"]
    # same data, seed and split: every test row is new to the champion, so it is scored on all of them, and the
    # challenger is the same model, so the difference is exactly 0 in every resample: not worse
    n_test = read_json(bc_second["run_dir"] / "prepare" / "summary.json")["params"]["n_test"]
    comparison = gate["comparison"]
    assert (comparison["n_rows"], comparison["left_out"], gate["note"]) == (n_test, 0, None), gate
    assert comparison["champion"] == pytest.approx(first_metrics["test_roc_auc"]) == pytest.approx(comparison["challenger"])
    assert (comparison["outcome"], comparison["difference"], comparison["low"], comparison["high"]) == ("not worse", 0.0, 0.0, 0.0)
    champion_check = gate["checks"][-1]
    assert (champion_check["name"], champion_check["passed"], gate["passed"]) == ("roc_auc vs champion v1", True, True)
    assert re.search(r"model\s+breast-cancer v2 \(@champion, @challenger\)", bc_second["out"]), bc_second["out"]
    client = client_for(bc["project"])
    mv = client.get_model_version(MODEL, "2")
    assert mv.tags["pipeline_run_id"] == bc_second["run_id"] and mv.tags["gate"] == "passed"
    assert bc_second["aliases"] == {"champion": 2, "challenger": 2}
    _, out, _ = bc_second["models"]
    lines = out.splitlines()
    assert len(lines) == 3 and re.match(r"\s*2\s+@challenger, @champion\s+passed", lines[1]) and re.match(r"\s*1\s+-?\s*passed", lines[2]), out


@pytest.mark.slow
def test_failed_gate_is_a_verdict_not_an_error(bc, bc_second, bc_third):
    out = bc_third["out"]
    assert bc_third["code"] == 0
    assert "error:" not in bc_third["err"]
    assert re.search(r"model\s+breast-cancer v3 \(@challenger\)", out), out
    assert re.search(r"gate\s+failed: roc_auc 0\.\d+ < ", out), out
    gate = read_json(bc_third["run_dir"] / "evaluate" / "gate.json")
    assert not gate["passed"] and gate["checks"][0]["name"] == "roc_auc >= 0.99999" and not gate["checks"][0]["passed"]
    info = read_json(bc_third["run_dir"] / "run.json")
    assert info["status"] == "FINISHED"
    assert [(s["name"], s["status"]) for s in info["stages"]] == list(zip(STAGES, ["cached"] * 4 + ["ok"] * 2)), info["stages"]  # only the thresholds changed
    assert bc_third["aliases"] == {"champion": 2, "challenger": 3}
    client = client_for(bc["project"])
    assert client.get_model_version(MODEL, "3").tags["gate"] == "failed"
    assert "**failed**" in client.get_model_version(MODEL, "3").description
    code, out, err = bc_third["models"]
    assert code == 0, show(code, out, err)
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert re.match(r"\s*3\s+@challenger\s+failed\s", lines[1]), out
    assert re.match(r"\s*2\s+@champion\s+passed\s", lines[2]), out
    code, out, err = bc_third["runs"]
    assert code == 0, show(code, out, err)
    runs = out.splitlines()[1:]
    assert [line.split()[0] for line in runs] == [bc_third["run_id"], bc_second["run_id"], bc["first"]["run_id"]], out
    assert all("FINISHED" in line for line in runs) and runs[0].split()[-2:] == ["failed", "3"], out


def _rows(frame: pd.DataFrame, columns: list) -> set:
    return set(frame[columns].itertuples(index=False, name=None))


@pytest.mark.slow
def test_new_seed_is_compared_with_champion_only_on_rows_it_never_saw(bc, bc_second, bc_fourth):
    "Another seed gives another split: the test rows that trained the champion (v2) are left out, and too few are left."
    from mlops_nb.contract import Contract
    contract = Contract.from_yaml(bc["project"] / "contract.yaml")
    columns = list(contract.row_columns)
    champion_rows = _rows(pd.read_parquet(bc_second["run_dir"] / "prepare" / "train.parquet"), columns)
    test = pd.read_parquet(bc_fourth["run_dir"] / "prepare" / "test.parquet")
    fresh = sum(row not in champion_rows for row in test[columns].itertuples(index=False, name=None))
    gate = read_json(bc_fourth["run_dir"] / "evaluate" / "gate.json")
    comparison = gate["comparison"]
    assert gate["champion_version"] == 2
    assert (comparison["n_rows"], comparison["left_out"]) == (fresh, len(test) - fresh), comparison
    assert fresh < 50, fresh  # fewer than the default evaluate.min_comparison_rows
    assert (comparison["outcome"], gate["passed"]) == ("not enough evidence", False), comparison
    assert comparison["detail"].startswith(f"not enough evidence: only {fresh} of the {len(test)} test rows are new to champion v2"), comparison["detail"]
    assert bc_fourth["aliases"] == {"champion": 2, "challenger": 4}  # fails closed: the champion stays


@pytest.mark.slow
def test_git_commit_and_dirty_flag_are_recorded(tmp_path, breast_cancer_frame):
    project = tmp_path / "project"
    breast_cancer_frame.to_csv(tmp_path / "cancer.csv", index=False)
    assert run_cli("init", project, "--data", tmp_path / "cancer.csv", "--target", "diagnosis")[0] == 0
    set_stages(project, ["ingest"])
    def git(*args): return subprocess.run(["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                                          capture_output=True, text=True, check=True).stdout.strip()
    git("init", "-q"); git("add", "."); git("commit", "-qm", "project")
    head = git("rev-parse", "HEAD")
    recorded = []
    for edit in (None, "train.n_splits"):
        if edit: (project / "mlops.yaml").write_text((project / "mlops.yaml").read_text().replace("n_splits: 5", "n_splits: 4"))
        code, out, err = run_cli("run", "--project", project)
        assert code == 0, show(code, out, err)
        tags = client_for(project).get_run(run_id_from(out)).data.tags
        recorded.append((tags["git_commit"], tags["git_dirty"]))
    assert recorded == [(head, "false"), (head, "true")]  # runs/ and mlflow.db are ignored; the edited mlops.yaml is not


@pytest.mark.slow
def test_wine_multiclass_integer_labels(tmp_path):
    project = tmp_path / "wine"
    code, out, err = run_cli("run", "--example", "wine", "--project", project, *fast)
    assert code == 0, show(code, out, err)
    assert re.search(r"model\s+wine v1 \(@champion, @challenger\)", out), out
    assert re.search(r"test\s+roc_auc \d\.\d{4}", out), out
    run_dir = run_dir_of(project, run_id_from(out))
    evaluation = read_json(run_dir / "evaluate" / "evaluation.json")
    assert evaluation["classes"] == [0, 1, 2]
    assert evaluation["metrics"]["accuracy"] > 0.8
    assert "categories:\n  - 0\n  - 1\n  - 2" in (project / "contract.yaml").read_text()
    assert client_for(project).get_model_version("wine", "1").tags["gate"] == "passed"
    assert tracking_uri(project) in out
