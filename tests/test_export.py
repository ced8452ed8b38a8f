"""`mlops-nb export airflow` and `mlops-nb export github` / `mlops-nb init --ci github`, end to end.

The Airflow DAG file is checked three ways:
- in the default suite, imported against a minimal stand-in for Airflow (its `DAG` and `BashOperator` record what the
  file builds): the tasks, their order, their commands, time limits and retries; then its task commands, rendered the
  way Airflow renders them, are run in order against a real project and must make one FINISHED pipeline run;
- in `slow` tests, with Apache Airflow itself: `apache-airflow` cannot be installed beside mlops-nb without changing
  installed packages (it pins an older fastapi), so those tests build (once, then reuse) a separate virtual
  environment with it (`MLOPS_NB_AIRFLOW_VENV`, default in the system's temporary folder), parse the file with
  Airflow's `DagBag` and let Airflow run the DAG (`dag.test()`) against a real project.

The GitHub Actions workflow is checked by running its `run:` steps locally, as the runner would (bash -eo pipefail,
the job's environment and working directory), in a real project: they pass, and a gate that fails fails its step.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jinja2.sandbox
import pytest
import yaml
from conftest import call_cli, cli_env, client_for, set_stages, show, stage_notebook
from fastcore.test import test_eq as _eq
from hypothesis import given, settings
from hypothesis import strategies as st

import mlops_nb
from mlops_nb.config import UsageError, config_from_dict, render_config
from mlops_nb.export import RUN_KEY_ENV, TIMEOUT_MARGIN, jinja_literal, stage_command

BIN = Path(sys.executable).parent  # this environment's `python` and `mlops-nb`
MLOPS_NB = str(BIN / "mlops-nb")
BUILTIN = ["ingest", "validate", "prepare", "train", "evaluate", "register"]
TINY = {"train": {"n_iter": 1, "n_splits": 2}}
RUN_ID = "manual__2026-01-01T03:00:00.123456+00:00"  # what an Airflow run id looks like
HOSTILE_RUN_ID = 'x"; touch pwned; echo "$(touch pwned2)'  # a run id given through Airflow's API may hold anything

STAND_IN = {
    "airflow/__init__.py": '''"A stand-in for Airflow 2's DAG: records the DAGs a file builds (Airflow 3's airflow.sdk is missing on purpose)."
DAGS, _open = [], []

class DAG:
    def __init__(self, dag_id, **kwargs):
        self.dag_id, self.kwargs, self.tasks = dag_id, kwargs, []
        DAGS.append(self)
    def __enter__(self):
        _open.append(self)
        return self
    def __exit__(self, *exc):
        _open.pop()
''',
    "airflow/operators/__init__.py": "",
    "airflow/operators/bash.py": '''"A stand-in for Airflow 2's BashOperator: records its arguments and its upstream tasks."
import airflow

class BashOperator:
    def __init__(self, task_id, bash_command, **kwargs):
        self.task_id, self.bash_command, self.kwargs, self.upstream = task_id, bash_command, kwargs, []
        airflow._open[-1].tasks.append(self)
    def __rshift__(self, other):
        other.upstream.append(self.task_id)
        return other
''',
}

LOAD_WITH_STAND_IN = r'''
import json, runpy, sys
import airflow
runpy.run_path(sys.argv[1])
seconds = lambda d: None if d is None else d.total_seconds()
print(json.dumps([{"dag_id": d.dag_id, "schedule": d.kwargs["schedule"], "catchup": d.kwargs["catchup"],
                   "max_active_runs": d.kwargs["max_active_runs"], "retries": d.kwargs["default_args"]["retries"],
                   "retry_delay": seconds(d.kwargs["default_args"]["retry_delay"]), "doc": d.kwargs["doc_md"],
                   "tasks": [{"task_id": t.task_id, "bash_command": t.bash_command, "env": t.kwargs["env"], "append_env": t.kwargs["append_env"],
                              "timeout": seconds(t.kwargs["execution_timeout"]), "upstream": t.upstream} for t in d.tasks]}
                  for d in airflow.DAGS]))
'''


def load_dag(tmp_path: Path, dag_file: Path) -> dict:
    "Import a DAG file against the stand-in (in a fresh interpreter) and return what it built; it must build one DAG."
    root = tmp_path / "stand-in"
    for name, text in STAND_IN.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    p = subprocess.run([sys.executable, "-c", LOAD_WITH_STAND_IN, str(dag_file)], env=cli_env({"PYTHONPATH": str(root)}),
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    dags = json.loads(p.stdout)
    _eq(len(dags), 1)
    return dags[0]


def render(template: str, run_id: str) -> str:
    "Render a templated field as Airflow does (a sandboxed Jinja environment that keeps trailing newlines)."
    return jinja2.sandbox.SandboxedEnvironment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined).from_string(template).render(run_id=run_id)


def run_task(task: dict, run_id: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    "Run a task's command as a BashOperator would: rendered, by bash, with its env added to the worker's environment."
    env = cli_env({k: render(v, run_id) for k, v in task["env"].items()}) if task["append_env"] else {k: render(v, run_id) for k, v in task["env"].items()}
    return subprocess.run(["bash", "-c", render(task["bash_command"], run_id)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def cancer_csv(tmp_path, breast_cancer_frame) -> Path:
    breast_cancer_frame.to_csv(tmp_path / "cancer.csv", index=False)
    return tmp_path / "cancer.csv"


def quick_project(folder: Path, data: Path, name: str | None = None) -> Path:
    "A project's settings only (no store, contract or runbooks): all that `export airflow` reads."
    folder.mkdir(parents=True)
    (folder / "mlops.yaml").write_text(render_config(config_from_dict({"project": name or folder.name, "data": {"path": str(data), "target": "diagnosis"}})))
    return folder


def make_project(folder: Path, data: Path, *extra) -> Path:
    code, out, err = call_cli("init", folder, "--data", data, "--target", "diagnosis", *extra)
    assert code == 0, show(code, out, err)
    return folder


def edit_settings(project: Path, changes: dict) -> None:
    "Change settings in the project's mlops.yaml, as a user editing the file would."
    path = project / "mlops.yaml"
    cfg = yaml.safe_load(path.read_text())
    for section, values in changes.items():
        cfg[section] = {**(cfg.get(section) or {}), **values} if isinstance(values, dict) else values
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def with_report_stage(project: Path, before: list = BUILTIN) -> None:
    "Add a stage of the project's own after the `before` stages: it writes report.json."
    stage_notebook(project / "runbooks" / "report.ipynb", 'ctx.write_json("report.json", {"stage": ctx.stage})')
    set_stages(project, [*before, {"name": "report", "notebook": "runbooks/report.ipynb"}])


# --- the DAG file, against the stand-in


def test_dag_has_one_task_per_stage_in_order(tmp_path, cancer_csv):
    project = quick_project(tmp_path / "my project", cancer_csv)
    with_report_stage(project)
    edit_settings(project, {"pipeline": {"timeout": "20m", "timeouts": {"train": "2h", "evaluate": "45m"}}})
    code, out, err = call_cli("export", "airflow", "--project", project, "--schedule", "@daily", "--retries", "3")
    assert code == 0, show(code, out, err)
    dag_file = project / "dags" / "mlops_nb_my_project.py"
    _eq(out.splitlines()[0], f"wrote {dag_file}: 7 tasks (ingest > validate > prepare > train > evaluate > register > report), schedule @daily, retries 3")
    dag = load_dag(tmp_path, dag_file)
    stages = [*BUILTIN, "report"]
    _eq((dag["dag_id"], dag["schedule"], dag["catchup"], dag["max_active_runs"], dag["retries"], dag["retry_delay"]),
        ("mlops_nb_my_project", "@daily", False, 1, 3, 300.0))
    _eq([t["task_id"] for t in dag["tasks"]], stages)
    _eq([t["upstream"] for t in dag["tasks"]], [[]] + [[s] for s in stages[:-1]])
    _eq([t["bash_command"] for t in dag["tasks"]],
        [f"mlops-nb run --project '{project}' --stage {s} --run-key \"${RUN_KEY_ENV}\"" for s in stages])
    _eq([(t["env"], t["append_env"]) for t in dag["tasks"]], [({RUN_KEY_ENV: "{{ run_id }}"}, True)] * 7)
    limits = {"train": 7200, "evaluate": 2700}  # the others: pipeline.timeout, 20m
    _eq([t["timeout"] for t in dag["tasks"]], [limits.get(s, 1200) + TIMEOUT_MARGIN for s in stages])
    _eq(dag["doc"].splitlines()[0], "The pipeline of an mlops-nb project: one task per stage, in order.")


def test_dag_file_is_deterministic_and_says_how_it_was_made(tmp_path, cancer_csv):
    project = quick_project(tmp_path / "p", cancer_csv)
    first = call_cli("export", "airflow", "--project", project, "--output", "-", "--command", MLOPS_NB, "--dag-id", "nightly")
    again = call_cli("export", "airflow", "--project", project, "--output", "-", "--command", MLOPS_NB, "--dag-id", "nightly")
    _eq(first[0], 0)
    _eq(first, again)
    _eq(first[1].splitlines()[:2],
        [(f"# Generated by mlops-nb {mlops_nb.__version__} (`mlops-nb export airflow --project {project} --dag-id nightly --command {MLOPS_NB}`) "
          f"from {project / 'mlops.yaml'}."), "# Do not edit: change the project's stages or settings and export again."])
    compile(first[1], "nightly.py", "exec")


def test_dag_file_replaces_only_what_mlops_nb_wrote(tmp_path, cancer_csv):
    project = quick_project(tmp_path / "p", cancer_csv)
    target = tmp_path / "dags" / "p.py"
    _eq(call_cli("export", "airflow", "--project", project, "--output", target)[0], 0)
    with_report_stage(project)
    _eq(call_cli("export", "airflow", "--project", project, "--output", target)[0], 0)  # regenerated after a change of stages
    _eq([t["task_id"] for t in load_dag(tmp_path, target)["tasks"]][-1], "report")
    mine = tmp_path / "dags" / "mine.py"
    mine.write_text("# my own DAG\n")
    _eq(call_cli("export", "airflow", "--project", project, "--output", mine),
        (2, "", f"error: {mine} was not written by mlops-nb: pass --force to replace it, or choose another --output\n"))
    _eq(mine.read_text(), "# my own DAG\n")
    _eq(call_cli("export", "airflow", "--project", project, "--output", mine, "--force")[0], 0)
    _eq(mine.read_text().startswith("# Generated by mlops-nb"), True)


@pytest.mark.parametrize("argv, message", [
    (["--schedule", "daily"], ("error: bad --schedule 'daily': give an Airflow preset (@once, @continuous, @hourly, @daily, @weekly, @monthly, "
                               "@quarterly, @yearly, @annually), a cron expression such as '0 3 * * *', or none")),
    (["--dag-id", "my dag"], "error: bad --dag-id 'my dag': use letters, digits, '_', '.' and '-'"),
    (["--retries", "-1"], "error: --retries must be 0 or more, got -1"),
    (["--retries", "two"], "error: argument --retries: invalid int value: 'two' (see `mlops-nb export airflow --help`)"),
    (["--command", "'unclosed"], "error: bad --command \"'unclosed\": No closing quotation"),
])
def test_export_airflow_mistakes_are_one_line(tmp_path, cancer_csv, argv, message):
    project = quick_project(tmp_path / "p", cancer_csv)
    _eq(call_cli("export", "airflow", "--project", project, *argv), (2, "", message + "\n"))
    _eq((project / "dags").exists(), False)


def test_export_outside_a_project_is_one_line(tmp_path):
    code, out, err = call_cli("export", "airflow", "--project", tmp_path)
    _eq((code, out, err.startswith(f"error: no mlops.yaml in {tmp_path}")), (2, "", True))


def test_hostile_project_and_folder_names_stay_data(tmp_path, cancer_csv):
    "A project name and folder with line breaks, quotes and triple quotes: the DAG file and the workflow still hold one DAG and one job, no code."
    name = 'x"""\nimport os; os.system("touch pwned")\u2028# \'y\''
    project = quick_project(tmp_path / "odd\nimport os #\"\"\"", cancer_csv, name=name)
    code, out, err = call_cli("export", "airflow", "--project", project, "--output", tmp_path / "dag.py")
    assert code == 0, show(code, out, err)
    dag = load_dag(tmp_path, tmp_path / "dag.py")
    _eq([t["task_id"] for t in dag["tasks"]], BUILTIN)
    _eq(sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned")), [])
    _eq(call_cli("export", "github", "--project", project)[0], 0)
    wf = yaml.safe_load((project / ".github" / "workflows" / "mlops-nb.yml").read_text())
    _eq((wf["name"], list(wf["jobs"])), ("mlops-nb " + name, ["pipeline"]))


def test_task_command_passes_path_and_run_id_verbatim(tmp_path):
    "A folder with spaces, quotes, `$`, a glob and Jinja markers, and a hostile run id: the program gets them as they are, nothing else runs."
    argv_file = tmp_path / "argv.json"
    printer = tmp_path / "print argv.py"
    printer.write_text(f"import json, sys\nopen({str(argv_file)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    folder = str(tmp_path / "it's $HOME {{ x }} {% y %} * `id`")
    task = {"bash_command": stage_command(jinja_literal(folder), "train", f"{sys.executable} '{printer}'"),
            "env": {RUN_KEY_ENV: "{{ run_id }}"}, "append_env": True}
    p = run_task(task, HOSTILE_RUN_ID, tmp_path)
    _eq((p.returncode, p.stderr), (0, ""))
    _eq(json.loads(argv_file.read_text()), ["run", "--project", folder, "--stage", "train", "--run-key", HOSTILE_RUN_ID])
    _eq(sorted(x.name for x in tmp_path.iterdir()), ["argv.json", "print argv.py"])


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40))
def test_any_folder_name_reaches_the_command_verbatim(name):
    "Property: whatever a project folder is called, Jinja then bash hand it to mlops-nb unchanged (or export refuses it in one line)."
    try: literal = jinja_literal(name)
    except UsageError as e:
        _eq("rename the folder" in str(e) and ("endraw" in name or "\r" in name), True)  # what Jinja cannot keep literal
        return
    command = stage_command(literal, "train", "printf '%s\\0'")
    p = subprocess.run(["bash", "-c", render(command, RUN_ID)], env={RUN_KEY_ENV: RUN_ID}, capture_output=True, timeout=30, check=False)
    _eq(p.stdout.split(b"\0")[:-1], [a.encode() for a in ["run", "--project", name, "--stage", "train", "--run-key", RUN_ID]])


