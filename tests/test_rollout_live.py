"""Rollout policies against a real `mlops-nb serve` on a free port, over real HTTP.

- canary: the share over 2,000 keyed requests is within a binomial interval, every answer is the router's decision,
  and each key sticks to its arm;
- shadow: a deliberately slow challenger (an extra-trees forest of 1,500 trees, ~150 ms a row, no numpy path) and a
  challenger that crashes on every request leave the primary answers successful, from the champion, and fast;
- a version that cannot even be loaded (a pipeline whose coefficients have the wrong shape) in a shadow policy does
  not stop the champion from being served;
- an unhealthy canary is taken out automatically (a crashing one by its error rate, a slow one by its latency): 0%,
  one audit entry with the figures, every request answered;
- A/B: labels posted to `/feedback` are joined to the answers, and `mlops-nb ab-report` counts each arm's labelled
  requests and accuracy exactly (and says there is not enough data before any label arrives);
- blue-green: `mlops-nb promote` and `mlops-nb rollback` during 20 s of load at concurrency 16 fail no request, every
  answer names a version, both versions answer, and the prediction log holds exactly one row per answered request.

A crash on every request is injected with a `sitecustomize` module that makes `ServedModel.predict` raise for chosen
versions once they are loaded and warm: a scikit-learn pipeline that fails on real rows fails on the rows the server
checks it with at load too, so it never gets as far as a request.
"""
from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import cli_command, cli_env, run_cli, show
from fastcore.test import test_eq as _eq
from mlflow.models import infer_signature
from scipy.stats import binom
from serving import add_version, project_client, running_server, served_project
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.linear_model import LogisticRegression

from mlops_nb.config import load_config
from mlops_nb.contract import Contract
from mlops_nb.data import trusted_types
from mlops_nb.pipeline import experiment_id
from mlops_nb.prepare import build_preprocessor
from mlops_nb.registry import audit_trail, register_version
from mlops_nb.rollout import Router, read_state, set_policy
from mlops_nb.telemetry import read_log
from mlops_nb.train import model_pipeline

FAST = ("--set", "serve.poll_seconds=0.5")
FAULTS = '''
import os
_broken = {int(v) for v in os.environ.get("ROLLOUT_TEST_CRASHING_VERSIONS", "").split(",") if v}
if _broken:
    from mlops_nb import served as _served
    _predict, _warm = _served.ServedModel.predict, _served.ServedModel.warm
    def _warmed(self):
        _warm(self)
        self._serving = True
    def _crashing(self, rows):
        if self.version in _broken and getattr(self, "_serving", False): raise RuntimeError("injected model crash")
        return _predict(self, rows)
    _served.ServedModel.warm, _served.ServedModel.predict = _warmed, _crashing
'''


def _data(project: Path) -> tuple:
    cfg = load_config(project)
    contract = Contract.from_yaml(project / cfg.contract)
    frame = pd.read_csv(project / cfg.data.path)
    features = [c.name for c in contract.features]
    return cfg, contract, frame, frame[features], frame[contract.target]


def _fitted(project: Path, estimator):
    _, contract, frame, X, y = _data(project)
    return model_pipeline(build_preprocessor(contract, frame), estimator).fit(X, y)


def _add_unloadable(project: Path) -> int:
    "Log and register a fitted pipeline whose coefficients have the wrong shape: every prediction raises."
    cfg, _, _, X, _ = _data(project)
    healthy = _fitted(project, LogisticRegression(max_iter=2000))
    broken = _fitted(project, LogisticRegression(max_iter=2000))
    broken.named_steps["model"].coef_ = broken.named_steps["model"].coef_[:, :-3].copy()
    uri = f"sqlite:///{project.resolve() / 'mlflow.db'}"
    client = project_client(project)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment_id(client, cfg), run_name="broken") as run:
            info = mlflow.sklearn.log_model(broken, name="model", serialization_format="skops", skops_trusted_types=trusted_types(broken),
                                            signature=infer_signature(X.head(5), healthy.predict(X.head(5))))
            mlflow.log_artifact(str(project / cfg.contract), "contract")
        return register_version(client, cfg.model_name, info.model_uri, True, compared_with=-1, run_id=run.info.run_id).version
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> dict:
    "A project with v1 @champion (logistic regression), v2 (another logistic regression), v3 (slow forest), v4 (cannot load)."
    project = served_project(tmp_path_factory.mktemp("live"))
    _eq(add_version(project), 1)
    _eq(add_version(project, LogisticRegression(C=0.05, max_iter=2000), promote=False), 2)
    slow = _fitted(project, ExtraTreesClassifier(n_estimators=1500, random_state=0, n_jobs=2)).set_params(model__n_jobs=None)
    _eq(add_version(project, model=slow, promote=False), 3)
    _eq(_add_unloadable(project), 4)
    faults = tmp_path_factory.mktemp("faults")
    (faults / "sitecustomize.py").write_text(FAULTS)
    _, _, _, X, y = _data(project)
    rows = [{k: (None if pd.isna(v) else float(v)) for k, v in r.items()} for r in X.to_dict("records")]
    return {"project": project, "client": project_client(project), "name": load_config(project).model_name, "rows": rows, "labels": y.tolist(),
            "faults": faults, "log": project / load_config(project).serve.prediction_log}


