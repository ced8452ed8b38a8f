"""The stage cache through the real command: an unchanged run is fully cached (same model version, nothing registered,
the runs say where from); a setting re-runs exactly the stages that read it and those after them; a changed data
file, a deleted or changed cached output and a moved @champion are detected and rebuilt; `--no-cache` and
`pipeline.cache: false` run everything."""
from __future__ import annotations

import os
import re

import pandas as pd
import pytest
from conftest import call_cli, cancer_project, client_for, read_json, run_cli, run_dir_of, run_id_from, set_stages, show, stage_runs
from fastcore.test import test_eq as _eq

from mlops_nb.pipeline import init_project

SMALL = ["--set", "train.n_iter=1", "--set", "train.n_splits=2", "--set", "train.candidates=[logistic_regression]", "-q"]
STAGES = ["ingest", "validate", "prepare", "train", "evaluate", "register"]
LINE = re.compile(r"^\s+\[(\d)/(\d)\] (\S+)\s+(ok|cached|failed|skipped)\s+[\d.]+s(.*)$")


def progress(out: str) -> list:
    "(stage, status, the rest of the line) of every progress line."
    return [(m[3], m[4], m[5].strip()) for m in map(LINE.match, out.splitlines()) if m]


def run(project, *args):
    code, out, err = run_cli("run", "--project", project, *SMALL, *args)
    assert code == 0, show(code, out, err)
    return {"out": out, "err": err, "run_id": run_id_from(out), "run_dir": run_dir_of(project, run_id_from(out)), "stages": progress(out)}


def versions(project, name="project") -> list:
    return sorted(int(v.version) for v in client_for(project).search_model_versions(f"name = '{name}'"))


@pytest.fixture(scope="module")
def full(tmp_path_factory, breast_cancer_frame):
    "One project, four runs: a first one, the same again, one with another threshold, then one after @champion moved."
    base = tmp_path_factory.mktemp("cache")
    project = cancer_project(base, breast_cancer_frame)
    first = run(project)
    first_versions = versions(project)
    again = run(project)
    again_versions = versions(project)
    stricter = run(project, "--set", "evaluate.thresholds={roc_auc: 0.6}")
    client_for(project).set_registered_model_alias("project", "champion", "2")  # someone else promotes v2
    moved = run(project)
    return {"project": project, "first": first, "again": again, "stricter": stricter, "moved": moved,
            "first_versions": first_versions, "again_versions": again_versions}


def test_first_run_runs_every_stage(full):
    _eq(full["first"]["stages"], [(s, "ok", "") for s in STAGES])
    _eq(full["first_versions"], [1])


def test_identical_run_is_fully_cached(full):
    first, again = full["first"], full["again"]
    _eq(again["stages"], [(s, "cached", f"cached from run {first['run_id'][:8]}") for s in STAGES])
    _eq(full["again_versions"], [1])  # no new version registered
    assert "  model     project v1 (" in again["out"], again["out"]
    client = client_for(full["project"])
    parent = client.get_run(again["run_id"])
    _eq((parent.info.status, parent.data.tags["mlops_nb.cached_from"], parent.data.tags["mlops_nb.cached_stages"]),
        ("FINISHED", first["run_id"], ",".join(STAGES)))
    _eq(parent.data.tags["model_version"], "1")
    made, linked = stage_runs(client, first["run_id"]), stage_runs(client, again["run_id"])
    _eq({s: (r.info.status, r.data.tags["mlops_nb.cached_from"], r.data.tags["mlops_nb.cached_from_run"]) for s, r in linked.items()},
        {s: ("FINISHED", made[s].info.run_id, first["run_id"]) for s in STAGES})
    summary = read_json(first["run_dir"] / "evaluate" / "summary.json")["metrics"]  # what a stage's summary carries is copied
    _eq(linked["evaluate"].data.metrics, {k: made["evaluate"].data.metrics[k] for k in summary})
    _eq(sorted(summary), ["test_accuracy", "test_balanced_accuracy", "test_f1", "test_log_loss", "test_pr_auc", "test_precision", "test_recall", "test_roc_auc"])
    for stage in STAGES:  # the new run's folders point at the outputs they reuse
        _eq(os.path.realpath(again["run_dir"] / stage), str(first["run_dir"] / stage))
    _eq([(s["name"], s["status"], s["cached_from"]) for s in read_json(again["run_dir"] / "run.json")["stages"]],
        [(s, "cached", first["run_id"]) for s in STAGES])
    _eq(sorted(p.name for p in (again["run_dir"] / "notebooks").iterdir()), [])  # nothing was executed


