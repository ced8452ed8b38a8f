"""The maintenance loop without a pipeline run: the decision table (every fail-closed case), the fresh data's exact rows,
what a round records in MLflow (a kept champion says why, "did nothing" is recorded too), and the loop's resilience.

Monitoring and the pipeline are replaced by stand-ins where a test is about the round's own logic; the registry, the
prediction log and the MLflow records are real. tests/test_maintain_e2e.py runs the real thing end to end."""
from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from serving import add_version, project_client, served_project

from mlops_nb import maintain
from mlops_nb.config import MaintainSettings, UsageError, config_from_dict, load_config
from mlops_nb.maintain import Decision, FreshData, MaintainOutcome, decide, fresh_data, maintain_loop, maintain_main, maintain_once
from mlops_nb.pipeline import RunResult, init_project
from mlops_nb.telemetry import LogEntry, PredictionLog

DAY = 86400.0
S = MaintainSettings()

# --- decide: one row per kind of evidence ------------------------------------------------------------------------------

CASES = [  # (name, firing, champion, age, settings, problems, retrain, first reason)
    ("drift alert on the champion", {"data_drift/3": "report"}, 3, DAY, S, (), True, "data_drift alert firing on champion v3"),
    ("multivariate drift", {"multivariate_drift/3": "report"}, 3, DAY, S, (), True, "multivariate_drift alert firing on champion v3"),
    ("performance alert", {"performance/3": "page"}, 3, DAY, S, (), True, "performance alert firing on champion v3"),
    ("drift, but on_drift off", {"data_drift/3": "report"}, 3, DAY, MaintainSettings(on_drift=False), (), False,
     "data_drift alert firing on champion v3, but maintain.on_drift is off"),
    ("performance, but on_performance off", {"performance/3": "page"}, 3, DAY, MaintainSettings(on_performance=False), (), False,
     "performance alert firing on champion v3, but maintain.on_performance is off"),
    ("drift on a canary, not the champion", {"data_drift/4": "report"}, 3, DAY, S, (), False,
     "not on champion v3, so not acted on: data_drift on v4"),
    ("an unknown alert", {"latency/3": "page"}, 3, DAY, S, (), False,
     "no alert firing on champion v3 and it is younger than maintain.max_age 30d: nothing to do"),
    ("old champion", {}, 3, 31 * DAY, S, (), True, "champion v3 is 31.0 days old, older than maintain.max_age 30d"),
    ("young champion, nothing firing", {}, 3, 29 * DAY, S, (), False,
     "no alert firing on champion v3 and it is younger than maintain.max_age 30d: nothing to do"),
    ("no max_age", {}, 3, 1000 * DAY, MaintainSettings(max_age=None), (), False, "no alert firing on champion v3: nothing to do"),
    ("no champion", {}, None, None, S, (), True, "no champion: train one (the gate's thresholds still apply)"),
    ("no champion, even with monitoring failed", None, None, None, S, ("the log is unreadable",), True,
     "no champion: train one (the gate's thresholds still apply)"),
    # fail closed: missing evidence keeps the champion and says why
    ("monitoring failed", None, 3, DAY, S, ("DatabaseError: file is not a database",), False,
     ("monitoring failed (DatabaseError: file is not a database): drift and performance it could not see "
     "trigger nothing, so champion v3 is kept until they can be checked")),
    ("monitoring failed without a reason", None, 3, DAY, S, (), False,
     "monitoring failed (it gave no result): drift and performance it could not see trigger nothing, so champion v3 is kept until they can be checked"),
    ("champion without a profile", {}, 3, DAY, S, ("v3 has no reference profile: re-run the pipeline",), False,
     ("monitoring was incomplete (v3 has no reference profile: re-run the pipeline): drift and performance it could not see trigger nothing, "
     "so champion v3 is kept until they can be checked")),
    ("unknown age", {}, 3, None, S, (), False, "the age of v3 is unknown, so maintain.max_age triggers nothing"),
    ("old champion, monitoring failed: the age still counts", None, 3, 31 * DAY, S, ("x",), True,
     "champion v3 is 31.0 days old, older than maintain.max_age 30d"),
]


@pytest.mark.parametrize("name,firing,champion,age,settings,problems,retrain,reason", CASES, ids=[c[0] for c in CASES])
def test_decide_table(name, firing, champion, age, settings, problems, retrain, reason):
    d = decide(firing, champion, age, settings, problems)
    _eq((d.retrain, d.reasons[0]), (retrain, reason))
    _eq(Decision.from_dict(json.loads(json.dumps(d.to_dict()))), d)


