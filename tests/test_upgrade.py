"""Projects can take library fixes: init records where each runbook copy came from, `upgrade_runbooks` updates the
copies nobody edited, shows (and only with force replaces) edited ones, and `run` warns about outdated copies."""
from __future__ import annotations

import json

import nbformat
import pytest
from conftest import run_cli, set_stages, show
from fastcore.test import test_eq as _eq

import mlops_nb
from mlops_nb.pipeline import MANIFEST, RUNBOOKS, init_project, outdated_runbooks, read_manifest, runbook_hash, upgrade_runbooks

PACKAGED = sorted(p.name for p in RUNBOOKS.glob("*.ipynb"))
VERSION = mlops_nb.__version__


@pytest.fixture
def project(tmp_path, breast_cancer_frame):
    breast_cancer_frame.to_csv(tmp_path / "cancer.csv", index=False)
    init_project(tmp_path / "project", tmp_path / "cancer.csv", "diagnosis")
    return tmp_path / "project"


def _age(project, name: str, old_version: str = "0.0.9") -> bytes:
    "Make the project's copy of `name` look like an unedited copy from an older mlops-nb (one cell differs)."
    path = project / "runbooks" / name
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\n\nThis runbook came with an older mlops-nb."
    nbformat.write(nb, path)
    manifest = read_manifest(project)
    manifest[name] = {"version": old_version, "sha256": runbook_hash(path)}
    (project / "runbooks" / MANIFEST).write_text(json.dumps(manifest))
    return path.read_bytes()


def _edit(project, name: str) -> bytes:
    path = project / "runbooks" / name
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print('checked by our team')"))
    nbformat.write(nb, path)
    return path.read_bytes()


def test_init_records_version_and_hash_of_every_copy(project):
    manifest = json.loads((project / "runbooks" / MANIFEST).read_text())
    _eq(manifest, {name: {"version": VERSION, "sha256": runbook_hash(RUNBOOKS / name)} for name in PACKAGED})
    _eq(sorted(p.name for p in (project / "runbooks").iterdir()), sorted([*PACKAGED, MANIFEST]))
    _eq(outdated_runbooks(project), [])
    _eq(upgrade_runbooks(project), [])


def test_unedited_copy_is_updated(project):
    _age(project, "train.ipynb")
    _eq(outdated_runbooks(project), [("runbooks/train.ipynb was copied from mlops-nb 0.0.9 and the packaged runbook has changed since: "
                                     "`mlops-nb upgrade` updates it (an edited copy is kept and the difference shown)")])
    _eq(upgrade_runbooks(project), [f"updated runbooks/train.ipynb from mlops-nb 0.0.9 to {VERSION}"])
    _eq((project / "runbooks" / "train.ipynb").read_bytes(), (RUNBOOKS / "train.ipynb").read_bytes())
    _eq(read_manifest(project)["train.ipynb"], {"version": VERSION, "sha256": runbook_hash(RUNBOOKS / "train.ipynb")})
    _eq(outdated_runbooks(project), [])


def test_edited_copy_is_never_overwritten_without_force(project):
    _age(project, "evaluate.ipynb")
    edited = _edit(project, "evaluate.ipynb")
    report = upgrade_runbooks(project)
    _eq(report[0], "kept runbooks/evaluate.ipynb: it was edited, so merge the packaged changes by hand (or pass --force to replace it):")
    _eq(report[1:3], ["--- runbooks/evaluate.ipynb (yours)", f"+++ runbooks/evaluate.ipynb (mlops-nb {VERSION})"])
    _eq([line for line in report[3:] if line[:1] in "+-"],
        ["-", "-This runbook came with an older mlops-nb.", "-# %%", "-print('checked by our team')"])
    _eq((project / "runbooks" / "evaluate.ipynb").read_bytes(), edited)
    _eq(read_manifest(project)["evaluate.ipynb"]["version"], "0.0.9")  # still outdated: `run` keeps warning
    _eq(len(outdated_runbooks(project)), 1)
    _eq(upgrade_runbooks(project), report)  # asking again changes nothing

    report = upgrade_runbooks(project, force=True)
    _eq(report[0], "replaced runbooks/evaluate.ipynb: your edited copy is kept as runbooks/evaluate.ipynb.edited; the difference:")
    _eq((project / "runbooks" / "evaluate.ipynb").read_bytes(), (RUNBOOKS / "evaluate.ipynb").read_bytes())
    _eq((project / "runbooks" / "evaluate.ipynb.edited").read_bytes(), edited)
    _eq((outdated_runbooks(project), upgrade_runbooks(project)), ([], []))


