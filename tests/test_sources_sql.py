"""The sql source against a real PostgreSQL server (a private cluster on 127.0.0.1): a table and a query, the password
only from `data.secret_env`, incremental loads by a timestamp watermark, and `mlops-nb init --sql-url` + `run` end to
end, after which the password is in no file of the project and in no output."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from conftest import client_for, fast, run_cli, run_dir_of, run_id_from, set_stages, show, stage_runs
from fastcore.test import test_eq as _eq
from postgres import postgres_url  # noqa: F401 - a fixture
from sklearn.datasets import load_breast_cancer
from sqlalchemy.engine import make_url

from mlops_nb.config import UsageError, config_from_dict
from mlops_nb.sources import load_source, read_source

SECRET_ENV = "MLOPS_NB_TEST_PG_PASSWORD"


@pytest.fixture(scope="module")
def database(postgres_url):  # noqa: F811 - the fixture
    "The server's URL without the password, the password, and an engine with both; a `cancer` table of 400 rows."
    url = make_url(postgres_url)
    engine = sa.create_engine(url)
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.drop(columns="target").iloc[:, :6].rename(columns=lambda c: c.replace(" ", "_"))
    frame.insert(0, "id", np.arange(1, len(frame) + 1))
    frame.insert(1, "received", pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(len(frame)), unit="h"))
    frame["diagnosis"] = np.where(bunch.target == 1, "benign", "malignant")
    frame.iloc[:400].to_sql("cancer", engine, index=False)
    yield {"url": url.render_as_string(hide_password=False).replace(f":{url.password}@", "@"), "password": url.password,
           "engine": engine, "frame": frame}
    engine.dispose()


def _cfg(database, tmp_path, **data):
    return config_from_dict({"data": {"source": "sql", "url": database["url"], "secret_env": SECRET_ENV, **data}}, tmp_path)


def test_table_and_query_with_the_password_from_the_environment(database, tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, database["password"])
    got = read_source(_cfg(database, tmp_path, table="cancer"))
    _eq(got.frame.shape, (400, 9))
    _eq(got.frame["mean_radius"].tolist(), database["frame"]["mean_radius"].iloc[:400].tolist())
    _eq(database["password"] in got.description, False)
    _eq(got.description.endswith("/mlflow (table cancer)"), True)
    query = read_source(_cfg(database, tmp_path, query="SELECT id, diagnosis FROM cancer WHERE id <= 10"))
    _eq(query.frame["id"].tolist(), list(range(1, 11)))


def test_a_wrong_or_missing_password_is_one_line_without_it(database, tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "wrong-" + database["password"])
    with pytest.raises(UsageError) as e: read_source(_cfg(database, tmp_path, table="cancer"))
    message = str(e.value)
    _eq((message.startswith("cannot read the sql source postgresql+psycopg2://"), "\n" in message, database["password"] in message,
         "password authentication failed" in message), (True, False, False, True))
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(UsageError) as e: read_source(_cfg(database, tmp_path, table="cancer"))
    _eq(str(e.value).startswith("cannot read the sql source"), True)


def test_timestamp_watermark_reads_only_new_rows(database, tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, database["password"])
    database["frame"].iloc[:100].to_sql("events", database["engine"], index=False)
    cfg = _cfg(database, tmp_path, table="events", watermark="received")
    first = load_source(cfg)
    _eq((len(first.frame), first.read.state), (100, {"column": "received", "high": {"datetime": "2024-01-05T03:00:00+00:00"}, "rows": 100}))
    database["frame"].iloc[100:130].to_sql("events", database["engine"], index=False, if_exists="append")
    second = load_source(cfg)
    _eq((len(second.read.frame), second.earlier_rows, len(second.frame)), (30, 100, 130))
    _eq(second.frame["id"].tolist(), list(range(1, 131)))
    _eq(second.read.state["high"], {"datetime": "2024-01-06T09:00:00+00:00"})


def _files_holding(folder: Path, secret: str) -> list[str]:
    "Every file under `folder` whose bytes hold `secret`."
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow
def test_init_and_run_from_postgres_end_to_end_without_leaking_the_password(database, tmp_path):
    env = {SECRET_ENV: database["password"]}
    project = tmp_path / "cancer"
    outputs = []
    init = run_cli("init", project, "--sql-url", database["url"], "--sql-table", "cancer", "--watermark", "id",
                   "--secret-env", SECRET_ENV, "--target", "diagnosis", env=env)
    outputs.append(init)
    assert init[0] == 0, show(*init)
    settings = yaml.safe_load((project / "mlops.yaml").read_text())["data"]
    _eq({k: settings[k] for k in ("source", "url", "table", "watermark", "secret_env", "path")},
        {"source": "sql", "url": database["url"], "table": "cancer", "watermark": "id", "secret_env": SECRET_ENV, "path": ""})
    code, out, err = first = run_cli("run", "--project", project, *fast, env=env)
    outputs.append(first)
    assert code == 0, show(code, out, err)
    first_run = run_id_from(out)
    _eq(len(pd.read_parquet(run_dir_of(project, first_run) / "ingest" / "data.parquet")), 400)
    # 50 new rows arrive; the next ingest reads only those and keeps the 400 earlier ones
    database["frame"].iloc[400:450].to_sql("cancer", database["engine"], index=False, if_exists="append")
    set_stages(project, ["ingest"])
    code, out, err = second = run_cli("run", "--project", project, env=env)
    outputs.append(second)
    assert code == 0, show(code, out, err)
    second_run = run_id_from(out)
    _eq(len(pd.read_parquet(run_dir_of(project, second_run) / "ingest" / "data.parquet")), 450)
    client = client_for(project)
    ingest = stage_runs(client, second_run)["ingest"]
    _eq({k: ingest.data.params[k] for k in ("watermark", "watermark_high", "new_rows", "earlier_rows", "rows", "source_kind")},
        {"watermark": "id", "watermark_high": "450", "new_rows": "50", "earlier_rows": "400", "rows": "450", "source_kind": "sql"})
    _eq(client.get_run(second_run).data.params["watermark_high"], "450")  # on the pipeline's run too
    _eq(stage_runs(client, first_run)["ingest"].data.params["watermark_high"], "400")
    _eq(ingest.inputs.dataset_inputs[0].dataset.source_type, "external")
    # a database's rows can change: the ingest ran again rather than being reused from the cache
    _eq("| watermark id: 400 rows kept from earlier runs, 50 new, high mark 450" in out, True)
    # the password is nowhere: no file of the project (settings, runs, executed notebooks, mlflow.db, artifacts), no output
    _eq(_files_holding(project, database["password"]), [])
    _eq([database["password"] in o or database["password"] in e for _, o, e in outputs], [False, False, False])