@pytest.fixture
def reset(live):
    "The policy off and @champion v1 before the test; the prediction log emptied."
    client, name = live["client"], live["name"]
    set_policy(client, name, "champion", reason="reset")
    assert read_state(client, name).champion == 1
    for suffix in ("", "-wal", "-shm"):
        Path(f"{live['log']}{suffix}").unlink(missing_ok=True)
    return live


def _crashing(live, *versions) -> dict:
    return {"PYTHONPATH": str(live["faults"]), "ROLLOUT_TEST_CRASHING_VERSIONS": ",".join(map(str, versions))}


def _applied(server, policy_id: str, loaded: list, timeout: float = 60) -> dict:
    "Wait until the server follows policy `policy_id` with `loaded` versions loaded; its /version."
    deadline = time.monotonic() + timeout
    while True:
        info = httpx.get(f"{server.url}/version", timeout=5).json()
        if (info.get("policy") or {}).get("id") == policy_id and all(v in info["versions"] for v in loaded): return info
        assert time.monotonic() < deadline, f"the server did not apply policy {policy_id} within {timeout}s: {info}\n{server.output()[-3000:]}"
        time.sleep(0.2)


def _predict(http: httpx.Client, url: str, row: dict, key: str | None = None) -> httpx.Response:
    headers = {"X-Routing-Key": key} if key is not None else {}
    return http.post(f"{url}/predict", json={"dataframe_records": [row]}, headers=headers, timeout=30)


def _metric(text: str, name: str, **labels) -> float | None:
    "The value of one sample in a Prometheus text exposition."
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()): return float(line.rsplit(" ", 1)[1])
    return None


def _version_of(response: httpx.Response) -> int:
    assert response.status_code == 200, (response.status_code, response.text[:500])
    body = response.json()
    _eq(response.headers["x-model-version"], str(body["version"]))
    _eq(len(body["predictions"]), 1)
    assert body["predictions"][0] is not None, body
    return body["version"]


# --- canary -------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_canary_share_and_stickiness(reset):
    live = reset
    code, out, err = run_cli("rollout", "canary", "20", "--version", "2", "--reason", "live canary test", "--project", live["project"])
    assert code == 0, show(code, out, err)
    state = read_state(live["client"], live["name"])
    _eq((state.policy.mode, state.policy.share, state.policy.challenger), ("canary", 20.0, 2))
    router = Router(state)
    rows = live["rows"]
    with running_server(live["project"], *FAST) as server, httpx.Client() as http:
        _applied(server, state.policy.id, [1, 2])
        keys = [f"customer-{i}" for i in range(2000)]
        answered = [_version_of(_predict(http, server.url, rows[i % len(rows)], k)) for i, k in enumerate(keys)]
        again = {k: {_version_of(_predict(http, server.url, rows[j], k)) for j in range(5)} for k in keys[:100]}
        anonymous = [_version_of(_predict(http, server.url, rows[i % len(rows)])) for i in range(400)]
    to_canary = answered.count(2)
    low, high = binom.interval(0.999, 2000, 0.20)
    assert low <= to_canary <= high, (to_canary, low, high)
    _eq(answered, [router.route(k, "").version for k in keys])  # every worker answers what the shared policy says
    _eq({k: versions for k, versions in again.items()}, {k: {answered[i]} for i, k in enumerate(keys[:100])})
    low, high = binom.interval(0.999, 400, 0.20)
    assert low <= anonymous.count(2) <= high and set(anonymous) == {1, 2}, anonymous.count(2)
    print(f"canary 20%: {to_canary} of 2000 keyed requests to v2; {anonymous.count(2)} of 400 unkeyed")


# --- shadow isolation -----------------------------------------------------------------------------------------------------

