"Retention: `mlops-nb retain` deletes run folders and prediction-log entries older than governance.retention, and nothing else."
import os
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import call_cli, show
from fastcore.test import test_eq as _eq
from serving import add_version, project_client, served_project

from mlops_nb.config import load_config
from mlops_nb.governance import retain
from mlops_nb.telemetry import PredictionLog, read_log

DAY = 86400.0


def backdate(path: Path, days: float) -> None:
    then = time.time() - days * DAY
    os.utime(path, (then, then))


@pytest.fixture
def project(tmp_path):
    project = served_project(tmp_path)
    _eq(add_version(project), 1)
    runs = project / "runs"
    for name, days in (("20250101-000000-aaaaaaaa", 400), ("20251001-000000-bbbbbbbb", 31), ("20261101-000000-cccccccc", 29)):
        (runs / name / "ingest").mkdir(parents=True)
        (runs / name / "ingest" / "data.parquet").write_bytes(b"rows")
        (runs / name / "run.json").write_text("{}")
        backdate(runs / name / "run.json", days)
    (runs / "20250202-000000-dddddddd").mkdir()  # a run that never wrote run.json: its folder's time counts
    backdate(runs / "20250202-000000-dddddddd", 90)
    (runs / ".cache").mkdir()
    backdate(runs / ".cache", 500)
    cfg = load_config(project)
    log = PredictionLog(project / cfg.serve.prediction_log)
    now = time.time()
    log.put([(f"r{i}", 0, now - days * DAY, cfg.model_name, 1, "primary", "champion", {"x": 1}, "a", None, 1.0, "ok", None)
             for i, days in enumerate((45, 31, 29, 1, 0))])
    log.close()
    _eq(log.add_feedback("r0", "benign"), True)
    _eq(log.add_feedback("r3", "benign"), True)
    return project


@pytest.mark.slow
def test_retain_deletes_only_what_is_older_than_the_setting(project):
    artifacts = sorted(p.relative_to(project) for p in (project / "mlartifacts").rglob("*"))
    code, out, err = call_cli("retain", "--project", str(project), "--set", "governance.retention=30d")
    assert code == 0, show(code, out, err)
    _eq("deleted 3 run folders and 2 prediction-log entries" in out, True)
    _eq(sorted(p.name for p in (project / "runs").iterdir()), [".cache", "20261101-000000-cccccccc"])
    log = read_log(project / "predictions" / "predictions.db")
    _eq(log.request_id.tolist(), ["r2", "r3", "r4"])
    with sqlite3.connect(project / "predictions" / "predictions.db") as con:
        _eq(con.execute("SELECT request_id FROM feedback").fetchall(), [("r3",)])
    _eq(sorted(p.relative_to(project) for p in (project / "mlartifacts").rglob("*")), artifacts)  # models and cards are kept
    _eq([v.version for v in project_client(project).search_model_versions("name = 'served'")], [1])


def test_retain_again_deletes_nothing_and_a_later_clock_deletes_more(project):
    cfg = load_config(project, {"governance": {"retention": "30d"}})
    _eq(len(retain(cfg).runs), 3)
    _eq((retain(cfg).runs, retain(cfg).log_entries), ((), 0))
    later = retain(cfg, now=time.time() + 2 * DAY)
    _eq((later.runs, later.log_entries), (("20261101-000000-cccccccc",), 1))


@pytest.mark.slow
def test_retain_without_a_setting_is_a_usage_error(project):
    code, _out, err = call_cli("retain", "--project", str(project))
    _eq((code, err.strip()), (2, "error: governance.retention is not set, so nothing is old enough to delete: set it, e.g. 365d"))
    _eq(len(list((project / "runs").iterdir())), 5)
    code, _out, err = call_cli("retain", "--project", str(project), "--set", "governance.retention=soon")
    _eq((code, "governance.retention" in err, "Traceback" in err), (2, True, False))


def test_a_locked_prediction_log_is_a_one_line_error(project, monkeypatch):
    from mlops_nb import governance
    from mlops_nb.config import UsageError
    monkeypatch.setattr(governance, "BUSY_SECONDS", 0.2)
    with sqlite3.connect(project / "predictions" / "predictions.db", isolation_level=None) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(UsageError, match=r"^could not delete old entries from predictions.db \(database is locked\): stop the processes writing it"):
            retain(load_config(project, {"governance": {"retention": "30d"}}))
        holder.execute("ROLLBACK")
    _eq(len(read_log(project / "predictions" / "predictions.db")), 5)