def test_decide_reads_notifications_and_ignores_resolved_ones():
    from mlops_nb.alerts import Notification
    fired = Notification("firing", "data_drift", 3, "report", "x drifted", ("x",), 0.0)
    resolved = Notification("resolved", "performance", 3, "page", "ok again", (), 0.0)
    _eq(decide([fired, resolved], 3, DAY, S).reasons, ("data_drift alert firing on champion v3",))
    _eq(decide([resolved], 3, DAY, S).retrain, False)


def test_decide_records_its_evidence():
    d = decide({"data_drift/3": "report", "performance/2": "page"}, 3, 2 * DAY, S, ("v2 has no reference profile",))
    _eq(d.evidence, {"champion": 3, "age_seconds": 2 * DAY, "problems": ["v2 has no reference profile"], "monitored": True,
                     "firing": [{"alert": "data_drift", "version": 3, "severity": "report"}, {"alert": "performance", "version": 2, "severity": "page"}]})
    _eq(d.reasons, ("data_drift alert firing on champion v3", "not on champion v3, so not acted on: performance on v2",
                    "monitoring was incomplete (v2 has no reference profile): drift and performance it could not see trigger nothing"))


# --- fresh data ---------------------------------------------------------------------------------------------------------

def _project(root: Path, frame: pd.DataFrame, target="y", time_column=None, suffix="csv"):
    data = root / f"data.{suffix}"
    frame.to_csv(data, index=False) if suffix == "csv" else frame.to_parquet(data, index=False)
    return init_project(root / "p", data, target, time_column=time_column, copy_runbooks=False)


def _log(cfg, rows: list, labels: dict, ts: float = 1_700_000_000.0):
    "Log rows (request id, features, role, status) and feedback {request id: label}."
    log = PredictionLog(cfg.project_dir / cfg.serve.prediction_log)
    log.put([LogEntry(rid, 0, ts + i, "p", 1, role, "champion", features, None, None, 1.0, status)
             for i, (rid, features, role, status) in enumerate(rows)])
    log.flush()
    for rid, label in labels.items(): assert log.add_feedback(rid, label)
    log.close()


def _frame(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n).round(3), "c": rng.choice(["a", "b"], n), "y": rng.integers(0, 2, n)})


def test_fresh_data_counts_exactly(tmp_path):
    data = _frame()
    cfg = _project(tmp_path, data)
    known = data.iloc[4]
    rows = [("r1", {"x": 10.5, "c": "a"}, "primary", "ok"), ("r1", {"x": 10.5, "c": "a"}, "shadow", "ok"),  # one observation
            ("r2", {"x": 11.5, "c": "b"}, "primary", "ok"),
            ("r3", {"x": 12.5}, "primary", "ok"),  # a feature missing: left out
            ("r4", {}, "primary", "error"),  # the model failed: no features logged
            ("r5", {"x": float(known["x"]), "c": known["c"]}, "primary", "ok"),  # already in the data: left out
            ("r6", {"x": 10.5, "c": "a"}, "primary", "ok"),  # same values as r1, another request: kept
            ("r7", {"x": 13.5, "c": "a"}, "primary", "ok")]  # no label: not used
    _log(cfg, rows, {"r1": 1, "r2": 0, "r3": 1, "r4": 0, "r5": int(known["y"]), "r6": 1})
    fresh = fresh_data(cfg, tmp_path / "round")
    _eq(fresh, FreshData(tmp_path / "round" / "fresh.csv", 33, 30, 3, 2, 1))
    written = pd.read_csv(fresh)
    _eq(written.columns.tolist(), ["x", "c", "y"])
    _eq(written.tail(3).values.tolist(), [[10.5, "a", 1], [11.5, "b", 0], [10.5, "a", 1]])
    _eq(written.head(30).to_dict("list"), data.to_dict("list"))
    _eq(sorted(p.name for p in (tmp_path / "round").iterdir()), ["fresh.csv"])  # no partial file left
    _eq(fresh_data(replace(cfg, maintain=replace(cfg.maintain, feedback=False)), tmp_path / "off").rows, 30)


def test_fresh_data_without_a_log_is_the_data(tmp_path):
    cfg = _project(tmp_path, _frame())
    _eq(fresh_data(cfg, tmp_path / "round"), FreshData(tmp_path / "round" / "fresh.csv", 30, 30, 0, 0, 0))


