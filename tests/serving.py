"""Helpers for the serving tests: a project with registered versions made in seconds, and a real `mlops-nb serve` on a free port.

A pipeline run costs tens of seconds; most serving tests need only *some* registered versions, made the way the train
and register stages make them (skops model, signature, the contract logged beside it, `register_version`'s
compare-and-set). `tests/test_serve_e2e.py` serves a version that a real pipeline run made.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import sklearn
import skops
from conftest import cli_command, cli_env
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from mlops_nb.config import load_config
from mlops_nb.contract import Contract
from mlops_nb.data import load_example, trusted_types
from mlops_nb.pipeline import experiment_id, init_project
from mlops_nb.prepare import build_preprocessor
from mlops_nb.registry import champion_version, register_version
from mlops_nb.train import model_pipeline

PINS = [f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}"]  # the train stage logs the same


def example_frame(name: str = "breast-cancer") -> pd.DataFrame:
    return load_example(name)


def served_project(root: Path, example: str = "breast-cancer", name: str | None = None) -> Path:
    "A project folder (settings, inferred contract, local store) on a bundled example's data, with no model yet."
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = root / f"{example}.csv"
    frame = example_frame(example)
    frame.to_csv(data, index=False)
    project = root / (name or "project")
    init_project(project, data, frame.columns[-1], name=name or "served", copy_runbooks=False)
    return project


def project_client(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{Path(project).resolve() / 'mlflow.db'}")


def add_version(project: Path, estimator=None, *, gate_passed: bool = True, promote: bool = True,
                model=None, rows: slice | None = None) -> int:
    """Fit `estimator` (default: a logistic regression) behind the project's preprocessing, log it as the train stage
    does (skops, signature, the contract under `contract/`, the reference profile under `profile/`, built on the same
    rows as training and held-out rows) and register it. With `promote` and a passing gate it becomes @champion
    (compare-and-set against the current one); otherwise it is @challenger only.
    `model`: an already fitted pipeline to log instead."""
    from sklearn.linear_model import LogisticRegression

    from mlops_nb.profile import build_profile, log_profile

    cfg = load_config(project)
    contract = Contract.from_yaml(Path(project) / cfg.contract)
    frame = pd.read_csv(Path(project) / cfg.data.path) if not str(cfg.data.path).endswith(".parquet") else pd.read_parquet(Path(project) / cfg.data.path)
    if rows is not None: frame = frame.iloc[rows]
    features = [c.name for c in contract.features]
    X, y = frame[features], frame[contract.target]
    if model is None:
        model = model_pipeline(build_preprocessor(contract, frame), estimator if estimator is not None else LogisticRegression(max_iter=2000))
        model.fit(X, y)
    uri = f"sqlite:///{Path(project).resolve() / 'mlflow.db'}"
    client = MlflowClient(uri)
    previous, env = mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        exp = experiment_id(client, cfg)
        with mlflow.start_run(experiment_id=exp, run_name="test-train") as run:
            info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops", skops_trusted_types=trusted_types(model),
                                            signature=infer_signature(X.head(5), model.predict(X.head(5))), input_example=X.head(2),
                                            pip_requirements=PINS)  # as the train stage pins them: no inference subprocess
            mlflow.log_artifact(str(Path(project) / cfg.contract), "contract")
            log_profile(client, run.info.run_id, build_profile(frame, frame, model, contract, cfg.data.positive_class, cfg.monitor.bins,
                                                               cfg.monitor.max_categories, seed=cfg.seed, name=cfg.model_name))
        current = champion_version(client, cfg.model_name)
        reg = register_version(client, cfg.model_name, info.model_uri, gate_passed,
                               compared_with=current if promote else -1, run_id=run.info.run_id)
    finally:
        mlflow.set_tracking_uri(previous)
        if env is None: os.environ.pop("MLFLOW_TRACKING_URI", None)  # set_tracking_uri exports it; later servers must not inherit it
        else: os.environ["MLFLOW_TRACKING_URI"] = env
    return reg.version


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    "A running `mlops-nb serve` subprocess."
    def __init__(self, process: subprocess.Popen, url: str, log: Path):
        self.process, self.url, self.log = process, url, log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def running_server(project: Path, *args, env: dict | None = None, ready_timeout: float = 90.0, wait_ready: bool = True,
                   token: str | None = None):
    "Start `mlops-nb serve --project PROJECT --port FREE ARGS`, wait for /ready, yield a `Server`; stop it afterwards."
    port = free_port()
    log = Path(project) / f"server-{port}.log"
    extra = dict(env or {})
    if token is not None: extra["MLOPS_NB_TOKEN"] = token
    cmd = cli_command("serve", "--project", str(project), "--port", str(port), *args)
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, env=cli_env(extra), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        if wait_ready:
            deadline = time.monotonic() + ready_timeout
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
            ready = set()  # worker processes seen ready: each new connection may reach another one
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"the server exited with {process.returncode}:\n{server.output()}")
                with contextlib.suppress(httpx.HTTPError):
                    answer = httpx.get(f"{server.url}/ready", timeout=2, headers=headers)
                    if answer.status_code == 200: ready.add(answer.json()["worker"])
                if len(ready) >= workers: break
                if time.monotonic() > deadline:
                    raise AssertionError(f"the server was not ready within {ready_timeout}s:\n{server.output()}")
                time.sleep(0.2)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    "Stop a process started with `start_new_session=True`, and its children: SIGTERM, then SIGKILL after `timeout` seconds."
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try: process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
