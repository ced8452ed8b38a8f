"""The prediction log (several writer processes, bounded queue, busy database, personal data, feedback, readers), the
multiprocess Prometheus exporter, and the shipped alert rules and Grafana dashboard checked against the exporter."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from fastcore.test import test_eq as _eq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_nb import telemetry
from mlops_nb.telemetry import (
    MASK,
    LogEntry,
    Metrics,
    PredictionLog,
    PredictionLogError,
    labelled,
    prepare_multiprocess,
    read_log,
    render_metrics,
    version_stats,
)

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SCRAPE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "mlops-nb.json"
PROMTOOL = "/usr/bin/promtool"


def entry(request_id: str, row: int = 0, *, ts: float | None = None, version: int = 1, role: str = "primary",
          arm: str = "champion", features: dict | None = None, prediction="yes", latency_ms: float = 1.0,
          status: str = "ok", error: str | None = None) -> LogEntry:
    return LogEntry(request_id, row, time.time() if ts is None else ts, "model", version, role, arm,
                    {"x": row} if features is None else features, prediction, {"no": 0.25, "yes": 0.75}, latency_ms,
                    status, error)


def count(path: Path, sql: str = "SELECT COUNT(*) FROM predictions", params=()) -> int:
    with contextlib.closing(sqlite3.connect(path)) as con:
        return con.execute(sql, params).fetchone()[0]


@contextlib.contextmanager
def write_lock(path: Path):
    "Hold SQLite's write lock on `path` (as another process's long transaction would)."
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    try: yield
    finally:
        con.execute("ROLLBACK")
        con.close()


# ---------------------------------------------------------------- the prediction log

WRITER = textwrap.dedent("""
    import sys, time
    from mlops_nb.telemetry import LogEntry, PredictionLog
    path, worker, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = PredictionLog(path, flush_seconds=0.01, batch_rows=50)
    print("ready", flush=True)
    sys.stdin.readline()
    dropped = 0
    for i in range(n):
        dropped += log.put([LogEntry(f"{worker}-{i // 2}", i % 2, time.time(), "m", 1, "primary", "champion",
                                     {"i": i}, i % 3, {"0": 0.5}, 1.0, "ok", None)])
    log.close(timeout=120)
    print(dropped, log.written, log.dropped, flush=True)
