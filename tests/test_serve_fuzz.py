"""Fuzz the running server from its own OpenAPI schema (schemathesis): valid and invalid payloads for every operation.

Two properties must hold for every generated request: no server error (5xx), and no response that repeats a piece of
the request - the generated strings are random, so finding one in a response means the server echoed it.
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from serving import add_version, running_server, served_project

from mlops_nb.config import load_config
from mlops_nb.contract import Contract

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
EXAMPLES = 60  # per operation and mode: bounded so that the test takes about a minute


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    project = served_project(tmp_path_factory.mktemp("fuzz"))
    add_version(project)
    with running_server(project) as server:
        yield project, server


@pytest.fixture(scope="module")
def known_words(served) -> set:
    "Text a response may hold because the server itself knows it: feature names, categories, class labels."
    project, _ = served
    cfg = load_config(project)
    contract = Contract.from_yaml(project / cfg.contract)
    words = {c.name for c in contract.columns} | {"dataframe_records", "dataframe_split", "columns", "data", "request_id", "label", "row",
                                                 "application/json", "served"}
    for c in contract.columns: words |= {str(v) for v in c.categories or ()}
    return words


@pytest.fixture(scope="module")
def own_text(served) -> str:
    "What the server can say without being told: its API document and the fixed texts of its code (keys, reasons, messages)."
    import mlops_nb.serve
    import mlops_nb.served
    _, server = served
    api = httpx.get(server.url + "/openapi.json", timeout=10).text
    return api + "".join(Path(m.__file__).read_text() for m in (mlops_nb.serve, mlops_nb.served))


def _strings(value, found: set) -> set:
    "Every string in a JSON value: keys and leaves."
    if isinstance(value, str): found.add(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            found.add(str(k))
            _strings(v, found)
    elif isinstance(value, list):
        for v in value: _strings(v, found)
    return found


def _check(case, known_words: set, own_text: str) -> None:
    response = case.call(timeout=30)
    assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}"
    sent = _strings(case.body, set()) if isinstance(case.body, (dict, list, str)) else set()
    for part in (case.headers or {}, case.query or {}, case.path_parameters or {}):
        sent |= {str(v) for v in part.values()}
    text = response.text + json.dumps(dict(response.headers))
    # a sent string the server's own texts contain (e.g. "reason", a key of every refusal) says nothing about echoing
    echoed = sorted(s for s in sent if len(s) >= 6 and s not in known_words and s not in own_text and s in text)
    assert not echoed, f"{case.method} {case.path} -> {response.status_code} echoes {echoed[:3]}: {response.text[:300]}"
    assert "Traceback" not in text


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_server_error_and_no_echo(served, known_words, own_text, mode):
    _, server = served
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/feedback", "/health", "/ready", "/version", "/metrics"}
    if mode == GenerationMode.NEGATIVE:  # only the operations that take a body have anything to get wrong
        operations = [op for op in operations if op.method.upper() == "POST"]
    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case):
            _check(case, known_words, own_text)
        fuzz()
