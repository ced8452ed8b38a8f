"""The MLflow UI tells the same story as `mlops-nb`: headless Chromium on `mlflow server` over a store with one real run.

The experiment opens on its training runs (not MLflow 3's GenAI overview), and the pipeline's parent run shows the
dataset it was trained on and the model version it registered. Screenshots are saved in the test's tmp folder.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import chromium, cli_env, client_for, tracking_uri
from fastcore.test import test_eq as _eq

WAIT = 120_000  # ms: the UI's first page load on a busy 2-core machine


@pytest.fixture(scope="module")
def made(example_run):
    "One pipeline run of the breast-cancer example (conftest's `example_run`); its output (with the link it prints) and its ids."
    project, out, run_id = example_run["project"], example_run["out"], example_run["run_id"]
    run = client_for(project).get_run(run_id)
    link = re.search(r"then open (http://127\.0\.0\.1:5000/\S+)\)", out)
    assert link, out
    return {"project": project, "run_id": run_id, "run_name": run.info.run_name, "experiment_id": run.info.experiment_id,
            "fingerprint": run.data.tags["data_fingerprint"], "link": link[1]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(made, tmp_path_factory):
    "`mlflow server` on 127.0.0.1 and a free port, over the run's store; stopped (its whole process group) afterwards."
    port, folder = _free_port(), tmp_path_factory.mktemp("server")
    log = open(folder / "server.log", "w")  # noqa: SIM115 - open while the server runs, closed below
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri(made["project"]),
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            cwd=folder, env=cli_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (folder / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                    if r.status == 200: break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer within 240 s:\n" + (folder / "server.log").read_text()
            time.sleep(1)
        yield base
    finally:
        with_group = os.getpgid(proc.pid) == proc.pid
        if with_group: os.killpg(proc.pid, signal.SIGTERM)
        else: proc.terminate()
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            if with_group: os.killpg(proc.pid, signal.SIGKILL)
            else: proc.kill()
            proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser(playwright, tmp_path_factory):
    with chromium(playwright, tmp_path_factory.mktemp("chromium-profile"), {"width": 1440, "height": 1000}) as context:
        yield context


def _wait_for_text(page, pattern: str):
    "Wait until the page's text matches the regular expression `pattern`; return the text."
    page.wait_for_function("p => new RegExp(p).test(document.body.innerText)", arg=pattern, timeout=WAIT)
    return page.inner_text("body")


@pytest.mark.slow
def test_the_experiment_opens_on_its_training_runs(made, server, browser, tmp_path):
    link = made["link"].replace("http://127.0.0.1:5000", server)
    experiment_page = link.split("/runs/")[0] + "?" + link.split("?", 1)[1]
    _eq(experiment_page, f"{server}/#/experiments/{made['experiment_id']}?workflowType=machine_learning")
    page = browser.new_page()
    page.goto(experiment_page)
    text = _wait_for_text(page, re.escape(made["run_name"]))
    page.wait_for_timeout(1000)  # let the table settle before the picture
    page.screenshot(path=str(tmp_path / "experiment.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'experiment.png'}")
    assert re.search(rf"#/experiments/{made['experiment_id']}/runs\?", page.url), page.url  # the runs table, not an overview
    assert "Token Usage" not in text and "Traces\n0" not in text, text  # none of the GenAI overview
    _eq([line for line in text.splitlines() if line.startswith("breast-cancer.csv")][:1], [f"breast-cancer.csv ({made['fingerprint'][:32]})"])
    tags = client_for(made["project"]).get_experiment(made["experiment_id"]).tags
    _eq(tags.get("mlflow.experimentKind"), "custom_model_development")
    page.close()


def test_the_pipeline_run_shows_its_dataset_and_registered_version(made, server, browser, tmp_path):
    page = browser.new_page()
    page.goto(made["link"].replace("http://127.0.0.1:5000", server))
    text = _wait_for_text(page, r"Registered models\s+breast-cancer\s+v1")
    page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
    print(f"screenshot: {tmp_path / 'run.png'}")
    _eq(re.search(r"Datasets\s+(.+)\s+Training", text)[1], f"breast-cancer.csv ({made['fingerprint'][:32]})")
    _eq(re.search(r"Registered models\s+(\S+)\s+(v\d+)", text).groups(), ("breast-cancer", "v1"))
    assert made["run_name"] in text and "model_version\n: 1" in text, text
    page.close()


def test_the_printed_link_names_the_run(made):
    _eq(made["link"], f"http://127.0.0.1:5000/#/experiments/{made['experiment_id']}/runs/{made['run_id']}?workflowType=machine_learning")
