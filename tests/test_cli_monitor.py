"""`mlops-nb monitor` end to end: a real CLI run on a served project's prediction log records an MLflow run holding the
executed report, its plots and the alert state; the alert state carries over to the next run; the webhook receives
the notification; the Prometheus gauges parse; `--json` is for machines; mistakes are one line with status 2."""
from __future__ import annotations

import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from conftest import call_cli, run_cli, show
from fastcore.test import test_eq as _eq
from prometheus_client.parser import text_string_to_metric_families
from serving import add_version, project_client, served_project

from mlops_nb.config import load_config
from mlops_nb.monitor import log_path
from mlops_nb.served import ServedModel
from mlops_nb.telemetry import LogEntry, PredictionLog


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list] = []

    def do_POST(self):
        self.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args): pass


@pytest.fixture(scope="module")
def receiver():
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Receiver.bodies
    server.shutdown()


def _log_traffic(project: Path, drift: bool) -> int:
    "Log every data row once as scored by @champion in the last minutes, sizes (radius, perimeter, area) doubled when `drift`; label half."
    cfg = load_config(project)
    client = project_client(project)
    version = int(client.get_model_version_by_alias(cfg.model_name, "champion").version)
    model = ServedModel.load(client, cfg.model_name, version)
    frame = pd.read_csv(project / cfg.data.path)
    features = frame[model.features].copy()
    if drift:
        for c in [c for c in features if any(w in c for w in ("radius", "perimeter", "area"))]: features[c] = features[c] * 2
    labels, proba = model.predict(features.to_dict("records"))
    log = PredictionLog(log_path(cfg), flush_seconds=0.05)
    now, tag = time.time(), f"{time.time_ns()}-"
    log.put([LogEntry(f"{tag}{i}", 0, now - 120 + i * 0.1, cfg.model_name, version, "primary", "champion", row, lab,
                      dict(zip(model.classes, p)), 2.0, "ok") for i, (row, lab, p) in enumerate(zip(features.to_dict("records"), labels, proba))])
    log.flush()
    for i, y in enumerate(frame[model.contract.target].iloc[::2]): log.add_feedback(f"{tag}{2 * i}", y)
    log.close()
    return version


@pytest.mark.slow
def test_monitor_run_end_to_end(tmp_path, receiver):
    url, bodies = receiver
    project = served_project(tmp_path)
    add_version(project)
    version = _log_traffic(project, drift=True)
    settings = ["--set", "alerts.consecutive=2", "--set", "alerts.min_rows=100"]
    env = {"MLOPS_NB_ALERT_WEBHOOK": url}

    code, out, err = run_cli("monitor", "--last", "1h", "--project", project, *settings, env=env)
    assert code == 0, show(code, out, err)
    lines = out.splitlines()
    assert lines[0].startswith("Monitored the prediction log from "), show(code, out, err)
    assert f"  v{version}: 569 rows judged (285 labelled): drift" in lines, show(code, out, err)
    assert any(line.startswith("    drifted     ") and "mean radius" in line for line in lines), out
    _eq("  firing      none" in lines, True)  # hysteresis: one drifted window is not enough
    assert "read 569 rows: v1 569" in err, err

    client = project_client(project)
    exp = client.get_experiment_by_name(load_config(project).project)
    runs = client.search_runs([exp.experiment_id], "tags.`mlops_nb.kind` = 'monitor'")
    _eq(len(runs), 1)
    run = runs[0]
    _eq((run.info.status, run.data.tags["mlops_nb.monitor"], run.data.tags["drift"]), ("FINISHED", "true", f"v{version}"))
    _eq(run.data.metrics["rows"], 569.0)
    _eq(run.data.metrics[f"v{version}.rows"], 569.0)
    assert run.data.metrics["drift.mean radius"] >= 0, run.data.metrics
    artifacts = {a.path for folder in ("notebook", "plots", "alerts", "monitor") for a in client.list_artifacts(run.info.run_id, folder)}
    for name in ("notebook/monitor.ipynb", "notebook/monitor.html", "alerts/state.json", "monitor/result.json",
                 f"plots/v{version}-predictions.png", "plots/drift-history.png", f"plots/v{version}-feature-mean_radius.png"):
        assert name in artifacts, sorted(artifacts)
    with tempfile.TemporaryDirectory() as folder:
        state = json.loads(Path(client.download_artifacts(run.info.run_id, "alerts/state.json", folder)).read_text())
    _eq(state["alerts"][f"data_drift/{version}"]["streak"], 1)

    gauges = (project / "monitoring" / "metrics.prom").read_text()
    families = {f.name: f for f in text_string_to_metric_families(gauges)}
    share = [s for s in families["mlops_nb_drift_share"].samples if s.labels == {"version": str(version)}]
    _eq(len(share), 1)
    _eq(share[0].value, run.data.metrics["drift_share"])
    _eq(bodies, [])

    # the second drifted window in a row fires the alert: the state came from the first run
    _log_traffic(project, drift=True)
    code, out, err = run_cli("monitor", "--last", "1h", "--project", project, "--json", *settings, env=env)
    assert code == 0, show(code, out, err)
    data = json.loads(out)
    _eq([r["version"] for r in data["result"]["versions"]], [version])
    _eq(data["result"]["versions"][0]["rows"], 2 * 569)
    _eq([(n["kind"], n["alert"], n["version"]) for n in data["notifications"] if n["alert"] == "data_drift"], [("firing", "data_drift", version)])
    _eq(f"data_drift/{version}" in data["firing"], True)
    _eq(len(bodies), 1)
    _eq([n["alert"] for n in bodies[0]["notifications"]], [n["alert"] for n in data["notifications"]])
    families = {f.name: f for f in text_string_to_metric_families((project / "monitoring" / "metrics.prom").read_text())}
    firing = [s.labels for s in families["mlops_nb_alert_firing"].samples if s.value == 1]
    _eq({"alert": "data_drift", "version": str(version)} in [{k: v for k, v in f.items() if k != "severity"} for f in firing], True)
    _eq(len(client.search_runs([exp.experiment_id], "tags.`mlops_nb.kind` = 'monitor'")), 2)


