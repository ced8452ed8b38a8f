"""Custom stages (failing and succeeding), a project's own runbook, and usage errors that stop before anything runs."""
from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest
from conftest import (
    artifact_paths,
    call_cli,
    client_for,
    error_lines,
    fast,
    read_json,
    run_cli,
    run_dir_of,
    run_id_from,
    set_stages,
    show,
    stage_notebook,
    stage_runs,
)
from fastcore.test import test_eq as _eq

ENRICH = '''\
import pandas as pd
df = pd.read_parquet(ctx.table)
df["radius_per_texture"] = df["mean radius"] / df["mean texture"]
df.to_parquet(ctx.output("data.parquet"), index=False)
print(f"enriched {len(df)} rows")
'''
BROKEN = '''\
import pandas as pd
df = pd.read_parquet(ctx.table)
raise RuntimeError("enrichment service unavailable")
'''
MARKER = '''\
ctx.output("marker.txt").write_text("project runbook used")
'''
STAGES = ["ingest", "validate", {"name": "enrich", "notebook": "runbooks/enrich.ipynb"}, "prepare", "train", "evaluate", "register"]


@pytest.fixture(scope="session")
def enriched(tmp_path_factory, breast_cancer_frame):
    "A project with a custom `enrich` stage after validate and its own edited prepare runbook; one successful run."
    base = tmp_path_factory.mktemp("custom")
    breast_cancer_frame.to_csv(base / "cancer.csv", index=False)
    project = base / "project"
    code, out, err = run_cli("init", project, "--data", base / "cancer.csv", "--target", "diagnosis")
    assert code == 0, show(code, out, err)
    stage_notebook(project / "runbooks" / "enrich.ipynb", ENRICH)
    stage_notebook(project / "runbooks" / "enrich_broken.ipynb", BROKEN)
    set_stages(project, STAGES)
    prepare = project / "runbooks" / "prepare.ipynb"
    nb = nbformat.read(prepare, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(MARKER))
    nbformat.write(nb, prepare)
    code, out, err = run_cli("run", "--project", project, *fast)
    assert code == 0, show(code, out, err)
    return {"project": project, "out": out, "run_id": run_id_from(out), "run_dir": run_dir_of(project, run_id_from(out))}


@pytest.fixture(scope="session")
def enrich_failed(enriched):
    "The same project, its enrich stage swapped for one that raises."
    broken = [s if not isinstance(s, dict) else {"name": "enrich", "notebook": "runbooks/enrich_broken.ipynb"} for s in STAGES]
    code, out, err = run_cli("run", "--project", enriched["project"], "--set", f"stages={json.dumps(broken)}", "--no-cache", *fast)
    run_id = run_id_from(out)
    return {"code": code, "out": out, "err": err, "run_id": run_id, "run_dir": run_dir_of(enriched["project"], run_id)}


