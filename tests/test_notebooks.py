"""Every notebook in nbs/ (the numbered library notebooks, the tutorials, the architecture and the home page) runs top to
bottom in a real Python kernel, lesson cells' assertions included. Only the cells nbdev's test runner skips are left
out: those flagged with settings.ini's `tst_flags` (`notest`, `slow`), `#| eval: false` cells and `nbdev_export()` calls.

They run once per change, where the documentation site is built: `python docs/build.py` executes every notebook to
render its outputs, and a cell that fails stops the build and names its notebook. CI builds the site before the tests;
the `site` fixture builds it here whenever a notebook, a runbook, the library or docs/ changed since the last build.
These tests read what that build recorded (`_proc/executed.json`, the executed copies in `_proc/executed/`): each
notebook was executed from its current source, every cell it had to run ran, and none ended in an error."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
ALL = sorted(p for p in NBS.rglob("*.ipynb") if not any(part.startswith((".", "_")) for part in p.relative_to(NBS).parts))
NOTEBOOKS = [p for p in ALL if p.parent == NBS and p.name[0].isdigit()]


def _build_module():
    "docs/build.py as a module (its skip rule and flags are the ones the tests hold the executed copies to)."
    spec = importlib.util.spec_from_file_location("docs_build", ROOT / "docs" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(site):
    build = _build_module()
    return build, json.loads(build.RECORD.read_text()), build._skip_flags()


def test_every_numbered_notebook_is_collected():
    "The numbered notebooks are exactly those the library modules are exported from (named in each module's header)."
    lib = ROOT / "mlops_nb"
    sources = {re.search(r"File to edit: \.\./nbs/(\S+\.ipynb)", p.read_text()).group(1) for p in lib.glob("*.py") if not p.name.startswith("_")}
    assert sorted(p.name for p in NOTEBOOKS) == sorted(sources)


def test_the_build_executed_every_notebook_and_only_those(built):
    _build, record, _flags = built
    assert sorted(record["executed"]) == [p.relative_to(NBS).as_posix() for p in ALL]


def test_the_record_is_of_the_current_sources(built):
    "The files the site was built from are the files here now (the `site` fixture rebuilds it otherwise)."
    build, record, _flags = built
    assert record["sources"] == build.source_digests()


@pytest.mark.parametrize("notebook", ALL, ids=[p.relative_to(NBS).with_suffix("").as_posix() for p in ALL])
def test_notebook_runs(notebook, built):
    build, record, flags = built
    rel = notebook.relative_to(NBS).as_posix()
    assert record["sources"][f"nbs/{rel}"] == hashlib.sha256(notebook.read_bytes()).hexdigest(), f"{rel} changed since the build"
    nb = nbformat.read(build.PROC / "executed" / f"{record['executed'][rel]['page']}.ipynb", as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code": continue
        errors = [f"{o.ename}: {o.evalue}" for o in cell.get("outputs", []) if o.output_type == "error"]
        assert not errors, f"{rel}, cell {i}: {errors}"
        if build.skipped(cell.source, flags) or not cell.source.strip():
            assert cell.execution_count is None, f"{rel}, cell {i} ran but should have been skipped"
        else:
            assert cell.execution_count is not None, f"{rel}, cell {i} did not run:\n{cell.source[:300]}"
    # the executed copy is the notebook's own code cells, in order, plus the `show_doc` cells nbdev adds for the API docs
    added = re.compile(r"show_doc\(\w+\)$|#\| hide\nimport sys\nfrom functools import partial\nfrom nbdev.showdoc import show_doc\n")
    executed = [c.source for c in nb.cells if c.cell_type == "code" and not added.match(c.source)]
    assert executed == [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"], rel