def test_fresh_data_reads_maintain_data_and_keeps_parquet(tmp_path):
    cfg = _project(tmp_path, _frame(), suffix="parquet")
    _frame(12, seed=1).to_parquet(tmp_path / "recent.parquet", index=False)
    _log(cfg, [("r1", {"x": 20.25, "c": "b"}, "primary", "ok")], {"r1": 0})
    cfg = replace(cfg, maintain=replace(cfg.maintain, data=str(tmp_path / "recent.parquet")))
    fresh = fresh_data(cfg, tmp_path / "round")
    _eq((fresh.path.name, fresh.rows, fresh.data_rows, fresh.feedback_rows), ("fresh.parquet", 13, 12, 1))
    written = pd.read_parquet(fresh)
    _eq((written["y"].dtype, written.iloc[-1].tolist()), (np.dtype("int64"), [20.25, "b", 0]))


def test_fresh_data_dates_log_rows_by_their_prediction_time(tmp_path):
    data = _frame(30).assign(when=pd.date_range("2024-01-01", periods=30, freq="D").strftime("%Y-%m-%d %H:%M:%S"))
    cfg = _project(tmp_path, data, time_column="when")
    _log(cfg, [("r1", {"x": 9.5, "c": "a"}, "primary", "ok")], {"r1": 1}, ts=1_717_243_200.0)  # 2024-06-01 12:00 UTC
    written = pd.read_csv(fresh_data(cfg, tmp_path / "round"))
    _eq(written.iloc[-1].tolist(), [9.5, "a", 1, "2024-06-01 12:00:00"])


def test_fresh_data_keeps_masked_personal_data_as_logged(tmp_path):
    data = _frame(30).assign(email=[f"user{i}@example.com" for i in range(30)])
    cfg = _project(tmp_path, data)
    contract_file = cfg.project_dir / cfg.contract
    text = contract_file.read_text()
    assert "pii: true" in text  # inferred: kept out of the model (role ignore) and out of the log
    _log(cfg, [("r1", {"x": 9.5, "c": "a"}, "primary", "ok")], {"r1": 1})
    written = pd.read_csv(fresh_data(cfg, tmp_path / "round"))
    _eq((len(written), written["email"].isna().tolist()[-2:]), (31, [False, True]))


# --- one round: what it records --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    "Made once: a served project with no model, and a copy whose v1 (a logistic regression, no profile) is @champion."
    root = tmp_path_factory.mktemp("maintain")
    empty = served_project(root / "empty")
    shutil.copytree(empty, root / "one")
    _eq(add_version(root / "one"), 1)
    return empty, root / "one"


def _copy(source: Path, tmp_path: Path) -> Path:
    "A private copy of a project (its store and settings); artifacts already stored stay where they are."
    return Path(shutil.copytree(source, tmp_path / source.name))


@pytest.fixture
def project(projects, tmp_path):
    return _copy(projects[1], tmp_path)


def _rounds(project) -> list:
    client = project_client(project)
    exp = client.get_experiment_by_name(load_config(project).project)
    return client.search_runs([exp.experiment_id], filter_string="tags.`mlops_nb.kind` = 'maintain'", order_by=["attributes.start_time DESC"])


def _recorded(project, run_id: str) -> dict:
    client = project_client(project)
    path = client.download_artifacts(run_id, "maintain/outcome.json")
    return json.loads(Path(path).read_text())


def _stub_monitor(monkeypatch, result=None, error=None):
    def fake(cfg, say):
        if error: raise error
        return result
    monkeypatch.setattr(maintain, "_monitor", fake)


def _stub_pipeline(monkeypatch, calls: list, tags=None, status="FINISHED", error=None, register=None):
    def fake(cfg, progress=None, output=None, warn=None):
        calls.append(cfg)
        if register: register()
        return RunResult("pipe-1", cfg.project_dir / "runs" / "x", status, (), "sqlite:///x", {"tags": tags or {}}, error)
    monkeypatch.setattr(maintain, "run_pipeline", fake)


