"""Monitoring windows: the log read in chunks (exact row counts for --last, --since and --rows), chunked scoring equal to
one chunk with bounded memory, each version of a canary against its own profile, batch files with and without
predictions and labels, and the fail-closed paths (no profile, empty window, bad file)."""
from __future__ import annotations

import dataclasses
import json
import math
import tracemalloc
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from serving import add_version, project_client, served_project

from mlops_nb.batch import score_file
from mlops_nb.config import UsageError, load_config
from mlops_nb.contract import Contract
from mlops_nb.monitor import MonitorResult, Window, iter_window, log_path, monitor, window_from
from mlops_nb.profile import PROFILE_ARTIFACT, build_profile, log_profile
from mlops_nb.served import ServedModel
from mlops_nb.telemetry import LogEntry, PredictionLog, iter_log

NOW = 1_800_000_000.0  # a fixed "now" for the windows


def _rows(project: Path) -> tuple[pd.DataFrame, Contract]:
    cfg = load_config(project)
    frame = pd.read_csv(project / cfg.data.path)
    return frame, Contract.from_yaml(project / cfg.contract)


def _fill(project: Path, frame: pd.DataFrame, version: int, start: float, step: float = 1.0, prefix: str = "r",
          role: str = "primary", label: bool = False, status: str = "ok") -> list[str]:
    "Log each row of `frame` as one request scored by `version`, at `start + i * step`; return the request ids."
    cfg = load_config(project)
    client = project_client(project)
    model = ServedModel.load(client, cfg.model_name, version)
    contract = model.contract
    features = frame[model.features]
    labels, proba = model.predict(features.to_dict("records"))
    log = PredictionLog(log_path(cfg), flush_seconds=0.05)
    ids = [f"{prefix}{i}" for i in range(len(frame))]
    log.put([LogEntry(rid, 0, start + i * step, cfg.model_name, version, role, "champion", row, lab, dict(zip(model.classes, p)), 2.0, status)
             for i, (rid, row, lab, p) in enumerate(zip(ids, features.to_dict("records"), labels, proba))])
    log.flush()
    if label:
        for rid, y in zip(ids, frame[contract.target]): log.add_feedback(rid, y)
    log.close()
    return ids


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = served_project(tmp_path_factory.mktemp("monitor"))
    add_version(project)  # v1, @champion, with its profile
    return project


def _judged(result) -> dict:
    "A result without its creation time, to compare two computations of the same window."
    d = result.to_dict()
    d.pop("created")
    return d


def _same(a, b, path="result"):
    "Equal, floats to 1e-9 relative (sums over chunks add up in another order)."
    if isinstance(a, dict):
        _eq(sorted(a), sorted(b))
        for k in a: _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        _eq(len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)): _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    else: _eq(a, b)


def test_windows_give_exact_row_counts(tmp_path):
    project = served_project(tmp_path)
    cfg = load_config(project)
    log = PredictionLog(log_path(cfg), flush_seconds=0.05)
    # 120 rows one minute apart, the newest 30 s before NOW
    log.put([LogEntry(f"w{i}", 0, NOW - 30 - 60 * (119 - i), "m", 1 + i % 2, "primary", "champion", {"x": i}, "a", None, 1.0, "ok")
             for i in range(120)])
    log.close()

    def ids(window, chunk_rows=7):
        chunks = list(iter_window(cfg, window, chunk_rows))
        _eq(all(len(c) <= chunk_rows for c in chunks), True)
        return [r for c in chunks for r in c.request_id]

    _eq(ids(window_from(last="1h", now=NOW)), [f"w{i}" for i in range(60, 120)])
    _eq(ids(window_from(last="10m", now=NOW)), [f"w{i}" for i in range(110, 120)])
    since = pd.Timestamp(NOW - 30 - 60 * 20, unit="s", tz="UTC").isoformat()  # the time of w99, inclusive
    _eq(ids(window_from(since=since, now=NOW)), [f"w{i}" for i in range(99, 120)])
    _eq(ids(window_from(since=str(NOW - 30 - 60 * 20), now=NOW)), [f"w{i}" for i in range(99, 120)])
    _eq(ids(window_from(rows="25", now=NOW)), [f"w{i}" for i in range(95, 120)])
    _eq(ids(window_from(rows="500", now=NOW)), [f"w{i}" for i in range(120)])
    _eq(ids(window_from(default="1d", now=NOW)), [f"w{i}" for i in range(120)])
    _eq(ids(window_from(last="1h", now=NOW + 7200)), [])