def test_evaluate_setting_reruns_exactly_evaluate_and_register(full):
    first, stricter = full["first"], full["stricter"]
    _eq([(s, status) for s, status, _ in stricter["stages"]], [(s, "cached") for s in STAGES[:4]] + [("evaluate", "ok"), ("register", "ok")])
    _eq(sorted(p.name for p in (stricter["run_dir"] / "notebooks").iterdir()), ["05_evaluate.ipynb", "06_register.ipynb"])
    _eq(read_json(stricter["run_dir"] / "evaluate" / "gate.json")["checks"][0]["name"], "roc_auc >= 0.6")
    _eq(os.path.realpath(stricter["run_dir"] / "train"), str(first["run_dir"] / "train"))
    assert "  model     project v2 (" in stricter["out"], stricter["out"]


def test_moved_champion_invalidates_evaluate_and_register(full):
    first, moved = full["first"], full["moved"]
    _eq([(s, status) for s, status, _ in moved["stages"]], [(s, "cached") for s in STAGES[:4]] + [("evaluate", "ok"), ("register", "ok")])
    _eq([line for line in moved["err"].splitlines() if line.startswith("warning: stage")],
        [(f"warning: stage 'evaluate': not using the cached outputs of run {first['run_id'][:8]}: "
         "@champion changed since it compared with no champion (now v2); running it again")])
    _eq(str(read_json(moved["run_dir"] / "evaluate" / "gate.json")["champion_version"]), "2")
    _eq(versions(full["project"]), [1, 2, 3])


# --- a two-stage project: each test makes its own ---

@pytest.fixture
def small(tmp_path, breast_cancer_frame):
    project = cancer_project(tmp_path, breast_cancer_frame)
    set_stages(project, ["ingest", "validate"])
    return project


@pytest.mark.slow
def test_no_cache_and_setting_run_everything(small):
    first = run(small)
    _eq(run(small)["stages"], [("ingest", "cached", f"cached from run {first['run_id'][:8]}"), ("validate", "cached", f"cached from run {first['run_id'][:8]}")])
    _eq(run(small, "--no-cache")["stages"], [("ingest", "ok", ""), ("validate", "ok", "")])
    _eq(run(small, "--set", "pipeline.cache=false")["stages"], [("ingest", "ok", ""), ("validate", "ok", "")])


@pytest.mark.slow
def test_changed_data_file_reruns_everything(small):
    run(small)
    frame = pd.read_csv(small.parent / "cancer.csv")
    frame.iloc[:-1].to_csv(small.parent / "cancer.csv", index=False)
    changed = run(small)
    _eq(changed["stages"], [("ingest", "ok", ""), ("validate", "ok", "")])
    _eq(len(pd.read_parquet(changed["run_dir"] / "ingest" / "data.parquet")), len(frame) - 1)


@pytest.mark.slow
def test_deleted_or_changed_cached_output_is_rebuilt(small):
    first = run(small)
    (first["run_dir"] / "validate" / "quarantine.parquet").unlink()
    rebuilt = run(small)
    _eq(rebuilt["stages"], [("ingest", "cached", f"cached from run {first['run_id'][:8]}"), ("validate", "ok", "")])
    _eq([line for line in rebuilt["err"].splitlines() if line.startswith("warning: stage")],
        [f"warning: stage 'validate': not using the cached outputs of run {first['run_id'][:8]}: quarantine.parquet was deleted; running it again"])
    _eq((rebuilt["run_dir"] / "validate" / "quarantine.parquet").is_file(), True)
    data = first["run_dir"] / "ingest" / "data.parquet"
    data.write_bytes(data.read_bytes() + b"\0")
    again = run(small)
    _eq(again["stages"], [("ingest", "ok", ""), ("validate", "ok", "")])  # everything after a rebuilt stage runs too
    _eq([line for line in again["err"].splitlines() if line.startswith("warning: stage")],
        [f"warning: stage 'ingest': not using the cached outputs of run {first['run_id'][:8]}: data.parquet changed; running it again"])


@pytest.mark.parametrize("settings, message", [
    ({"prepare": {"cutoff": "2024-06-30"}}, "prepare.cutoff is set but data.time_column is not: a cutoff needs the column that orders the rows"),
    ({"data": {"time_column": "day"}, "prepare": {"cutoff": "2024-06-30", "split": "stratified"}},
     "prepare.cutoff needs a time split but prepare.split is stratified: set prepare.split to time or auto"),
    ({"data": {"time_column": "day"}, "prepare": {"cutoff": "2024-06-30", "split": "random"}},
     "prepare.cutoff needs a time split but prepare.split is random: set prepare.split to time or auto"),
    ({"data": {"time_column": "day"}, "prepare": {"horizon": "30d"}},
     "prepare.horizon is set but prepare.cutoff is not: the horizon is measured from the cutoff"),
])
def test_backtest_settings_without_a_time_split_are_rejected(settings, message):
    from mlops_nb.config import UsageError, config_from_dict
    from mlops_nb.project import check_settings
    with pytest.raises(UsageError) as e: check_settings(config_from_dict(settings))
    _eq(str(e.value), message)
    check_settings(config_from_dict({"data": {"time_column": "day"}, "prepare": {"cutoff": "2024-06-30", "horizon": "30d"}}))  # split auto: fine


