"Personal-data policy: the keyed hash, its key, and `protect` over any frame."
import contextlib
import os
import sqlite3
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.pandas import column, data_frames

from mlops_nb.config import config_from_dict
from mlops_nb.contract import ColumnSpec, Contract
from mlops_nb.privacy import HASH_PREFIX, KEY_FILE, MASK, PiiPolicy, pii_key, pii_policy, protect, protect_value
from mlops_nb.telemetry import PredictionLog, read_log

ENV = "MLOPS_NB_PII_KEY"
CONTRACT = Contract([ColumnSpec("email", "text", "ignore", pii=True), ColumnSpec("cpf", "text", "ignore", pii=True),
                     ColumnSpec("age", "numeric"), ColumnSpec("y", "categorical", "target", categories=("a", "b"))], target="y")


@pytest.fixture
def no_key_env(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


def test_generated_key_is_private_stable_and_ignored_by_git(tmp_path, no_key_env):
    cfg = config_from_dict({}, tmp_path)
    key = pii_key(cfg)
    _eq(len(key), 64)
    _eq(pii_key(config_from_dict({}, tmp_path)), key)
    _eq((tmp_path / KEY_FILE).stat().st_mode & 0o777, 0o600)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path, capture_output=True, text=True, check=True)
    _eq(out.stdout, "")  # neither the key nor its folder shows up


def test_two_projects_hash_differently_and_env_key_wins(tmp_path, no_key_env, monkeypatch):
    a, b = config_from_dict({}, tmp_path / "a"), config_from_dict({}, tmp_path / "b")
    assert protect_value("ann@example.org", a) != protect_value("ann@example.org", b)
    monkeypatch.setenv(ENV, "the same vault key for both")
    _eq(protect_value("ann@example.org", a), protect_value("ann@example.org", b))
    protect_value("ann@example.org", config_from_dict({}, tmp_path / "c"))
    _eq((tmp_path / "c" / KEY_FILE).exists(), False)


def test_bad_keys_are_refused(tmp_path, no_key_env, monkeypatch):
    cfg = config_from_dict({}, tmp_path)
    (tmp_path / KEY_FILE).parent.mkdir()
    (tmp_path / KEY_FILE).write_text("abc\n")
    _fail(lambda: pii_key(cfg), contains="the pii key in")
    monkeypatch.setenv("TEAM_KEY", "tiny")
    _fail(lambda: pii_key(config_from_dict({"governance": {"pii_key_env": "TEAM_KEY"}}, tmp_path)), contains="$TEAM_KEY is too short")


def test_mask_and_drop_need_no_key(tmp_path, no_key_env):
    _eq(protect_value("123.456.789-09", config_from_dict({"governance": {"pii": "mask"}}, tmp_path)), MASK)
    _eq(protect_value("123.456.789-09", config_from_dict({"governance": {"pii": "drop"}}, tmp_path)), None)
    _eq((tmp_path / KEY_FILE).exists(), False)


texts = st.one_of(st.none(), st.just(np.nan), st.text(max_size=12))


@settings(max_examples=60, deadline=None)
@given(data_frames([column("email", elements=texts, dtype=object), column("cpf", elements=texts, dtype=object),
                    column("age", elements=st.floats(allow_nan=True, allow_infinity=False), dtype=float),
                    column("y", elements=st.sampled_from(["a", "b"]), dtype=object)]),
       st.sampled_from(["hash", "mask", "drop"]))
def test_protect_keeps_everything_but_the_pii_values(frame, policy):
    cfg = config_from_dict({"governance": {"pii": policy, "pii_key_env": "MLOPS_NB_TEST_PROPERTY_KEY"}}, "/nonexistent")
    os.environ["MLOPS_NB_TEST_PROPERTY_KEY"] = "a property-test key, long enough"
    try: out = protect(frame, CONTRACT, cfg)
    finally: del os.environ["MLOPS_NB_TEST_PROPERTY_KEY"]
    pd.testing.assert_frame_equal(out[["age", "y"]], frame[["age", "y"]])
    if policy == "drop":
        _eq(list(out.columns), ["age", "y"])
        return
    for c in ("email", "cpf"):
        _eq(out[c].isna().tolist(), frame[c].isna().tolist())
        for raw, kept in zip(frame[c], out[c]):
            if pd.isna(raw): continue
            if policy == "mask": _eq(kept, MASK)
            else: _eq((kept[:2], len(kept), kept == raw), (HASH_PREFIX, 34, False))


def test_prediction_log_uses_the_project_policy(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "a prediction-log key, long enough")
    cfg = config_from_dict({}, tmp_path)
    log = PredictionLog(tmp_path / "p.db", pii_columns=["email", "cpf"], pii_policy=pii_policy(cfg))
    log.put([("r1", 0, time.time(), "m", 1, "primary", "champion", {"age": 41, "email": "ann@example.org", "cpf": None},
              "a", None, 1.0, "ok", None)])
    log.close()
    _eq(read_log(tmp_path / "p.db").features.tolist(), [{"age": 41, "email": protect_value("ann@example.org", cfg), "cpf": None}])
    with contextlib.closing(sqlite3.connect(tmp_path / "p.db")) as con: con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _eq(b"ann@example.org" in b"".join(p.read_bytes() for p in tmp_path.glob("p.db*")), False)


def test_policy_row_drop_removes_the_field():
    _eq(PiiPolicy("drop").row({"email": "x@y.z", "age": 1}, {"email"}), {"age": 1})
