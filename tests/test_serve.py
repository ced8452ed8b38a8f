"""The model server over real HTTP: `mlops-nb serve` in a subprocess on a free port (see tests/serving.py).

Every refusal is checked for its status, its message and for not echoing the request: the bad values carry a planted
string that must never come back, in a body or in a header.
"""
from __future__ import annotations

import re
import socket
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from fastcore.test import test_eq as _eq
from mlflow.artifacts import download_artifacts
from serving import add_version, project_client, running_server, served_project

from mlops_nb.data import load_skops
from mlops_nb.telemetry import labelled

PLANTED = "zq-PLANTED-7731"  # put into every bad value, name and header; no response may contain it
TOKEN = "s3cret-token-for-tests"


def _no_echo(response: httpx.Response) -> httpx.Response:
    "The response, after checking that it repeats nothing planted and holds no stack trace."
    text = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
    assert PLANTED not in text, f"{response.status_code} echoes the request: {text[:300]}"
    assert "Traceback" not in text and 'File "' not in text, text[:300]
    return response


def _counter(text: str, name: str, **labels) -> float:
    "The value of one sample of the Prometheus text `text` (0 when absent)."
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if found == {k: str(v) for k, v in labels.items()}: return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = served_project(tmp_path_factory.mktemp("serve"))
    _eq(add_version(project), 1)
    return project


@pytest.fixture(scope="module")
def frame(project) -> pd.DataFrame:
    data = pd.read_csv(project.parent / "breast-cancer.csv")
    return data.drop(columns=data.columns[-1])


@pytest.fixture(scope="module")
def model(project):
    client = project_client(project)
    with tempfile.TemporaryDirectory() as tmp:
        folder = download_artifacts(artifact_uri=client.get_model_version_download_uri("served", "1"), dst_path=tmp,
                                    tracking_uri=client.tracking_uri)
        return load_skops(Path(folder) / "model.skops")


@pytest.fixture(scope="module")
def server(project):
    with running_server(project, "--set", "serve.max_rows=50", "--set", "serve.max_body_bytes=65536") as s:
        yield s


def _post(server, body=None, *, content=None, headers=None, path="/predict") -> httpx.Response:
    if content is None: return _no_echo(httpx.post(server.url + path, json=body, headers=headers, timeout=30))
    return _no_echo(httpx.post(server.url + path, content=content, headers=headers, timeout=30))


@pytest.mark.slow
def test_every_payload_form_gives_the_models_predictions(server, frame, model):
    rows = frame.iloc[:7]
    records = rows.to_dict("records")
    expected_labels = model.predict(rows).tolist()
    expected = model.predict_proba(rows)
    forms = {"one row": records[0], "array": records, "dataframe_records": {"dataframe_records": records},
             "dataframe_split": {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}}
    answers = {}
    for form, body in forms.items():
        r = _post(server, body)
        _eq((form, r.status_code), (form, 200))
        answers[form] = r.json()
    n = {form: 1 if form == "one row" else 7 for form in forms}
    for form, a in answers.items():
        _eq(a["predictions"], expected_labels[:n[form]])
        _eq(a["rejected"], [])
        _eq((a["model"], a["version"], a["arm"]), ("served", 1, "champion"))
        classes = [str(c) for c in model.classes_]
        got = np.array([[p[c] for c in classes] for p in a["probabilities"]])
        np.testing.assert_allclose(got, expected[:n[form]], rtol=0, atol=1e-12)
    _eq(answers["array"]["probabilities"], answers["dataframe_records"]["probabilities"])
    _eq(answers["array"]["probabilities"], answers["dataframe_split"]["probabilities"])


def test_request_id_and_version_headers(server, frame):
    record = frame.iloc[0].to_dict()
    first, second = _post(server, record), _post(server, record)
    for r in (first, second):
        _eq(r.headers["x-request-id"], r.json()["request_id"])
        _eq(r.headers["x-model-version"], "1")
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), r.headers["x-request-id"]
    assert first.json()["request_id"] != second.json()["request_id"]


def test_one_bad_row_does_not_fail_the_good_rows(server, frame, model):
    rows = frame.iloc[:3].to_dict("records")
    first = frame.columns[0]
    bad = {**rows[1], first: PLANTED}
    r = _post(server, [rows[0], bad, rows[2], 7])
    _eq(r.status_code, 200)
    body = r.json()
    expected = model.predict(frame.iloc[[0, 2]]).tolist()
    _eq(body["predictions"], [expected[0], None, expected[1], None])
    _eq(body["probabilities"][1], None)
    _eq([(p["row"], p["field"]) for p in body["rejected"]], [(1, first), (3, None)])