def _primary_latencies(http, url, rows, n: int) -> list:
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        response = _predict(http, url, rows[i % len(rows)], f"k{i}")
        latencies.append((time.perf_counter() - started) * 1000)
        _eq(_version_of(response), 1)
        _eq(response.json()["arm"], "champion")
    return latencies


@pytest.mark.slow
def test_a_slow_shadow_does_not_slow_the_primary(reset):
    live = reset
    policy = set_policy(live["client"], live["name"], "shadow", version=3, reason="slow shadow")
    with running_server(live["project"], *FAST) as server, httpx.Client() as http:
        _applied(server, policy.id, [1, 3])
        latencies = _primary_latencies(http, server.url, live["rows"], 300)
        time.sleep(2)
    log = read_log(live["log"])
    primary, shadow = log[log["role"] == "primary"], log[log["role"] == "shadow"]
    _eq((len(primary), set(primary["version"]), set(primary["status"])), (300, {1}, {"ok"}))
    assert len(shadow) >= 5 and set(shadow["version"]) == {3} and set(shadow["status"]) == {"ok"}, shadow[["version", "status"]]
    shadow_p50 = float(np.median(shadow["latency_ms"]))
    client_p50, client_p95 = np.percentile(latencies, [50, 95])
    assert shadow_p50 >= 50, f"the shadow model is not slow: p50 {shadow_p50:.1f} ms"
    assert client_p95 < shadow_p50 / 2, f"primary p95 {client_p95:.1f} ms against the shadow's p50 {shadow_p50:.1f} ms"
    print(f"slow shadow: primary p50 {client_p50:.1f} ms, p95 {client_p95:.1f} ms (client side); shadow p50 {shadow_p50:.1f} ms, "
          f"{len(shadow)} of 300 shadow copies scored before the stop")


@pytest.mark.slow
def test_a_crashing_shadow_does_not_fail_the_primary(reset):
    live = reset
    policy = set_policy(live["client"], live["name"], "shadow", version=2, reason="crashing shadow")
    with running_server(live["project"], *FAST, env=_crashing(live, 2)) as server, httpx.Client() as http:
        _applied(server, policy.id, [1, 2])
        latencies = _primary_latencies(http, server.url, live["rows"], 300)
        time.sleep(1)
        metrics = httpx.get(f"{server.url}/metrics").text
    log = read_log(live["log"])
    primary, shadow = log[log["role"] == "primary"], log[log["role"] == "shadow"]
    _eq((len(primary), set(primary["status"])), (300, {"ok"}))
    _eq((len(shadow), set(shadow["status"]), set(shadow["version"])), (300, {"error"}, {2}))
    _eq(_metric(metrics, "mlops_nb_model_errors_total", role="shadow", version="2"), 300.0)
    print(f"crashing shadow: primary p95 {np.percentile(latencies, 95):.1f} ms; 300 shadow errors logged")


@pytest.mark.slow
def test_an_unloadable_shadow_leaves_the_champion_serving(reset):
    live = reset
    policy = set_policy(live["client"], live["name"], "shadow", version=4, reason="a version that cannot be loaded")
    with running_server(live["project"], *FAST, ready_timeout=60) as server, httpx.Client() as http:
        info = httpx.get(f"{server.url}/version").json()
        _eq((info["champion"], info["policy"]["id"], 4 in info["versions"]), (1, policy.id, False))
        assert "v4" in info["problems"], info
        _primary_latencies(http, server.url, live["rows"], 20)


# --- automatic removal of an unhealthy canary -------------------------------------------------------------------------------

def _until_taken_out(live, server, http, policy_id: str, limit_s: float = 90) -> list:
    "Send keyed requests until the canary is at 0%; every response (version) in order."
    versions, deadline, i = [], time.monotonic() + limit_s, 0
    while True:
        state = read_state(live["client"], live["name"])
        if state.policy.id != policy_id: return versions
        assert time.monotonic() < deadline, f"the canary was not taken out within {limit_s}s\n{server.output()[-3000:]}"
        for _ in range(20):
            versions.append(_version_of(_predict(http, server.url, live["rows"][i % len(live["rows"])], f"user-{i}")))
            i += 1


def _taken_out(live, policy, before: int, versions: list, judged: str):
    state = read_state(live["client"], live["name"])
    _eq((state.policy.mode, state.policy.share, state.policy.challenger, state.versions()), ("canary", 0.0, policy.challenger, [1]))
    entries = [e for e in audit_trail(live["client"], live["name"])[before:] if e.source == "auto-rollback"]
    _eq(len(entries), 1)
    _eq((entries[0].alias, entries[0].from_version, entries[0].to_version), ("rollout", policy.challenger, None))
    assert entries[0].why.startswith(f"canary v{policy.challenger} taken out (0%): {judged}"), entries[0].why
    _eq(state.policy.reason, "taken out automatically: " + entries[0].why.split(": ", 1)[1])
    return entries[0]