@pytest.mark.slow
def test_monitor_file_and_fail_closed(tmp_path):
    project = served_project(tmp_path)
    # no model yet: a file cannot be scored, one line, status 2
    data = tmp_path / "batch.csv"
    pd.read_csv(project / load_config(project).data.path).to_csv(data, index=False)
    code, out, err = run_cli("monitor", "--input", data, "--project", project, "--no-report", "-q")
    _eq((code, out), (2, ""))
    _eq((err.startswith("error: "), err.count("\n")), (True, 1))
    add_version(project)
    code, out, err = run_cli("monitor", "--input", data, "--project", project, "--no-report", "-q")
    assert code == 0, show(code, out, err)
    assert "  v1: 569 rows judged (569 labelled): no drift" in out.splitlines(), out
    _eq(err, "")
    # an empty window is said, not an error
    code, out, err = run_cli("monitor", "--rows", "10", "--project", project, "--no-report", "-q")
    assert code == 0, show(code, out, err)
    assert "  problem     no rows in the newest 10 rows of the prediction log: nothing to judge" in out.splitlines(), out


@pytest.mark.slow
def test_monitor_usage_errors(tmp_path):
    project = served_project(tmp_path)
    bad = tmp_path / "broken.parquet"
    bad.write_text("this is not parquet")
    for argv, message in ((["--rows", "5", "--since", "2020-01-01"], "error: give only one of --last, --since, --rows and --input (got --since and --rows)"),
                          (["--input", str(bad)], "error: could not read broken.parquet"),
                          (["--last", "1 hour"], "error: --last: bad duration '1 hour'")):
        code, out, err = call_cli("monitor", *argv, "--project", project)
        _eq((code, out, err.count("\n")), (2, "", 1))
        assert err.startswith(message), err


def test_maintain_command_is_wired(tmp_path):
    project = served_project(tmp_path)
    code, out, err = call_cli("maintain", "--every", "soon", "--project", project)
    _eq((code, out), (2, ""))
    _eq(err.splitlines()[-1], "error: bad duration 'soon': write a positive number and a unit, e.g. 90s, 15m, 6h, 30d or 2w")
    code, out, err = call_cli("maintain", "--help")
    _eq((code, "--every [DURATION]" in out), (0, True))