@pytest.mark.slow
def test_failing_custom_stage_stops_the_run(enriched, enrich_failed):
    code, out, err, run_dir = enrich_failed["code"], enrich_failed["out"], enrich_failed["err"], enrich_failed["run_dir"]
    assert code == 1, show(code, out, err)
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert "error: stage 'enrich' failed in cell " in lines[0] and lines[0].endswith("RuntimeError: enrichment service unavailable"), err
    assert "Traceback" not in err
    assert str(run_dir / "notebooks" / "03_enrich.ipynb") in err  # tells where to look
    assert "[3/7] enrich" in out and "failed" in out

    executed = nbformat.read(run_dir / "notebooks" / "03_enrich.ipynb", as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert [(e.ename, e.evalue) for e in errors] == [("RuntimeError", "enrichment service unavailable")]
    folders = {p.name for p in run_dir.iterdir() if p.is_dir()}
    assert folders == {"ingest", "validate", "notebooks"}, folders  # the broken stage raised before writing anything
    assert not (run_dir / "notebooks" / "04_prepare.ipynb").exists()
    info = read_json(run_dir / "run.json")
    assert info["status"] == "FAILED" and info["error"].startswith("stage 'enrich' failed in cell")

    client = client_for(enriched["project"])
    parent = client.get_run(enrich_failed["run_id"])
    assert parent.info.status == "FAILED"
    children = stage_runs(client, enrich_failed["run_id"])
    assert sorted(children) == ["enrich", "ingest", "validate"]
    enrich = children["enrich"]
    assert enrich.info.status == "FAILED" and "enrichment service unavailable" in enrich.data.tags["error"]
    assert sorted(artifact_paths(client, enrich.info.run_id, "notebook")) == ["notebook/03_enrich.html", "notebook/03_enrich.ipynb"]
    assert [int(v.version) for v in client.search_model_versions("name = 'project'")] == [1]  # only the earlier good run
    assert {a: int(v) for a, v in client.get_registered_model("project").aliases.items()} == {"champion": 1, "challenger": 1}


def test_custom_stage_output_feeds_later_stages(enriched):
    run_dir = enriched["run_dir"]
    assert "[3/7] enrich" in enriched["out"]
    assert sorted(p.name for p in (run_dir / "notebooks").iterdir())[2] == "03_enrich.ipynb"
    assert "radius_per_texture" in pd.read_parquet(run_dir / "enrich" / "data.parquet").columns
    assert "radius_per_texture" in pd.read_parquet(run_dir / "prepare" / "train.parquet").columns
    features = read_json(run_dir / "train" / "model.json")["features"]
    assert "radius_per_texture" in features and len(features) == 31, features  # the 30 measurements and the derived column
    client = client_for(enriched["project"])
    children = stage_runs(client, enriched["run_id"])
    assert children["enrich"].info.status == "FINISHED"
    assert client.get_model_version("project", "1").tags["pipeline_run_id"] == enriched["run_id"]


def test_project_runbook_overrides_packaged_one(enriched):
    from mlops_nb.pipeline import RUNBOOKS
    run_dir = enriched["run_dir"]
    assert (run_dir / "prepare" / "marker.txt").read_text() == "project runbook used"
    assert not (run_dir / "ingest" / "marker.txt").exists()
    executed = nbformat.read(run_dir / "notebooks" / "04_prepare.ipynb", as_version=4)
    assert any("marker.txt" in c.source for c in executed.cells)
    assert "marker.txt" not in (RUNBOOKS / "prepare.ipynb").read_text()  # the packaged runbook is untouched


# --- usage errors: exit 2, one line on stderr, nothing run ---

def _usage_error(code, out, err) -> str:
    assert code == 2, show(code, out, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), show(code, out, err)
    return lines[0]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("usage") / "small.csv"
    pd.DataFrame({"height": [1.0, 2.0, 3.0, 4.0], "colour": ["a", "b", "a", "b"], "label": ["x", "y", "x", "y"]}).to_csv(path, index=False)
    return path


def test_init_missing_data_file(tmp_path):
    line = _usage_error(*call_cli("init", tmp_path / "p", "--data", tmp_path / "nope.csv", "--target", "y"))
    assert "data file not found" in line and "nope.csv" in line
    assert not (tmp_path / "p").exists()


def test_init_unknown_target_lists_columns(tmp_path, small_csv):
    line = _usage_error(*call_cli("init", tmp_path / "p", "--data", small_csv, "--target", "lable"))
    assert "'lable'" in line and "height, colour, label" in line
    assert not (tmp_path / "p").exists()


def test_init_unsupported_format(tmp_path):
    ods = tmp_path / "data.ods"
    ods.write_bytes(b"PK\x03\x04 a spreadsheet format mlops-nb does not read")
    line = _usage_error(*call_cli("init", tmp_path / "p", "--data", ods, "--target", "y"))
    assert "unsupported data format '.ods'" in line and "CSV" in line and "Parquet" in line
    xlsx = tmp_path / "data.xlsx"
    xlsx.write_bytes(b"PK\x03\x04 not really a workbook")
    line = _usage_error(*call_cli("init", tmp_path / "q", "--data", xlsx, "--target", "y"))
    assert "it is not an .xlsx workbook" in line, line


def test_init_single_class_target(tmp_path):
    csv = tmp_path / "one.csv"
    pd.DataFrame({"a": [1, 2, 3], "y": ["only", "only", "only"]}).to_csv(csv, index=False)
    line = _usage_error(*call_cli("init", tmp_path / "p", "--data", csv, "--target", "y"))
    assert "only one class ('only')" in line


@pytest.mark.slow
def test_init_existing_project_needs_force(tmp_path, small_csv):
    project = tmp_path / "p"
    code, out, err = call_cli("init", project, "--data", small_csv, "--target", "label")
    assert code == 0, show(code, out, err)
    (project / "runbooks" / "train.ipynb").write_text("{}")  # the user's edit must survive the refused re-init
    line = _usage_error(*call_cli("init", project, "--data", small_csv, "--target", "label"))
    assert "already an mlops-nb project" in line and "--force" in line
    assert (project / "runbooks" / "train.ipynb").read_text() == "{}"
    code, out, err = call_cli("init", project, "--data", small_csv, "--target", "colour", "--force")
    assert code == 0, show(code, out, err)
    assert "target: colour" in (project / "mlops.yaml").read_text()
    assert (project / "runbooks" / "train.ipynb").read_text() == "{}", "--force re-creates settings and contract, never an edited runbook"


def test_run_outside_a_project(tmp_path):
    line = _usage_error(*call_cli("run", cwd=tmp_path))
    assert "no mlops.yaml in" in line and "mlops-nb init" in line
    assert list(tmp_path.iterdir()) == []


def test_run_unknown_setting_suggests_the_right_one(tmp_path, small_csv):
    project = tmp_path / "p"
    assert call_cli("init", project, "--data", small_csv, "--target", "label")[0] == 0
    line = _usage_error(*call_cli("run", "--project", project, "--set", "train.n_split=3"))
    assert "unknown setting 'train.n_split'" in line and "n_splits" in line
    line = _usage_error(*call_cli("run", "--project", project, "--set", "train.n_splits"))
    assert "key=value" in line
    assert not (project / "runs").exists()  # nothing ran


def test_run_custom_stage_with_missing_notebook(tmp_path, small_csv):
    project = tmp_path / "p"
    assert call_cli("init", project, "--data", small_csv, "--target", "label")[0] == 0
    set_stages(project, ["ingest", {"name": "enrich", "notebook": "runbooks/missing.ipynb"}])
    line = _usage_error(*call_cli("run", "--project", project))
    assert "stage 'enrich'" in line and "missing.ipynb" in line and "not found" in line
    assert not (project / "runs").exists()


def test_run_unknown_example():
    code, out, err = call_cli("run", "--example", "nope")
    assert code == 2 and "invalid choice: 'nope'" in err and "Traceback" not in err, show(code, out, err)


@pytest.mark.slow
def test_unreachable_tracking_server_is_a_usage_error(tmp_path, small_csv, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once instead of retrying for minutes
    project = tmp_path / "p"
    assert call_cli("init", project, "--data", small_csv, "--target", "label")[0] == 0
    line = _usage_error(*call_cli("run", "--project", project, "--set", "tracking_uri=http://127.0.0.1:9"))
    assert "cannot record to the MLflow store at http://127.0.0.1:9" in line
    assert [p.name for p in (project / "runs").iterdir()] == [], "a run that never started leaves no files"


def test_missing_data_or_broken_contract_stops_before_running(tmp_path, small_csv):
    project = tmp_path / "p"
    assert call_cli("init", project, "--data", small_csv, "--target", "label")[0] == 0
    line = _usage_error(*call_cli("run", "--project", project, "--set", "data.path=moved.csv"))
    assert f"data file not found: {project.resolve() / 'moved.csv'}" in line
    contract = project / "contract.yaml"
    contract.write_text(contract.read_text().replace("role: target", "role: label", 1))
    line = _usage_error(*call_cli("run", "--project", project))
    assert "contract.yaml" in line and "label" in line, line
    assert not (project / "runs").exists(), "nothing ran"


def test_the_command_exits_with_mains_status_after_the_exit_functions_and_all_its_output(tmp_path):
    "`console` skips the interpreter's teardown, not what an ordinary exit does first: threads joined, atexit functions run, output flushed."
    prelude = ("import atexit, threading, time, pathlib\n"
               "def late(): time.sleep(0.5); pathlib.Path('thread.txt').write_text('joined')\n"
               "threading.Thread(target=late).start()\n"
               "atexit.register(lambda: pathlib.Path('atexit.txt').write_text('ran'))\n"
               "print('x' * 200_000, end='')")  # more than a pipe's buffer, still in the stdout buffer at exit
    code, out, err = run_cli("run", "--example", "nope", cwd=tmp_path, prelude=prelude)
    _eq((code, len(out), "invalid choice: 'nope'" in err), (2, 200_000, True))
    _eq(((tmp_path / "thread.txt").read_text(), (tmp_path / "atexit.txt").read_text()), ("joined", "ran"))
    code, out, err = run_cli("--version", cwd=tmp_path)
    _eq((code, out.strip().split()[0], err), (0, "mlops-nb", ""))
