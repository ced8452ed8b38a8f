"""Personal data end to end: planted e-mail, phone and CPF never reach a file of the project (init + run + serve), and
`mlops-nb forget` removes a subject from every file, listing and marking the model versions that trained on them."""
import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from conftest import call_cli, client_for, run_cli, show
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mlops_nb.config import UsageError, load_config
from mlops_nb.governance import ERASURES_DIR, RETRAIN_TAG, forget, parse_where
from mlops_nb.privacy import pii_policy, protect_value
from mlops_nb.registry import audit_trail
from mlops_nb.serve import create_app
from mlops_nb.telemetry import PredictionLog, read_log

SUBJECT = {"email": "maria.silva@exemplo.com.br", "telefone": "+55 81 99876-5432", "cpf": "529.982.247-25"}
OTHER = {"email": "joao.souza@exemplo.com.br", "telefone": "+55 21 98123-4567", "cpf": "111.444.777-35"}
SMALL = ["--set", "train.n_iter=1", "--set", "train.n_splits=2", "--set", "train.candidates=[logistic_regression]"]


def cpf(rng) -> str:
    d = list(rng.integers(0, 10, 9))
    for n in (10, 11):
        r = (sum(a * b for a, b in zip(d, range(n, 1, -1))) * 10) % 11
        d.append(0 if r == 10 else r)
    s = "".join(map(str, d))
    return f"{s[:3]}.{s[3:6]}.{s[6:9]}-{s[9:]}"


def planted(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"email": [f"cliente{i}@exemplo.com.br" for i in range(n)],
                       "telefone": [f"+55 11 9{rng.integers(1000, 9999)}-{rng.integers(1000, 9999)}" for _ in range(n)],
                       "cpf": [cpf(rng) for _ in range(n)], "idade": rng.integers(18, 80, n), "renda": rng.gamma(2, 1500, n).round(2),
                       "cidade": rng.choice(["Recife", "Natal", "Belém"], n)})
    df["churn"] = np.where(df.renda / 3000 - df.idade / 60 + rng.normal(0, .5, n) > 0, "sim", "nao")
    for row, person in ((7, SUBJECT), (8, OTHER)): df.loc[row, list(person)] = list(person.values())
    return df