""")


def test_four_processes_append_concurrently_and_lose_nothing(tmp_path):
    "4 worker processes x 3,000 rows, small transactions so that they contend for the lock: every row is written once."
    path, n = tmp_path / "log" / "predictions.db", 3000
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{w}", str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(4)]
    try:
        for p in procs: _eq(p.stdout.readline().strip(), "ready")
        for p in procs: p.stdin.write("go\n"); p.stdin.flush()
        seen = []
        while any(p.poll() is None for p in procs):  # a reader polls while the writers write: it is never blocked
            seen.append(len(read_log(path, rows=10)))
            time.sleep(0.05)
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None: p.kill()
    for p, (out, err) in zip(procs, results):
        _eq(p.returncode, 0)
        _eq(out.split(), ["0", str(n), "0"])
        assert "locked" not in err, err
    _eq(count(path), 4 * n)
    _eq(count(path, "SELECT COUNT(*) FROM (SELECT DISTINCT request_id, row FROM predictions)"), 4 * n)
    _eq(count(path, "SELECT COUNT(DISTINCT request_id) FROM predictions WHERE request_id LIKE 'w2-%'"), n // 2)
    _eq(len(seen) > 0, True)


def test_busy_database_delays_rows_but_loses_none(tmp_path, monkeypatch):
    "Another connection holds the write lock longer than the busy timeout: the writer retries and writes every row."
    monkeypatch.setattr(telemetry, "BUSY_SECONDS", 0.1)
    path = tmp_path / "p.db"
    log = PredictionLog(path, flush_seconds=0.02)
    with write_lock(path):
        _eq(log.put([entry(f"r{i}") for i in range(50)]), 0)
        time.sleep(0.6)  # several busy timeouts expire meanwhile
        _eq((log.depth, log.written), (50, 0))
        with pytest.raises(TimeoutError, match="50 rows to write"):
            log.flush(timeout=0.2)
    log.flush(timeout=10)
    _eq((log.depth, log.written, log.dropped), (0, 50, 0))
    _eq(count(path), 50)
    log.close()


def test_full_queue_drops_and_counts_without_blocking(tmp_path):
    "While the writer is stuck, `put` keeps returning at once: rows beyond queue_size are dropped and counted."
    path = tmp_path / "p.db"
    metrics = Metrics()
    log = PredictionLog(path, queue_size=100, flush_seconds=0.01, metrics=metrics)
    with write_lock(path):
        time.sleep(0.05)
        started = time.perf_counter()
        dropped = [log.put([entry(f"r{i}-{j}", j) for j in range(30)]) for i in range(5)]
        elapsed = time.perf_counter() - started
        _eq(dropped, [0, 0, 0, 20, 30])
        _eq((log.depth, log.dropped), (100, 50))
    assert elapsed < 0.5, f"put blocked for {elapsed:.3f} s"
    log.close()
    _eq((log.written, count(path)), (100, 100))
    text = render_metrics(metrics)[0].decode()
    assert "mlops_nb_prediction_log_dropped_total 50.0" in text
    assert "mlops_nb_prediction_log_written_total 100.0" in text
    assert "mlops_nb_prediction_log_queue_depth 0.0" in text


def test_close_writes_everything_pending_and_refuses_later_rows(tmp_path):
    path = tmp_path / "p.db"
    log = PredictionLog(path, flush_seconds=3600)
    _eq(log.put([entry(f"r{i}") for i in range(1234)]), 0)
    _eq(count(path), 0)
    log.close()
    _eq(count(path), 1234)
    _eq(log.put([entry("late")]), 1)
    _eq((log.dropped, log.written), (1, 1234))
    log.close()  # idempotent


def test_rows_that_cannot_be_encoded_are_counted_not_fatal(tmp_path):
    log = PredictionLog(tmp_path / "p.db")
    log.put([entry("good"), "not an entry", entry("good2")])
    log.flush()
    _eq((log.written, log.dropped), (2, 1))
    _eq(list(read_log(tmp_path / "p.db").request_id), ["good", "good2"])
    log.close()


def test_personal_data_never_reaches_the_disk(tmp_path):
    path = tmp_path / "p.db"
    log = PredictionLog(path, pii_columns=("email", "phone"))
    secret, phone = "ann.secret@example.org", "+44 20 7946 0958"
    log.put([entry("r", features={"email": secret, "phone": phone, "age": 41}),
             entry("r", 1, features={"email": None, "phone": phone, "age": 42})])
    log.flush()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("p.db")]
    _eq(sorted(p.name for p in files), ["p.db", "p.db-shm", "p.db-wal"])
    for p in files:  # the WAL holds the rows before a checkpoint moves them into the database file
        assert secret.encode() not in p.read_bytes() and phone.encode() not in p.read_bytes()
    _eq(list(read_log(path).features), [{"email": MASK, "phone": MASK, "age": 41}, {"email": None, "phone": MASK, "age": 42}])
    log.close()


def test_a_missing_log_or_unwritable_location_is_clear(tmp_path):
    _eq(len(read_log(tmp_path / "none.db")), 0)
    _eq(len(labelled(tmp_path / "none.db")), 0)
    _eq(version_stats(tmp_path / "none.db", 0, [1])[1]["requests"], 0)
    assert not (tmp_path / "none.db").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(PredictionLogError, match="cannot open the prediction log"):
        PredictionLog(tmp_path / "file" / "p.db")
    with pytest.raises(ValueError, match="queue_size"):
        PredictionLog(tmp_path / "p.db", queue_size=0)


# ---------------------------------------------------------------- feedback and readers

def test_feedback_unknown_replaced_and_pending(tmp_path):
    path = tmp_path / "p.db"
    log = PredictionLog(path, flush_seconds=3600)
    log.put([entry("a", 0), entry("a", 1), entry("a", 1, role="shadow", version=2)])
    _eq(log.add_feedback("a", 1, row=1), True)  # still queued in this process: flushed first, then labelled
    _eq(log.depth, 0)
    _eq(log.add_feedback("a", "no", row=1), True)  # the later label replaces the earlier one
    _eq(log.add_feedback("a", np.int64(7)), True)
    _eq(log.add_feedback("b", "no"), False)
    _eq(log.add_feedback("a", "no", row=2), False)
    with pytest.raises(TypeError, match="one value"):
        log.add_feedback("a", {"label": 1})
    _eq(count(path, "SELECT COUNT(*) FROM feedback"), 2)
    joined = labelled(path)
    _eq(list(zip(joined.row, joined.role, joined.label)), [(0, "primary", 7), (1, "primary", "no"), (1, "shadow", "no")])
    _eq(list(labelled(path, since=time.time() + 1).row), [])
    log.close()


def test_read_log_windows(tmp_path):
    path = tmp_path / "p.db"
    log = PredictionLog(path)
    log.put([entry(f"r{i}", ts=1000.0 + i, version=1 + i % 2, role="shadow" if i == 5 else "primary") for i in range(10)])
    log.close()
    _eq(list(read_log(path).request_id), [f"r{i}" for i in range(10)])
    _eq(list(read_log(path, since=1003, until=1006).request_id), ["r3", "r4", "r5"])
    _eq(list(read_log(path, version=2).request_id), ["r1", "r3", "r5", "r7", "r9"])
    _eq(list(read_log(path, version=2, role="primary", rows=2).request_id), ["r7", "r9"])
    _eq(list(read_log(path, role="shadow").request_id), ["r5"])
    frame = read_log(path, rows=1)
    _eq(frame.iloc[0].to_dict(), {"request_id": "r9", "row": 0, "ts": 1009.0, "model": "model", "version": 2, "role": "primary",
                                  "arm": "champion", "features": {"x": 0}, "prediction": "yes",
                                  "probabilities": {"no": 0.25, "yes": 0.75}, "latency_ms": 1.0, "status": "ok", "error": None})



def test_read_log_reads_rows_without_probabilities(tmp_path):
    "Rejected and failed rows have no probabilities (NULL in SQLite): they read back as None beside answered rows."
    path = tmp_path / "p.db"
    log = PredictionLog(path)
    rejected = entry("r1", ts=2.0, status="rejected", error="x: not a number", prediction=None)
    failed = entry("r2", ts=3.0, status="error", error="ValueError", prediction=None)
    log.put([entry("r0", ts=1.0), dataclasses.replace(rejected, probabilities=None), dataclasses.replace(failed, probabilities=None)])
    log.close()
    frame = read_log(path)
    _eq(list(frame.status), ["ok", "rejected", "error"])
    _eq(list(frame.probabilities), [{"no": 0.25, "yes": 0.75}, None, None])


requests_strategy = st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3), st.floats(0.1, 500, allow_nan=False),
                                       st.sampled_from(["ok", "ok", "error", "rejected"]), st.booleans()), max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=requests_strategy)
def test_version_stats_match_a_direct_computation(tmp_path_factory, requests):
    "Per request: an error if any row failed, its latency; rejected rows and old or shadow rows left out."
    path = tmp_path_factory.mktemp("stats") / "p.db"
    log = PredictionLog(path)
    expected = {v: ([], 0) for v in (1, 2, 3, 4)}
    for i, (version, n_rows, latency, status, old) in enumerate(requests):
        rows = [entry(f"q{i}", r, ts=50.0 if old else 150.0, version=version, latency_ms=latency,
                      status=status if r == 0 else "ok") for r in range(n_rows)]
        log.put(rows + [entry(f"q{i}", 0, ts=150.0, version=version, role="shadow", status="error")])
        if not old and not (status == "rejected" and n_rows == 1):
            latencies, errors = expected[version]
            expected[version] = (latencies + [latency], errors + (status == "error"))
    log.close()
    stats = version_stats(path, 100.0, [1, 2, 3, 4])
    for v, (latencies, errors) in expected.items():
        n = len(latencies)
        want = {"requests": n, "errors": errors, "error_rate": errors / n if n else 0.0,
                "p50_ms": float(np.percentile(latencies, 50)) if n else None,
                "p95_ms": float(np.percentile(latencies, 95)) if n else None}
        _eq(stats[v], want)


# ---------------------------------------------------------------- metrics

EXPORTED = {"mlops_nb_requests_total", "mlops_nb_request_seconds_bucket", "mlops_nb_request_seconds_count",
            "mlops_nb_request_seconds_sum", "mlops_nb_validation_failures_total", "mlops_nb_predictions_total",
            "mlops_nb_prediction_probability_bucket", "mlops_nb_prediction_probability_count",
            "mlops_nb_prediction_probability_sum", "mlops_nb_rollout_share", "mlops_nb_prediction_log_queue_depth",
            "mlops_nb_prediction_log_dropped_total", "mlops_nb_prediction_log_written_total", "mlops_nb_shadow_dropped_total",
            "mlops_nb_model_errors_total", "mlops_nb_canary_removed_total", "mlops_nb_model_info"}


def test_the_exporter_declares_exactly_the_product_metric_names():
    _eq(Metrics().names(), EXPORTED)


METRICS_WORKER = textwrap.dedent("""
    import sys
    from mlops_nb.telemetry import Metrics
    requests, depth, share, loaded = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
    m = Metrics()
    for _ in range(requests): m.observe_request("/predict", 200, 3, 0.003)
    m.observe_predictions(3, ["a"] * requests, [0.95] * requests)
    m.log_queue_depth.set(depth)
    m.rollout_share.labels("4", "challenger").set(share)
    m.set_model(3, "champion", loaded)
    print("ready", flush=True)
    sys.stdin.readline()