def test_outputs_and_metadata_are_not_edits(project):
    _age(project, "ingest.ipynb")
    path = project / "runbooks" / "ingest.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = i + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    nbformat.write(nb, path)
    _eq(upgrade_runbooks(project), [f"updated runbooks/ingest.ipynb from mlops-nb 0.0.9 to {VERSION}"])


def test_project_without_manifest(project):
    (project / "runbooks" / MANIFEST).unlink()
    _eq(outdated_runbooks(project), [])  # copies equal to the packaged runbooks need nothing
    _edit(project, "register.ipynb")
    _eq(outdated_runbooks(project), [(f"runbooks/register.ipynb differs from the packaged runbook of mlops-nb {VERSION} and has no record of "
                                     "where it came from: `mlops-nb upgrade` shows the difference")])
    report = upgrade_runbooks(project)
    _eq(report[0], "kept runbooks/register.ipynb: it was edited, so merge the packaged changes by hand (or pass --force to replace it):")
    _eq(sorted(read_manifest(project)), sorted(set(PACKAGED) - {"register.ipynb"}))  # the copies equal to the packaged ones are now on record


def test_runbook_the_library_gained_is_added(project):
    (project / "runbooks" / "validate.ipynb").unlink()
    manifest = read_manifest(project)
    del manifest["validate.ipynb"]
    (project / "runbooks" / MANIFEST).write_text(json.dumps(manifest))
    _eq(upgrade_runbooks(project), ["added runbooks/validate.ipynb"])
    _eq(read_manifest(project)["validate.ipynb"], {"version": VERSION, "sha256": runbook_hash(RUNBOOKS / "validate.ipynb")})


def test_project_without_runbook_copies_has_nothing_to_upgrade(tmp_path, breast_cancer_frame):
    breast_cancer_frame.to_csv(tmp_path / "cancer.csv", index=False)
    init_project(tmp_path / "p", tmp_path / "cancer.csv", "diagnosis", copy_runbooks=False)
    _eq(((tmp_path / "p" / "runbooks").exists(), upgrade_runbooks(tmp_path / "p")), (False, []))


@pytest.mark.slow
def test_run_warns_about_outdated_runbooks_it_uses(project):
    _age(project, "ingest.ipynb", "0.0.7")
    _age(project, "train.ipynb")  # outdated, but not a stage of this run
    set_stages(project, ["ingest"])
    code, out, err = run_cli("run", "--project", project)
    assert code == 0, show(code, out, err)
    _eq(err.splitlines(), [("warning: runbooks/ingest.ipynb was copied from mlops-nb 0.0.7 and the packaged runbook has changed since: "
                           "`mlops-nb upgrade` updates it (an edited copy is kept and the difference shown)")])


def test_run_that_cannot_start_prints_only_its_error(project):
    _age(project, "ingest.ipynb")
    set_stages(project, ["ingest"])
    code, _, err = run_cli("run", "--project", project, "--set", "tracking_uri=http://127.0.0.1:9", env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    _eq(code, 2)
    _eq(len(err.splitlines()), 1)
    assert err.startswith("error: cannot record to the MLflow store at http://127.0.0.1:9: "), err