def test_horizon_without_cutoff_stops_the_command_before_a_run(tmp_path, breast_cancer_frame):
    breast_cancer_frame.to_csv(tmp_path / "cancer.csv", index=False)
    init_project(tmp_path / "project", tmp_path / "cancer.csv", "diagnosis")
    code, _out, err = call_cli("run", "--project", tmp_path / "project", "--set", "prepare.horizon=30d")
    _eq((code, err.strip()), (2, "error: prepare.horizon is set but prepare.cutoff is not: the horizon is measured from the cutoff"))
    _eq((tmp_path / "project" / "runs").exists() and any((tmp_path / "project" / "runs").glob("*/run.json")), False)


def test_runbook_hash_is_nbformats(tmp_path):
    "The hash read from the JSON equals the one through nbformat, for every packaged runbook and an old-format notebook."
    import hashlib
    import json

    import nbformat

    from mlops_nb.cache import runbook_hash
    from mlops_nb.project import RUNBOOKS
    v3 = nbformat.v3.new_notebook(worksheets=[nbformat.v3.new_worksheet(cells=[nbformat.v3.new_code_cell("x = 1\ny = 2")])])
    (tmp_path / "old.ipynb").write_text(nbformat.v3.nbjson.writes(v3))
    books = sorted(RUNBOOKS.glob("*.ipynb")) + [tmp_path / "old.ipynb"]
    _eq(len(books), 8)
    for book in books:
        cells = [[c.cell_type, c.source] for c in nbformat.read(book, as_version=4).cells]
        _eq(runbook_hash(book), hashlib.sha256(json.dumps(cells).encode()).hexdigest())


def test_settings_that_passed_are_not_checked_again(tmp_path, breast_cancer_frame, monkeypatch):
    "A run marks settings + contract that passed check_settings; the same again skips it, any change checks again."
    import mlops_nb.project as project_module
    from mlops_nb.cache import write_atomic
    from mlops_nb.config import UsageError, load_config
    project = cancer_project(tmp_path, breast_cancer_frame)
    with pytest.raises(UsageError): project_module.check_inputs(load_config(project, {"train": {"primary_metric": "auc"}}))
    _eq((project / "runs").exists(), False)  # a refused command leaves nothing behind
    calls = []
    real = project_module.check_settings
    monkeypatch.setattr(project_module, "check_settings", lambda cfg, contract=None: (calls.append(cfg.seed), real(cfg, contract)))
    mark = project_module.check_inputs(load_config(project))
    _eq(mark, project_module.checked_mark(load_config(project), (project / "contract.yaml").read_bytes()))
    _eq(mark.parent, project / "runs" / ".cache" / ".checked")
    write_atomic(mark, "")  # what a run does once it has started
    _eq(project_module.check_inputs(load_config(project)), None)
    _eq(calls, [42])
    write_atomic(project_module.check_inputs(load_config(project, {"seed": 7})), "")  # another setting: checked
    (project / "contract.yaml").write_text((project / "contract.yaml").read_text() + "\n")  # another contract file: checked
    _eq(project_module.check_inputs(load_config(project)) is None, False)
    _eq(calls, [42, 7, 42])


@pytest.mark.slow
def test_a_run_marks_its_settings_and_the_next_run_skips_the_check(tmp_path, breast_cancer_frame):
    "Through the command: the first run leaves one mark, a cached re-run with the same settings adds none."
    project = cancer_project(tmp_path, breast_cancer_frame)
    set_stages(project, ["ingest", "validate"])
    marks = project / "runs" / ".cache" / ".checked"
    run(project)
    _eq(len(list(marks.iterdir())), 1)
    _eq([status for _, status, _ in run(project)["stages"]], ["cached", "cached"])
    _eq(len(list(marks.iterdir())), 1)


@pytest.mark.slow
def test_a_stage_that_says_it_cannot_be_reused_always_runs(small):
    "A stage whose result depends on something outside its key (a database, the clock) says so, and gets no cache entry."
    from conftest import stage_notebook
    stage_notebook(small / "runbooks" / "clock.ipynb", "ctx.not_reusable('it compares the data with the clock')")
    set_stages(small, ["ingest", {"name": "clock", "notebook": "runbooks/clock.ipynb"}])
    first = run(small)
    _eq(first["stages"], [("ingest", "ok", ""), ("clock", "ok", "")])
    again = run(small)
    _eq(again["stages"], [("ingest", "cached", f"cached from run {first['run_id'][:8]}"), ("clock", "ok", "")])
    _eq([line for line in again["err"].splitlines() if line.startswith("warning:")], [])
    _eq(sorted(p.name for p in (small / "runs" / ".cache").iterdir() if p.is_dir() and p.name != ".checked"), ["ingest"])
