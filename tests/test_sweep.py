"""`mlops-nb sweep` on a local Dask cluster of two workers: every task an ordinary pipeline run recorded in the project's
store, a task that fails reported in its row while the others complete, one comparison table (CSV and MLflow artifact,
with a plot), and a backtest over two cutoffs on data with a time column."""
from __future__ import annotations

import contextlib
import io
import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from mlflow.tracking import MlflowClient
from statsmodels.datasets import macrodata

from mlops_nb.cli import main
from mlops_nb.config import parse_overrides
from mlops_nb.project import example_project, init_project
from mlops_nb.sweep import SWEEP_TAG, run_sweep, sweep_tasks

TINY = ["train.n_iter=1", "train.n_splits=2", "train.candidates=[logistic_regression]"]


def store(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def call(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def stage_artifact(client: MlflowClient, run_id: str, stage: str, name: str) -> dict:
    "A JSON artifact of one stage's child run of pipeline run `run_id`."
    experiment = client.get_run(run_id).info.experiment_id
    child, = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{run_id}' and tags.`mlops_nb.stage` = '{stage}'")
    return json.loads(Path(client.download_artifacts(child.info.run_id, name)).read_text())


@pytest.fixture(scope="module")
def cluster():
    "A local Dask cluster of two worker processes, one thread each, reached by its address like a team's cluster."
    import dask
    from distributed import LocalCluster
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c.scheduler_address


@pytest.mark.slow
def test_a_grid_with_a_failing_task(tmp_path):
    project = example_project("breast-cancer", tmp_path / "bc")
    tasks = sweep_tasks(["prepare.test_size=0.2,0.3,0.999"])  # 0.999 leaves no training rows: its prepare stage fails
    result = run_sweep(project, tasks, parse_overrides(TINY), workers=2)  # starts its own local cluster of 2 workers
    table = result.table
    _eq(list(table.columns[:4]), ["task", "prepare.test_size", "status", "run_id"])
    _eq(table[["task", "prepare.test_size", "status"]].values.tolist(), [[1, "0.2", "FINISHED"], [2, "0.3", "FINISHED"], [3, "0.999", "FAILED"]])
    _eq(table["error"].isna().tolist(), [True, True, False])
    assert table["error"].iloc[2].startswith("stage 'prepare' failed in cell "), table["error"].iloc[2]
    _eq(result.status, "FAILED")  # one task's run did not finish
    client = store(project)
    for row in table.to_dict("records"):
        run = client.get_run(row["run_id"])
        _eq((run.info.status, run.data.tags[SWEEP_TAG], run.data.tags["mlops_nb.pipeline"], run.data.params["prepare.test_size"]),
            (row["status"], result.run_id, "true", row["prepare.test_size"]))
        _eq(row["test_roc_auc"] if row["status"] == "FINISHED" else None, run.data.metrics.get("test_roc_auc"))
        assert row["seconds"] > 0, row
    n_test = [stage_artifact(client, r, "prepare", "split.json")["n_test"] for r in table["run_id"].iloc[:2]]
    _eq(n_test, [114, 171])  # 20% and 30% of 569 rows
    _eq(client.search_registered_models(), [])  # a sweep compares; it does not register
    sweep = client.get_run(result.run_id)
    _eq((sweep.info.status, sweep.data.tags[SWEEP_TAG], sweep.data.params["tasks"], sweep.data.params["varied"]),
        ("FAILED", "true", "3", "prepare.test_size"))
    _eq({k: v for k, v in sweep.data.metrics.items() if k.startswith("tasks_")}, {"tasks_finished": 2.0, "tasks_failed": 1.0, "tasks_error": 0.0})
    _eq(sweep.data.metrics["best_test_roc_auc"], table["test_roc_auc"].max())
    _eq(sorted(a.path for a in client.list_artifacts(result.run_id, "sweep")), ["sweep/sweep.csv", "sweep/sweep.png"])
    logged = pd.read_csv(client.download_artifacts(result.run_id, "sweep/sweep.csv"), dtype={"prepare.test_size": str})
    _eq(logged[["task", "prepare.test_size", "status", "run_id"]].values.tolist(), table[["task", "prepare.test_size", "status", "run_id"]].values.tolist())
    _eq(Path(client.download_artifacts(result.run_id, "sweep/sweep.png")).read_bytes()[:8], b"\x89PNG\r\n\x1a\n")
    _eq((result.folder / "sweep.csv").read_text(), Path(client.download_artifacts(result.run_id, "sweep/sweep.csv")).read_text())


@pytest.fixture(scope="module")
def quarters(tmp_path_factory):
    "A project on US macroeconomic quarters 1959Q1-2009Q3, dated by the quarter's first day: did real GDP fall?"
    data = macrodata.load_pandas().data
    start = pd.PeriodIndex.from_fields(year=data["year"].astype(int), quarter=data["quarter"].astype(int), freq="Q").to_timestamp()
    frame = data[["realcons", "realinv", "unemp", "infl"]].diff().fillna(0).assign(
        gdp=np.where(data["realgdp"].diff() < 0, "fell", "grew"), quarter_start=start)
    folder = tmp_path_factory.mktemp("quarters")
    frame.to_csv(folder / "quarters.csv", index=False)
    init_project(folder / "project", folder / "quarters.csv", "gdp", time_column="quarter_start")
    return folder / "project", frame


@pytest.mark.slow
def test_a_backtest_over_two_cutoffs_on_an_existing_cluster(cluster, quarters):
    project, frame = quarters
    sets = [a for s in TINY for a in ("--set", s)]
    code, out, err = call("sweep", "--project", project, "--backtest", "1999-12-31,2006-12-31", "--horizon", "730d", "--scheduler", cluster, *sets)
    assert code == 0, out + err
    lines = out.splitlines()
    _eq(lines[2], f"  2 tasks on the Dask cluster at {cluster}")
    _eq(sorted(line.split()[2] for line in lines[3:5]), ["1", "2"])  # a line per task as it finishes: "[1/2] task N ..."
    table_file = Path(lines[-2].split()[-1])
    table = pd.read_csv(table_file, dtype={"prepare.cutoff": str})
    _eq(table[["task", "prepare.cutoff", "status"]].values.tolist(), [[1, "1999-12-31", "FINISHED"], [2, "2006-12-31", "FINISHED"]])
    client = store(project)
    for row, cutoff in zip(table.itertuples(), ("1999-12-31", "2006-12-31")):
        split = stage_artifact(client, row.run_id, "prepare", "split.json")
        when = frame["quarter_start"]
        end = pd.Timestamp(cutoff) + pd.Timedelta(days=1)
        expected = (int((when < end).sum()), int(((when >= end) & (when < end + pd.Timedelta(days=730))).sum()))
        _eq((split["strategy"], split["cutoff"], split["horizon"], split["n_train"], split["n_test"]), ("time", cutoff, "730d", *expected))
        _eq(client.get_run(row.run_id).data.tags[SWEEP_TAG], lines[-3].split()[1])
    _eq([(s["n_train"], s["n_test"]) for s in (stage_artifact(client, r, "prepare", "split.json") for r in table["run_id"])], [(164, 8), (192, 8)])
    sweep = client.search_runs([client.get_experiment_by_name("project").experiment_id], f"tags.`{SWEEP_TAG}` = 'true'")
    _eq([(s.info.status, s.data.params["varied"]) for s in sweep], [("FINISHED", "prepare.cutoff")])


@pytest.mark.slow
def test_sweep_mistakes_are_one_line(quarters):
    project, _ = quarters
    _eq(call("sweep", "--project", project), (2, "", "error: nothing to sweep: give --grid KEY=V1,V2, --backtest CUTOFFS or --datasets FOLDER\n"))
    _eq(call("sweep", "--project", project, "--grid", "train.n_iters=1,2"),
        (2, "", "error: task 1 (train.n_iters=1): unknown setting 'train.n_iters'; did you mean 'n_iter'?\n"))
    _eq(call("sweep", "--project", project, "--backtest", "2006-13-45"),
        (2, "", "error: task 1 (prepare.cutoff=2006-13-45): setting 'prepare.cutoff' must be an ISO date or time such as 2024-06-30 or 2024-06-30T12:00, got '2006-13-45'\n"))
    _eq(call("sweep", "--project", project, "--grid", "seed=1,2", "--horizon", "90d"),
        (2, "", "error: --horizon needs --backtest: the horizon is measured from each cutoff\n"))
    _eq(call("sweep", "--project", project, "--grid", "seed=1,2", "--workers", "0"), (2, "", "error: --workers must be at least 1, got 0\n"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens there
    code, _, err = call("sweep", "--project", project, "--grid", "seed=1,2", "--scheduler", f"tcp://127.0.0.1:{port}")
    _eq((code, err.count("\n")), (2, 1))
    assert err.startswith(f"error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: "), err
