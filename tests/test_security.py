"""What is stored and recorded is safe: skops loads only an explicit list of types, and credentials in a tracking URI reach
no notebook, HTML render, param, tag, log line or message."""
from __future__ import annotations

import base64
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from conftest import client_for, fast, read_json, run_cli, run_dir_of, run_id_from, show
from fastcore.test import test_eq as _eq
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_nb.config import config_dict, config_from_dict, connection_uri, redact_uri, render_config, tracking_credentials
from mlops_nb.data import TRUSTED_TYPES, UntrustedTypes, load_skops, save_skops, trusted_types

# --- skops: an explicit list of trusted types ---


def _messy_frame(n: int, classes: list, seed: int = 0) -> pd.DataFrame:
    "Numeric, integer, boolean and categorical features with missing values, and a target."
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"amount": rng.normal(100, 30, n), "visits": rng.integers(0, 20, n).astype(float),
                       "member": rng.choice([True, False], n), "plan": rng.choice(["basic", "plus", "premium"], n).astype(object),
                       "region": rng.choice(["north", "south"], n).astype(object), "label": rng.choice(classes, n)})
    df.loc[df.index % 7 == 0, "amount"] = np.nan
    df.loc[df.index % 11 == 0, "plan"] = None
    return df


@pytest.fixture(scope="module")
def fitted_candidates():
    "Every training candidate, fitted as the pipeline fits it, on binary text labels and on three integer classes."
    from mlops_nb.contract import infer_contract
    from mlops_nb.prepare import build_preprocessor
    from mlops_nb.train import CANDIDATES, model_pipeline
    fitted = []
    for classes in (["bad", "good"], [0, 1, 2]):
        df = _messy_frame(300, classes)
        contract = infer_contract(df, "label")
        for name, candidate in CANDIDATES.items():
            X = df.drop(columns="label")
            model = model_pipeline(build_preprocessor(contract, df), candidate.make(0)).fit(X, df["label"])
            fitted.append((name, classes, model, X))
    return fitted


def test_trusted_types_are_exactly_what_the_candidates_need(fitted_candidates):
    from mlops_nb.train import CANDIDATES
    _eq(sorted({name for name, *_ in fitted_candidates}), sorted(CANDIDATES))
    needed = set()
    for _, _, model, _ in fitted_candidates: needed |= set(trusted_types(model))
    _eq(sorted(needed), sorted(TRUSTED_TYPES))  # no type missing, none trusted without need


def test_every_candidate_round_trips(fitted_candidates, tmp_path):
    for i, (name, classes, model, X) in enumerate(fitted_candidates):
        back = load_skops(save_skops(model, tmp_path / f"{i}.skops"))
        _eq((name, back.predict(X).tolist()), (name, model.predict(X).tolist()))
        np.testing.assert_allclose(back.predict_proba(X), model.predict_proba(X), rtol=1e-12)  # forests sum trees in parallel


@pytest.mark.parametrize("func,name", [(np.load, "numpy.load"), (os.system, "posix.system"), (np.save, "numpy.save")])
def test_model_holding_a_dangerous_function_is_refused(tmp_path, func, name):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    model = make_pipeline(FunctionTransformer(func=func), LogisticRegression())
    with pytest.raises(UntrustedTypes) as refused: save_skops(model, tmp_path / "model.skops")
    _eq(str(refused.value), f"this Pipeline holds types that are not trusted: {name}; only the types in mlops_nb.data.TRUSTED_TYPES "
                            "(and skops' own safe defaults) are stored or loaded")
    _eq(list(tmp_path.iterdir()), [])
    sio.dump(model, tmp_path / "foreign.skops")  # written by someone else
    with pytest.raises(UntrustedTypes) as refused: load_skops(tmp_path / "foreign.skops")
    assert str(refused.value).startswith(f"foreign.skops holds types that are not trusted: {name};"), str(refused.value)
    _eq(isinstance(refused.value, TypeError), True)


# --- credentials in a tracking URI ---

@settings(max_examples=200, deadline=None)
@given(user=st.text(min_size=1, max_size=12), password=st.text(min_size=1, max_size=24),
       scheme=st.sampled_from(["http", "https"]), path=st.sampled_from(["", "/", "/mlflow", "/a/b?x=1"]))
def test_redacted_uri_never_holds_the_credentials(user, password, scheme, path):
    quote = lambda text: urllib.parse.quote(text, safe="")
    uri = f"{scheme}://{quote(user)}:{quote(password)}@mlflow.example.com:8443{path}"
    shown = redact_uri(uri)
    _eq(shown, f"{scheme}://mlflow.example.com:8443{path}")
    _eq(tracking_credentials(uri), {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password})
    cfg = config_from_dict({"tracking_uri": uri})
    _eq(config_dict(cfg)["tracking_uri"], shown)