def test_all_rows_rejected_is_422_with_reasons_per_row_and_field(server, frame):
    first, second = frame.columns[:2]
    rows = [{**frame.iloc[0].to_dict(), first: PLANTED}, {**frame.iloc[1].to_dict(), second: -1e300, PLANTED: PLANTED}]
    r = _post(server, {"dataframe_records": rows})
    _eq(r.status_code, 422)
    body = r.json()
    _eq(body["error"], "no row was accepted: see 'rejected' for the reason per row and field")
    _eq([(p["row"], p["field"]) for p in body["rejected"]], [(0, first), (1, second)])
    assert all(p["reason"] for p in body["rejected"]), body
    _eq(r.headers["x-request-id"], body["request_id"])


def test_refusals_say_why_and_never_echo(server, frame):
    record = frame.iloc[0].to_dict()
    cases = [
        (_post(server, content=b'{"x": ' + PLANTED.encode() + b"}", headers={"content-type": "application/json"}), 400,
         "the body is not valid JSON (line 1, column 7)"),
        (_post(server, content=PLANTED.encode(), headers={"content-type": "text/plain"}), 415,
         "send the rows as JSON with Content-Type: application/json"),
        (_post(server, content=b"", headers={"content-type": "application/json"}), 400, "the body is not valid JSON"),
        (_post(server, [record] * 51), 413, "51 rows in one request; at most 50 are accepted"),
        (_post(server, {"dataframe_split": {"columns": [PLANTED], "data": [[1]] * 51}}), 413, "51 rows in one request"),
        (_post(server, {"pad": PLANTED * 5000}), 413, "the body is larger than 65536 bytes"),
        (_post(server, content=_chunks(70_000), headers={"content-type": "application/json"}), 413,
         "the body is larger than 65536 bytes"),
        (_post(server, PLANTED), 422, "the body must be a JSON object (one row), an array of objects"),
        (_post(server, []), 422, "the request holds no rows"),
        (_post(server, {"dataframe_records": PLANTED}), 422, "dataframe_records must be an array of objects"),
        (_post(server, {"dataframe_split": {"columns": [1], "data": [[PLANTED]]}}), 422, "dataframe_split 'columns' must be a list of names"),
    ]
    for r, status, message in cases:
        _eq((r.status_code, r.headers["content-type"]), (status, "application/json"))
        assert r.json()["error"].startswith(message), (status, r.json())
    r = _no_echo(httpx.get(f"{server.url}/{PLANTED}", timeout=10))
    _eq((r.status_code, r.json()["error"]), (404, "Not Found"))
    r = _no_echo(httpx.put(f"{server.url}/predict", content=PLANTED, timeout=10))
    _eq(r.status_code, 405)
    r = _post(server, record, headers={"X-Routing-Key": PLANTED})
    _eq(r.status_code, 200)


def _chunks(size: int):
    "A body sent with chunked transfer encoding (no Content-Length), so the limit must be enforced while it streams."
    piece = ('["' + PLANTED + '",').encode()
    sent = 0
    while sent < size:
        yield piece
        sent += len(piece)
    yield b"1]"


def test_metrics_count_one_request_exactly(server, frame):
    labels = {"route": "/predict", "status": "200", "version": "1"}
    before = _counter(httpx.get(server.url + "/metrics", timeout=10).text, "mlops_nb_requests_total", **labels)
    _eq(_post(server, frame.iloc[0].to_dict()).status_code, 200)
    text = httpx.get(server.url + "/metrics", timeout=10).text
    _eq(_counter(text, "mlops_nb_requests_total", **labels), before + 1)
    assert "mlops_nb_request_seconds_bucket" in text


def test_version_and_health(server):
    _eq(httpx.get(server.url + "/health", timeout=10).json(), {"status": "ok"})
    _eq(httpx.get(server.url + "/ready", timeout=10).json(), {"ready": True, "model": "served", "version": 1, "worker": server.process.pid})
    v = httpx.get(server.url + "/version", timeout=10).json()
    _eq((v["model"], v["champion"], v["versions"], v["policy"]["mode"], v["ready"]), ("served", 1, [1], "champion", True))


def test_feedback_round_trip(server, project, frame):
    r = _post(server, frame.iloc[:2].to_dict("records"))
    rid, predicted = r.json()["request_id"], r.json()["predictions"]
    ok = _post(server, {"request_id": rid, "label": predicted[1], "row": 1}, path="/feedback")
    _eq((ok.status_code, ok.json()), (202, {"request_id": rid, "row": 1, "label": predicted[1]}))
    unknown = _post(server, {"request_id": PLANTED, "label": predicted[0]}, path="/feedback")
    _eq((unknown.status_code, unknown.json()["error"]), (404, "no prediction with this request id and row is in the prediction log"))
    not_a_class = _post(server, {"request_id": rid, "label": PLANTED}, path="/feedback")
    _eq((not_a_class.status_code, not_a_class.json()["error"]), (422, "'label' is not one of the classes: benign, malignant"))
    no_label = _post(server, {"request_id": rid}, path="/feedback")
    _eq(no_label.status_code, 422)
    joined = labelled(project / "predictions" / "predictions.db")
    mine = joined[joined.request_id == rid]
    _eq(mine[["row", "label"]].values.tolist(), [[1, predicted[1]]])


