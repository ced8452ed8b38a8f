"""Single-row serving throughput and latency: the same registered model served three ways, under the same load from wrk.

    python benchmarks/serving.py [--seconds 10] [--models logistic_regression,hist_gradient_boosting] [--concurrency 1,8]

For each model (a pipeline of the project's own kind: the contract's `ColumnTransformer` then the classifier, trained on
the bundled breast-cancer example and registered as the train and register stages do) and each concurrency:

- `mlflow models serve --env-manager local`, the reference;
- `mlops-nb serve`, with validation, the prediction log and metrics all on (the defaults);
- a trivial endpoint on the same ASGI stack (FastAPI on uvicorn with uvloop and httptools, one worker) that reads the
  body and returns a constant: the ceiling of the stack on this machine.

Every request is one row as MLflow's `dataframe_records` body. Prints req/s, p50 and p99 for each, the ratio of req/s
to `mlflow models serve`, and the fraction of the ceiling; the goals are at c=8 >= 25x mlflow and >= 0.5 of the
ceiling, and at c=1 a p99 <= 5 ms. Needs `wrk` (Debian package `wrk`). One run of everything takes a few minutes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import mlflow
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from mlops_nb.config import load_config
from mlops_nb.contract import Contract
from mlops_nb.data import load_example, trusted_types
from mlops_nb.pipeline import experiment_id, init_project
from mlops_nb.prepare import build_preprocessor
from mlops_nb.registry import champion_version, register_version
from mlops_nb.train import CANDIDATES, model_pipeline

CONSTANT_APP = '''
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()
BODY = b'{"predictions": ["benign"], "probabilities": [{"benign": 0.9, "malignant": 0.1}]}'

@app.post("/predict")
async def predict(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")

@app.get("/ready")
async def ready() -> Response:
    return Response(b"{}", media_type="application/json")
'''

LUA = '''wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%s]]
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_project(root: Path, candidate: str) -> tuple[Path, str, int, dict]:
    "A project on the breast-cancer example with `candidate` trained and registered as @champion; (folder, model name, version, one row)."
    frame = load_example("breast-cancer")
    data = root / "breast-cancer.csv"
    frame.to_csv(data, index=False)
    project = root / candidate
    init_project(project, data, "diagnosis", name=f"bench-{candidate}".replace("_", "-"), copy_runbooks=False)
    cfg = load_config(project)
    contract = Contract.from_yaml(project / cfg.contract)
    features = [c.name for c in contract.features]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = model_pipeline(build_preprocessor(contract, frame), CANDIDATES[candidate].make(0)).fit(frame[features], frame["diagnosis"])
        uri = f"sqlite:///{project.resolve() / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        with mlflow.start_run(experiment_id=experiment_id(client, cfg), run_name="benchmark-train") as run:
            info = mlflow.sklearn.log_model(model, name="model", serialization_format="skops", skops_trusted_types=trusted_types(model),
                                            signature=infer_signature(frame[features].head(5), model.predict(frame[features].head(5))))
            mlflow.log_artifact(str(project / cfg.contract), "contract")
        reg = register_version(client, cfg.model_name, info.model_uri, True, compared_with=champion_version(client, cfg.model_name),
                               run_id=run.info.run_id)
        mlflow.set_tracking_uri(None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # set_tracking_uri exported it: the next project must get its own store
    return project, cfg.model_name, int(reg.version), {k: float(v) for k, v in frame[features].iloc[0].items()}


@contextlib.contextmanager
def server(command: list, url: str, env: dict, log: Path, ready_path: str, timeout: float = 180):
    "Run `command` until `url + ready_path` answers 200; stop it (its whole process group) afterwards."
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None: raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url + ready_path, timeout=2) as r:
                if r.status == 200: break
            if time.monotonic() > deadline: raise RuntimeError(f"not ready within {timeout}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try: process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _ms(text: str | None) -> float:
    if text is None: return float("nan")  # wrk printed no such percentile
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def load(url: str, body: str, connections: int, seconds: int, folder: Path) -> dict:
    "wrk's req/s, p50 and p99 (ms) and failed responses for `connections` connections over `seconds`."
    script = folder / "post.lua"
    script.write_text(LUA % body)
    # one thread per connection up to 2: the load generator shares the 2 cores with the server
    out = subprocess.run(["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^[ \t]+(50|99)%[ \t]+([0-9.]+(?:us|ms|s|m))[ \t]*$", out, re.MULTILINE))
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)$", out, re.MULTILINE)
    return {"req_s": float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)), "p50_ms": _ms(latency.get("50")), "p99_ms": _ms(latency.get("99")),
            "failed": int(failed.group(1)) if failed else 0, "socket_errors": errors.group(1) if errors else None}


def environment(project: Path) -> dict:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1")
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="load duration of each measurement")
    parser.add_argument("--models", default="logistic_regression,hist_gradient_boosting")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    results, load_before = [], os.getloadavg()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="serving-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "constant_app.py").write_text(CONSTANT_APP)
        port = free_port()
        env = {**environment(tmp), "PYTHONPATH": str(tmp)}
        constant = [str(bin_dir / "python"), "-m", "uvicorn", "constant_app:app", "--host", "127.0.0.1", "--port", str(port),
                    "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log", "--no-server-header"]
        for candidate in args.models.split(","):
            project, name, version, row = make_project(tmp, candidate)
            body = json.dumps({"dataframe_records": [row]})
            mlflow_port, ours_port = free_port(), free_port()
            env = environment(project)
            served = {
                "mlflow models serve": ([str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{name}/{version}", "--env-manager", "local",
                                         "-h", "127.0.0.1", "-p", str(mlflow_port)], f"http://127.0.0.1:{mlflow_port}", "/invocations", "/ping",
                                        {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{project.resolve() / 'mlflow.db'}"}),
                "mlops-nb serve": ([str(bin_dir / "mlops-nb"), "serve", "--project", str(project), "--port", str(ours_port)],
                                   f"http://127.0.0.1:{ours_port}", "/predict", "/ready", env),
                "constant (ceiling)": (constant, f"http://127.0.0.1:{port}", "/predict", "/ready", {**environment(tmp), "PYTHONPATH": str(tmp)}),
            }
            for label, (command, url, route, ready, server_env) in served.items():
                with server(command, url, server_env, tmp / f"{candidate}-{label.split()[0]}.log", ready):
                    load(url + route, body, 1, 2, tmp)  # warm-up
                    for c in levels:
                        measured = load(url + route, body, c, args.seconds, tmp)
                        results.append({"model": candidate, "server": label, "c": c, **measured})
                        print(f"{candidate:24} {label:20} c={c}: {measured['req_s']:9.1f} req/s  p50 {measured['p50_ms']:7.2f} ms  "
                              f"p99 {measured['p99_ms']:7.2f} ms  failed {measured['failed']}", flush=True)
    print()
    print("load average (1, 5, 15 min): " + " -> ".join(" ".join(f"{x:.2f}" for x in a) for a in (load_before, os.getloadavg()))
          + f" at the start and the end, on {os.cpu_count()} cores: the fractions of the ceiling move with the machine's load")
    print(f"{'model':24} {'server':20} {'c':>2} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x mlflow':>9} {'of ceiling':>10}")
    for r in results:
        same = {x["server"]: x for x in results if x["model"] == r["model"] and x["c"] == r["c"]}
        ratio = r["req_s"] / same["mlflow models serve"]["req_s"] if "mlflow models serve" in same else float("nan")
        share = r["req_s"] / same["constant (ceiling)"]["req_s"] if "constant (ceiling)" in same else float("nan")
        r.update(x_mlflow=ratio, of_ceiling=share)
        print(f"{r['model']:24} {r['server']:20} {r['c']:>2} {r['req_s']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {ratio:9.1f} {share:10.2f}")
    ours = [r for r in results if r["server"] == "mlops-nb serve"]
    goals = [(f"{r['model']} c=8: >= 25x mlflow and >= 0.5 of the ceiling", r["x_mlflow"] >= 25 and r["of_ceiling"] >= 0.5) for r in ours if r["c"] == 8]
    goals += [(f"{r['model']} c=1: p99 <= 5 ms", r["p99_ms"] <= 5) for r in ours if r["c"] == 1]
    print()
    for goal, met in goals: print(f"{'met' if met else 'MISSED':6} {goal}")
    if args.json: args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(met for _, met in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
