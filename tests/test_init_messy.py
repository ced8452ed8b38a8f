"""`init` on a messy real-world-like CSV (placeholders, junk, ids, dates, text labels), a time-ordered split, and Parquet input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import fast, read_json, run_cli, run_dir_of, run_id_from, show

N = 800


def _messy(seed: int = 7):
    "A churn-like table with messy values; returns (frame as typed values, frame as written to CSV, junk rows by column)."
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, N)
    charges = np.round(rng.normal(70, 25, N).clip(15, 150), 2)
    plan = rng.choice(["basic", "plus", "premium"], N)
    support_calls = rng.poisson(2, N)
    logit = 2.0 - 0.06 * tenure + 0.03 * (charges - 70) + 0.6 * support_calls - 0.8 * (plan == "premium")
    churned = rng.random(N) < 1 / (1 + np.exp(-logit + 1.5))
    typed = pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in rng.permutation(N)],
        "signup_date": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365, N), unit="D"),
        "tenure": tenure.astype(float), "monthly_charges": charges, "support_calls": support_calls.astype(float),
        "plan": plan.astype(object), "churn": np.where(churned, "churned", "stayed")})
    # placeholders that mean "missing": accepted, not quarantined
    text = typed.astype({"tenure": object, "monthly_charges": object, "support_calls": object})
    text["tenure"] = [str(int(v)) for v in tenure]
    text["monthly_charges"] = [f"{v:.2f}" for v in charges]
    text["support_calls"] = [str(int(v)) for v in support_calls]
    text["signup_date"] = typed["signup_date"].dt.strftime("%Y-%m-%d")
    rows = rng.permutation(N)
    placeholders = {"tenure": rows[:30], "monthly_charges": rows[30:60], "support_calls": rows[60:90]}
    for col, where in placeholders.items():
        text.loc[where, col] = np.array(["n/a", "?", ""])[np.arange(len(where)) % 3]
        typed.loc[where, col] = np.nan
    text.loc[rows[90:130], "plan"] = np.nan
    typed.loc[rows[90:130], "plan"] = None
    # ~1% junk in numeric columns: these rows, and only these, must be quarantined
    junk = {"monthly_charges": rows[130:136], "support_calls": rows[136:139]}
    text.loc[junk["monthly_charges"], "monthly_charges"] = ["abc", "12,5", "x", "abc", "seventy", "--"]
    text.loc[junk["support_calls"], "support_calls"] = ["abc", "many", "3 calls"]
    return typed, text, {col: sorted(int(r) for r in where) for col, where in junk.items()}


@pytest.fixture(scope="session")
def messy(tmp_path_factory):
    base = tmp_path_factory.mktemp("messy")
    typed, text, junk = _messy()
    csv = base / "customers.csv"
    text.to_csv(csv, index=False)
    return {"base": base, "csv": csv, "typed": typed, "junk": junk}


@pytest.fixture(scope="session")
def messy_run(messy):
    project = messy["base"] / "churn"
    init = run_cli("init", project, "--data", messy["csv"], "--target", "churn")
    assert init[0] == 0, show(*init)
    code, out, err = run_cli("run", "--project", project, *fast)
    assert code == 0, show(code, out, err)
    return {"project": project, "init": init, "out": out, "run_dir": run_dir_of(project, run_id_from(out))}


@pytest.mark.slow
def test_init_infers_contract_from_messy_csv(messy_run):
    code, out, err = messy_run["init"]
    assert "Created project 'churn'" in out and err == "", show(code, out, err)
    project = messy_run["project"]
    assert {p.name for p in (project / "runbooks").glob("*.ipynb")} == {f"{s}.ipynb" for s in
                                                                        ("ingest", "validate", "prepare", "train", "evaluate", "register", "monitor")}
    contract = yaml.safe_load((project / "contract.yaml").read_text())
    cols = {c["name"]: c for c in contract["columns"]}
    assert contract["target"] == "churn" and cols["churn"]["categories"] == ["churned", "stayed"]
    assert cols["customer_id"]["role"] == "ignore"  # unique ids are never features
    assert cols["signup_date"]["kind"] == "datetime" and cols["signup_date"]["role"] == "ignore"
    assert cols["monthly_charges"]["kind"] == "numeric" and cols["monthly_charges"]["nullable"]
    assert cols["tenure"]["kind"] == "integer" and cols["support_calls"]["kind"] == "integer"
    assert cols["plan"]["kind"] == "categorical" and cols["plan"]["nullable"] and cols["plan"]["categories"] == ["basic", "plus", "premium"]


def test_messy_run_quarantines_exactly_the_junk(messy, messy_run):
    run_dir = messy_run["run_dir"]
    quarantine = pd.read_parquet(run_dir / "validate" / "quarantine.parquet")
    accepted = pd.read_parquet(run_dir / "validate" / "data.parquet")
    junk = messy["junk"]
    expected = sorted(junk["monthly_charges"] + junk["support_calls"])
    assert sorted(quarantine["_row"].tolist()) == expected
    for col, rows in junk.items():
        reasons = quarantine.set_index("_row").loc[rows, "_reasons"]
        assert reasons.str.startswith(f"{col}: not a number").all(), reasons.tolist()
    assert len(accepted) + len(quarantine) == N
    assert not set(accepted["customer_id"]) & set(quarantine["customer_id"])
    assert accepted["monthly_charges"].dtype.kind == "f" and accepted["monthly_charges"].isna().sum() == 30  # placeholders kept as missing
    summary = read_json(run_dir / "validate" / "summary.json")["metrics"]
    assert summary["rows_quarantined"] == len(expected)


def test_messy_run_learns_and_registers(messy_run):
    out = messy_run["out"]
    assert "churn v1 (@champion, @challenger)" in out, out
    info = read_json(messy_run["run_dir"] / "run.json")
    assert info["status"] == "FINISHED" and info["summary"]["params"]["split"] == "stratified"
    assert info["summary"]["metrics"]["test_roc_auc"] > 0.7  # the labels depend on the features
    evaluation = read_json(messy_run["run_dir"] / "evaluate" / "evaluation.json")
    assert sorted(evaluation["classes"]) == ["churned", "stayed"]
    features = read_json(messy_run["run_dir"] / "train" / "model.json")["features"]
    assert set(features) == {"tenure", "monthly_charges", "support_calls", "plan"}


@pytest.mark.slow
def test_time_column_gives_time_split(messy):
    project = messy["base"] / "churn-time"
    code, out, err = run_cli("init", project, "--data", messy["csv"], "--target", "churn", "--time-column", "signup_date")
    assert code == 0, show(code, out, err)
    contract = yaml.safe_load((project / "contract.yaml").read_text())
    assert contract["time_column"] == "signup_date"
    assert {c["name"]: c["role"] for c in contract["columns"]}["signup_date"] == "time"
    # the split is made by prepare: the stages after it are exercised by the other runs
    code, out, err = run_cli("run", "--project", project, "--set", "stages=[ingest, validate, prepare]")
    assert code == 0, show(code, out, err)
    run_dir = run_dir_of(project, run_id_from(out))
    assert read_json(run_dir / "prepare" / "summary.json")["params"]["split"] == "time"
    assert read_json(run_dir / "run.json")["summary"]["params"]["split"] == "time"
    train = pd.read_parquet(run_dir / "prepare" / "train.parquet")
    test = pd.read_parquet(run_dir / "prepare" / "test.parquet")
    accepted = pd.read_parquet(run_dir / "validate" / "data.parquet")
    boundary = pd.to_datetime(test["signup_date"]).min()
    assert pd.to_datetime(train["signup_date"]).max() < boundary  # tested on the most recent rows; no day straddles the split
    assert len(test) == (pd.to_datetime(accepted["signup_date"]) >= boundary).sum() and len(train) + len(test) == len(accepted)
    assert abs(len(test) - 0.2 * len(accepted)) <= accepted["signup_date"].value_counts().max()  # as near 20% as whole days allow
    assert "signup_date" in train.columns and "churn" in test.columns


@pytest.mark.slow
def test_parquet_input(messy):
    typed = messy["typed"]
    data = messy["base"] / "customers.parquet"
    typed.to_parquet(data, index=False)
    project = messy["base"] / "churn-parquet"
    code, out, err = run_cli("init", project, "--data", data, "--target", "churn")
    assert code == 0, show(code, out, err)
    # the input's format matters to ingest and validate only: later stages read validate's Parquet whatever the input was
    code, out, err = run_cli("run", "--project", project, "--set", "stages=[ingest, validate]")
    assert code == 0, show(code, out, err)
    run_dir = run_dir_of(project, run_id_from(out))
    info = read_json(run_dir / "run.json")
    assert info["status"] == "FINISHED" and [s["status"] for s in info["stages"]] == ["ok", "ok"], info
    assert info["summary"]["tags"]["data_source"] == str(data.resolve())
    assert info["summary"]["params"]["data_rows"] == N and info["summary"]["metrics"]["rows_quarantined"] == 0
    accepted = pd.read_parquet(run_dir / "validate" / "data.parquet")
    assert len(accepted) == N and accepted["monthly_charges"].isna().sum() == typed["monthly_charges"].isna().sum()
