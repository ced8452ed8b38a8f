"""Every notebook in nbs/ that is not a numbered library notebook (the tutorials, the architecture, the home page) runs
top to bottom as `nbdev_test` would run it. Between them and tests/test_notebooks.py, every notebook runs once."""
import pytest
from test_notebooks import ALL, NBS, NOTEBOOKS, run_ok

PAGES = [p for p in ALL if p not in NOTEBOOKS]
SLOW_PAGES = {"tutorials/monitoring"}  # a year of weather, monitored week by week: with the slow end-to-end checks (`-m slow`)


def test_every_notebook_runs_in_one_of_the_two_files():
    assert sorted(PAGES + NOTEBOOKS) == ALL and not set(PAGES) & set(NOTEBOOKS)
    assert [p.relative_to(NBS).as_posix() for p in PAGES if p.parent == NBS] == ["architecture.ipynb", "index.ipynb"]


def _page(p):
    name = str(p.relative_to(NBS).with_suffix(""))
    return pytest.param(p, id=name, marks=[pytest.mark.slow] if name in SLOW_PAGES else [])


@pytest.mark.parametrize("notebook", [_page(p) for p in PAGES])
def test_page_runs(notebook, monkeypatch):
    run_ok(notebook, monkeypatch)