@pytest.mark.slow
def test_a_crashing_canary_is_taken_out(reset):
    live = reset
    before = len(audit_trail(live["client"], live["name"]))
    policy = set_policy(live["client"], live["name"], "canary", 50, version=2, reason="crashing canary")
    args = (*FAST, "--set", "serve.canary_min_requests=40")
    with running_server(live["project"], *args, env=_crashing(live, 2)) as server, httpx.Client() as http:
        _applied(server, policy.id, [1, 2])
        versions = _until_taken_out(live, server, http, policy.id)
        time.sleep(1.5)  # three polls: every worker has read the new policy
        after = [_version_of(_predict(http, server.url, live["rows"][i], f"user-{i}")) for i in range(200)]
    _eq(set(versions), {1})  # a crashing canary's requests are answered by the champion
    _eq(set(after), {1})
    entry = _taken_out(live, policy, before, versions, "error rate 100.0%")
    print(f"crashing canary taken out after {len(versions)} requests: {entry.why}")


@pytest.mark.slow
def test_a_canary_that_cannot_be_loaded_is_taken_out(reset):
    "It gets no traffic from the start; the policy goes to 0% and the audit trail says why, as for an unhealthy one."
    live = reset
    before = len(audit_trail(live["client"], live["name"]))
    policy = set_policy(live["client"], live["name"], "canary", 50, version=4, reason="a canary that cannot be loaded")
    with running_server(live["project"], *FAST, ready_timeout=60) as server, httpx.Client() as http:
        versions = _until_taken_out(live, server, http, policy.id, limit_s=60)
    _eq(set(versions) - {1}, set())  # whatever was sent before the removal was answered by the champion
    entry = _taken_out(live, policy, before, versions, "v4 cannot be loaded")
    print(f"unloadable canary taken out: {entry.why}")


@pytest.mark.slow
def test_a_slow_canary_is_taken_out(reset):
    live = reset
    before = len(audit_trail(live["client"], live["name"]))
    policy = set_policy(live["client"], live["name"], "canary", 50, version=3, reason="slow canary")
    args = (*FAST, "--set", "serve.canary_min_requests=30", "--set", "serve.canary_latency_margin_ms=25")
    with running_server(live["project"], *args) as server, httpx.Client() as http:
        _applied(server, policy.id, [1, 3])
        versions = _until_taken_out(live, server, http, policy.id)
        time.sleep(1.5)
        after = [_version_of(_predict(http, server.url, live["rows"][i], f"user-{i}")) for i in range(50)]
    assert set(versions) == {1, 3}, set(versions)
    _eq(set(after), {1})
    entry = _taken_out(live, policy, before, versions, "p95 latency")
    print(f"slow canary taken out after {len(versions)} requests ({versions.count(3)} answered by v3): {entry.why}")


# --- A/B with labels joined later -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ab_test_with_feedback_and_report(reset):
    live = reset
    policy = set_policy(live["client"], live["name"], "ab", 50, version=2, reason="live A/B test")
    rows, labels = live["rows"], live["labels"]
    answers = []
    with running_server(live["project"], *FAST) as server, httpx.Client() as http:
        _applied(server, policy.id, [1, 2])
        for i in range(len(rows)):
            r = _predict(http, server.url, rows[i], f"customer-{i}")
            _version_of(r)
            answers.append(r.json())
        code, out, err = run_cli("ab-report", "--json", "--project", live["project"])
        assert code == 0, show(code, out, err)
        _eq(json.loads(out)["decision"], "not enough labelled requests yet (n A = 0, n B = 0 < 100): keep the test running")
        for body, label in zip(answers, labels):
            response = http.post(f"{server.url}/feedback", json={"request_id": body["request_id"], "label": label})
            _eq(response.status_code, 202)
    code, out, err = run_cli("ab-report", "--json", "--project", live["project"])
    assert code == 0, show(code, out, err)
    report = json.loads(out)
    router = Router(read_state(live["client"], live["name"]))
    for arm, role, version in (("A", "champion", 1), ("B", "challenger", 2)):
        mine = [(b, label) for b, label in zip(answers, labels) if b["arm"] == role]
        _eq({b["version"] for b, _ in mine}, {version})
        _eq(len(mine), sum(router.route(f"customer-{i}", "").arm == role for i in range(len(rows))))
        _eq((report["arms"][arm]["n"], report["arms"][arm]["versions"]), (len(mine), [version]))
        _eq(report["arms"][arm]["accuracy"], sum(b["predictions"][0] == label for b, label in mine) / len(mine))
    _eq((report["metric"], report["enough"]), ("roc_auc", True))
    assert report["low"] <= report["difference"] <= report["high"], report
    assert report["decision"].split(":")[0] in ("B (v2) is better", "A (the champion) is better", "no significant difference yet"), report["decision"]
    print(f"A/B: {report['decision']}")


