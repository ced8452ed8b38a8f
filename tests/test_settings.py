"""Every setting is checked before a run starts: invalid values of every field of `Config` stop `mlops-nb run` with exit 2
and one line, valid ones pass, and what the checks accept is what the stages accept."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import call_cli
from fastcore.test import test_eq as _eq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_nb.config import Config, UsageError, config_dict, config_from_dict, load_config, merge, parse_overrides
from mlops_nb.contract import Contract, infer_contract
from mlops_nb.pipeline import check_inputs, init_project

# One entry per setting: values that must be refused (with a fragment of the one-line message) and values that must pass.
# A field of `Config` missing here fails `test_every_setting_has_invalid_and_valid_values`: a new setting needs a check.
INVALID = {
    "project": [('""', "setting 'project' must be a name"), ("a/b", "without '/' or ':'"), ("'a:b'", "without '/' or ':'"), ("..", "must be a name")],
    "seed": [("-1", "setting 'seed' must be a whole number from 0 to 4294967295, got -1"), ("4294967296", "from 0 to 4294967295"),
             ("1.5", "setting 'seed' must be a whole number"), ("true", "must be a whole number")],
    "tracking_uri": [('""', "setting 'tracking_uri' must be an MLflow tracking URI"), ("'http://'", "must be an MLflow tracking URI"),
                     ("'not a uri'", "must be an MLflow tracking URI")],
    "contract": [('""', "setting 'contract' must not be empty"), ("missing.yaml", "missing.yaml not found")],
    "data.path": [('""', "data.path is empty"), ("gone.csv", "data file not found"), (".", "is a folder"), ("notes.xlsx", "data.path notes.xlsx is not an .xlsx workbook"), ("notes.ods", "unsupported data format '.ods'")],
    "data.target": [('""', "data.target is '' in mlops.yaml but 'diagnosis'"), ("radius", "data.target is 'radius' in mlops.yaml but 'diagnosis'")],
    "data.time_column": [('""', "setting 'data.time_column' must not be empty"), ("mean radius", "data.time_column is 'mean radius' in mlops.yaml but None")],
    "data.format": [("xlsx", "setting 'data.format' must be one of auto, csv, excel, parquet, got 'xlsx'"), ("CSV", "must be one of auto, csv, excel, parquet")],
    "data.positive_class": [("null", "set data.positive_class to 'benign' or 'malignant'"), ("maybe", "positive class 'maybe' is not one of the classes"),
                            ("[1]", "setting 'data.positive_class' must be a class label")],
    "validate.max_quarantine_share": [("-0.1", "'validate.max_quarantine_share' must be between 0 and 1, got -0.1"), ("1.5", "must be between 0 and 1"),
                                      (".nan", "must be a finite number")],
    "validate.unknown_columns": [("drop", "setting 'validate.unknown_columns' must be one of ignore, fail, got 'drop'")],
    "prepare.test_size": [("0", "'prepare.test_size' must be greater than 0 and less than 1, got 0"), ("1", "must be greater than 0 and less than 1, got 1"),
                          ("-0.2", "must be greater than 0 and less than 1"), (".inf", "must be a finite number")],
    "prepare.split": [("time", "prepare.split is time but data.time_column is not set"), ("kfold", "setting 'prepare.split' must be one of auto")],
    "train.candidates": [("[]", "'train.candidates' must list at least one candidate"), ("[xgboost]", "unknown candidate in train.candidates 'xgboost'"),
                         ("[random_forest, random_forest]", "each once"), ("random_forest", "'train.candidates' must be a list")],
    "train.n_splits": [("1", "setting 'train.n_splits' must be at least 2, got 1"), ("2.5", "must be a whole number")],
    "train.n_iter": [("0", "setting 'train.n_iter' must be at least 1, got 0")],
    "train.primary_metric": [("auc", "unknown metric in train.primary_metric 'auc'"), ('""', "setting 'train.primary_metric' must not be empty")],
    "train.overfit_tolerance": [("-0.01", "setting 'train.overfit_tolerance' must be at least 0, got -0.01"), (".inf", "must be a finite number")],
    "train.max_train_rows": [("0", "setting 'train.max_train_rows' must be at least 1, got 0"),
                             ("9", "train.max_train_rows must be at least 10 (train.n_splits rows for each of the 2 classes), got 9")],
    "evaluate.thresholds": [("{auc: 0.5}", "unknown metric in evaluate.thresholds 'auc'"), ("{roc_auc: 1.5}", "evaluate.thresholds.roc_auc must be between 0 and 1"),
                            ("{roc_auc: high}", "'evaluate.thresholds' must map metric names to numbers"), ("{log_loss: -1}", "evaluate.thresholds.log_loss must be between 0 and inf")],
    "evaluate.champion_tolerance": [("-0.01", "setting 'evaluate.champion_tolerance' must be at least 0, got -0.01")],
    "evaluate.confidence": [("0.5", "'evaluate.confidence' must be greater than 0.5 and less than 1, got 0.5"), ("1", "less than 1, got 1")],
    "evaluate.min_comparison_rows": [("1", "setting 'evaluate.min_comparison_rows' must be at least 2, got 1")],
    "evaluate.bootstrap_samples": [("99", "setting 'evaluate.bootstrap_samples' must be at least 100, got 99")],
    "register.model_name": [('""', "setting 'register.model_name' must be a name"), ("team/churn", "without '/' or ':'")],
    "register.intended_use": [('""', "setting 'register.intended_use' must not be empty")],
    "serve.host": [('""', "setting 'serve.host' must be a host name or IP address"), ('"0.0.0.0 x"', "must be a host name or IP address")],
    "serve.port": [("0", "setting 'serve.port' must be between 1 and 65535, got 0"), ("65536", "must be between 1 and 65535")],
    "serve.workers": [("0", "setting 'serve.workers' must be at least 1, got 0")],
    "serve.token_env": [('""', "setting 'serve.token_env' must not be empty")],
    "serve.max_body_bytes": [("100", "setting 'serve.max_body_bytes' must be at least 1024, got 100")],
    "serve.max_rows": [("0", "setting 'serve.max_rows' must be at least 1, got 0")],
    "serve.prediction_log": [('""', "setting 'serve.prediction_log' must not be empty")],
    "serve.log_queue": [("0", "setting 'serve.log_queue' must be at least 1, got 0")],
    "serve.poll_seconds": [("0", "setting 'serve.poll_seconds' must be between 0.1 and 3600, got 0")],
    "serve.routing_key": [("X-User", "setting 'serve.routing_key' must be header:NAME or column:NAME"), ("cookie:id", "must be header:NAME or column:NAME")],
    "serve.canary_min_requests": [("0", "setting 'serve.canary_min_requests' must be at least 1, got 0")],
    "serve.canary_error_margin": [("1.5", "setting 'serve.canary_error_margin' must be between 0 and 1, got 1.5")],
    "serve.canary_latency_margin_ms": [("-1", "setting 'serve.canary_latency_margin_ms' must be at least 0, got -1")],
    "serve.shadow_queue": [("0", "setting 'serve.shadow_queue' must be at least 1, got 0")],
    "serve.ab_min_labels": [("1", "setting 'serve.ab_min_labels' must be at least 2, got 1")],
    "monitor.window": [("24", "setting 'monitor.window' must be text, got 24"), ("24 hours", "setting 'monitor.window' must be a duration such as 90s"), ("1 day", "must be a duration"), ("0h", "must be a duration")],
    "monitor.chunk_rows": [("999", "setting 'monitor.chunk_rows' must be at least 1000, got 999")],
    "monitor.bins": [("9", "setting 'monitor.bins' must be between 10 and 1000, got 9")],
    "monitor.max_categories": [("0", "setting 'monitor.max_categories' must be at least 1, got 0")],
    "monitor.numeric_test": [("chi2", "setting 'monitor.numeric_test' must be one of auto, psi, ks, wasserstein, got 'chi2'")],
    "monitor.categorical_test": [("ks", "setting 'monitor.categorical_test' must be one of auto, psi, chi2, jensen_shannon, got 'ks'")],
    "monitor.large_n": [("1", "setting 'monitor.large_n' must be at least 2, got 1")],
    "monitor.p_value": [("0", "setting 'monitor.p_value' must be greater than 0 and less than 1, got 0")],
    "monitor.thresholds": [("{psi: 0}", "setting 'monitor.thresholds' must map test names to positive numbers"), ("{psi: high}", "positive numbers")],
    "monitor.columns": [("{age: {test: anova}}", "setting 'monitor.columns' must map column names to {test: auto|none|psi"), ("{age: psi}", "must map column names")],
    "monitor.min_rows": [("0", "setting 'monitor.min_rows' must be at least 1, got 0")],
    "monitor.min_labels": [("1", "setting 'monitor.min_labels' must be at least 2, got 1")],
    "monitor.performance_drop": [("-0.1", "setting 'monitor.performance_drop' must be at least 0, got -0.1")],
    "monitor.confidence": [("1", "setting 'monitor.confidence' must be greater than 0.5 and less than 1, got 1")],
    "monitor.multivariate": [("maybe", "setting 'monitor.multivariate' must be true or false, got 'maybe'")],
    "monitor.metrics_file": [('""', "setting 'monitor.metrics_file' must not be empty")],
    "alerts.consecutive": [("0", "setting 'alerts.consecutive' must be at least 1, got 0")],
    "alerts.cooldown": [("soon", "setting 'alerts.cooldown' must be a duration")],
    "alerts.min_rows": [("0", "setting 'alerts.min_rows' must be at least 1, got 0")],
    "alerts.drift_share": [("1.5", "setting 'alerts.drift_share' must be between 0 and 1, got 1.5")],
    "alerts.group_top": [("0", "setting 'alerts.group_top' must be at least 1, got 0")],
    "alerts.resolve": [("sometimes", "setting 'alerts.resolve' must be true or false")],
    "alerts.webhook_env": [('""', "setting 'alerts.webhook_env' must not be empty")],
    "maintain.data": [('""', "setting 'maintain.data' must not be empty")],
    "maintain.feedback": [("1", "setting 'maintain.feedback' must be true or false, got 1")],
    "maintain.on_drift": [("yes please", "setting 'maintain.on_drift' must be true or false")],
    "maintain.on_performance": [("0", "setting 'maintain.on_performance' must be true or false")],
    "maintain.max_age": [("30", "must be text, got 30"), ("30 days", "setting 'maintain.max_age' must be a duration")],
    "maintain.every": [("-6h", "setting 'maintain.every' must be a duration")],
    "prepare.cutoff": [("June", "setting 'prepare.cutoff' must be an ISO date or time such as 2024-06-30"), ("2024-13-01", "must be an ISO date or time"),
                       ("2024-06-30", "prepare.cutoff is set but data.time_column is not")],
    "prepare.horizon": [("30", "setting 'prepare.horizon' must be text, got 30"), ("a month", "setting 'prepare.horizon' must be a duration"),
                        ("30d", "prepare.horizon is set but prepare.cutoff is not")],
    "pipeline.cache": [("sometimes", "setting 'pipeline.cache' must be true or false")],
    "pipeline.timeout": [("1 hour", "setting 'pipeline.timeout' must be a duration"), ("0s", "must be a duration")],
    "pipeline.timeouts": [("{train: 2 hours}", "setting 'pipeline.timeouts' must map stage names to durations"), ("{train: 7200}", "must map stage names to durations")],
    "sweep.scheduler": [("localhost:8786", "setting 'sweep.scheduler' must be a Dask scheduler address"), ('""', "must be a Dask scheduler address")],
    "sweep.workers": [("0", "setting 'sweep.workers' must be at least 1, got 0")],
    "data.source": [('""', "setting 'data.source' must not be empty")],
    "data.csv": [("{delimiter: ';', decimal: ';'}", "setting 'data.csv' must map encoding, delimiter, decimal"), ("{sep: ';'}", "must map encoding, delimiter"),
                 ("{encoding: klingon}", "encoding to a codec such as utf-8"), ("{delimiter: ';;'}", "to single characters")],
    "data.sheet": [("true", "setting 'data.sheet' must be a sheet name or position, got True")],
    "data.url": [("postgresql://analyst:s3cret@db/sales", "setting 'data.url' must be a URL without a password"), ('"a b"', "must be a URL without a password")],
    "data.query": [('""', "setting 'data.query' must not be empty")],
    "data.table": [('""', "setting 'data.table' must not be empty")],
    "data.watermark": [('""', "setting 'data.watermark' must not be empty")],
    "data.secret_env": [('""', "setting 'data.secret_env' must not be empty")],
    "data.records": [('""', "setting 'data.records' must not be empty")],
    "data.next_page": [('""', "setting 'data.next_page' must not be empty")],
    "data.max_pages": [("0", "setting 'data.max_pages' must be at least 1, got 0")],
    "data.max_age": [("2 days", "setting 'data.max_age' must be a duration"), ("2d", "data.max_age is set but data.time_column is not")],
    "data.freshness": [("maybe", "setting 'data.freshness' must be one of warn, fail, got 'maybe'")],
    "evaluate.slice_min_rows": [("0", "setting 'evaluate.slice_min_rows' must be at least 1, got 0")],
    "evaluate.slice_tolerance": [("-0.1", "setting 'evaluate.slice_tolerance' must be at least 0, got -0.1")],
    "governance.pii": [("keep", "setting 'governance.pii' must be one of hash, mask, drop, got 'keep'")],
    "governance.pii_key_env": [('""', "setting 'governance.pii_key_env' must not be empty")],
    "governance.retention": [("a year", "setting 'governance.retention' must be a duration")],
    "governance.explain_top": [("0", "setting 'governance.explain_top' must be at least 1, got 0")],
    "slices": [("{age: {column: age, bins: [50, 30]}}", "setting 'slices' must map slice names to a column"), ("{region: [a, b]}", "must map slice names"),
               ("{band: {expr: ''}}", "must map slice names")],
    "stages": [("[]", "setting 'stages' must list at least one stage"), ("[ingest, {name: enrich}]", "stage 'enrich' is not built in, so it needs its notebook"),
               ("[ingest, ingest]", "stage names must be unique"), ("[ingest, train]", "stage 'train' needs stage(s) prepare before it"),
               ("[ingest, {name: ../up, notebook: up.ipynb}]", "bad stage name '../up'"),
               ("[ingest, {name: enrich, notebook: runbooks/missing.ipynb}]", "stage 'enrich': notebook"),
               ("[ingest, {name: enrich, notebook: runbooks/enrich.ipynb, reads: [colour]}]", "stage 'enrich': reads must list settings")],
}
VALID = {
    "project": ["churn-2024", "o'brien"], "seed": ["0", "4294967295"], "tracking_uri": ["null"], "contract": ["contract.yaml"],
    "data.path": ["data.csv"], "data.target": ["diagnosis"], "data.time_column": ["null"], "data.format": ["csv", "auto"],
    "data.positive_class": ["benign", "malignant"], "validate.max_quarantine_share": ["0", "1"], "validate.unknown_columns": ["ignore", "fail"],
    "prepare.test_size": ["0.01", "0.99"], "prepare.split": ["random", "stratified", "auto"], "train.candidates": ["[random_forest]"],
    "train.n_splits": ["2"], "train.n_iter": ["1"], "train.primary_metric": ["log_loss", "f1"], "train.overfit_tolerance": ["0"],
    "train.max_train_rows": ["10"], "evaluate.thresholds": ["{log_loss: 0.5, f1: 0.1}", "{roc_auc: null}"], "evaluate.champion_tolerance": ["0"],
    "evaluate.confidence": ["0.51", "0.99"], "evaluate.min_comparison_rows": ["2"], "evaluate.bootstrap_samples": ["100"],
    "register.model_name": ["credit-risk", "null"], "register.intended_use": ["Screening."], "stages": ["[ingest, validate, prepare]"],
    "serve.host": ["0.0.0.0", "localhost"], "serve.port": ["1", "65535"], "serve.workers": ["4"], "serve.token_env": ["API_TOKEN"],
    "serve.max_body_bytes": ["1024"], "serve.max_rows": ["1"], "serve.prediction_log": ["/var/log/predictions.db"], "serve.log_queue": ["1"],
    "serve.poll_seconds": ["0.5"], "serve.routing_key": ["column:customer_id", "header:X-User"], "serve.canary_min_requests": ["1"],
    "serve.canary_error_margin": ["0", "1"], "serve.canary_latency_margin_ms": ["0"], "serve.shadow_queue": ["1"], "serve.ab_min_labels": ["2"],
    "monitor.window": ["1h", "90s", "2w"], "monitor.chunk_rows": ["1000"], "monitor.bins": ["10", "1000"], "monitor.max_categories": ["1"],
    "monitor.numeric_test": ["psi", "ks", "wasserstein", "auto"], "monitor.categorical_test": ["chi2", "jensen_shannon"], "monitor.large_n": ["2"],
    "monitor.p_value": ["0.01"], "monitor.thresholds": ["{psi: 0.25, wasserstein: 0.2}"], "monitor.columns": ["{age: {test: psi, threshold: 0.25}, id: {test: none}}"],
    "monitor.min_rows": ["1"], "monitor.min_labels": ["2"], "monitor.performance_drop": ["0"], "monitor.confidence": ["0.9"],
    "monitor.multivariate": ["false"], "monitor.metrics_file": ["/var/lib/node_exporter/mlops.prom"],
    "alerts.consecutive": ["1"], "alerts.cooldown": ["30m"], "alerts.min_rows": ["1"], "alerts.drift_share": ["0", "1"], "alerts.group_top": ["1"],
    "alerts.resolve": ["false"], "alerts.webhook_env": ["ALERT_URL"], "maintain.data": ["fresh.csv", "null"], "maintain.feedback": ["false"],
    "maintain.on_drift": ["false"], "maintain.on_performance": ["false"], "maintain.max_age": ["null", "90d"], "maintain.every": ["1h"],
    "prepare.cutoff": ["null"], "prepare.horizon": ["null"],  # a cutoff needs a time column: tests/test_backtest.py
    "pipeline.cache": ["false"],
    "data.source": ["file"], "data.csv": ["{}", "{delimiter: ',', decimal: '.', encoding: utf-8}"], "data.sheet": ["null"],
    "data.url": ["null"], "data.query": ["null"], "data.table": ["null"], "data.watermark": ["null"], "data.secret_env": ["DB_PASSWORD"],
    "data.records": ["null"], "data.next_page": ["null"], "data.max_pages": ["5"], "data.max_age": ["null"], "data.freshness": ["fail"],
    "evaluate.slice_min_rows": ["30"], "evaluate.slice_tolerance": ["0.1"], "governance.pii": ["mask", "drop"], "governance.pii_key_env": ["PII_KEY"],
    "governance.retention": ["null", "365d"], "governance.explain_top": ["3"],
    "slices": ["{}", "{size: {column: mean radius, bins: [0, 12, 15, 30]}}", "{large: {expr: '`mean area` > 700'}}"],
    "pipeline.timeout": ["90s"], "pipeline.timeouts": ["{train: 2h}", "{}"], "sweep.scheduler": ["null", "tcp://127.0.0.1:8786"], "sweep.workers": ["1"],
}


def leaf_fields(cls=Config, prefix="") -> list[str]:
    "Dotted names of every user setting of `Config`, derived from the dataclass fields."
    names = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"): continue
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            names += leaf_fields(f.default_factory, f"{prefix}{f.name}.")
        else: names.append(prefix + f.name)
    return names


def test_every_setting_has_invalid_and_valid_values():
    _eq(sorted(INVALID), sorted(leaf_fields()))
    _eq(sorted(VALID), sorted(leaf_fields()))


@pytest.fixture(scope="module")
def project(tmp_path_factory, breast_cancer_frame):
    base = tmp_path_factory.mktemp("settings")
    breast_cancer_frame.to_csv(base / "data.csv", index=False)
    project = base / "project"
    init_project(project, base / "data.csv", "diagnosis")
    (project / "data.csv").write_bytes((base / "data.csv").read_bytes())
    (project / "notes.xlsx").write_text("not a table")
    (project / "notes.ods").write_text("not a table either")
    return project


def _cases(table):
    return [pytest.param(name, value, *rest, id=f"{name}={value}") for name, values in table.items() for value, *rest in
            [(v if isinstance(v, tuple) else (v,)) for v in values]]


@pytest.mark.parametrize("name,value,fragment", _cases(INVALID))
def test_invalid_value_stops_the_run_with_one_line(project, name, value, fragment, capsys):
    from mlops_nb.cli import main
    code = main(["run", "--project", str(project), "--set", f"{name}={value}"])
    err = capsys.readouterr().err
    _eq(code, 2)
    lines = err.strip().splitlines()
    _eq(len(lines), 1)
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    _eq((project / "runs").exists(), False)  # nothing started


@pytest.mark.parametrize("name,value", _cases(VALID))
def test_valid_value_passes_the_checks(project, name, value):
    cfg = load_config(project, parse_overrides([f"{name}={value}"]))
    check_inputs(cfg)
    expected = yaml.safe_load(value)
    actual = cfg
    for part in name.split("."): actual = getattr(actual, part)
    if name == "evaluate.thresholds": expected = {k: v for k, v in merge({"roc_auc": 0.7}, expected).items() if v is not None}
    if name == "monitor.thresholds": expected = merge(Config().monitor.thresholds, expected)
    if name == "pipeline.timeouts": expected = merge(Config().pipeline.timeouts, expected)
    if name == "data.csv": expected = {**load_config(project).data.csv, **expected}  # --set merges into the dialect init wrote
    if name == "prepare.cutoff" and expected is not None: expected = expected.isoformat()  # YAML reads it as a date; the setting keeps ISO text
    if name in ("train.candidates", "stages"): actual = list(actual)
    _eq(actual, expected)


def test_invalid_setting_through_the_real_command(project):
    for value, fragment in (("prepare.test_size=0", "must be greater than 0 and less than 1, got 0"),
                            ("stages=[ingest, {name: enrich}]", "stage 'enrich' is not built in, so it needs its notebook")):
        code, _out, err = call_cli("run", "--project", project, "--set", value)
        _eq(code, 2)
        _eq(err.count("\n"), 1)
        assert err.startswith("error: ") and fragment in err, err
    _eq((project / "runs").exists(), False)


# --- the stages accept what the checks accept ---

@pytest.mark.parametrize("name,value,fragment", _cases(INVALID))
def test_stages_refuse_what_the_config_refuses(project, name, value, fragment, tmp_path):
    "A stage reads its settings through `config_from_dict` too, so a value refused there is refused by every stage."
    from mlops_nb.stage import StageParams, stage_context
    data = merge(config_dict(load_config(project)), parse_overrides([f"{name}={value}"]))
    try: config_from_dict(data, project)
    except UsageError as refused:
        with pytest.raises(UsageError) as by_stage:
            stage_context(StageParams("prepare", str(project), str(tmp_path), str(tmp_path / "out"), {}, None, data).to_dict())
        _eq(str(by_stage.value), str(refused))


NUMERIC_RULES = {  # an independent statement of each numeric setting's valid range: (low, high, low open, high open, whole)
    "seed": (0, 2**32 - 1, False, False, True), "validate.max_quarantine_share": (0, 1, False, False, False),
    "prepare.test_size": (0, 1, True, True, False), "train.n_splits": (2, math.inf, False, False, True),
    "train.n_iter": (1, math.inf, False, False, True), "train.overfit_tolerance": (0, math.inf, False, False, False),
    "train.max_train_rows": (1, math.inf, False, False, True), "evaluate.champion_tolerance": (0, math.inf, False, False, False),
    "evaluate.confidence": (0.5, 1, True, True, False), "evaluate.min_comparison_rows": (2, math.inf, False, False, True),
    "evaluate.bootstrap_samples": (100, math.inf, False, False, True),
    "serve.port": (1, 65535, False, False, True), "serve.workers": (1, math.inf, False, False, True),
    "serve.max_body_bytes": (1024, math.inf, False, False, True), "serve.max_rows": (1, math.inf, False, False, True),
    "serve.log_queue": (1, math.inf, False, False, True), "serve.poll_seconds": (0.1, 3600, False, False, False),
    "serve.canary_min_requests": (1, math.inf, False, False, True), "serve.canary_error_margin": (0, 1, False, False, False),
    "serve.canary_latency_margin_ms": (0, math.inf, False, False, False), "serve.shadow_queue": (1, math.inf, False, False, True),
    "serve.ab_min_labels": (2, math.inf, False, False, True),
    "monitor.chunk_rows": (1000, math.inf, False, False, True), "monitor.bins": (10, 1000, False, False, True),
    "monitor.max_categories": (1, math.inf, False, False, True), "monitor.large_n": (2, math.inf, False, False, True),
    "monitor.p_value": (0, 1, True, True, False), "monitor.min_rows": (1, math.inf, False, False, True),
    "monitor.min_labels": (2, math.inf, False, False, True), "monitor.performance_drop": (0, math.inf, False, False, False),
    "monitor.confidence": (0.5, 1, True, True, False), "alerts.consecutive": (1, math.inf, False, False, True),
    "alerts.min_rows": (1, math.inf, False, False, True), "alerts.drift_share": (0, 1, False, False, False),
    "alerts.group_top": (1, math.inf, False, False, True), "sweep.workers": (1, math.inf, False, False, True),
    "data.max_pages": (1, math.inf, False, False, True), "evaluate.slice_min_rows": (1, math.inf, False, False, True),
    "evaluate.slice_tolerance": (0, math.inf, False, False, False), "governance.explain_top": (1, math.inf, False, False, True),
}


def _expected_valid(name, value) -> bool:
    low, high, low_open, high_open, whole = NUMERIC_RULES[name]
    if isinstance(value, bool) or (whole and not isinstance(value, int)) or not math.isfinite(value): return False
    return (low < value if low_open else low <= value) and (value < high if high_open else value <= high)


def _nested(name, value) -> dict:
    *parents, leaf = name.split(".")
    d = {leaf: value}
    for p in reversed(parents): d = {p: d}
    return d


def test_numeric_rules_cover_every_numeric_setting():
    numeric = [n for n in leaf_fields() if isinstance(_default(n), (int, float)) and not isinstance(_default(n), bool)]
    _eq(sorted(NUMERIC_RULES), sorted(numeric))


def _default(name):
    value = Config()
    for part in name.split("."): value = getattr(value, part)
    return value


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(NUMERIC_RULES)),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**40, 2**40), st.booleans(),
                       st.sampled_from([0, 1, 2, 100, 99, 0.5, 1.0, 2**32 - 1, 2**32, -1, 1e-300, 0.9999999])))
def test_numeric_settings_accept_exactly_their_range(name, value):
    expected = _expected_valid(name, value)
    try:
        cfg = config_from_dict(_nested(name, value))
        accepted = True
    except UsageError as e:
        accepted = False
        _eq("\n" in str(e), False)
        assert f"setting '{name}'" in str(e), str(e)
    _eq(accepted, expected)
    if accepted:
        got = cfg
        for part in name.split("."): got = getattr(got, part)
        _eq(got, value)


@pytest.fixture(scope="module")
def balanced():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=1000), "y": np.repeat(["a", "b"], 500)})
    return df, infer_contract(df, "y")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(test_size=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0.01, 0.99)))
def test_test_size_check_agrees_with_the_split(balanced, test_size):
    "Every test_size the settings refuse, the split refuses; every one they accept that leaves rows on both sides, it uses."
    from mlops_nb.prepare import split_data
    df, contract = balanced
    try:
        config_from_dict({"prepare": {"test_size": test_size}})
        accepted = True
    except UsageError: accepted = False
    if not accepted:
        with pytest.raises(ValueError): split_data(df, contract, test_size, "random", 0)
    elif 0.01 <= test_size <= 0.99:  # with 1000 rows both parts keep at least 10 rows
        split = split_data(df, contract, test_size, "stratified", 0)
        _eq(len(split.test), math.ceil(1000 * test_size))


@settings(max_examples=200, deadline=None)
@given(name=st.one_of(st.text(max_size=20), st.sampled_from(["roc_auc", "log_loss", "f1", "ROC_AUC", "auc", "accuracy "])))
def test_metric_names_checked_as_the_stages_read_them(name):
    from mlops_nb.metrics import get_metric
    from mlops_nb.pipeline import check_settings
    try: get_metric(name); stage_ok = True
    except ValueError: stage_ok = False
    try:
        check_settings(config_from_dict({"train": {"primary_metric": name}, "evaluate": {"thresholds": {}}}))
        check_ok = True
    except UsageError: check_ok = False
    _eq(check_ok, stage_ok)


@settings(max_examples=100, deadline=None)
@given(name=st.one_of(st.text(min_size=1, max_size=20).filter(str.strip), st.sampled_from(["random_forest", "logistic_regression", "svm"])))
def test_candidate_names_checked_as_the_stages_read_them(name):
    from mlops_nb.pipeline import check_settings
    from mlops_nb.train import get_candidate
    try: get_candidate(name); stage_ok = True
    except ValueError: stage_ok = False
    try:
        check_settings(config_from_dict({"train": {"candidates": [name]}}))
        check_ok = True
    except UsageError: check_ok = False
    _eq(check_ok, stage_ok)


@settings(max_examples=200, deadline=None)
@given(classes=st.sampled_from([("benign", "malignant"), (0, 1), (False, True), ("no", "yes"), (0, 1, 2)]),
       positive=st.one_of(st.none(), st.integers(-2, 3), st.booleans(), st.sampled_from(["benign", "malignant", " yes", "1", "maybe", "0"])))
def test_positive_class_checked_as_the_stages_read_it(classes, positive):
    "The run-time check refuses a positive class exactly when the training and evaluation stages would."
    from mlops_nb.contract import ColumnSpec, Contract
    from mlops_nb.metrics import resolve_positive_class
    from mlops_nb.pipeline import check_settings
    contract = Contract((ColumnSpec("x", "numeric"), ColumnSpec("y", "categorical", "target", False, categories=classes)), "y")
    try: resolve_positive_class(list(classes), positive); stage_ok = True
    except ValueError: stage_ok = False
    try:
        check_settings(config_from_dict({"data": {"target": "y", "positive_class": positive}}), contract)
        check_ok = True
    except UsageError as e:
        check_ok = False
        _eq("\n" in str(e), False)
    _eq(check_ok, stage_ok)


# --- the positive class at init, and features no model can use ---

@pytest.mark.parametrize("labels,expected", [(["yes", "no", "no", "no"], "yes"), (["no", "yes", "yes", "yes"], "yes"), ([1, 0, 0, 0], 1),
                                             (["bad", "good", "good", "good"], "bad"), (["good", "bad", "bad", "bad"], "good")])
def test_init_writes_the_inferred_positive_class(tmp_path, labels, expected):
    frame = pd.DataFrame({"x": range(40), "label": labels * 10})
    frame.to_csv(tmp_path / "data.csv", index=False)
    cfg = init_project(tmp_path / "p", tmp_path / "data.csv", "label")
    _eq(cfg.data.positive_class, expected)
    _eq(yaml.safe_load((tmp_path / "p" / "mlops.yaml").read_text())["data"]["positive_class"], expected)
    _eq(load_config(tmp_path / "p").data.positive_class, expected)


def test_init_on_breast_cancer_chooses_malignant(project):
    _eq(load_config(project).data.positive_class, "malignant")


def test_missing_positive_class_lists_the_classes(project, capsys):
    from mlops_nb.cli import main
    _eq(main(["run", "--project", str(project), "--set", "data.positive_class=null"]), 2)
    _eq(capsys.readouterr().err, "error: target 'diagnosis': binary metrics need a positive class, the one precision, recall, F1 and the AUCs are about: "
                                 "set data.positive_class to 'benign' or 'malignant' (the class you want to catch).\n")


def test_datetime_or_text_feature_is_refused_before_the_run(tmp_path):
    frame = pd.DataFrame({"amount": np.arange(60.0), "signed_up": pd.date_range("2024-01-01", periods=60).astype(str),
                          "label": ["a", "b"] * 30})
    frame.to_csv(tmp_path / "data.csv", index=False)
    init_project(tmp_path / "p", tmp_path / "data.csv", "label")
    path = tmp_path / "p" / "contract.yaml"
    contract = Contract.from_yaml(path)
    _eq((contract.column("signed_up").kind, contract.column("signed_up").role), ("datetime", "ignore"))
    Contract(tuple(dataclasses.replace(c, role="feature") if c.name == "signed_up" else c for c in contract.columns), "label").to_yaml(path)
    code, _out, err = call_cli("run", "--project", tmp_path / "p")
    _eq(code, 2)
    _eq(err.count("\n"), 1)
    assert err.startswith("error: contract.yaml: column 'signed_up' has role feature but kind datetime"), err
    _eq((tmp_path / "p" / "runs").exists(), False)


COMPARISON_SETTINGS = ("champion_tolerance", "confidence", "min_comparison_rows", "bootstrap_samples")


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(COMPARISON_SETTINGS),
       value=st.one_of(st.floats(-2, 3000), st.integers(-5, 3000), st.sampled_from([0, 1, 2, 99, 100, 0.5, 1.0, math.nan, math.inf])))
def test_comparison_settings_checked_as_the_evaluate_stage_reads_them(name, value):
    "The evaluate stage builds its `ComparisonRule` from these settings: of the numbers, it refuses exactly what the settings refuse."
    from mlops_nb.champion import ComparisonRule
    try:
        cfg = config_from_dict({"evaluate": {name: value}})
        check_ok = True
    except UsageError: check_ok = False
    rule = dict(zip(("tolerance", "confidence", "min_rows", "samples"), (Config().evaluate.champion_tolerance, Config().evaluate.confidence,
                                                                         Config().evaluate.min_comparison_rows, Config().evaluate.bootstrap_samples)))
    rule[dict(zip(COMPARISON_SETTINGS, ("tolerance", "confidence", "min_rows", "samples")))[name]] = value
    try: ComparisonRule(**rule); stage_ok = True
    except ValueError: stage_ok = False
    _eq(check_ok, stage_ok)
    if check_ok: ComparisonRule.from_config(cfg)


def test_the_embedded_store_keeps_artifacts_in_the_project_even_when_named_by_the_environment(tmp_path, monkeypatch):
    "A process that exported MLFLOW_TRACKING_URI for the project's own store (mlflow.set_tracking_uri does) must not send artifacts to ./mlruns."
    from mlops_nb.config import artifact_location, config_from_dict
    cfg = config_from_dict({"project": "p"}, tmp_path)
    own = (tmp_path / "mlartifacts").resolve().as_uri()
    _eq(artifact_location(cfg), own)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}")
    _eq(artifact_location(cfg), own)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    _eq(artifact_location(cfg), None)