def every_text(project: Path) -> dict:
    "Each file under the project -> its bytes, plus the decoded values of Parquet files and the SQL dump of SQLite files."
    found = {}
    for path in sorted(p for p in project.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".parquet": data += pd.read_parquet(path).to_csv().encode()
        if data[:16] == b"SQLite format 3\x00":
            with contextlib.closing(sqlite3.connect(path)) as con: data += "\n".join(con.iterdump()).encode()
        found[str(path.relative_to(project))] = data
    return found


def places(paths: list) -> list:
    "The files, sorted, with run ids and run folders written RUN."
    return sorted(re.sub(r"^(mlartifacts/\w+|runs/[^/]+)/", lambda m: m[1].split("/")[0] + "/RUN/", p) for p in paths)


def holding(project: Path, value: str) -> list:
    return [path for path, data in every_text(project).items() if value.encode() in data]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("forget")
    planted().to_csv(root / "clientes.csv", index=False)
    code, out, err = run_cli("init", str(root / "loja"), "--data", str(root / "clientes.csv"), "--target", "churn")
    assert code == 0, show(code, out, err)
    project = root / "loja"
    late = planted().iloc[[7]].assign(idade=500)  # the subject again, with an age the contract refuses: quarantined
    late.to_csv(root / "clientes.csv", mode="a", header=False, index=False)
    code, out, err = run_cli("run", "--project", str(project), *SMALL)
    assert code == 0, show(code, out, err)
    return project


@pytest.fixture(scope="module")
def answered(project):
    "The project after its server answered /predict and /explain for the subject and one other customer (both logged)."
    rows = planted().iloc[[7, 8]].drop(columns="churn").to_dict("records")
    with mock.patch.dict(os.environ):
        os.environ.pop("MLOPS_NB_PII_KEY", None)  # the project's own key, as the run used
        with TestClient(create_app(project)) as client:
            ready = client.app.state.worker.wait_ready(60)
            predicted = client.post("/predict", json=rows)
            explained = client.post("/explain", json=rows)
    return {"project": project, "ready": ready, "predict": (predicted.status_code, len(predicted.json().get("predictions", []))),
            "explain": explained.status_code}


def test_planted_personal_data_reaches_no_file(answered):
    project = answered["project"]
    _eq((answered["ready"], answered["predict"], answered["explain"]), (True, (200, 2), 200))
    _eq(len(read_log(project / "predictions" / "predictions.db")), 2)
    files = every_text(project)
    _eq(any(p.startswith("mlartifacts/") for p in files) and "mlflow.db" in files, True)
    for value in (*SUBJECT.values(), *OTHER.values(), "cliente0@exemplo.com.br"):
        _eq([p for p, data in files.items() if value.encode() in data], [])
    snapshot = next(project.glob("runs/*/ingest/data.parquet"))
    _eq(protect_value(SUBJECT["email"], load_config(project)) in pd.read_parquet(snapshot).email.tolist(), True)


@pytest.mark.slow
def test_explain_a_logged_request_and_a_row_of_the_data(answered):
    project = answered["project"]
    logged = read_log(project / "predictions" / "predictions.db")
    _eq(len(logged), 2)
    rid, predicted = logged.request_id.iloc[0], logged.prediction.tolist()
    code, out, err = run_cli("explain", "--project", str(project), "--request-id", rid, "--row", "1", "--json")
    assert code == 0, show(code, out, err)
    answer = json.loads(out)
    _eq((answer["version"], answer["decision"], answer["scale"], len(answer["reasons"])), (1, predicted[1], "log-odds", 3))
    _eq(sorted(r["feature"] for r in answer["reasons"]), ["cidade", "idade", "renda"])
    code, out, err = run_cli("explain", "--project", str(project), "--row", "7", "--top", "2")
    assert code == 0, show(code, out, err)
    _eq((out.startswith(f"v1 decision: {predicted[0]} (log-odds "), len(out.strip().splitlines())), (True, 3))
    _eq(any(v in out for v in SUBJECT.values()), False)
    for args, why in ((("--request-id", "nope"), "no answered row 0 of request nope in the prediction log"),
                      (("--row", "301"), "row 301 is not in clientes.csv, which has 301 rows (counted from 0)")):
        code, out, err = run_cli("explain", "--project", str(project), *args)
        _eq((code, err.strip()), (2, f"error: {why}"))


def test_forget_erases_the_subject_everywhere_and_marks_the_version(answered, monkeypatch):
    project = answered["project"]
    monkeypatch.delenv("MLOPS_NB_PII_KEY", raising=False)
    cfg = load_config(project)
    hashed = protect_value(SUBJECT["email"], cfg)
    other = protect_value(OTHER["email"], cfg)
    # the data file inside the project, as a project that keeps its own data has it
    shutil.copy(project.parent / "clientes.csv", project / "clientes.csv")
    settings = (project / "mlops.yaml").read_text()
    (project / "mlops.yaml").write_text(settings.replace(f"path: {project.parent / 'clientes.csv'}", "path: clientes.csv"))
    cfg = load_config(project)
    # prediction-log entries whose features carry the (protected) e-mail, as when a contract makes it a feature
    log = PredictionLog(project / cfg.serve.prediction_log, pii_columns=["email"], pii_policy=pii_policy(cfg))
    log.put([(f"req-{i}", 0, time.time(), cfg.model_name, 1, "primary", "champion", {"email": person["email"], "idade": 40},
              "sim", None, 1.0, "ok", None) for i, person in enumerate((SUBJECT, OTHER, SUBJECT))])
    log.close()
    before = len(read_log(project / cfg.serve.prediction_log))
    # the snapshots, the quarantine (the subject's late row), the log, and the notebooks that show those rows
    _eq(places(holding(project, hashed)), [
        "mlartifacts/RUN/artifacts/notebook/02_validate.html", "mlartifacts/RUN/artifacts/notebook/02_validate.ipynb",
        "mlartifacts/RUN/artifacts/notebook/03_prepare.ipynb", "mlartifacts/RUN/artifacts/quarantine.parquet", "predictions/predictions.db",
        "runs/RUN/ingest/data.parquet", "runs/RUN/notebooks/02_validate.ipynb", "runs/RUN/notebooks/03_prepare.ipynb",
        "runs/RUN/prepare/train.parquet", "runs/RUN/validate/data.parquet", "runs/RUN/validate/quarantine.parquet"])
    _eq(holding(project, SUBJECT["email"]), ["clientes.csv"])

    code, out, err = run_cli("forget", "--project", str(project), "--where", f"email == '{SUBJECT['email']}'")
    assert code == 0, show(code, out, err)
    _eq(SUBJECT["email"] in out + err or hashed in out + err, False)
    _eq("v1: retrain required (1 of its training rows were the subject's)" in out, True)
    quarantined = [line for line in out.splitlines() if "quarantine.parquet: 1 rows removed" in line]
    _eq((len(quarantined), sum("mlartifacts/" in line for line in quarantined)), (2, 1))  # the run's file and its MLflow copy
    for value in (hashed, *SUBJECT.values()):
        _eq(holding(project, value), [])
    _eq(places(holding(project, other)), ["predictions/predictions.db", "runs/RUN/ingest/data.parquet", "runs/RUN/prepare/train.parquet",
                                          "runs/RUN/validate/data.parquet"])  # the others are still there
    _eq(OTHER["email"] in (project / "clientes.csv").read_text(), True)
    _eq(len(pd.read_csv(project / "clientes.csv")), 299)  # 301 rows, the subject's two removed
    _eq(len(read_log(project / cfg.serve.prediction_log)), before - 3)  # two by the e-mail, one served row by its features

    client = client_for(project)
    tags = client.get_model_version(cfg.model_name, "1").tags
    _eq(tags[RETRAIN_TAG].startswith("erasure "), True)
    last = audit_trail(client, cfg.model_name)[-1]
    _eq((last.alias, last.from_version, last.to_version, last.source), ("retrain required", 1, 1, "erasure"))
    record = next((project / ERASURES_DIR).glob("*.json"))
    saved = json.loads(record.read_text())
    _eq(([v["version"] for v in saved["versions"]], saved["column"]), ([1], "email"))
    for path, table in saved["tables"].items():
        _eq(table["sha256"], hashlib.sha256((project / path).read_bytes()).hexdigest())

    again = forget(cfg, f"email == '{SUBJECT['email']}'")  # nothing left: nothing removed, no version named
    _eq((again.tables, again.versions, again.log_entries), ({}, [], 0))


def test_forget_refuses_unsafe_or_unknown_conditions(project):
    for where, why in (("__import__('os').system('true')", "--where must read COLUMN == VALUE"),
                       ("nome == 'Maria'", "no column 'nome' in the contract"),
                       ("email == 'a' or 1 == 1", "quote it")):
        code, _out, err = call_cli("forget", "--project", str(project), "--where", where)
        _eq((code, why in err, "Traceback" in err), (2, True, False))
    code, _out, err = call_cli("forget", "--project", str(project), "--where", "email == 'x@y.z'", "--set", "governance.pii=mask")
    _eq((code, "'email' is pii and governance.pii is mask" in err), (2, True))
    _fail(lambda: parse_where(""), contains="COLUMN == VALUE")


def small_project(root: Path) -> Path:
    "A project folder with a contract, settings and one snapshot; no model registered."
    from mlops_nb.config import config_from_dict, render_config
    from mlops_nb.contract import infer_contract
    from mlops_nb.data import write_parquet
    from mlops_nb.privacy import protect
    project = root / "small"
    project.mkdir()
    frame = planted(40)
    contract = infer_contract(frame, "churn")
    contract.to_yaml(project / "contract.yaml")
    cfg = config_from_dict({"project": "small", "data": {"path": "absent.csv", "target": "churn"}}, project)
    (project / "mlops.yaml").write_text(render_config(cfg))
    write_parquet(protect(frame, contract, cfg), project / "runs" / "r1" / "ingest" / "data.parquet")
    return project


def test_text_stores_lose_the_value_and_a_binary_file_that_keeps_it_fails_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_NB_PII_KEY", "a key for the small project")
    project = small_project(tmp_path)
    cfg = load_config(project)
    hashed = protect_value(SUBJECT["email"], cfg)
    with contextlib.closing(sqlite3.connect(project / "notes.db")) as con, con:
        con.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
        con.executemany("INSERT INTO notes VALUES (?, ?)", [(1, f"row of {hashed} shown"), (2, "nothing personal")])
    (project / "runs" / "r1" / "ingest.ipynb").write_text(json.dumps({"outputs": [f"<td>{hashed}</td>"]}))
    (project / "runs" / "r1" / "blob.bin").write_bytes(b"\x00\x01" + hashed.encode() + b"\xff")
    code, out, err = run_cli("forget", "--project", str(project), "--where", f"email == '{SUBJECT['email']}'", env={"MLOPS_NB_PII_KEY": "a key for the small project"})
    assert code == 1, show(code, out, err)
    _eq("STILL HOLDS THE VALUE (erase by hand): runs/r1/blob.bin" in out, True)
    _eq(holding(project, hashed), ["runs/r1/blob.bin"])
    with contextlib.closing(sqlite3.connect(project / "notes.db")) as con:
        _eq(con.execute("SELECT body FROM notes ORDER BY id").fetchall(), [("row of [erased] shown",), ("nothing personal",)])
    _eq(json.loads((project / "runs" / "r1" / "ingest.ipynb").read_text()), {"outputs": ["<td>[erased]</td>"]})
    _eq(len(pd.read_parquet(project / "runs" / "r1" / "ingest" / "data.parquet")), 39)


def test_a_version_whose_lineage_cannot_be_read_is_marked_too(monkeypatch):
    from types import SimpleNamespace

    from mlops_nb import governance
    from mlops_nb.champion import LineageError, lineage_record

    rows = planted(20)
    columns = ["idade", "renda", "cidade", "churn"]
    trained = lineage_record(rows.iloc[:10], columns)
    lineages = {"run-a": trained, "run-b": LineageError("it has no record of its training rows"), "run-c": lineage_record(rows.iloc[10:], columns)}

    def lineage(client, run_id):
        found = lineages[run_id]
        if isinstance(found, Exception): raise found
        return found
    monkeypatch.setattr(governance, "_lineage", lineage)
    client = SimpleNamespace(search_model_versions=lambda query: [SimpleNamespace(version=str(v), run_id=r) for v, r in
                                                                  ((1, "run-a"), (2, "run-b"), (3, "run-c"), (4, None))])
    found = governance.affected_versions(client, "m", [rows.iloc[[7]]])
    _eq([(a.version, a.rows) for a in found], [(1, 1), (2, None), (4, None)])
    _eq(found[1].why, "its lineage could not be read (LineageError), so it may have trained on them")
    _eq(governance.affected_versions(client, "m", []), [governance.Affected(2, None, found[1].why), governance.Affected(4, None, found[2].why)])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_where_is_parsed_or_refused_never_evaluated(text):
    try: column, value = parse_where(text)
    except UsageError as e:
        _eq(str(e).startswith(("--where must read COLUMN == VALUE", "the VALUE of --where is one value")), True)
        return
    _eq((isinstance(column, str) and column == column.strip() and column != "", isinstance(value, (str, int, float))), (True, True))


def test_without_snapshots_the_data_file_still_names_the_subjects_rows(tmp_path, monkeypatch):
    from mlops_nb import governance
    monkeypatch.setenv("MLOPS_NB_PII_KEY", "a key for the small project")
    project = small_project(tmp_path)
    shutil.rmtree(project / "runs")  # the snapshots are gone (retention), the data file is still there
    planted(40).to_csv(tmp_path / "outside.csv", index=False)
    settings = (project / "mlops.yaml").read_text().replace("path: absent.csv", f"path: {tmp_path / 'outside.csv'}")
    (project / "mlops.yaml").write_text(settings)
    seen = []
    monkeypatch.setattr(governance, "affected_versions", lambda client, name, rows: seen.extend(rows) or [])
    cfg = load_config(project)
    done = forget(cfg, f"cpf == '{SUBJECT['cpf']}'")
    _eq([frame.cpf.tolist() for frame in seen], [[protect_value(SUBJECT["cpf"], cfg)]])
    _eq((done.tables, done.notes), ({}, ["the data file, outside the project folder, still holds the subject's rows: erase them there too"]))
    _eq(len(pd.read_csv(tmp_path / "outside.csv")), 40)  # a file outside the project is read, never rewritten
    seen.clear()
    nobody = forget(cfg, "cpf == '000.000.000-00'")
    _eq((seen, nobody.notes), ([], ["the subject's rows were found in no snapshot and not in the data, so no model version could be matched by its row hashes"]))


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip"])
def test_a_compressed_data_file_in_the_project_is_rewritten_compressed(tmp_path, monkeypatch, suffix):
    from mlops_nb import governance
    monkeypatch.setenv("MLOPS_NB_PII_KEY", "a key for the small project")
    project = small_project(tmp_path)
    planted(40).to_csv(project / f"clientes{suffix}", index=False)
    (project / "mlops.yaml").write_text((project / "mlops.yaml").read_text().replace("path: absent.csv", f"path: clientes{suffix}"))
    monkeypatch.setattr(governance, "affected_versions", lambda client, name, rows: [])
    done = forget(load_config(project), f"cpf == '{SUBJECT['cpf']}'")
    kept = pd.read_csv(project / f"clientes{suffix}", dtype=str)  # still compressed as its name says
    _eq((len(kept), SUBJECT["cpf"] in kept.cpf.tolist(), done.remaining), (39, False, []))


@pytest.mark.parametrize("name", ["clientes.parquet", "clientes.pq"])
def test_a_parquet_data_file_in_the_project_is_rewritten(tmp_path, monkeypatch, name):
    "Either Parquet suffix the reader knows: the data file loses the subject's rows and is recorded as rewritten."
    from mlops_nb import governance
    monkeypatch.setenv("MLOPS_NB_PII_KEY", "a key for the small project")
    project = small_project(tmp_path)
    planted(40).astype({"cpf": str}).to_parquet(project / name, index=False)
    (project / "mlops.yaml").write_text((project / "mlops.yaml").read_text().replace("path: absent.csv", f"path: {name}"))
    monkeypatch.setattr(governance, "affected_versions", lambda client, name, rows: [])
    done = forget(load_config(project), f"cpf == '{SUBJECT['cpf']}'")
    kept = pd.read_parquet(project / name)
    _eq((len(kept), SUBJECT["cpf"] in kept.cpf.tolist(), done.remaining, done.tables[name]["rows_removed"]), (39, False, [], 1))


def test_a_data_file_forget_cannot_rewrite_is_not_reported_erased(tmp_path, monkeypatch):
    from mlops_nb import governance
    monkeypatch.setenv("MLOPS_NB_PII_KEY", "a key for the small project")
    project = small_project(tmp_path)
    planted(40).to_excel(project / "clientes.xlsx", index=False)
    (project / "mlops.yaml").write_text((project / "mlops.yaml").read_text().replace("path: absent.csv", "path: clientes.xlsx"))
    monkeypatch.setattr(governance, "affected_versions", lambda client, name, rows: [])
    done = forget(load_config(project), f"cpf == '{SUBJECT['cpf']}'")
    _eq((done.remaining, done.notes), (["clientes.xlsx"], ["the data file clientes.xlsx still holds the subject's rows (.xlsx is not rewritten): erase them there"]))
    _eq(len(pd.read_excel(project / "clientes.xlsx")), 40)


def test_a_pii_feature_is_found_as_the_tables_keep_it(tmp_path, monkeypatch):
    "A pii column that is also a feature keeps its values in the snapshots, and is hashed only in the prediction log."
    from mlops_nb.config import config_from_dict
    from mlops_nb.contract import ColumnSpec, Contract
    from mlops_nb.governance import _needles, stored_value
    monkeypatch.setenv("MLOPS_NB_PII_KEY", "k" * 32)
    cfg = config_from_dict({}, tmp_path)
    contract = Contract([ColumnSpec("email", "text", "ignore", pii=True), ColumnSpec("age", "integer", pii=True),
                         ColumnSpec("y", "categorical", "target", categories=("a", "b"))], target="y")
    _eq(stored_value("age", 41, contract, cfg), 41)  # as the snapshots hold it
    _eq(stored_value("email", "ann@example.org", contract, cfg), protect_value("ann@example.org", cfg))
    _eq(_needles("age", 41, 41, protect_value(41, cfg), contract), [protect_value(41, cfg)])  # never the bare number
    _eq(_needles("email", "ann@example.org", protect_value("ann@example.org", cfg), protect_value("ann@example.org", cfg), contract),
        [protect_value("ann@example.org", cfg), "ann@example.org"])
