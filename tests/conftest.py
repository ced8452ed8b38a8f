"""Helpers for the end-to-end tests: run the real `mlops-nb` command (in a subprocess with `run_cli`, or through its
`main` in this process with `call_cli` when no stage runs) and look at what it leaves behind.

Every pipeline run that executes its stages costs tens of seconds, so runs that several tests can inspect without
interfering are made once per session by fixtures (`example_run` here, others in the test modules); tests that use
them only read.
With pytest-xdist use `--dist loadfile` so that each module's shared runs are made once, on one worker.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # for the MlflowClient the tests themselves open
os.environ.pop("MLFLOW_TRACKING_URI", None)

TIMEOUT = 900  # seconds for one command
# The smallest real training: one candidate, one search draw, two folds. Tests of what a run records use it; what the
# settings themselves do to training is tested at library level (tests/test_time_split.py, nbs/04_train.ipynb).
fast = ["--set", "train.n_iter=1", "--set", "train.n_splits=2", "--set", "train.candidates=[logistic_regression]"]


def cli_env(extra: dict | None = None) -> dict:
    "The environment of a `mlops-nb` subprocess: the project's embedded store, no telemetry, plus `extra`."
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra or {})
    return env


def cli_command(*args, prelude: str = "") -> list[str]:
    "The command line of `mlops-nb ARGS`, as the console script runs it; `prelude` is Python run first in the same process (e.g. to inject a fault)."
    code = f"{prelude}\nfrom mlops_nb.cli import console; console()"
    return [sys.executable, "-c", code, *map(str, args)]


def run_cli(*args, cwd=None, timeout=TIMEOUT, env: dict | None = None, prelude: str = "") -> tuple[int, str, str]:
    "Run `mlops-nb ARGS` (the console script's `console`) in a subprocess; return (exit code, stdout, stderr)."
    p = subprocess.run(cli_command(*args, prelude=prelude), cwd=cwd, env=cli_env(env), capture_output=True, text=True, timeout=timeout, check=False)
    return p.returncode, p.stdout, p.stderr


def call_cli(*args, cwd=None, env: dict | None = None) -> tuple[int, str, str]:
    """`mlops-nb ARGS` through the console script's `main` in this process; return (exit code, stdout, stderr).

    The same code as `run_cli` without starting an interpreter (about 1.5 s each): for commands that stop before any
    stage runs (usage errors, `init`, `export`), with `env` added to the environment meanwhile. Pipeline runs, servers,
    injected faults and checks that a secret reaches no output (a library's log handler may hold the real stderr) use
    `run_cli`."""
    from unittest import mock

    from mlops_nb.cli import main
    out, err = io.StringIO(), io.StringIO()
    with (contextlib.chdir(cwd or os.getcwd()), mock.patch.dict(os.environ, env or {}), contextlib.redirect_stdout(out),
          contextlib.redirect_stderr(err)):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def show(code, out, err) -> str:
    "Text for assertion messages."
    return f"exit {code}\n--- stdout\n{out}\n--- stderr\n{err}"


def run_dirs(project: Path) -> list[Path]:
    "The project's run folders, oldest first (not the cache index, `runs/.cache`)."
    return sorted(p for p in (Path(project) / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))


def run_dir_of(project: Path, run_id: str) -> Path:
    "The run folder of pipeline run `run_id`."
    found = [p for p in run_dirs(project) if p.name.endswith(run_id[:8])]
    assert len(found) == 1, f"no single run folder for {run_id} in {project}/runs: {run_dirs(project)}"
    return found[0]


def run_id_from(out: str) -> str:
    "The pipeline run id from the summary line `Run <id> <STATUS> in ...`."
    for line in out.splitlines():
        if line.startswith("Run "):
            return line.split()[1]
    raise AssertionError(f"no 'Run <id>' line in the output:\n{out}")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def tracking_uri(project: Path) -> str:
    return f"sqlite:///{Path(project).resolve() / 'mlflow.db'}"


def client_for(project: Path):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri(project))


def stage_runs(client, parent_run_id: str) -> dict:
    "Stage name -> MLflow run of every nested run of a pipeline run."
    parent = client.get_run(parent_run_id)
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    return {r.data.tags["mlops_nb.stage"]: r for r in children}


def artifact_paths(client, run_id: str, path: str | None = None) -> list[str]:
    return [a.path for a in client.list_artifacts(run_id, path)]


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def set_stages(project: Path, stages: list) -> None:
    "Rewrite the `stages:` list of a project's mlops.yaml (as a user editing the file would)."
    path = Path(project) / "mlops.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["stages"] = stages
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


PARAMETERS = "params = {}"
CONTEXT = "from mlops_nb.stage import stage_context\nctx = stage_context(params)"


def cancer_project(folder: Path, frame: pd.DataFrame) -> Path:
    "A project at `folder/project` made by `init_project` from the breast-cancer `frame` (saved as `folder/cancer.csv`)."
    from mlops_nb.pipeline import init_project
    frame.to_csv(Path(folder) / "cancer.csv", index=False)
    project = Path(folder) / "project"
    init_project(project, Path(folder) / "cancer.csv", "diagnosis")
    return project


def stage_notebook(path: Path, *code_cells: str) -> Path:
    "Write a runbook for a custom stage: a `parameters` cell, a cell making `ctx` (the stage context), then `code_cells`."
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(PARAMETERS)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell] + [nbformat.v4.new_code_cell(src) for src in (CONTEXT, *code_cells)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def site() -> Path:
    """The documentation site, built by `python docs/build.py` when it is missing or its sources changed (CI builds it
    before the tests). Building it executes every notebook in nbs/; docs/build.py holds a file lock while it builds, so
    the other xdist worker waits for that build, then finds the site fresh."""
    subprocess.run([sys.executable, str(ROOT / "docs" / "build.py"), "--if-stale"], cwd=ROOT, check=True, timeout=1800)
    assert (ROOT / "_docs" / "index.html").exists()
    return ROOT / "_docs"


def git(folder: Path, *args) -> str:
    "`git ARGS` in `folder` as a throwaway identity; its output."
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="session")
def example_run(tmp_path_factory) -> dict:
    """The bundled example project committed to git, and one run of it by the real command (`mlops-nb run --example
    breast-cancer`, `fast` training): v1 is @champion. Shared by the modules that look at what a first run records
    (lineage, the MLflow UI, serving end to end); they only read it, and add nothing a later reader would see."""
    from mlops_nb.pipeline import example_project
    project = example_project("breast-cancer", tmp_path_factory.mktemp("example") / "bc")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "project")
    code, out, err = run_cli("run", "--example", "breast-cancer", "--project", project, *fast, cwd=project.parent)
    assert code == 0, show(code, out, err)
    run_id = run_id_from(out)
    return {"project": project, "out": out, "run_id": run_id, "run_dir": run_dir_of(project, run_id), "commit": git(project, "rev-parse", "HEAD")}


@pytest.fixture(scope="session")
def breast_cancer_frame() -> pd.DataFrame:
    from mlops_nb.data import load_example
    return load_example("breast-cancer")


CHROMIUM = "/usr/bin/chromium"  # Debian's build, installed by .ci/run; Playwright drives it and never downloads one
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def playwright():
    "One Playwright driver per test process (its sync API allows one at a time); skips where Chromium is missing, fails in CI."
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"): pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        yield p


@contextlib.contextmanager
def chromium(playwright, profile: Path, viewport: dict):
    "A headless Chromium browser context with its own profile folder, closed on exit."
    context = playwright.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                            args=CHROMIUM_FLAGS, viewport=viewport)
    try: yield context
    finally: context.close()


@pytest.fixture(autouse=True)
def _no_inherited_store(monkeypatch):
    "Each test starts with no tracking store chosen by an earlier test in this process (`mlflow.set_tracking_uri` also sets the environment)."
    def reset():
        if "mlflow" in sys.modules: sys.modules["mlflow"].set_tracking_uri(None)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
            os.environ.pop(name, None)
    reset()
    yield
    reset()
