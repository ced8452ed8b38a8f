"""The stage cache through the real command: an unchanged run is fully cached (same model version, nothing registered,
the runs say where from); a setting re-runs exactly the stages that read it and those after them; a changed data
file, a deleted or changed cached output and a moved @champion are detected and rebuilt; `--no-cache` and
`pipeline.cache: false` run everything."""
from __future__ import annotations

import os
import re

import pandas as pd
import pytest
from conftest import client_for, read_json, run_cli, run_dir_of, run_id_from, set_stages, show, stage_runs
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
    breast_cancer_frame.to_csv(base / "cancer.csv", index=False)
    project = base / "project"
    init_project(project, base / "cancer.csv", "diagnosis")
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
    breast_cancer_frame.to_csv(tmp_path / "cancer.csv", index=False)
    project = tmp_path / "project"
    init_project(project, tmp_path / "cancer.csv", "diagnosis")
    set_stages(project, ["ingest", "validate"])
    return project


def test_no_cache_and_setting_run_everything(small):
    first = run(small)
    _eq(run(small)["stages"], [("ingest", "cached", f"cached from run {first['run_id'][:8]}"), ("validate", "cached", f"cached from run {first['run_id'][:8]}")])
    _eq(run(small, "--no-cache")["stages"], [("ingest", "ok", ""), ("validate", "ok", "")])
    _eq(run(small, "--set", "pipeline.cache=false")["stages"], [("ingest", "ok", ""), ("validate", "ok", "")])


def test_changed_data_file_reruns_everything(small):
    run(small)
    frame = pd.read_csv(small.parent / "cancer.csv")
    frame.iloc[:-1].to_csv(small.parent / "cancer.csv", index=False)
    changed = run(small)
    _eq(changed["stages"], [("ingest", "ok", ""), ("validate", "ok", "")])
    _eq(len(pd.read_parquet(changed["run_dir"] / "ingest" / "data.parquet")), len(frame) - 1)


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