def test_database_uri_credentials_go_through_the_environment(monkeypatch):
    uri = "postgresql://ana:s3cret@db.example.com:5432/mlflow"
    _eq(redact_uri(uri), "postgresql://db.example.com:5432/mlflow")
    _eq(tracking_credentials(uri), {"MLFLOW_TRACKING_URI": uri})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _eq(connection_uri(redact_uri(uri)), uri)
    _eq(connection_uri("postgresql://other.example.com/mlflow"), "postgresql://other.example.com/mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ana:s3cret@mlflow.example.com")
    _eq(connection_uri("https://mlflow.example.com"), "https://mlflow.example.com")  # http: credentials as username/password


def test_rendered_settings_hold_no_credentials():
    from dataclasses import replace
    cfg = config_from_dict({"tracking_uri": "https://ana:s3cret@mlflow.example.com"})
    _eq("s3cret" in render_config(replace(cfg, tracking_uri=redact_uri(cfg.tracking_uri))), False)
    _eq("s3cret" in str(config_dict(cfg)), False)


# --- end to end: a run against an MLflow server behind basic authentication ---

USER, PASSWORD = "admin", "Pl4nted-q7Zx/s:cret"
MARKER = b"Pl4nted-q7Zx"  # in the password, raw and percent-encoded


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _BasicAuthProxy(BaseHTTPRequestHandler):
    "Forwards requests to an MLflow server only when they carry the expected basic-auth credentials."
    protocol_version = "HTTP/1.1"
    upstream: int
    expected: str
    seen: ClassVar[dict]

    def log_message(self, *args): pass

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self):
        body = self._body()
        if self.headers.get("Authorization") != f"Basic {self.expected}":
            type(self).seen["refused"] += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        type(self).seen["authorized"] += 1
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization", "connection", "content-length", "transfer-encoding")}
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=600)
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        self.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"): self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward


@pytest.fixture(scope="module")
def authenticated_server(tmp_path_factory):
    "A local `mlflow server` reachable only through a basic-auth proxy; yields (proxy port, server folder)."
    folder = tmp_path_factory.mktemp("server")
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    with open(folder / "server.log", "wb") as log:
        server = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination",
                                   str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                  stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        for _ in range(240):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200: break
            except OSError: time.sleep(0.5)
        else: raise AssertionError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
        handler = type("Proxy", (_BasicAuthProxy,), {"upstream": port, "expected": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
                                                    "seen": {"authorized": 0, "refused": 0}})
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        yield proxy.server_address[1], folder, handler.seen
        proxy.shutdown()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def _files_holding(root: Path, marker: bytes) -> list[str]:
    return sorted(str(p) for p in Path(root).rglob("*") if p.is_file() and marker in p.read_bytes())


@pytest.mark.slow
def test_credentials_never_recorded(authenticated_server, tmp_path, breast_cancer_frame):
    port, server_folder, seen = authenticated_server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1")
    _eq(conn.getresponse().status, 401)  # the server cannot be used without the credentials
    breast_cancer_frame.to_csv(tmp_path / "cancer.csv", index=False)
    project = tmp_path / "project"
    code, out, err = run_cli("init", project, "--data", tmp_path / "cancer.csv", "--target", "diagnosis")
    _eq(code, 0)
    secret_uri = f"http://{USER}:{urllib.parse.quote(PASSWORD, safe='')}@127.0.0.1:{port}"
    refused_before = seen["refused"]
    code, out, err = run_cli("run", "--project", project, "--set", f"tracking_uri={secret_uri}", *fast)
    assert code == 0, show(code, out, err)
    _eq(seen["refused"], refused_before)  # every request of the run, kernels' included, carried the credentials
    assert seen["authorized"] > 0
    _eq((MARKER in out.encode(), MARKER in err.encode()), (False, False))
    _eq(_files_holding(tmp_path, MARKER), [])  # run folder, executed notebooks, kernels.log, run.json, mlops.yaml, ...
    _eq(_files_holding(server_folder, MARKER), [])  # params, tags, logged notebooks, HTML renders, model cards
    run_id = run_id_from(out)
    from mlflow.tracking import MlflowClient
    os.environ.update(tracking_credentials(secret_uri))
    try:
        client = MlflowClient(f"http://127.0.0.1:{port}")
        parent = client.get_run(run_id)
        _eq((parent.info.status, parent.data.params["tracking_uri"]), ("FINISHED", f"http://127.0.0.1:{port}"))
    finally:
        for key in tracking_credentials(secret_uri): os.environ.pop(key)
    executed = (run_dir_of(project, run_id) / "notebooks" / "01_ingest.ipynb").read_text()
    assert f'\\"tracking_uri\\": \\"http://127.0.0.1:{port}\\"' in executed, "the stage got the URI without credentials"
    _eq(read_json(run_dir_of(project, run_id) / "run.json")["status"], "FINISHED")
    _eq(client_for(project).search_runs([client_for(project).get_experiment_by_name("project").experiment_id]), [])  # nothing went to the local store
