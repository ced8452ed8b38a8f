"""A real Prometheus (Debian's `prometheus` binary) scrapes the exporter over HTTP, loads the shipped alert rules, and
answers queries with the exact values the server's worker processes counted."""
from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import yaml
from fastcore.test import test_eq as _eq
from serving import add_version, free_port, running_server, served_project, stop

from mlops_nb.telemetry import read_log

PROMETHEUS = "/usr/bin/prometheus"
ALERTS = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"
DEADLINE = 60.0  # seconds any one wait may take


@contextlib.contextmanager
def killed_on_exit(process: subprocess.Popen):
    "Stop `process` and its children, whatever happens."
    try: yield process
    finally: stop(process, timeout=10)


def wait_for(what: str, check, log: Path | None = None, timeout: float = DEADLINE):
    "Poll `check()` until it returns something other than None; fail with `what` after `timeout` seconds."
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            found = check()
            if found is not None: return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s" + (f":\n{log.read_text(errors='replace')[-3000:]}" if log else ""))
        time.sleep(0.2)


@contextlib.contextmanager
def prometheus(folder: Path, target: str, rules: Path | None = None):
    "A Prometheus on a free 127.0.0.1 port scraping `target` (host:port) every second; yields its URL."
    folder.mkdir(parents=True, exist_ok=True)
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "mlops-nb", "scrape_timeout": "1s", "static_configs": [{"targets": [target]}]}]}
    if rules is not None: config["rule_files"] = [str(rules)]
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port, log = free_port(), folder / "prometheus.log"
    with open(log, "w") as out:
        process = subprocess.Popen([PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
                                    f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    with killed_on_exit(process):
        wait_for("Prometheus was not ready", lambda: True if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200 else None, log)
        yield url, log


def query(url: str, promql: str) -> list:
    "The result of an instant query through Prometheus' HTTP API."
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def value_of(url: str, promql: str, log: Path, until=lambda v: True) -> str:
    "Wait until `promql` has exactly one sample (for which `until` holds) and return its value as Prometheus sent it."
    def check():
        result = query(url, promql)
        return result[0]["value"][1] if len(result) == 1 and until(result[0]["value"][1]) else None
    return wait_for(f"Prometheus had no value for {promql}", check, log)


EXPORTER = textwrap.dedent("""
    import subprocess, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from mlops_nb.telemetry import Metrics, prepare_multiprocess, render_metrics
    prepare_multiprocess(sys.argv[1])
    m = Metrics()
    for _ in range(3): m.observe_request("/predict", 200, 3, 0.004)
    m.log_queue_depth.set(5)
    m.set_model(3, "champion", True)
    other = "from mlops_nb.telemetry import Metrics\\nm = Metrics()\\nfor _ in range(4): m.observe_request('/predict', 200, 3, 0.004)"
    subprocess.run([sys.executable, "-c", other], check=True)  # a second worker process, same folder
    scrapes = []
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            scrapes.append(1)
            if len(scrapes) == 3: m.log_dropped.inc(12)  # rows dropped after Prometheus has seen the counter at 0
            body, content_type = render_metrics()
            self.send_response(200); self.send_header("Content-Type", content_type); self.end_headers(); self.wfile.write(body)
        def log_message(self, *args): pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
""")


def test_prometheus_scrapes_the_exporter_and_fires_the_shipped_alert(tmp_path):
    "Two worker processes' counts reach Prometheus summed; the shipped rules load and the log-drop alert fires."
    exporter = subprocess.Popen([sys.executable, "-c", EXPORTER, str(tmp_path / "metrics")], stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
    with killed_on_exit(exporter):
        port = int(exporter.stdout.readline())
        with prometheus(tmp_path / "prometheus", f"127.0.0.1:{port}", rules=ALERTS) as (url, log):
            _eq(value_of(url, 'up{job="mlops-nb"}', log), "1")
            _eq(value_of(url, 'mlops_nb_requests_total{route="/predict",status="200",version="3"}', log), "7")
            _eq(value_of(url, 'sum(mlops_nb_request_seconds_bucket{le="0.005"})', log), "7")
            _eq(value_of(url, "mlops_nb_prediction_log_queue_depth", log), "5")
            _eq(value_of(url, 'mlops_nb_model_info{alias="champion",version="3"}', log), "1")
            _eq(value_of(url, 'ALERTS{alertname="MlopsNbPredictionLogDropping",alertstate="firing"}', log), "1")
            _eq(value_of(url, "mlops_nb_prediction_log_dropped_total", log), "12")
            _eq(query(url, 'ALERTS{alertname="MlopsNbNoModelLoaded"}'), [])


@pytest.mark.slow
def test_prometheus_scrapes_a_running_server(tmp_path):
    "`mlops-nb serve` with two workers: Prometheus reads back exactly the /predict requests sent."
    project = served_project(tmp_path)
    version = add_version(project)
    row = served_rows(project)[0]
    with running_server(project, "--workers", "2") as server:
        for _ in range(10):
            _eq(httpx.post(f"{server.url}/predict", json=row, timeout=30).status_code, 200)
        target = server.url.removeprefix("http://")
        with prometheus(tmp_path / "prometheus", target) as (url, log):
            total = f'sum(mlops_nb_requests_total{{route="/predict",status="200",version="{version}"}})'
            _eq(value_of(url, total, log), "10")
            _eq(value_of(url, f'sum(mlops_nb_predictions_total{{version="{version}"}})', log), "10")
            _eq(value_of(url, f'max(mlops_nb_model_info{{alias="champion",version="{version}"}})', log), "1")
            _eq(value_of(url, "sum(mlops_nb_prediction_log_written_total)", log, until=lambda v: v == "10"), "10")
    _eq(len(read_log(project / "predictions" / "predictions.db", version=version)), 10)


def served_rows(project: Path) -> list[dict]:
    "Feature rows of the project's data (the target left out)."
    import pandas as pd

    from mlops_nb.config import load_config
    from mlops_nb.contract import Contract
    cfg = load_config(project)
    contract = Contract.from_yaml(project / cfg.contract)
    frame = pd.read_csv(project / cfg.data.path)
    return frame[[c.name for c in contract.features]].head(5).to_dict("records")


# ---------------------------------------------------------------- the monitoring gauges through /metrics

def monitoring_result(version: int = 1) -> dict:
    "A monitoring result with drift (3 of 4 features) and a dropped estimated performance for `version`."
    columns = [{"column": f"f{i}", "kind": "numeric", "test": "wasserstein", "statistic": 0.5 - i / 10, "threshold": 0.1,
                "drifted": i < 3} for i in range(4)]
    return {"created": "2026-03-01T12:00:00+00:00", "versions": [{
        "version": version, "rows": 800, "columns": columns, "drifted": ["f0", "f1", "f2"], "drift_share": 0.75,
        "multivariate": {"statistic": 0.3, "threshold": 0.1, "drifted": True}, "prediction": None,
        "performance": {"metric": "roc_auc", "reference": 0.96, "estimated": {"value": 0.81}, "realized": {"value": None}, "dropped": True},
        "verdict": "drift", "reason": ""}]}


def test_metrics_append_the_monitoring_gauges_file_when_it_is_usable(tmp_path):
    "/metrics = the server's metrics + the gauges file; a missing, unreadable, garbled or clashing file is left out."
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from mlops_nb.alerts import gauges_text
    from mlops_nb.serve import create_app
    project = served_project(tmp_path)
    gauges = project / "monitoring" / "metrics.prom"
    with TestClient(create_app(project)) as client:
        def scrape() -> str:
            answer = client.get("/metrics")
            _eq(answer.status_code, 200)
            families = {f.name for f in text_string_to_metric_families(answer.text)}  # the whole body parses
            assert "mlops_nb_requests" in families, sorted(families)
            return answer.text
        own = scrape()
        assert "mlops_nb_drift_share" not in own, "no monitoring run yet"
        gauges.parent.mkdir()
        text = gauges_text(monitoring_result(), {"data_drift/1": "page"})
        gauges.write_text(text)
        body = scrape()
        assert body.endswith(text), body[-500:]
        p = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60, check=False)
        _eq(p.returncode, 0)
        gauges.write_text(text.rstrip("\n"))  # no final newline: one is added so the next scrape is not broken
        _eq(scrape().endswith(text), True)
        for bad in ("this is not prometheus text\n", 'mlops_nb_requests_total{route="/predict"} 5\n', "\xff\xfe garbage"):
            gauges.write_bytes(bad.encode("latin-1"))
            body = scrape()
            assert bad.strip()[-20:] not in body and "mlops_nb_drift_share" not in body, body[-300:]
        gauges.unlink()
        gauges.mkdir()  # unreadable: a folder where the file should be
        _eq("mlops_nb_drift_share" in scrape(), False)


def test_alert_rules_query_only_the_exporter_and_the_monitoring_gauges():
    "Every metric a shipped rule queries is exported by the server or written by the monitoring run (`gauges_text`)."
    from test_telemetry import promql_metric_names

    from mlops_nb.alerts import GAUGES
    from mlops_nb.telemetry import Metrics
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    known = Metrics().names() | set(GAUGES) | {"up"}
    monitoring = set()
    for rule in rules:
        used = promql_metric_names(rule["expr"])
        assert used and used <= known, f"{rule['alert']} uses {sorted(used - known)}"
        monitoring |= used & set(GAUGES)
    _eq(monitoring, {"mlops_nb_alert_firing", "mlops_nb_drift_share", "mlops_nb_performance_dropped", "mlops_nb_multivariate_drift",
                     "mlops_nb_monitor_last_run_timestamp_seconds"})


@pytest.mark.slow
def test_prometheus_fires_the_monitoring_alerts_from_a_served_gauges_file(tmp_path):
    "`mlops-nb serve` carries a monitoring run's gauges; a real Prometheus scrapes them and the shipped rules fire."
    from mlops_nb.alerts import gauges_text
    project = served_project(tmp_path)
    (project / "monitoring").mkdir()
    (project / "monitoring" / "metrics.prom").write_text(gauges_text(monitoring_result(), {"data_drift/1": "page"}))
    with running_server(project, wait_ready=False) as server:
        wait_for("the server did not answer", lambda: True if httpx.get(f"{server.url}/health", timeout=2).status_code == 200 else None)
        with prometheus(tmp_path / "prometheus", server.url.removeprefix("http://"), rules=ALERTS) as (url, log):
            _eq(value_of(url, 'mlops_nb_drift_share{version="1"}', log), "0.75")
            _eq(value_of(url, 'mlops_nb_performance{version="1",metric="roc_auc",kind="estimated"}', log), "0.81")
            _eq(value_of(url, 'ALERTS{alertname="MlopsNbPerformanceDrop",alertstate="firing",version="1",metric="roc_auc",severity="page"}', log), "1")
            _eq(value_of(url, 'ALERTS{alertname="MlopsNbMonitorAlertFiring",alertstate="firing",alert="data_drift",version="1",severity="page"}', log), "1")
            _eq(value_of(url, 'ALERTS{alertname="MlopsNbDataDrift",alertstate="firing",version="1"}', log), "1")
            _eq(value_of(url, 'ALERTS{alertname="MlopsNbMultivariateDrift",alertstate="firing",version="1"}', log), "1")
            _eq(value_of(url, 'ALERTS{alertname="MlopsNbMonitoringStale",alertstate="firing"}', log), "1")  # the run is from March
