"""`mlops-nb lineage` and `mlops-nb audit` on a real pipeline run, in a project that is a git repository.

The example project's one pipeline run (conftest's `example_run`) is made in a committed git repository, so the commit
and the dirty flag are known; every test only reads it.
"""
from __future__ import annotations

import getpass
import hashlib
import json
from pathlib import Path

import mlflow
import pytest
from conftest import call_cli, client_for, read_json, show
from fastcore.test import test_eq as _eq

STAGES = ["ingest", "validate", "prepare", "train", "evaluate", "register"]


@pytest.fixture(scope="module")
def made(example_run):
    "The committed example project and its one pipeline run (conftest's `example_run`)."
    return example_run["project"], example_run["run_id"], example_run["run_dir"], example_run["commit"]


def _lineage(project, *ref) -> tuple:
    code, out, err = call_cli("lineage", *ref, "--project", project)
    assert code == 0, show(code, out, err)
    return out.splitlines(), err


def _row(lines: list, label: str) -> list:
    "The lines of one labelled row of the text: its first line and the continuation lines under it."
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {label:<14} "))
    rows = [lines[start][17:]]
    for line in lines[start + 1:]:
        if not line.startswith(" " * 17): break
        rows.append(line[17:])
    return rows


@pytest.mark.slow
def test_lineage_text_answers_what_made_the_champion(made):
    from mlops_nb.data import fingerprint, read_table
    project, run_id, run_dir, commit = made
    lines, err = _lineage(project)
    _eq(err, "")
    _eq(lines[0].split(", registered ")[0], "breast-cancer v1 (@champion, @challenger)")
    _eq(_row(lines, "pipeline run")[0].split(", started")[0], f"{run_id} FINISHED")
    data = project / "data" / "breast-cancer.csv"
    _eq(_row(lines, "data"), [str(data)])
    _eq(_row(lines, "fingerprint"), [fingerprint(read_table(data))])
    _eq(_row(lines, "rows"), ["569 read, 569 accepted, 0 quarantined"])
    assert _row(lines, "contract")[0].startswith(f"sha256 {hashlib.sha256((project / 'contract.yaml').read_bytes()).hexdigest()}"), lines
    _eq(_row(lines, "git"), [f"commit {commit}, dirty: false"])
    packages = _row(lines, "packages")[0]
    assert f"mlflow=={mlflow.__version__}" in packages and packages.endswith(f"(runs:/{run_id}/environment/requirements.txt)"), packages
    settings = _row(lines, "settings")
    _eq([s for s in settings if s.startswith(("train.n_splits", "train.n_iter", "seed"))], ["seed: 42", "train.n_splits: 2", "train.n_iter: 1"])
    notebooks = _row(lines, "notebooks")
    _eq([n.split()[:2] for n in notebooks], [[s, "FINISHED"] for s in STAGES])
    _eq([n.rsplit("/", 1)[1] for n in notebooks], [f"0{i}_{s}.ipynb" for i, s in enumerate(STAGES, 1)])
    gate = read_json(run_dir / "evaluate" / "gate.json")
    _eq(_row(lines, "gate"), [gate["summary"]] + [f"{'✔' if c['passed'] else '✘'} {c['name']}: {c['detail']}" for c in gate["checks"]])
    _eq(_row(lines, "compared with"), ["no champion (there was none)"])


def test_lineage_json_is_the_record(made):
    project, run_id, run_dir, commit = made
    code, out, err = call_cli("lineage", "--project", project, "--json")
    assert code == 0, show(code, out, err)
    info = json.loads(out)
    _eq((info["model"], info["version"], info["aliases"], info["gate"]), ("breast-cancer", 1, ["champion", "challenger"], "passed"))
    _eq(info["git"], {"commit": commit, "dirty": False})
    _eq({k: info["data"][k] for k in ("rows_read", "rows_accepted", "rows_quarantined")}, {"rows_read": 569, "rows_accepted": 569, "rows_quarantined": 0})
    _eq(info["data"]["datasets"], [{"name": "breast-cancer.csv", "digest": info["data"]["fingerprint"][:32]}])
    _eq((info["settings"]["train"]["n_splits"], info["settings"]["train"]["candidates"]), (2, ["logistic_regression"]))
    _eq(info["gate_result"], read_json(run_dir / "evaluate" / "gate.json"))
    _eq(info["compared_with"], {"version": None, "champion_at_registration": None, "note": None})
    client = client_for(project)
    stages = {r.data.tags["mlops_nb.stage"]: r.info.run_id for r in
              client.search_runs([client.get_run(run_id).info.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'")}
    _eq([(n["stage"], n["run_id"]) for n in info["notebooks"]], [(s, stages[s]) for s in STAGES])
    _eq([sorted(f.rsplit("/", 1)[1] for f in n["files"]) for n in info["notebooks"]],
        [[f"0{i}_{s}.html", f"0{i}_{s}.ipynb"] for i, s in enumerate(STAGES, 1)])
    installed = client.download_artifacts(run_id, "environment/requirements.txt", str(run_dir / "_lineage_check"))
    _eq(info["packages"]["all"], [line for line in Path(installed).read_text().splitlines() if "==" in line])
    contract = client.download_artifacts(run_id, "contract/contract.yaml", str(run_dir / "_lineage_check"))
    _eq(info["contract"]["sha256"], hashlib.sha256(Path(contract).read_bytes()).hexdigest())


@pytest.mark.parametrize("ref", ["v1", "1", "@champion", "@challenger", "breast-cancer@champion", "breast-cancer@v1", "models:/breast-cancer/1"])
def test_every_way_of_naming_the_version(made, ref):
    code, out, _ = call_cli("lineage", ref, "--project", made[0])
    _eq((code, out.splitlines()[0].split(", registered ")[0]), (0, "breast-cancer v1 (@champion, @challenger)"))


@pytest.mark.parametrize("ref, message", [
    ("v9", "error: 'breast-cancer' has no version 9: its versions are v1"),
    ("@staging", "error: 'breast-cancer' has no @staging: its aliases are @challenger (v1), @champion (v1)"),
    ("other@champion", "error: there is no registered model 'other' in this store"),
    ("@", "error: '@' names no alias: write MODEL@champion, MODEL@v3, @champion or v3"),
])
def test_unknown_versions_are_one_line_and_exit_2(made, ref, message):
    _eq(call_cli("lineage", ref, "--project", made[0]), (2, "", message + "\n"))


def test_audit_records_the_gate_promotion_of_the_run(made):
    project, run_id, run_dir, _ = made
    code, out, err = call_cli("audit", "--project", project, "--json")
    assert code == 0, show(code, out, err)
    changes = json.loads(out)
    _eq([{k: c[k] for k in ("alias", "from_version", "to_version", "source", "run_id", "who", "why")} for c in changes], [
        {"alias": "challenger", "from_version": None, "to_version": 1, "source": "register", "run_id": run_id, "who": getpass.getuser(), "why": "registered"},
        {"alias": "champion", "from_version": None, "to_version": 1, "source": "gate", "run_id": run_id, "who": getpass.getuser(),
         "why": f"gate {read_json(run_dir / 'evaluate' / 'gate.json')['summary']}"}])
    _eq(read_json(run_dir / "register" / "registration.json"),
        {"name": "breast-cancer", "version": 1, "aliases": ["champion", "challenger"], "gate_passed": True,
         "previous_champion": None, "compared_with": None, "note": None})
