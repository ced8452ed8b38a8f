"""Runs never stay half-done: an MLflow error while logging, a kernel that cannot start and Ctrl-C all end the parent and
stage runs FAILED, write run.json and print one line; `init` and `runs` against a store that cannot be reached print one
line, exit 2 and leave nothing behind."""
from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time

import pytest
from conftest import (
    call_cli,
    cancer_project,
    cli_command,
    cli_env,
    client_for,
    error_lines,
    read_json,
    run_cli,
    run_dir_of,
    run_dirs,
    run_id_from,
    set_stages,
    show,
    stage_notebook,
    stage_runs,
)
from fastcore.test import test_eq as _eq

from mlops_nb.config import load_config
from mlops_nb.pipeline import run_pipeline

UNREACHABLE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}  # fail at once instead of retrying for minutes
FAIL_NOTEBOOK_UPLOADS = '''
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
_log_artifact = MlflowClient.log_artifact
def _refuse(self, run_id, local_path, artifact_path=None):
    if artifact_path == "notebook": raise MlflowException("injected: the artifact store refused the upload")
    return _log_artifact(self, run_id, local_path, artifact_path)
MlflowClient.log_artifact = _refuse
'''


@pytest.fixture
def project(tmp_path, breast_cancer_frame):
    "A fresh breast-cancer project whose runs stop after validate (a few seconds each)."
    project = cancer_project(tmp_path, breast_cancer_frame)
    set_stages(project, ["ingest", "validate"])
    return project


def _statuses(project, run_id):
    client = client_for(project)
    return client.get_run(run_id).info.status, {name: r.info.status for name, r in stage_runs(client, run_id).items()}


@pytest.mark.slow
def test_mlflow_error_while_logging_ends_every_run_failed(project):
    set_stages(project, ["ingest"])  # the stage succeeds; logging its executed notebook fails
    code, out, err = run_cli("run", "--project", project, prelude=FAIL_NOTEBOOK_UPLOADS)
    _eq(code, 1)
    lines = error_lines(err)
    _eq(lines, ["error: recording a stage's notebook to MLflow failed: MlflowException: injected: the artifact store refused the upload"])
    assert "Traceback" not in err, err
    run_id = run_id_from(out)
    info = read_json(run_dir_of(project, run_id) / "run.json")
    _eq((info["status"], info["error"]), ("FAILED", lines[0].removeprefix("error: ")))
    _eq([(s["name"], s["status"]) for s in info["stages"]], [("ingest", "ok")])
    _eq(_statuses(project, run_id), ("FAILED", {"ingest": "FAILED"}))
    _eq(client_for(project).get_run(run_id).data.tags["error"], info["error"])


def test_mlflow_error_while_setting_up_ends_the_run_failed(project, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    log_text = MlflowClient.log_text
    def refuse(self, run_id, text, artifact_file):
        if artifact_file == "mlops.yaml": raise MlflowException("injected: store is read-only")
        return log_text(self, run_id, text, artifact_file)
    monkeypatch.setattr(MlflowClient, "log_text", refuse)
    result = run_pipeline(load_config(project))
    _eq((result.status, result.stages), ("FAILED", ()))
    _eq(result.error, "run failed while setting up the run: MlflowException: injected: store is read-only")
    _eq(read_json(result.run_dir / "run.json"), {"run_id": result.run_id, "status": "FAILED", "error": result.error, "summary": {}, "stages": []})
    _eq(_statuses(project, result.run_id), ("FAILED", {}))


def test_kernel_that_cannot_start_ends_the_run_failed(project, tmp_path):
    spec = tmp_path / "jupyter" / "kernels" / "python3" / "kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({"argv": [str(tmp_path / "no-such-python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                "display_name": "Python 3", "language": "python"}))
    code, out, err = run_cli("run", "--project", project, env={"JUPYTER_PATH": str(tmp_path / "jupyter")})
    _eq(code, 1)
    lines = error_lines(err)
    _eq(len(lines), 1)
    assert lines[0].startswith("error: stage 'ingest': its kernel could not start: ") and "no-such-python" in lines[0], show(code, out, err)
    run_id = run_id_from(out)
    info = read_json(run_dir_of(project, run_id) / "run.json")
    _eq((info["status"], info["error"], [(s["name"], s["status"]) for s in info["stages"]]), ("FAILED", lines[0].removeprefix("error: "), [("ingest", "failed")]))
    _eq(_statuses(project, run_id), ("FAILED", {"ingest": "FAILED"}))