def test_nothing_to_do_is_recorded(project, monkeypatch):
    _stub_monitor(monkeypatch, ("mon-1", {}, ()))
    calls = []
    _stub_pipeline(monkeypatch, calls)
    before = (project / "mlops.yaml").read_bytes()
    outcome = maintain_once(load_config(project))
    _eq((outcome.action, outcome.champion_before, outcome.champion_after, outcome.monitor_run_id, calls), ("nothing", 1, 1, "mon-1", []))
    _eq(outcome.why, "no alert firing on champion v1 and it is younger than maintain.max_age 30d: nothing to do")
    [run] = _rounds(project)
    _eq((run.info.run_id, run.info.status), (outcome.run_id, "FINISHED"))
    _eq({k: run.data.tags.get(k) for k in ("mlops_nb.kind", "action", "retrain", "monitor_run_id", "champion_before", "champion_after")},
        {"mlops_nb.kind": "maintain", "action": "nothing", "retrain": "false", "monitor_run_id": "mon-1", "champion_before": "1", "champion_after": "1"})
    _eq((run.data.params["maintain.max_age"], run.data.params["maintain.on_drift"]), ("30d", "True"))
    _eq(MaintainOutcome.from_dict(_recorded(project, outcome.run_id)), outcome)
    _eq((project / "mlops.yaml").read_bytes(), before)
    _eq(outcome.decision.evidence["created"][:2], "20")  # the champion's creation time, as evidence of its age


def test_a_kept_champion_records_why(project, monkeypatch):
    _stub_monitor(monkeypatch, ("mon-1", {"data_drift/1": "report"}, ()))
    calls = []
    _stub_pipeline(monkeypatch, calls, tags={"gate": "failed", "gate_summary": "failed: roc_auc vs champion v1 worse",
                                             "model_version": "2", "model_aliases": "challenger"})
    _log(load_config(project), [("r1", {"mean radius": 1.0}, "primary", "ok")], {"r1": 0})  # incomplete: left out
    before = (project / "mlops.yaml").read_bytes()
    outcome = maintain_once(load_config(project))
    _eq((outcome.action, outcome.version, outcome.gate, outcome.champion_after, outcome.pipeline_run_id), ("kept", 2, "failed", 1, "pipe-1"))
    _eq(outcome.why, "v2 is not promoted: the gate failed (failed: roc_auc vs champion v1 worse); v1 stays champion")
    [cfg] = calls
    snapshot = Path(cfg.data.path)
    _eq((snapshot.name, snapshot.parent.parent, snapshot.parent.name.endswith(outcome.run_id[:8])), ("fresh.csv", project / "runs", True))
    _eq(len(pd.read_csv(snapshot)), 569)
    _eq((outcome.fresh["rows"], outcome.fresh["feedback_rows"], outcome.fresh["incomplete"]), (569, 0, 1))
    _eq((project / "mlops.yaml").read_bytes(), before)  # the override is in memory only
    [run] = _rounds(project)
    _eq({k: run.data.tags.get(k) for k in ("action", "why", "gate", "pipeline_run_id", "model_version", "reasons")},
        {"action": "kept", "why": outcome.why, "gate": "failed", "pipeline_run_id": "pipe-1", "model_version": "2",
         "reasons": "data_drift alert firing on champion v1"})
    _eq((run.data.metrics["fresh_rows"], run.data.metrics["fresh_feedback_rows"]), (569.0, 0.0))
    _eq(_recorded(project, outcome.run_id)["decision"]["evidence"]["firing"], [{"alert": "data_drift", "version": 1, "severity": "report"}])


def test_a_promotion_is_read_from_the_registry(project, monkeypatch):
    _stub_monitor(monkeypatch, ("mon-1", {"performance/1": "page"}, ()))
    calls = []
    _stub_pipeline(monkeypatch, calls, tags={"gate": "passed", "gate_summary": "passed", "model_version": "2", "model_aliases": "champion,challenger"},
                   register=lambda: add_version(project))
    outcome = maintain_once(load_config(project))
    _eq((outcome.action, outcome.version, outcome.champion_before, outcome.champion_after), ("promoted", 2, 1, 2))
    _eq(outcome.summary().split(" [run ")[0], "maintain: promoted v2 (was v1): v2 passed the gate (passed) and is @champion")


def test_a_failed_monitoring_keeps_the_champion_and_says_why(project, monkeypatch):
    _stub_monitor(monkeypatch, error=RuntimeError("the prediction log is not a database"))
    calls = []
    _stub_pipeline(monkeypatch, calls)
    outcome = maintain_once(load_config(project))
    _eq((outcome.action, outcome.champion_after, calls), ("nothing", 1, []))
    _eq(outcome.why, "monitoring failed (RuntimeError: the prediction log is not a database): drift and performance it "
                     "could not see trigger nothing, so champion v1 is kept until they can be checked")
    _eq(_rounds(project)[0].data.tags["action"], "nothing")


