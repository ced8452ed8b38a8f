"""Faults and continuing runs through the real command: a stage that raises, a kernel that dies and one that hangs past
its timeout end the stage and the parent run FAILED with one line, and `--resume` then finishes the same run, running
only the failed stage; `--stage NAME --run-key KEY` builds one run stage by stage; a notebook written for the earlier
parameters still runs."""
from __future__ import annotations

import time

import nbformat
import pytest
from conftest import cancer_project, client_for, error_lines, read_json, run_cli, run_dir_of, run_dirs, run_id_from, set_stages, show, stage_notebook
from fastcore.test import test_eq as _eq

FIXED = "ctx.output('ok.txt').write_text('checked')\nprint('checked')"
FAULTS = {
    "error": ("raise RuntimeError('the reviewer has not signed off')", "RuntimeError: the reviewer has not signed off"),
    "died": ("ctx.output('half.txt').write_text('half')\nimport os\nos._exit(1)", "error: stage 'check': its kernel died (exit code 1)"),
    "timeout": ("ctx.output('half.txt').write_text('half')\nimport time\ntime.sleep(600)",
                "error: stage 'check' timed out after 3s (pipeline.timeouts.check): its kernel was stopped"),
}
TIMEOUTS = {"error": "60s", "died": "60s", "timeout": "3s"}  # a dying kernel is noticed long before its timeout


@pytest.fixture
def project(tmp_path, breast_cancer_frame):
    "A breast-cancer project with a stage of its own, `check`, after ingest and validate."
    project = cancer_project(tmp_path, breast_cancer_frame)
    set_stages(project, ["ingest", "validate", {"name": "check", "notebook": "runbooks/check.ipynb"}])
    return project


def _children(project, run_id) -> list:
    "(stage, status) of every stage run of a pipeline run, oldest first."
    client = client_for(project)
    parent = client.get_run(run_id)
    runs = client.search_runs([parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'",
                              order_by=["attributes.start_time ASC"])
    return [(r.data.tags["mlops_nb.stage"], r.info.status) for r in runs]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["error", "died", "timeout"])
def test_resume_after_a_fault_finishes_the_same_run(project, fault):
    code_cell, message = FAULTS[fault]
    timeouts = ["--set", f"pipeline.timeouts={{check: {TIMEOUTS[fault]}}}"]
    stage_notebook(project / "runbooks" / "check.ipynb", code_cell)
    start = time.monotonic()
    code, out, err = run_cli("run", "--project", project, *timeouts, "-q")
    _eq(code, 1)
    lines = error_lines(err)
    _eq(len(lines), 1)
    if fault == "error": assert lines[0].startswith("error: stage 'check' failed in cell ") and lines[0].endswith(message), err
    else: _eq(lines[0], message)
    assert "Traceback" not in err, err
    if fault != "error": assert time.monotonic() - start < 180, "the stage did not end in time"
    run_id = run_id_from(out)
    run_dir = run_dir_of(project, run_id)
    info = read_json(run_dir / "run.json")
    _eq((info["status"], [(s["name"], s["status"]) for s in info["stages"]]), ("FAILED", [("ingest", "ok"), ("validate", "ok"), ("check", "failed")]))
    client = client_for(project)
    _eq(client.get_run(run_id).info.status, "FAILED")
    _eq(_children(project, run_id), [("ingest", "FINISHED"), ("validate", "FINISHED"), ("check", "FAILED")])
    _eq((run_dir / "check").exists(), False)  # no partial output where a later stage would look
    if fault != "error": _eq(sorted(p.name for p in (run_dir / "check.failed").iterdir()), ["half.txt"])

    stage_notebook(project / "runbooks" / "check.ipynb", FIXED)
    code, out, err = run_cli("run", "--project", project, "--resume", *timeouts, "-q")
    assert code == 0, show(code, out, err)
    _eq(run_id_from(out), run_id)
    _eq(run_dirs(project), [run_dir])
    assert "  [1/3] ingest       skipped" in out and "  [2/3] validate     skipped" in out and "  [3/3] check        ok" in out, out
    info = read_json(run_dir / "run.json")
    _eq((info["status"], info["error"], [(s["name"], s["status"]) for s in info["stages"]]),
        ("FINISHED", None, [("ingest", "ok"), ("validate", "ok"), ("check", "ok")]))
    parent = client.get_run(run_id)
    _eq((parent.info.status, "error" in parent.data.tags), ("FINISHED", False))
    _eq(_children(project, run_id), [("ingest", "FINISHED"), ("validate", "FINISHED"), ("check", "FAILED"), ("check", "FINISHED")])
    _eq(sorted(p.name for p in (run_dir / "check").iterdir()), [".manifest.json", "ok.txt"])  # nothing of the failed attempt
    _eq((run_dir / "check.failed").exists(), False)
    code, out, err = run_cli("run", "--project", project, "--resume", run_id)
    _eq((code, error_lines(err)), (2, [f"error: run {run_id} finished: there is nothing to resume (start a new run without --resume)"]))