def _lines(stream, into: queue.Queue):
    for line in stream: into.put(line)
    into.put(None)


@pytest.mark.slow
def test_ctrl_c_mid_stage_ends_every_run_failed(project):
    stage_notebook(project / "runbooks" / "wait.ipynb", "import time\n"
                   "ctx.output('half.txt').write_text('half written')\nprint('waiting', flush=True)\ntime.sleep(600)")
    set_stages(project, ["ingest", {"name": "wait", "notebook": "runbooks/wait.ipynb"}])
    proc = subprocess.Popen(cli_command("run", "--project", project), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, lines = [], queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = lines.get(timeout=deadline - time.monotonic())
        if line is None: break
        out.append(line)
        if "| waiting" in line: break
    assert "| waiting" in "".join(out), "".join(out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    _eq(proc.returncode, 130)
    lines = err.strip().splitlines()
    _eq(len(lines), 1)
    assert lines[0].startswith("interrupted"), err
    run_dir, = run_dirs(project)
    info = read_json(run_dir / "run.json")
    run_id = info["run_id"]
    _eq((info["status"], info["error"]), ("FAILED", "interrupted during stage 'wait'"))
    _eq([(s["name"], s["status"]) for s in info["stages"]], [("ingest", "ok"), ("wait", "failed")])
    _eq(sorted(p.name for p in run_dir.iterdir() if p.is_dir()), ["ingest", "notebooks", "wait.failed"])  # no .wait.partial left
    _eq((run_dir / "wait.failed" / "half.txt").read_text(), "half written")
    _eq(_statuses(project, run_id), ("FAILED", {"ingest": "FINISHED", "wait": "FAILED"}))


# --- a store that cannot be reached ---

def _one_error_line(code, out, err) -> str:
    _eq(code, 2)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    _eq(len(lines), 1)
    return lines[0]


def test_init_against_unreachable_store_writes_nothing(tmp_path, breast_cancer_frame):
    breast_cancer_frame.to_csv(tmp_path / "cancer.csv", index=False)
    env = {**UNREACHABLE, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    line = _one_error_line(*call_cli("init", tmp_path / "new" / "project", "--data", tmp_path / "cancer.csv", "--target", "diagnosis", env=env))
    assert line.startswith("error: cannot create the project's experiment in the MLflow store at http://127.0.0.1:9: MlflowException: "), line
    _eq((tmp_path / "new").exists(), False)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    _one_error_line(*call_cli("init", existing, "--data", tmp_path / "cancer.csv", "--target", "diagnosis", env=env))
    _eq([p.name for p in existing.iterdir()], ["notes.txt"])


def test_forced_init_against_unreachable_store_keeps_the_project(project):
    before = {p.relative_to(project): p.read_bytes() for p in project.rglob("*") if p.is_file()}
    env = {**UNREACHABLE, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    (project / "cancer-copy.csv").write_bytes((project.parent / "cancer.csv").read_bytes())
    before[(project / "cancer-copy.csv").relative_to(project)] = (project / "cancer-copy.csv").read_bytes()
    _one_error_line(*call_cli("init", project, "--data", project / "cancer-copy.csv", "--target", "diagnosis", "--force", env=env))
    _eq({p.relative_to(project): p.read_bytes() for p in project.rglob("*") if p.is_file()}, before)


def test_runs_against_unreachable_store_is_one_line(project):
    path = project / "mlops.yaml"
    path.write_text(path.read_text().replace("tracking_uri: null", "tracking_uri: http://ana:Secr3t-pw@127.0.0.1:9"))
    code, out, err = run_cli("runs", "--project", project, env=UNREACHABLE)
    line = _one_error_line(code, out, err)
    assert line.startswith("error: cannot read runs from the MLflow store at http://127.0.0.1:9: MlflowException: "), line
    _eq(("Secr3t-pw" in out + err, "ana:" in out + err), (False, False))
    _eq(out, "")


def test_run_against_unreachable_store_hides_credentials(project):
    code, out, err = run_cli("run", "--project", project, "--set", "tracking_uri=http://ana:Secr3t-pw@127.0.0.1:9", env=UNREACHABLE)
    _eq(code, 2)
    assert error_lines(err)[0].startswith("error: cannot record to the MLflow store at http://127.0.0.1:9: "), err
    _eq("Secr3t-pw" in out + err, False)
    _eq([p.name for p in (project / "runs").iterdir()], [])
