"""Every numbered notebook in nbs/ runs top to bottom, its lesson cells' assertions included."""
from pathlib import Path

import pytest
from nbdev.test import test_nb as run_notebook

NBS = Path(__file__).resolve().parent.parent / "nbs"
NOTEBOOKS = sorted(p for p in NBS.glob("[0-9]*.ipynb"))


def test_notebooks_found():
    assert len(NOTEBOOKS) >= 10, NOTEBOOKS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(notebook, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ok, seconds = run_notebook(notebook, skip_flags=["notest", "slow"], showerr=True)
    assert ok, f"{notebook.name} failed (see the error above)"