@pytest.mark.slow
def test_stage_by_stage_with_a_run_key(project):
    stage_notebook(project / "runbooks" / "check.ipynb", FIXED)
    code, out, err = run_cli("run", "--project", project, "--stage", "validate", "--run-key", "nightly-1")
    _eq((code, error_lines(err)), (2, ["error: stage 'validate' needs stage(s) ingest done first in this run key (no run has it yet): run them with --stage"]))
    _eq(list((project / "runs").iterdir()), [])
    code, out, err = run_cli("run", "--project", project, "--stage", "ingest")
    _eq((code, error_lines(err)), (2, ["error: --stage needs --run-key KEY (or --resume RUN_ID): the run it belongs to"]))

    code, out, err = run_cli("run", "--project", project, "--stage", "ingest", "--run-key", "nightly-1", "-q")
    assert code == 0, show(code, out, err)
    run_id = run_id_from(out)
    client = client_for(project)
    _eq((client.get_run(run_id).info.status, client.get_run(run_id).data.tags["mlops_nb.run_key"]), ("RUNNING", "nightly-1"))
    code, out, err = run_cli("run", "--project", project, "--stage", "check", "--run-key", "nightly-1")
    _eq((code, error_lines(err)), (2, [f"error: stage 'check' needs stage(s) validate done first in run {run_id[:8]}: run them with --stage"]))
    for stage in ("validate", "check"):
        code, out, err = run_cli("run", "--project", project, "--stage", stage, "--run-key", "nightly-1", "-q")
        assert code == 0, show(code, out, err)
        _eq(run_id_from(out), run_id)
    _eq(client.get_run(run_id).info.status, "FINISHED")
    _eq(_children(project, run_id), [("ingest", "FINISHED"), ("validate", "FINISHED"), ("check", "FINISHED")])
    run_dir, = run_dirs(project)
    _eq([(s["name"], s["status"]) for s in read_json(run_dir / "run.json")["stages"]], [("ingest", "ok"), ("validate", "ok"), ("check", "ok")])
    code, out, err = run_cli("run", "--project", project, "--stage", "check", "--run-key", "nightly-1", "-q")
    assert code == 0 and "  [3/3] check        skipped    0.0s  done earlier in this run" in out, show(code, out, err)
    _eq(_children(project, run_id), [("ingest", "FINISHED"), ("validate", "FINISHED"), ("check", "FINISHED")])  # nothing ran


@pytest.mark.slow
def test_notebook_with_the_earlier_parameters_still_runs(project):
    "A stage notebook declaring the eleven earlier parameters gets them, and may pass them to `stage_context` in order."
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("stage = None\nproject_dir = None\nrun_dir = None\noutput_dir = None\ninputs = {}\ndata_path = None\n"
                                     "config = {}\ntracking_uri = None\nstage_run_id = None\nparent_run_id = None\ngit_commit = None")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(
        "from pathlib import Path\nimport pandas as pd\nfrom mlops_nb.stage import stage_context\n"
        "ctx = stage_context(stage, project_dir, run_dir, output_dir, inputs, data_path, config, tracking_uri, stage_run_id, parent_run_id, git_commit)\n"
        "(Path(output_dir) / 'rows.txt').write_text(str(len(pd.read_parquet(data_path))))")]
    nbformat.write(nb, project / "runbooks" / "check.ipynb")
    code, out, err = run_cli("run", "--project", project, "-q")
    assert code == 0, show(code, out, err)
    _eq((run_dir_of(project, run_id_from(out)) / "check" / "rows.txt").read_text(), "569")