def test_a_champion_without_a_profile_is_not_replaced(project, monkeypatch):
    _stub_monitor(monkeypatch, ("mon-1", {}, ("v1 has no reference profile (trained before profiles were stored): re-run the pipeline",)))
    calls = []
    _stub_pipeline(monkeypatch, calls)
    outcome = maintain_once(load_config(project))
    _eq((outcome.action, outcome.champion_after, calls), ("nothing", 1, []))
    assert outcome.why.startswith("monitoring was incomplete (v1 has no reference profile"), outcome.why
    _eq(_rounds(project)[0].data.tags["why"], outcome.why)


def test_an_unreadable_log_does_not_train_on_incomplete_data(project, monkeypatch):
    cfg = load_config(project)
    log = cfg.project_dir / cfg.serve.prediction_log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"this is not an SQLite database" * 100)
    _stub_monitor(monkeypatch, ("mon-1", {"data_drift/1": "report"}, ()))
    calls = []
    _stub_pipeline(monkeypatch, calls)
    outcome = maintain_once(cfg)
    _eq((outcome.action, outcome.champion_after, calls), ("failed", 1, []))
    assert outcome.why.startswith("the fresh data could not be assembled (DatabaseError: file is not a database"), outcome.why
    [run] = _rounds(project)
    _eq((run.info.status, run.data.tags["action"]), ("FAILED", "failed"))


def test_the_real_monitoring_of_an_unreadable_log_keeps_the_champion(project, monkeypatch):
    cfg = load_config(project)
    log = cfg.project_dir / cfg.serve.prediction_log
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"this is not an SQLite database" * 100)
    calls = []
    _stub_pipeline(monkeypatch, calls)
    outcome = maintain_once(cfg)
    _eq((outcome.action, outcome.champion_after, calls, outcome.decision.retrain), ("nothing", 1, [], False))
    assert outcome.why.startswith("monitoring failed (") and outcome.why.endswith("so champion v1 is kept until they can be checked"), outcome.why
    _eq(_rounds(project)[0].data.tags["why"], outcome.why)


def test_a_failing_pipeline_is_recorded(project, monkeypatch):
    _stub_monitor(monkeypatch, ("mon-1", {"data_drift/1": "report"}, ()))
    calls = []
    _stub_pipeline(monkeypatch, calls, status="FAILED", error="stage 'train' failed: ValueError: boom")
    outcome = maintain_once(load_config(project))
    _eq((outcome.action, outcome.why), ("failed", "pipeline run pipe-1 failed (stage 'train' failed: ValueError: boom); v1 stays champion"))
    _eq(_rounds(project)[0].info.status, "FAILED")


def test_an_exception_in_the_round_is_recorded(project, monkeypatch):
    _stub_monitor(monkeypatch, ("mon-1", {"data_drift/1": "report"}, ()))
    def boom(cfg, progress=None, output=None, warn=None): raise UsageError("data.target is 'y' in mlops.yaml but 'z' in contract.yaml")
    monkeypatch.setattr(maintain, "run_pipeline", boom)
    outcome = maintain_once(load_config(project))
    _eq((outcome.action, outcome.champion_after), ("failed", 1))
    _eq(outcome.why, "the round stopped: UsageError: data.target is 'y' in mlops.yaml but 'z' in contract.yaml")
    _eq(_rounds(project)[0].data.tags["why"], outcome.why)


def test_no_champion_trains_one_without_monitoring(projects, tmp_path, monkeypatch):
    project = _copy(projects[0], tmp_path)
    _stub_monitor(monkeypatch, error=AssertionError("monitoring must not run without a champion"))
    calls = []
    _stub_pipeline(monkeypatch, calls, tags={"gate": "passed", "model_version": "1", "model_aliases": "champion,challenger"},
                   register=lambda: add_version(project))
    outcome = maintain_once(load_config(project))
    _eq((outcome.action, outcome.version, outcome.champion_before, outcome.monitor_run_id, len(calls)), ("promoted", 1, None, None, 1))


def test_an_unreachable_store_raises_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once instead of retrying for minutes
    cfg = config_from_dict({"project": "p", "tracking_uri": "http://127.0.0.1:9", "data": {"path": "d.csv", "target": "y"}}, tmp_path)
    _fail(lambda: maintain_once(cfg), contains="cannot record the maintenance round to the MLflow store at http://127.0.0.1:9")


# --- the loop and the command ------------------------------------------------------------------------------------------