def test_token_is_required_when_configured(project, frame):
    record = frame.iloc[0].to_dict()
    with running_server(project, token=TOKEN) as s:
        _eq(_no_echo(httpx.post(s.url + "/predict", json=record, timeout=10)).status_code, 401)
        wrong = _no_echo(httpx.post(s.url + "/predict", json=record, headers={"Authorization": f"Bearer {PLANTED}"}, timeout=10))
        _eq((wrong.status_code, wrong.headers["www-authenticate"]), (401, "Bearer"))
        _eq(wrong.json()["error"], "a valid bearer token is required (Authorization: Bearer TOKEN)")
        _eq(httpx.get(s.url + "/metrics", timeout=10).status_code, 401)
        _eq(httpx.get(s.url + "/version", timeout=10).status_code, 401)
        _eq(httpx.get(s.url + "/health", timeout=10).status_code, 200)
        ok = httpx.post(s.url + "/predict", json=record, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        _eq((ok.status_code, ok.json()["version"]), (200, 1))
    # --insecure-no-auth only allows listening without a token: a token that is configured is still required
    with running_server(project, "--insecure-no-auth", token=TOKEN) as s:
        _eq(httpx.post(s.url + "/predict", json=record, timeout=10).status_code, 401)
        _eq(httpx.post(s.url + "/predict", json=record, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code, 200)


def test_binds_loopback_and_refuses_other_hosts_without_a_token(project):
    code, _, err = run_cli("serve", "--project", project, "--host", "0.0.0.0", "--port", "9", timeout=120)
    _eq(code, 2)
    assert "refusing to listen on 0.0.0.0 without a token: set MLOPS_NB_TOKEN" in err, err
    with running_server(project) as s:
        line = [x for x in s.output().splitlines() if x.startswith("Serving ")]
        port = s.url.rsplit(":", 1)[1]
        _eq(line, [f"Serving 'served' v1 on http://127.0.0.1:{port} with 1 worker (API docs at /docs)"])
        others = [a for a in {i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} if not a.startswith("127.")]
        for address in others:
            with pytest.raises(httpx.ConnectError): httpx.get(f"http://{address}:{port}/health", timeout=5)


@pytest.mark.slow
def test_ready_waits_for_a_champion(tmp_path, frame):
    project = served_project(tmp_path)
    with running_server(project, "--set", "serve.poll_seconds=0.5", wait_ready=False) as s:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(s.url + "/ready", timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and s.process.poll() is None, s.output()
                time.sleep(0.2)
        _eq((r.status_code, r.json()), (503, {"ready": False, "why": "no version of 'served' is @champion yet"}))
        assert "Serving 'served' nothing yet (no @champion" in s.output(), s.output()
        r = _post(s, frame.iloc[0].to_dict())
        _eq((r.status_code, r.json()["error"]), (503, "not ready: no version of 'served' is @champion yet"))
        _eq(add_version(project), 1)
        promoted = time.monotonic()
        while httpx.get(s.url + "/ready", timeout=5).status_code != 200:
            assert time.monotonic() - promoted < 30, s.output()
            time.sleep(0.1)
        _eq(_post(s, frame.iloc[0].to_dict()).json()["version"], 1)


@pytest.mark.slow
def test_two_workers_answer_and_metrics_sum_both(project, frame):
    record = frame.iloc[0].to_dict()
    labels = {"route": "/predict", "status": "200", "version": "1"}
    with running_server(project, "--workers", "2") as s:
        before = _counter(httpx.get(s.url + "/metrics", timeout=10).text, "mlops_nb_requests_total", **labels)
        for _ in range(40):
            with httpx.Client() as c:  # a new connection each time, so that both workers take some
                _eq(c.post(s.url + "/predict", json=record, timeout=10).status_code, 200)
        deadline = time.monotonic() + 5  # a worker writes its request counts out every flush interval (0.2 s)
        while _counter(httpx.get(s.url + "/metrics", timeout=10).text, "mlops_nb_requests_total", **labels) < before + 40:
            assert time.monotonic() < deadline, "the request counts of both workers did not reach /metrics"
            time.sleep(0.1)
        totals = {_counter(httpx.get(s.url + "/metrics", timeout=10).text, "mlops_nb_requests_total", **labels) for _ in range(6)}
        _eq(totals, {before + 40})
        info = httpx.get(s.url + "/metrics", timeout=10).text
        _eq(_counter(info, "mlops_nb_model_info", version="1", alias="champion"), 1.0)
