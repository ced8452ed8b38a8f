"""Rows that break the data contract are quarantined with reasons, never silently dropped or let through; too many fail the run.
Columns the contract does not list never become features: they are ignored and reported, or they stop the run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import artifact_paths, client_for, error_lines, fast, read_json, run_cli, run_dir_of, run_id_from, show, stage_runs

from mlops_nb.contract import Contract

SITES = ["bilateral", "left", "right"]


@pytest.fixture(scope="session")
def broken(tmp_path_factory, breast_cancer_frame):
    "A project inferred from clean data, and a copy of that data with known bad rows inserted at known positions."
    base = tmp_path_factory.mktemp("quarantine")
    rng = np.random.default_rng(3)
    clean = breast_cancer_frame.copy()
    clean.insert(1, "site", rng.choice(SITES, len(clean)))
    clean.to_csv(base / "clean.csv", index=False)
    clean = pd.read_csv(base / "clean.csv")  # the values exactly as the contract saw them
    project = base / "project"
    code, out, err = run_cli("init", project, "--data", base / "clean.csv", "--target", "diagnosis")
    assert code == 0, show(code, out, err)

    contract = Contract.from_yaml(project / "contract.yaml")
    radius_max, texture_min = contract.column("mean radius").max, contract.column("mean texture").min
    bad = clean.sample(7, random_state=1).astype(object).reset_index(drop=True)
    edits = [  # (column, value, expected reason)
        ("mean radius", radius_max * 100, f"mean radius: {_n(radius_max * 100)} above max {_n(radius_max)}"),
        ("mean texture", texture_min - 1000, f"mean texture: {_n(texture_min - 1000)} below min {_n(texture_min)}"),
        ("site", "upper", "site: unseen category 'upper'"),
        ("diagnosis", np.nan, "diagnosis: missing"),
        ("diagnosis", "unknown", "diagnosis: unknown label 'unknown'"),
        ("mean area", "abc", "mean area: not a number ('abc')"),
        ("mean smoothness", "0.1.2", "mean smoothness: not a number ('0.1.2')"),
    ]
    for i, (col, value, _) in enumerate(edits):
        bad.loc[i, col] = value
    positions = sorted(rng.choice(len(clean) + len(bad), len(bad), replace=False).tolist())
    order = np.full(len(clean) + len(bad), -1)
    order[positions] = np.arange(len(bad))
    parts, clean_iter = [], iter(range(len(clean)))
    for slot in order:
        parts.append(bad.iloc[[slot]] if slot >= 0 else clean.iloc[[next(clean_iter)]].astype(object))
    dirty = pd.concat(parts, ignore_index=True)
    dirty.to_csv(base / "dirty.csv", index=False)
    expected = {pos: edits[i][2] for i, pos in enumerate(positions)}
    return {"project": project, "dirty": base / "dirty.csv", "n": len(dirty), "expected": expected, "n_clean": len(clean)}


def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@pytest.fixture(scope="session")
def tolerant_run(broken):
    code, out, err = run_cli("run", "--project", broken["project"], "--set", f"data.path={broken['dirty']}",
                             "--set", "validate.max_quarantine_share=0.5", *fast)
    assert code == 0, show(code, out, err)
    return {"out": out, "run_id": run_id_from(out), "run_dir": run_dir_of(broken["project"], run_id_from(out))}


@pytest.fixture(scope="session")
def strict_run(broken, tolerant_run):
    code, out, err = run_cli("run", "--project", broken["project"], "--set", f"data.path={broken['dirty']}",
                             "--set", "validate.max_quarantine_share=0.001", *fast)
    return {"code": code, "out": out, "err": err, "run_id": run_id_from(out), "run_dir": run_dir_of(broken["project"], run_id_from(out))}


@pytest.mark.slow
def test_every_broken_row_quarantined_with_its_reason(broken, tolerant_run):
    run_dir = tolerant_run["run_dir"]
    quarantine = pd.read_parquet(run_dir / "validate" / "quarantine.parquet")
    accepted = pd.read_parquet(run_dir / "validate" / "data.parquet")
    expected = broken["expected"]
    assert sorted(quarantine["_row"].tolist()) == sorted(expected)  # every injected row, and no clean row
    assert dict(zip(quarantine["_row"], quarantine["_reasons"])) == expected  # each row's one reason, exactly
    assert len(accepted) + len(quarantine) == broken["n"]
    assert len(accepted) == broken["n_clean"]
    assert set(accepted["diagnosis"]) == {"benign", "malignant"} and set(accepted["site"]) == set(SITES)
    report = read_json(run_dir / "run.json")
    assert report["status"] == "FINISHED" and report["summary"]["metrics"]["rows_quarantined"] == len(expected)
    card = (run_dir / "register" / "model_card.md").read_text()
    assert f"{len(expected)} input rows" in card  # the model card says rows were left out


@pytest.mark.slow
def test_too_many_quarantined_rows_fail_the_run(broken, strict_run):
    code, err, run_dir = strict_run["code"], strict_run["err"], strict_run["run_dir"]
    assert code == 1, show(code, strict_run["out"], err)
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("error: stage 'validate' failed in cell "), err
    assert "DataQualityError: 7 of 576 rows (1.2%) failed validation" in lines[0], err
    assert "Traceback" not in err
    assert (run_dir / "validate.failed" / "quarantine.parquet").exists()
    assert len(pd.read_parquet(run_dir / "validate.failed" / "quarantine.parquet")) == 7
    assert not (run_dir / "validate").exists() and not (run_dir / "prepare").exists()
    assert (run_dir / "ingest").is_dir()
    assert not list(run_dir.glob(".*.partial"))
    assert (run_dir / "notebooks" / "02_validate.ipynb").exists() and not (run_dir / "notebooks" / "03_prepare.ipynb").exists()
    info = read_json(run_dir / "run.json")
    assert info["status"] == "FAILED" and [s["status"] for s in info["stages"]] == ["cached", "failed"]  # ingest: the same file as the run before

    client = client_for(broken["project"])
    parent = client.get_run(strict_run["run_id"])
    assert parent.info.status == "FAILED" and "DataQualityError" in parent.data.tags["error"]
    children = stage_runs(client, strict_run["run_id"])
    assert sorted(children) == ["ingest", "validate"]
    validate = children["validate"]
    assert validate.info.status == "FAILED"
    assert {"notebook/02_validate.ipynb", "notebook/02_validate.html"} <= set(artifact_paths(client, validate.info.run_id, "notebook"))
    assert [int(v.version) for v in client.search_model_versions(f"name = '{parent.data.params['project']}'")] == [1]  # from the tolerant run


def test_validate_in_process_catches_every_bad_row():
    from mlops_nb.contract import infer_contract
    from mlops_nb.validate import validate

    n, rng = 20_000, np.random.default_rng(11)
    clean = pd.DataFrame({"amount": rng.uniform(0, 100, n), "count": rng.integers(0, 50, n),
                          "colour": rng.choice(["red", "green", "blue"], n), "label": rng.choice(["yes", "no"], n)})
    contract = infer_contract(clean, "label")
    assert contract.column("amount").nullable is False and contract.column("count").kind == "integer"
    amount, count = contract.column("amount"), contract.column("count")
    assert amount.min > -50 and amount.max < 1e6 and count.max < 10_000
    kinds = [("amount", 1e6, f"amount: 1000000 above max {_n(amount.max)}"), ("amount", -50.0, f"amount: -50 below min {_n(amount.min)}"),
             ("amount", "oops", "amount: not a number ('oops')"), ("amount", None, "amount: missing (not nullable)"),
             ("count", 2.5, "count: not an integer ('2.5')"), ("count", 10_000, f"count: 10000 above max {_n(count.max)}"),
             ("colour", "purple", "colour: unseen category 'purple'"), ("label", None, "label: missing"),
             ("label", "maybe", "label: unknown label 'maybe'"), ("count", "seven", "count: not a number ('seven')")]
    df = clean.astype(object)
    rows = rng.choice(n, 500, replace=False)
    expected = {}
    for i, row in enumerate(rows):
        col, value, reason = kinds[i % len(kinds)]
        df.at[row, col] = value
        expected[int(row)] = reason
    result = validate(df, contract)
    q = result.quarantined
    assert sorted(q["_row"].tolist()) == sorted(expected)
    assert dict(zip(q["_row"].tolist(), q["_reasons"])) == expected
    assert len(result.accepted) + len(q) == n and result.report.n_quarantined == 500
    assert not set(result.accepted.index) & set(rows)
    assert result.accepted["amount"].dtype == np.float64 and result.accepted["count"].dtype == np.int64
    assert result.report.quarantine_share == pytest.approx(500 / n)


@pytest.fixture(scope="session")
def leaky(tmp_path_factory, broken):
    "A fresh project inferred from the clean data, and next month's file with a column the contract does not list: the label plus noise."
    base = tmp_path_factory.mktemp("leaky")
    clean = pd.read_csv(broken["project"].parent / "clean.csv")
    project = base / "project"
    code, out, err = run_cli("init", project, "--data", broken["project"].parent / "clean.csv", "--target", "diagnosis")
    assert code == 0, show(code, out, err)
    rng = np.random.default_rng(5)
    clean["leak"] = (clean["diagnosis"] == "malignant") + rng.normal(0, 0.01, len(clean))
    clean.to_csv(base / "leaky.csv", index=False)
    return {"project": project, "data": base / "leaky.csv", "n": len(clean)}


@pytest.mark.slow
def test_an_unknown_column_is_ignored_and_never_a_feature(leaky):
    from mlops_nb.data import load_skops
    # up to prepare, whose preprocessor names the features; the later stages only read what prepare made
    code, out, err = run_cli("run", "--project", leaky["project"], "--set", f"data.path={leaky['data']}", "--set", "stages=[ingest, validate, prepare]")
    assert code == 0, show(code, out, err)
    run_dir = run_dir_of(leaky["project"], run_id_from(out))
    accepted = pd.read_parquet(run_dir / "validate" / "data.parquet")
    assert "leak" not in accepted.columns and len(accepted) == leaky["n"]
    train = pd.read_parquet(run_dir / "prepare" / "train.parquet")
    preprocessor = load_skops(run_dir / "prepare" / "preprocessor.skops")
    features = [column for _, _, columns in preprocessor.transformers for column in columns]
    assert "leak" not in train.columns and "leak" not in features and "mean radius" in features
    client = client_for(leaky["project"])
    validate = stage_runs(client, run_id_from(out))["validate"]
    assert validate.data.tags["ignored_columns"] == "leak"
    report = read_json(client.download_artifacts(validate.info.run_id, "quality_report.json", str(run_dir)))
    assert report["extra_columns"] == ["leak"]
    executed = (run_dir / "notebooks" / "02_validate.ipynb").read_text()
    assert "IGNORED COLUMNS (not in the contract, never used as features): leak" in executed


@pytest.mark.slow
def test_an_unknown_column_stops_the_run_when_the_settings_say_so(leaky):
    code, out, err = run_cli("run", "--project", leaky["project"], "--set", f"data.path={leaky['data']}",
                             "--set", "validate.unknown_columns=fail", *fast)
    assert code == 1, show(code, out, err)
    lines = error_lines(err)
    assert len(lines) == 1 and "DataQualityError: the data has 1 column that the contract does not list: leak. " \
                                 "Add it to contract.yaml" in lines[0], err
    assert "Traceback" not in err
    run_dir = run_dir_of(leaky["project"], run_id_from(out))
    assert not (run_dir / "validate").exists() and not (run_dir / "prepare").exists()