# --- blue-green under load ------------------------------------------------------------------------------------------------

def _armed(go: Path, project: Path, *args) -> tuple:
    "Start `mlops-nb ARGS` with its imports done and its store open, waiting for the file `go` (so that it runs at once when told)."
    prelude = (f"import pathlib, time\nimport mlflow.tracking, mlops_nb.cli, mlops_nb.registry\n"
               f"from mlops_nb.config import load_config, tracking_uri\ncfg = load_config({str(project)!r})\n"
               f"mlflow.tracking.MlflowClient(tracking_uri(cfg)).get_registered_model(cfg.model_name)\n"
               f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.01)")
    process = subprocess.Popen(cli_command(*args, prelude=prelude), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, go


def _finish(armed: tuple) -> None:
    process, go = armed
    go.touch()
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, show(process.returncode, out, err)


@pytest.mark.slow
def test_blue_green_switch_under_load(reset, tmp_path):
    live = reset
    policy = set_policy(live["client"], live["name"], "blue-green", version=2, reason="blue-green switch")
    results, failures, stop = [], [], threading.Event()
    lock = threading.Lock()

    def client(seed: int):
        rng = random.Random(seed)
        with httpx.Client() as http:
            while not stop.is_set():
                try:
                    r = _predict(http, server.url, live["rows"][rng.randrange(len(live["rows"]))], f"c{seed}")
                    item = (time.monotonic(), r.status_code, r.json().get("version"), r.headers.get("x-model-version"), r.headers.get("x-request-id"))
                except (httpx.HTTPError, ValueError) as e:
                    item = (time.monotonic(), None, None, None, repr(e))
                with lock: (results if item[1] == 200 else failures).append(item)

    promote = _armed(tmp_path / "promote", live["project"], "promote", "v2", "--reason", "blue-green switch", "--project", live["project"])
    rollback = _armed(tmp_path / "rollback", live["project"], "rollback", "--reason", "switch back", "--project", live["project"])
    with running_server(live["project"], *FAST) as server:
        _applied(server, policy.id, [1, 2])
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            for seed in range(16): pool.submit(client, seed)
            time.sleep(5)
            promoting = time.monotonic()
            _finish(promote)
            promoted = time.monotonic()
            time.sleep(5)
            rolling_back = time.monotonic()
            _finish(rollback)
            rolled_back = time.monotonic()
            time.sleep(max(5.0, 20 - (time.monotonic() - started)))  # 20 s of load, and 5 s after the rollback at least
            stop.set()
        elapsed = time.monotonic() - started
    _eq(failures[:5], [])
    versions = [v for _, _, v, _, _ in results]
    _eq(set(versions), {1, 2})
    _eq([h for _, _, v, h, _ in results if h != str(v)], [])
    # each switch lands within a few polls, and the answers follow it
    settle = 3.0
    _eq({v for t, _, v, _, _ in results if t < promoting}, {1})
    _eq({v for t, _, v, _, _ in results if promoted + settle < t < rolling_back}, {2})
    _eq({v for t, _, v, _, _ in results if t > rolled_back + settle}, {1})
    log = read_log(live["log"])  # the server has stopped: its prediction log is flushed
    _eq(len(log), len(results))
    _eq(set(log["request_id"]), {rid for *_, rid in results})
    _eq((set(log["status"]), set(log["role"])), ({"ok"}, {"primary"}))
    _eq(log.groupby("version").size().to_dict(), pd.Series(versions).value_counts().sort_index().to_dict())
    print(f"blue-green: {len(results)} requests in {elapsed:.1f} s at c=16 ({len(results) / elapsed:.0f} req/s), 0 failed; "
          f"promote took {promoted - promoting:.1f} s, rollback {rolled_back - rolling_back:.1f} s (imports and store opened beforehand); "
          f"v1 {versions.count(1)}, v2 {versions.count(2)}; prediction log rows {len(log)}")