def test_window_usage_errors(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    (tmp_path / "x.json").write_text("{}")
    for kwargs, message in (({"last": "1h", "since": "2026-01-01"}, "give only one of --last, --since, --rows and --input (got --last and --since)"),
                            ({"rows": 10, "input": str(bad)}, "give only one of --last, --since, --rows and --input (got --rows and --input)"),
                            ({"last": "-2h"}, "--last: bad duration '-2h'"),
                            ({"since": "not a date"}, "--since 'not a date' is not a time"),
                            ({"rows": "ten"}, "--rows 'ten' is not a positive whole number of rows"),
                            ({"input": str(tmp_path)}, "is a folder: give a CSV or Parquet file"),
                            ({"input": str(tmp_path / "x.json")}, "unsupported data format '.json'"),
                            ({"input": str(bad)}, "could not read bad.parquet")):
        with pytest.raises(UsageError) as e: window_from(now=NOW, **kwargs)
        _eq((message in str(e.value), "\n" in str(e.value)), (True, False))


def test_iter_log_is_keyset_paginated_and_bounded(tmp_path):
    path = tmp_path / "p.db"
    log = PredictionLog(path, flush_seconds=0.05)
    payload = {f"f{j}": float(j) for j in range(20)}
    log.put([LogEntry(f"k{i}", 0, 1000.0 + i, "m", 1, "primary", "champion", payload, "a", {"a": 1.0}, 1.0, "ok") for i in range(25_000)])
    log.close()
    _eq([len(c) for c in iter_log(path, chunk_rows=10_000)], [10_000, 10_000, 5_000])

    def peak(chunk_rows):
        tracemalloc.start()
        n = sum(len(c) for c in iter_log(path, chunk_rows=chunk_rows))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        _eq(n, 25_000)
        return top
    small, whole = peak(1000), peak(25_000)
    assert small * 5 < whole, (small, whole)  # a chunk of 1,000 rows holds a fraction of what the whole window does


def test_chunked_scoring_equals_one_chunk(project):
    cfg = load_config(project)
    frame, _ = _rows(project)
    big = pd.concat([frame] * 44, ignore_index=True).iloc[:25_000]
    _fill(project, big, 1, NOW - 3000, step=0.1, prefix="c")
    window = Window("log", since=NOW - 3000, until=NOW)
    client = project_client(project)
    one = monitor(cfg, window, client, chunk_rows=25_000)
    chunked = monitor(cfg, window, client, chunk_rows=1000)
    a, b = _judged(chunked), _judged(one)
    # the multivariate signal scores a sample of at most 5,000 rows per chunk: an estimate, equal in verdict and close
    for x, y in zip(a["versions"], b["versions"]):
        mx, my = x.pop("multivariate"), y.pop("multivariate")
        _eq((mx["drifted"], mx["n"]), (my["drifted"], my["n"]))
        assert abs(mx["statistic"] - my["statistic"]) < 0.01, (mx, my)
    _same(a, b)
    _eq([(r.version, r.rows) for r in one.versions], [(1, 25_000)])
    _eq(one.traffic, {1: {"rows": 25_000, "ok": 25_000, "error": 0, "rejected": 0, "shadow": 0, "labelled": 0}})


@pytest.mark.slow
def test_each_version_against_its_own_profile(tmp_path):
    project = served_project(tmp_path)
    cfg = load_config(project)
    client = project_client(project)
    v1 = add_version(project)
    v2 = add_version(project, promote=False)  # the canary's challenger
    frame, contract = _rows(project)
    # v2's reference profile says "mean radius" was 1.5 times larger in its training data
    mv = client.get_model_version(cfg.model_name, v2)
    model = ServedModel.load(client, cfg.model_name, v2).pipeline
    shifted = frame.assign(**{"mean radius": frame["mean radius"] * 1.5})
    log_profile(client, mv.run_id, build_profile(shifted, frame, model, contract, positive_class=cfg.data.positive_class,
                                                 name=cfg.model_name, version=v2))
    _fill(project, frame.iloc[::2], v1, NOW - 600, prefix="a")  # the same kind of traffic for both
    _fill(project, frame.iloc[1::2], v2, NOW - 600, prefix="b", role="primary")
    _fill(project, frame.iloc[:40], v2, NOW - 300, prefix="s", role="shadow")  # shadow copies count for v2
    result = monitor(cfg, window_from(last="1h", now=NOW), client)
    _eq(sorted((r.version, r.rows) for r in result.versions), [(v1, 285), (v2, 284 + 40)])
    _eq(result.traffic[v2]["shadow"], 40)
    _eq(result.report(v1).verdict, "no drift")
    _eq((result.report(v2).verdict, "mean radius" in result.report(v2).drifted), ("drift", True))
    _eq("mean radius" in result.report(v1).drifted, False)
    # --model keeps one version's rows
    only = monitor(cfg, window_from(last="1h", now=NOW), client, model_ref=f"v{v1}")
    _eq([r.version for r in only.versions], [v1])


def test_version_without_profile_fails_closed(tmp_path):
    project = served_project(tmp_path)
    cfg = load_config(project)
    client = project_client(project)
    v1 = add_version(project)
    run = client.get_run(client.get_model_version(cfg.model_name, v1).run_id)
    stored = Path(urlparse(run.info.artifact_uri).path) / PROFILE_ARTIFACT
    stored.unlink()  # a version trained before profiles were stored
    frame, _ = _rows(project)
    _fill(project, frame.iloc[:50], v1, NOW - 100)
    result = monitor(cfg, window_from(last="1h", now=NOW), client)
    _eq(result.versions, ())
    _eq(len(result.problems), 1)
    _eq((f"v{v1}" in result.problems[0], "profile" in result.problems[0], "(50 rows in the window not judged)" in result.problems[0]),
        (True, True, True))


def test_empty_window_says_so(project):
    cfg = load_config(project)
    result = monitor(cfg, window_from(last="1h", now=NOW - 86400 * 365), project_client(project))
    _eq((result.versions, result.traffic), ((), {}))
    _eq(len(result.problems), 1)
    _eq(result.problems[0].startswith("no rows in the prediction log from "), True)


def test_batch_file_with_and_without_predictions(project, tmp_path):
    cfg = load_config(project)
    client = project_client(project)
    frame, contract = _rows(project)
    data = tmp_path / "batch.parquet"
    frame.to_parquet(data)
    raw = monitor(cfg, window_from(input=data), client)  # scored here by @champion; labels from the target column
    _eq([(r.version, r.rows) for r in raw.versions], [(1, len(frame))])
    _eq(raw.traffic[1]["labelled"], len(frame))
    realized = raw.versions[0].performance["realized"]
    _eq((realized["n"], realized["value"] is not None), (len(frame), True))
    scored = tmp_path / "scored.csv"
    score_file(project, data, scored, progress=False, client=client)  # prediction, model_version, probability_* columns
    again = monitor(cfg, window_from(input=scored), client, chunk_rows=100)
    _eq([(r.version, r.rows) for r in again.versions], [(1, len(frame))])
    for a, b in zip(raw.versions[0].columns, again.versions[0].columns):
        _eq((a.column, a.drifted), (b.column, b.drifted))
        np.testing.assert_allclose(a.statistic if a.statistic is not None else np.nan, b.statistic if b.statistic is not None else np.nan, rtol=1e-9)
    _eq(again.versions[0].prediction.statistic, raw.versions[0].prediction.statistic)
    unlabelled = tmp_path / "unlabelled.csv"
    frame.drop(columns=contract.target).to_csv(unlabelled, index=False)
    blind = monitor(cfg, window_from(input=unlabelled), client)
    _eq((blind.traffic[1]["labelled"], blind.versions[0].performance["realized"]), (0, None))  # no labels: nothing realized
    _eq(blind.versions[0].performance["estimated"]["value"] is not None, True)


def test_bad_rows_in_a_file_are_rejected_not_fatal(project, tmp_path):
    cfg = load_config(project)
    frame, _ = _rows(project)
    messy = frame.astype(object).copy()
    messy.loc[:9, "mean radius"] = "not a number"
    path = tmp_path / "messy.csv"
    messy.to_csv(path, index=False)
    result = monitor(cfg, window_from(input=path), project_client(project))
    _eq((result.traffic[1]["rows"], result.traffic[1]["rejected"], result.versions[0].rows), (len(frame), 10, len(frame) - 10))


def test_result_round_trips_as_strict_json(project):
    cfg = load_config(project)
    result = monitor(cfg, Window("log", since=NOW - 3000, until=NOW), project_client(project))
    text = json.dumps(result.to_dict(), allow_nan=False)
    _eq(MonitorResult.from_dict(json.loads(text)).to_dict(), result.to_dict())
    _eq(dataclasses.is_dataclass(result), True)
    _fail(lambda: window_from(rows=0), contains="is not a positive whole number")