def test_the_loop_survives_a_failing_round_and_stops_on_the_event(tmp_path):
    cfg = config_from_dict({"project": "p"}, tmp_path)
    stop, lines, starts = threading.Event(), [], []
    def once(cfg, progress=None):
        starts.append(time.monotonic())
        if len(starts) == 2: raise RuntimeError("the tracking server is down")
        return MaintainOutcome("nothing", "no alert firing", run_id=f"r{len(starts)}", champion_after=1)
    threading.Timer(1.0, stop.set).start()
    began = time.monotonic()
    rounds = maintain_loop(cfg, 0.3, stop, lines.append, once=once)
    stopped = time.monotonic() - began
    _eq((rounds, len(starts)), (4, 4))  # rounds at 0, 0.3, 0.6 and 0.9 s; the event at 1.0 s ends the wait
    assert 0.95 < stopped < 1.3, stopped  # promptly: not at the next round (1.2 s) plus a round
    _eq(lines[:2], ["maintain: nothing to do, champion v1: no alert firing [run r1, 0.0s]",
                    "maintain: round failed: RuntimeError: the tracking server is down; next round in 0.3s"])
    intervals = np.diff(starts)
    assert np.all((intervals > 0.28) & (intervals < 0.4)), intervals  # start to start


def test_the_loop_does_not_start_when_already_stopped(tmp_path):
    stop = threading.Event()
    stop.set()
    _eq(maintain_loop(config_from_dict({"project": "p"}, tmp_path), 60, stop, once=lambda *a: pytest.fail("ran")), 0)


def test_maintain_main_prints_the_summary_and_returns_the_status(project, monkeypatch, capsys):
    _stub_monitor(monkeypatch, ("mon-1", {"data_drift/1": "report"}, ()))
    _stub_pipeline(monkeypatch, [], tags={"gate": "failed", "gate_summary": "failed", "model_version": "2", "model_aliases": "challenger"})
    _eq(maintain_main(project, ["alerts.consecutive=1"]), 0)
    out = capsys.readouterr().out.splitlines()
    _eq(len(out), 1)
    assert out[0].startswith("maintain: kept champion v1: v2 is not promoted: the gate failed (failed); v1 stays champion [run "), out
    _stub_pipeline(monkeypatch, [], status="FAILED", error="boom")
    _eq(maintain_main(project, []), 1)
    assert capsys.readouterr().out.startswith("maintain: failed, champion v1 unchanged: pipeline run pipe-1 failed (boom)")
    _stub_monitor(monkeypatch, error=RuntimeError("the log is unreadable"))  # the champion is kept, and the status says nobody watched it
    _eq(maintain_main(project, []), 1)
    assert capsys.readouterr().out.startswith("maintain: nothing to do, champion v1: monitoring failed (RuntimeError: the log is unreadable)")


def test_maintain_main_loops_until_sigterm(project, monkeypatch, capsys):
    import os
    import signal
    def once(cfg, progress=None): return MaintainOutcome("nothing", f"every {cfg.maintain.every}", run_id="r", champion_after=1)
    monkeypatch.setattr(maintain, "maintain_once", once)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    began = time.monotonic()
    _eq(maintain_main(project, ["maintain.every=2h"], every="0.2s"), 0)
    assert time.monotonic() - began < 0.9
    lines = capsys.readouterr().out.splitlines()
    _eq(set(lines), {"maintain: nothing to do, champion v1: every 2h [run r, 0.0s]"})
    _eq(len(lines), 3)  # rounds at 0, 0.2 and 0.4 s; SIGTERM at 0.5 s
    _eq(signal.getsignal(signal.SIGTERM), signal.SIG_DFL)  # the handler is put back


def test_maintain_main_rejects_a_bad_setting(project):
    _fail(lambda: maintain_main(project, ["maintain.max_age=soon"]), contains="maintain.max_age")
    _fail(lambda: maintain_main(project, [], every="often"), contains="bad duration 'often'")


def test_a_database_project_needs_a_fresh_data_file_to_retrain(tmp_path):
    from mlops_nb.maintain import fresh_data
    cfg = config_from_dict({"data": {"source": "sql", "url": "sqlite:///sales.db", "table": "sales", "target": "y"}}, tmp_path)
    _fail(lambda: fresh_data(cfg, tmp_path / "round"), contains="data.source is sql: set maintain.data to a file of fresh rows for retraining")
    _eq((tmp_path / "round").exists(), False)