# --- the DAG's commands against a real project (needs `mlops-nb run --stage ... --run-key ...`)


def pipeline_runs(project: Path) -> list:
    "Every pipeline (parent) run of the project's experiment."
    client = client_for(project)
    exp = client.get_experiment_by_name(yaml.safe_load((project / "mlops.yaml").read_text())["project"])
    return client.search_runs([exp.experiment_id], filter_string="tags.`mlops_nb.pipeline` = 'true'")


@pytest.mark.slow
def test_dag_tasks_run_in_order_make_one_finished_pipeline_run(tmp_path, cancer_csv):
    "Three stages (two built in, one of the project's own) keep this quick; the slow test below lets Airflow run all seven."
    project = make_project(tmp_path / "cancer", cancer_csv)
    with_report_stage(project, ["ingest", "validate"])
    code, out, err = call_cli("export", "airflow", "--project", project, "--command", MLOPS_NB)
    assert code == 0, show(code, out, err)
    dag = load_dag(tmp_path, project / "dags" / "mlops_nb_cancer.py")
    for task in dag["tasks"]:
        p = run_task(task, RUN_ID, tmp_path)
        assert p.returncode == 0, f"task {task['task_id']}: " + show(p.returncode, p.stdout, p.stderr)
    runs = pipeline_runs(project)
    _eq([(r.info.status, r.data.tags.get("mlops_nb.run_key")) for r in runs], [("FINISHED", RUN_ID)])
    client = client_for(project)
    children = client.search_runs([runs[0].info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{runs[0].info.run_id}'")
    _eq(sorted((r.data.tags["mlops_nb.stage"], r.info.status) for r in children), [("ingest", "FINISHED"), ("report", "FINISHED"), ("validate", "FINISHED")])
    _eq(len(list((project / "runs").glob("*/report/report.json"))), 1)
    # Airflow retries or clears a task of the same DAG run: its stage is done there, so it is skipped
    p = run_task(dag["tasks"][1], RUN_ID, tmp_path)
    _eq(p.returncode, 0)
    _eq(len(pipeline_runs(project)), 1)
    # a later stage of a new DAG run whose upstream stages have not run: exit 2, naming them
    p = run_task(dag["tasks"][2], "manual__2026-01-02T03:00:00+00:00", tmp_path)
    _eq(p.returncode, 2)
    assert "ingest" in p.stderr and "validate" in p.stderr, show(p.returncode, p.stdout, p.stderr)


# --- with Apache Airflow itself (slow: a separate virtual environment, built once)


def airflow_python() -> Path:
    "The Python of a virtual environment holding apache-airflow, built when missing (it cannot share mlops-nb's)."
    venv = Path(os.environ.get("MLOPS_NB_AIRFLOW_VENV") or Path(tempfile.gettempdir()) / f"mlops-nb-airflow-py{sys.version_info.major}{sys.version_info.minor}")
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import airflow.models"], capture_output=True, check=False).returncode == 0:
        return python
    partial = venv.with_name(venv.name + ".partial")
    subprocess.run(["rm", "-rf", partial], check=True)
    subprocess.run([sys.executable, "-m", "venv", partial], check=True, timeout=300)
    p = subprocess.run([partial / "bin" / "python", "-m", "pip", "install", "--quiet", "apache-airflow"], capture_output=True, text=True, timeout=1800, check=False)
    assert p.returncode == 0, f"pip install apache-airflow failed:\n{p.stderr[-3000:]}"
    subprocess.run(["rm", "-rf", venv], check=True)
    partial.rename(venv)  # the venv's scripts name their interpreter by path: run them with `python -m`, never directly
    return python


INSPECT_WITH_AIRFLOW = r'''
import json, sys
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
out = {"errors": {k: str(v)[-2000:] for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}
for dag in bag.dags.values():
    out["tasks"] = [{"task_id": t.task_id, "bash_command": t.bash_command, "env": t.env, "append_env": t.append_env, "retries": t.retries,
                     "timeout": t.execution_timeout.total_seconds(), "upstream": sorted(t.upstream_task_ids)} for t in dag.topological_sort()]
    if len(sys.argv) > 2:
        run = dag.test()
        out["state"] = str(run.state)
        out["run_id"] = run.run_id
print("RESULT " + json.dumps(out))
'''


def with_airflow(python: Path, home: Path, *args) -> dict:
    env = cli_env({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(args[0]), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    if len(args) > 1:
        migrate = subprocess.run([python, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=600, check=False)
        assert migrate.returncode == 0, migrate.stderr[-3000:]
    p = subprocess.run([python, "-c", INSPECT_WITH_AIRFLOW, *map(str, args)], env=env, capture_output=True, text=True, timeout=1800, check=False)
    result = [line for line in p.stdout.splitlines() if line.startswith("RESULT ")]
    assert p.returncode == 0 and result, show(p.returncode, p.stdout[-5000:], p.stderr[-5000:])
    return json.loads(result[-1].removeprefix("RESULT "))


@pytest.mark.slow
def test_airflow_dagbag_parses_the_dag(tmp_path, cancer_csv):
    project = quick_project(tmp_path / "cancer", cancer_csv)
    with_report_stage(project)
    _eq(call_cli("export", "airflow", "--project", project, "--output", tmp_path / "dags" / "cancer.py", "--schedule", "0 3 * * *")[0], 0)
    found = with_airflow(airflow_python(), tmp_path / "airflow-home", tmp_path / "dags")
    stages = [*BUILTIN, "report"]
    _eq((found["errors"], found["dags"]), ({}, ["mlops_nb_cancer"]))
    _eq([(t["task_id"], t["upstream"]) for t in found["tasks"]], [(s, [] if i == 0 else [stages[i - 1]]) for i, s in enumerate(stages)])
    _eq([t["bash_command"] for t in found["tasks"]], [f"mlops-nb run --project {project} --stage {s} --run-key \"${RUN_KEY_ENV}\"" for s in stages])
    _eq({(t["retries"], json.dumps(t["env"]), t["append_env"]) for t in found["tasks"]}, {(2, json.dumps({RUN_KEY_ENV: "{{ run_id }}"}), True)})
    _eq([t["timeout"] for t in found["tasks"]], [1800 + TIMEOUT_MARGIN] * 3 + [21600 + TIMEOUT_MARGIN, 3600 + TIMEOUT_MARGIN, 900 + TIMEOUT_MARGIN,
                                                 3600 + TIMEOUT_MARGIN])


@pytest.mark.slow
def test_airflow_runs_the_dag_as_one_pipeline_run(tmp_path, cancer_csv):
    "Airflow's `dag.test()` renders and runs every task (with this environment's mlops-nb) against a real project."
    project = make_project(tmp_path / "cancer", cancer_csv)
    with_report_stage(project)
    edit_settings(project, TINY)
    _eq(call_cli("export", "airflow", "--project", project, "--output", tmp_path / "dags" / "cancer.py", "--command", MLOPS_NB)[0], 0)
    found = with_airflow(airflow_python(), tmp_path / "airflow-home", tmp_path / "dags", "run")
    _eq((found["errors"], found["state"]), ({}, "success"))
    _eq([(r.info.status, r.data.tags.get("mlops_nb.run_key")) for r in pipeline_runs(project)], [("FINISHED", found["run_id"])])


# --- the GitHub Actions workflow


def workflow_steps(workflow: Path) -> tuple:
    "(the job's environment, its working directory relative to the repository, its steps) of the generated workflow."
    wf = yaml.safe_load(workflow.read_text())
    _eq(sorted(wf.get("on", wf.get(True))), ["pull_request", "workflow_dispatch"])  # YAML 1.1 reads the key `on` as True
    job = wf["jobs"]["pipeline"]
    _eq(job["defaults"]["run"]["shell"], "bash")
    return {**wf.get("env", {}), **job.get("env", {})}, job["defaults"]["run"].get("working-directory", "."), job["steps"]


def run_step(step: dict, env: dict, cwd: Path, runner_temp: Path) -> subprocess.CompletedProcess:
    "Run one `run:` step as GitHub's runner does with `shell: bash`: bash --noprofile --norc -eo pipefail SCRIPT."
    script = runner_temp / "step.sh"
    script.write_text(step["run"])
    env = cli_env({**env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "CI": "true", "GITHUB_ACTIONS": "true", "RUNNER_TEMP": str(runner_temp)})
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.mark.slow
def test_init_ci_github_in_a_repository_subfolder(tmp_path, cancer_csv):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", repo], check=True)
    code, out, err = call_cli("init", repo / "models" / "cancer", "--data", cancer_csv, "--target", "diagnosis", "--ci", "github")
    assert code == 0, show(code, out, err)
    workflow, sample = repo / ".github" / "workflows" / "mlops-nb.yml", repo / "models" / "cancer" / "ci" / "sample.csv"
    lines = out.splitlines()
    _eq(lines[4:6], [f"  ci sample  {sample}   (569 rows of the data: commit it only if they may be in the repository)",
                     f"  workflow   {workflow}   (on pull requests: the pipeline on the sample, the gate, the tests)"])
    env, workdir, steps = workflow_steps(workflow)
    _eq((workdir, env["MLOPS_NB"]), ("models/cancer", f"mlops-nb=={mlops_nb.__version__}"))
    _eq([s.get("uses") for s in steps[:2]], ["actions/checkout@v4", "actions/setup-python@v5"])
    _eq(steps[1]["with"], {"python-version": f"{sys.version_info.major}.{sys.version_info.minor}"})
    # again: the workflow is never replaced without --force, and nothing else is written either
    code, out, err = call_cli("init", repo / "models" / "other", "--data", cancer_csv, "--target", "diagnosis", "--ci", "github")
    _eq((code, out, err), (2, "", f"error: {workflow} already exists: pass --force to replace it\n"))
    _eq((repo / "models" / "other").exists(), False)
    _eq(call_cli("export", "github", "--project", repo / "models" / "cancer"), (2, "", f"error: {workflow} already exists: pass --force to replace it\n"))
    before = workflow.read_text()
    workflow.write_text(before + "# edited by hand\n")
    code, out, err = call_cli("export", "github", "--project", repo / "models" / "cancer", "--force", "--sample-rows", "100")
    _eq((code, workflow.read_text(), len(sample.read_text().splitlines())), (0, before, 101))


@pytest.mark.slow
def test_workflow_steps_pass_and_a_failing_gate_fails_the_gate_step(tmp_path, cancer_csv):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", repo], check=True)
    project = make_project(repo / "cancer", cancer_csv, "--ci", "github")
    (project / "tests").mkdir()
    (project / "tests" / "test_sample.py").write_text("import pandas as pd\n\ndef test_sample_has_both_classes():\n"
                                                      "    assert pd.read_csv('ci/sample.csv').diagnosis.nunique() == 2\n")
    (project / "requirements.txt").write_text("pandas\n")
    env, workdir, steps = workflow_steps(repo / ".github" / "workflows" / "mlops-nb.yml")
    cwd, runner_temp = repo / workdir, tmp_path / "runner-temp"
    runner_temp.mkdir()
    # install: pip is asked for what the workflow names, without changing this environment (mlops-nb and pandas are here already)
    env = {**env, "MLOPS_NB": "mlops-nb", "PIP_DRY_RUN": "1", "PIP_NO_INDEX": "1"}
    by_name = {s["name"]: s for s in steps if "run" in s}
    _eq(list(by_name), ["Install mlops-nb and the project's requirements", "Run the pipeline on the sample", "The gate must pass", "The project's tests"])
    outcomes = {name: run_step(step, env, cwd, runner_temp) for name, step in by_name.items()}
    for name, p in outcomes.items():
        assert p.returncode == 0, f"step {name!r}: " + show(p.returncode, p.stdout, p.stderr)
    assert "Would install" not in outcomes["Install mlops-nb and the project's requirements"].stdout
    run_id = next(line.split()[1] for line in outcomes["Run the pipeline on the sample"].stdout.splitlines() if line.startswith("Run "))
    _eq(outcomes["The gate must pass"].stdout.startswith(f"run {run_id}: gate passed"), True)
    assert "1 passed" in outcomes["The project's tests"].stdout, outcomes["The project's tests"].stdout
    _eq(sorted(p.name for p in (project / "runs").iterdir() if not p.name.startswith(".")).__len__(), 1)
    # the run used the sample and the project's own store, whatever tracking_uri says
    record = json.loads(next(p for p in (project / "runs").iterdir() if not p.name.startswith(".")).joinpath("run.json").read_text())
    _eq(record["status"], "FINISHED")
    # a model that misses a threshold: the pipeline still finishes, the gate step fails and says why
    edit_settings(project, {"evaluate": {"thresholds": {"roc_auc": 0.7, "log_loss": 0.0001}}})
    p = run_step(by_name["Run the pipeline on the sample"], env, cwd, runner_temp)
    assert p.returncode == 0, show(p.returncode, p.stdout, p.stderr)
    failed_id = next(line.split()[1] for line in p.stdout.splitlines() if line.startswith("Run "))
    p = run_step(by_name["The gate must pass"], env, cwd, runner_temp)
    _eq((p.returncode, p.stdout), (1, ""))
    assert p.stderr.startswith(f"run {failed_id}: gate failed") and "log_loss" in p.stderr, p.stderr


def test_gate_check_fails_closed_without_a_run(tmp_path, cancer_csv):
    project = quick_project(tmp_path / "p", cancer_csv)
    p = subprocess.run([sys.executable, "-m", "mlops_nb.export", "gate", "--project", project], env=cli_env(), capture_output=True, text=True,
                       timeout=60, check=False)
    _eq((p.returncode, p.stdout, p.stderr), (1, "", f"no pipeline run in {project / 'runs'}: run the pipeline first\n"))
    _eq(call_cli("gate", "--project", project), (1, "", f"no pipeline run in {project / 'runs'}: run the pipeline first\n"))
    code, out, err = call_cli("gate", "--project", tmp_path / "nowhere")
    _eq((code, out, err.startswith("error: ")), (2, "", True))


def record_run(project: Path, folder: str, **run) -> None:
    "A pipeline run's record (`runs/FOLDER/run.json`), as `mlops-nb run` leaves it."
    (project / "runs" / folder).mkdir(parents=True)
    (project / "runs" / folder / "run.json").write_text(json.dumps(run))


def test_workflow_steps_around_the_run(tmp_path, cancer_csv):
    "Every `run:` step but the pipeline run itself (the slow test above runs them all): install, the gate read from the run's record, the tests."
    project = quick_project(tmp_path / "cancer", cancer_csv)
    _eq(call_cli("export", "github", "--project", project)[0], 0)
    env, workdir, steps = workflow_steps(project / ".github" / "workflows" / "mlops-nb.yml")
    _eq(workdir, ".")
    install, run, gate, tests = (s for s in steps if "run" in s)
    env = {**env, "MLOPS_NB": "mlops-nb", "PIP_DRY_RUN": "1", "PIP_NO_INDEX": "1"}
    def step(s):
        return run_step(s, env, project, tmp_path)
    p = step(install)
    _eq((p.returncode, "Would install" in p.stdout, "Requirement already satisfied: mlops-nb" in p.stdout), (0, False, True))
    _eq(step(tests).stdout, "no tests/ folder: no tests to run\n")
    p = step(gate)
    _eq((p.returncode, p.stderr), (1, f"no pipeline run in {project / 'runs'}: run the pipeline first\n"))
    record_run(project, "20260101-000000-aaaaaaaa", run_id="aaaaaaaa1", status="FINISHED",
               summary={"tags": {"gate": "passed", "gate_summary": "passed: 1 of 1 checks"}})
    _eq(step(gate).stdout, "run aaaaaaaa1: gate passed: 1 of 1 checks\n")
    record_run(project, "20260102-000000-bbbbbbbb", run_id="bbbbbbbb2", status="FINISHED",
               summary={"tags": {"gate": "failed", "gate_summary": "failed: roc_auc 0.62 < 0.7"}})
    p = step(gate)
    _eq((p.returncode, p.stdout, p.stderr), (1, "", "run bbbbbbbb2: gate failed: roc_auc 0.62 < 0.7\n"))
    record_run(project, "20260103-000000-cccccccc", run_id="cccccccc3", status="FAILED", error="stage 'train' timed out after 6h", summary={})
    _eq(step(gate).stderr, "run cccccccc3 ended FAILED: stage 'train' timed out after 6h\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_x.py").write_text("def test_fails():\n    assert 1 == 2\n")
    _eq(step(tests).returncode, 1)
    assert "--set data.path=ci/sample.csv" in run["run"] and "tracking_uri=sqlite:///$(pwd -P)/mlflow.db" in run["run"], run["run"]