""")


def sample(text: str, name: str, labels: str = "") -> float | None:
    "The value of one sample in an exposition, None when absent."
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


@pytest.fixture
def multiprocess_mode_undone(monkeypatch):
    "Whatever `prepare_multiprocess` changes in this process (the variable, the value class) is undone after the test."
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "unset")  # records the original, so that deleting it is undone too
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    monkeypatch.setattr(telemetry.values, "ValueClass", telemetry.values.ValueClass)


def test_two_worker_processes_are_summed_in_one_exposition(tmp_path, multiprocess_mode_undone):
    folder = tmp_path / "metrics"
    prepare_multiprocess(folder)  # sets the variable for the workers started below
    procs = []
    try:
        for args in (("3", "10", "0.1", "1"), ("4", "5", "0.25", "0")):
            procs.append(subprocess.Popen([sys.executable, "-c", METRICS_WORKER, *args], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True, env=dict(os.environ)))
            _eq(procs[-1].stdout.readline().strip(), "ready")
        text = render_metrics()[0].decode()
        _eq(sample(text, "mlops_nb_requests_total", '{route="/predict",status="200",version="3"}'), 7.0)
        _eq(sample(text, "mlops_nb_request_seconds_bucket", '{le="0.005",route="/predict",status="200",version="3"}'), 7.0)
        _eq(sample(text, "mlops_nb_request_seconds_bucket", '{le="0.002",route="/predict",status="200",version="3"}'), 0.0)
        _eq(sample(text, "mlops_nb_predictions_total", '{label="a",version="3"}'), 7.0)
        _eq(sample(text, "mlops_nb_prediction_probability_count", '{version="3"}'), 7.0)
        _eq(sample(text, "mlops_nb_prediction_log_queue_depth"), 15.0)  # sum over live workers
        _eq(sample(text, "mlops_nb_rollout_share", '{arm="challenger",version="4"}'), 0.25)  # the most recent
        _eq(sample(text, "mlops_nb_model_info", '{alias="champion",version="3"}'), 1.0)  # max: one worker has it
        procs[0].kill(); procs[0].wait()
        text = render_metrics()[0].decode()
        _eq(sample(text, "mlops_nb_prediction_log_queue_depth"), 5.0)  # the dead worker's gauge is gone
        _eq(sample(text, "mlops_nb_model_info", '{alias="champion",version="3"}'), 0.0)
        _eq(sample(text, "mlops_nb_requests_total", '{route="/predict",status="200",version="3"}'), 7.0)  # its counts stay
    finally:
        for p in procs:
            if p.poll() is None: p.kill(); p.wait()


def test_prepare_multiprocess_removes_only_metric_files(tmp_path, multiprocess_mode_undone):
    names = ["counter_12.db", "histogram_12.db", "gauge_livesum_12.db", "gauge_mostrecent_7.db", "mlflow.db", "notes.txt", "counter.db"]
    for n in names: (tmp_path / n).write_text("x")
    prepare_multiprocess(tmp_path)
    _eq(sorted(p.name for p in tmp_path.iterdir()), ["counter.db", "mlflow.db", "notes.txt"])
    _eq(os.environ["PROMETHEUS_MULTIPROC_DIR"], str(tmp_path.resolve()))


# ---------------------------------------------------------------- alert rules and dashboard

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
            "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set:
    "The metric names a PromQL expression selects (functions, keywords, labels, durations and strings left out)."
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", e):
        if not m.group(2) and m.group(1).lower() not in KEYWORDS: names.add(m.group(1))
    return names


def test_promql_name_extraction():
    _eq(promql_metric_names('sum by (le, version) (rate(a_bucket{route="/x",b=~"5.."}[5m])) / on(v) group_left(w) b offset 1h'),
        {"a_bucket", "b"})
    _eq(promql_metric_names('(max(c{alias="champion"}) or vector(0)) < 1e3 and d'), {"c", "d"})
    _eq(promql_metric_names("histogram_quantile(0.99, sum(rate(e[$__rate_interval])) by (le))"), {"e"})


def rule_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def dashboard_expressions() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]  # row panels have none


def test_promtool_accepts_the_alert_rules_and_the_scrape_config():
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(SCRAPE)]):
        p = subprocess.run([PROMTOOL, *args], check=False, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
    _eq(sorted(name for name, _ in rule_expressions()),
        sorted(["MlopsNbDown", "MlopsNbNoModelLoaded", "MlopsNbHighServerErrorRate", "MlopsNbModelErrorRate", "MlopsNbPredictLatencyHigh",
                "MlopsNbValidationFailureSurge", "MlopsNbPredictionLogDropping", "MlopsNbPredictionLogBacklog",
                "MlopsNbShadowDropping", "MlopsNbCanaryRemoved", "MlopsNbMonitorAlertFiring", "MlopsNbDataDrift",
                "MlopsNbPerformanceDrop", "MlopsNbMultivariateDrift", "MlopsNbMonitoringStale"]))


def test_alert_rules_query_only_exported_metrics():
    from mlops_nb.alerts import GAUGES  # the monitoring run's gauges, which /metrics carries after the server's own
    for name, expr in rule_expressions():
        used = promql_metric_names(expr)
        assert used, name
        assert used <= EXPORTED | set(GAUGES) | {"up"}, f"{name} uses {sorted(used - EXPORTED - set(GAUGES))}"  # `up`: Prometheus' own


ALERT_TESTS = """
rule_files: [{alerts}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'mlops_nb_prediction_log_dropped_total{{instance="a",job="mlops-nb"}}'
        values: '0 0 0 40 40 40 40 40 40 40 40 40'
      - series: 'mlops_nb_canary_removed_total{{instance="a",job="mlops-nb"}}'
        values: '0x20'
      - series: 'mlops_nb_model_info{{alias="champion",version="3",instance="a",job="mlops-nb"}}'
        values: '1 1 1 0 0 0 0 0 0'
      - series: 'up{{instance="a",job="mlops-nb"}}'
        values: '1x20'
    alert_rule_test:
      - eval_time: 4m
        alertname: MlopsNbPredictionLogDropping
        exp_alerts:
          - exp_labels: {{severity: warning}}
            exp_annotations:
              summary: The prediction log drops rows
              description: "40 rows were dropped in 5 minutes: a worker's log queue was full (the disk cannot keep up). Monitoring and A/B reports miss them."
      - eval_time: 10m
        alertname: MlopsNbPredictionLogDropping
        exp_alerts: []
      - eval_time: 10m
        alertname: MlopsNbCanaryRemoved
        exp_alerts: []
      - eval_time: 4m
        alertname: MlopsNbNoModelLoaded
        exp_alerts: []
      - eval_time: 6m
        alertname: MlopsNbNoModelLoaded
        exp_alerts:
          - exp_labels: {{severity: page}}
            exp_annotations:
              summary: No worker has a champion model loaded
              description: "No worker reports a loaded @champion: /ready answers 503 and /predict cannot be served."
      - eval_time: 6m
        alertname: MlopsNbDown
        exp_alerts: []
"""


def test_alert_rules_fire_on_the_series_they_watch(tmp_path):
    "promtool's rule unit tests: a burst of dropped log rows fires and resolves; a champion unloaded for 2 min pages."
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(ALERT_TESTS.format(alerts=json.dumps(str(ALERTS))))
    p = subprocess.run([PROMTOOL, "test", "rules", str(tests)], check=False, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_dashboard_panels_are_valid_promql_on_exported_metrics(tmp_path):
    dash = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in dash["panels"]]
    for wanted in ("Request rate", "/predict latency percentiles", "Error rate by version", "Validation failures by field",
                   "Prediction probability", "Predictions by label", "Rollout shares", "Prediction log queue depth"):
        assert wanted in titles, wanted
    _eq(len({p["id"] for p in dash["panels"]}), len(dash["panels"]))
    from mlops_nb.alerts import GAUGES
    expressions = dashboard_expressions()
    for title, expr in expressions:
        used = promql_metric_names(expr)
        assert used and used <= EXPORTED | set(GAUGES), f"{title}: {expr} uses {sorted(used - EXPORTED - set(GAUGES))}"
    _eq(EXPORTED - set().union(*(promql_metric_names(e) for _, e in expressions)),
        {"mlops_nb_request_seconds_count", "mlops_nb_request_seconds_sum", "mlops_nb_prediction_probability_count",
         "mlops_nb_prediction_probability_sum"})
    # promtool parses each expression (as a recording rule; Grafana's interval variable replaced by a duration)
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"panel:{i}", "expr": expr.replace("$__rate_interval", "1m")}
                                                        for i, (_, expr) in enumerate(expressions)]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    p = subprocess.run([PROMTOOL, "check", "rules", str(path)], check=False, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in p.stdout, p.stdout


def test_tallied_counts_are_exact_while_threads_count_and_a_writer_flushes(tmp_path):
    "Four threads count and observe while the prediction log's writer flushes every 10 ms: nothing is lost or doubled."
    import threading
    m = Metrics()
    log = PredictionLog(tmp_path / "p.db", flush_seconds=0.01, metrics=m)
    labels = ("/predict", "200", "1")
    def work():
        for i in range(5000):
            m.count(m.requests, labels)
            m.observe(m.request_seconds, labels, 0.001 if i % 2 else 0.02)
            m.count(m.shadow_dropped, ())
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    text = render_metrics(m)[0].decode()
    log.close()
    _eq(_sample(text, 'mlops_nb_requests_total{route="/predict",status="200",version="1"}'), 20000.0)
    _eq(_sample(text, 'mlops_nb_request_seconds_bucket{le="0.001",route="/predict",status="200",version="1"}'), 10000.0)
    _eq(_sample(text, 'mlops_nb_request_seconds_bucket{le="0.025",route="/predict",status="200",version="1"}'), 20000.0)
    _eq(round(_sample(text, 'mlops_nb_request_seconds_sum{route="/predict",status="200",version="1"}'), 6), 210.0)
    _eq(_sample(text, "mlops_nb_shadow_dropped_total"), 20000.0)


def _sample(text: str, name: str) -> float:
    return float(next(line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name + " ")))
