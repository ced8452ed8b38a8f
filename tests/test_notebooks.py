"""Every numbered library notebook in nbs/ runs top to bottom, lesson cells' assertions included, as `nbdev_test` would
run it, with a pytest summary line. The tutorials and the other pages are run by tests/test_tutorials.py: two files, so
that `-n 2 --dist loadfile` runs the two halves on the two workers."""
import re
from pathlib import Path

import pytest
from nbdev.test import test_nb as run_notebook

NBS = Path(__file__).resolve().parent.parent / "nbs"
ALL = sorted(p for p in NBS.rglob("*.ipynb") if not any(part.startswith((".", "_")) for part in p.relative_to(NBS).parts))
NOTEBOOKS = [p for p in ALL if p.parent == NBS and p.name[0].isdigit()]


def run_ok(notebook: Path, monkeypatch) -> None:
    "Run `notebook` as `nbdev_test` does, skipping `notest` and `slow` cells; fail naming it."
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ok, _seconds = run_notebook(notebook, skip_flags=["notest", "slow"], showerr=True)
    assert ok, f"{notebook.name} failed (see the error above)"


def test_every_numbered_notebook_is_collected():
    "The numbered notebooks are exactly those the library modules are exported from (named in each module's header)."
    lib = NBS.parent / "mlops_nb"
    sources = {re.search(r"File to edit: \.\./nbs/(\S+\.ipynb)", p.read_text()).group(1) for p in lib.glob("*.py") if not p.name.startswith("_")}
    assert sorted(p.name for p in NOTEBOOKS) == sorted(sources)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(notebook, monkeypatch):
    run_ok(notebook, monkeypatch)
