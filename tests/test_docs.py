"""The documentation site, as a reader's browser shows it: headless Chromium on the site built by `python docs/build.py`.

The site comes from conftest's `site` fixture: built once, only when it is missing or its sources changed (CI builds it
before the tests). Screenshots of the home page and an API page go to $DOCS_ARTIFACTS (default `_docs_artifacts/`).
"""
import functools
import http.server
import os
import threading
from pathlib import Path

import pytest
from conftest import chromium

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_docs"
ARTIFACTS = Path(os.environ.get("DOCS_ARTIFACTS", ROOT / "_docs_artifacts"))
NUMBERED = sorted(p for p in (ROOT / "nbs").glob("[0-9]*.ipynb"))
RUNBOOKS = sorted((ROOT / "mlops_nb" / "runbooks").glob("*.ipynb"))


def _page(notebook:Path)->str:
    "nbdev's page name: 05_evaluate.ipynb -> evaluate.html"
    stem = notebook.stem
    return (stem.split("_", 1)[1] if stem[0].isdigit() and "_" in stem else stem) + ".html"


@pytest.fixture(scope="session")
def base_url(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser(playwright, tmp_path_factory):
    with chromium(playwright, tmp_path_factory.mktemp("chromium-profile"), {"width": 1280, "height": 900}) as context:
        yield context


@pytest.fixture
def page(browser):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, errors


def test_navigation_lists_every_notebook_page(page, base_url):
    page.goto(f"{base_url}/index.html")
    hrefs = page.eval_on_selector_all(".sidebar-tree a.reference", "els => els.map(e => e.getAttribute('href'))")
    expected = [_page(p) for p in NUMBERED] + [f"runbooks/{p.stem}.html" for p in RUNBOOKS] + \
               ["tutorials/getting_started.html", "architecture.html", "cli_reference.html"]
    missing = [e for e in expected if e not in hrefs]
    assert not missing, (missing, hrefs)
    numbered = [h for h in hrefs if h in expected[:len(NUMBERED)]]
    assert numbered == expected[:len(NUMBERED)], "the library notebooks are listed in their numbered order"
    assert page.inner_text("h1") == "mlops-nb"
    body = page.inner_text("article")
    assert 'pip install -e ".[dev]" && mlops-nb run --example breast-cancer' in body
    assert "python -m pytest tests -n 2 -q" in body
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=False)


def _images_loaded(page):
    page.wait_for_load_state("load")
    return page.eval_on_selector_all("article img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth])")


@pytest.mark.parametrize("path", ["evaluate.html", "architecture.html", "tutorials/getting_started.html"])
def test_plots_load(page, base_url, path):
    page.goto(f"{base_url}/{path}")
    images = _images_loaded(page)
    assert images, f"no image on {path}"
    assert all(width and width > 0 for _, width in images), images


def test_api_entry_has_signature_and_parameter_table(page, base_url):
    page.goto(f"{base_url}/evaluate.html#api-mlops-nb-evaluate-evaluate-model")
    entry = page.locator("section#api-mlops-nb-evaluate-evaluate-model")
    assert entry.locator("h3").inner_text().startswith("evaluate_model")
    assert "def evaluate_model(" in entry.locator("pre").first.inner_text()
    table = entry.locator("table").first
    headers = [h.strip() for h in table.locator("th").all_inner_texts()]
    assert headers[1:] == ["Type", "Default", "Details"], headers
    rows = [r.strip() for r in table.locator("tbody tr td:first-child").all_inner_texts()]
    assert rows[:3] == ["model", "X", "y"], rows
    entry.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "api_evaluate.png"), full_page=False)


def test_no_directives_nor_hidden_cells(page, base_url, site):
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("*.html") if p.name not in ("genindex.html", "search.html"))
    assert len(pages) >= len(NUMBERED) + len(RUNBOOKS) + 4
    for path in pages:
        page.goto(f"{base_url}/{path}")
        text = page.inner_text("article")
        assert "#|" not in text, path
        assert "nbdev_export()" not in text, path
        assert "from fastcore.test import" not in text, path
        assert "default_exp" not in text, path


def test_exported_names_link_to_their_entries(page, base_url):
    page.goto(f"{base_url}/tutorials/getting_started.html")
    link = page.locator("article a.mlops-xref", has_text="run_pipeline").first
    assert link.get_attribute("href") == "../pipeline.html#api-mlops-nb-pipeline-run-pipeline"
    link.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("pipeline.html#api-mlops-nb-pipeline-run-pipeline")
    assert page.locator("section#api-mlops-nb-pipeline-run-pipeline h3").is_visible()


def test_cli_reference_is_the_real_help(page, base_url):
    from mlops_nb.cli import parser
    page.goto(f"{base_url}/cli_reference.html")
    text = page.inner_text("article")
    for command in ("init", "run", "runs", "models", "examples"):
        assert f"usage: mlops-nb {command}" in text
    assert parser().description in text.replace("\n", " ")


def test_search_finds_a_page(page, base_url):
    page.goto(f"{base_url}/search.html?q=quarantine")
    page.wait_for_selector("#search-results ul.search li", timeout=20000)
    results = page.locator("#search-results ul.search li a").all_inner_texts()
    assert any("Validat" in r for r in results), results

