"""Every notebook in nbs/ (numbered library notebooks, tutorials, architecture) runs top to bottom, lesson cells'
assertions included, as `nbdev_test` would run it, with a pytest summary line."""
import re
from pathlib import Path

import pytest
from nbdev.test import test_nb as run_notebook

NBS = Path(__file__).resolve().parent.parent / "nbs"
NOTEBOOKS = sorted(p for p in NBS.rglob("*.ipynb") if not any(part.startswith((".", "_")) for part in p.relative_to(NBS).parts))


def test_every_numbered_notebook_is_collected():
    "The numbered notebooks are exactly those the library modules are exported from (named in each module's header)."
    lib = NBS.parent / "mlops_nb"
    sources = {re.search(r"File to edit: \.\./nbs/(\S+\.ipynb)", p.read_text()).group(1) for p in lib.glob("*.py") if not p.name.startswith("_")}
    assert sorted(p.name for p in NOTEBOOKS if p.name[0].isdigit()) == sorted(sources)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[str(p.relative_to(NBS).with_suffix("")) for p in NOTEBOOKS])
def test_notebook_runs(notebook, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ok, _seconds = run_notebook(notebook, skip_flags=["notest", "slow"], showerr=True)
    assert ok, f"{notebook.name} failed (see the error above)"
