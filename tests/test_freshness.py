"""Timeliness: the newest `data.time_column` value must be at most `data.max_age` old when validate runs; stale data
is reported (`data.freshness: warn`) or stops the run with one line (`fail`); the check depends on the clock, so a
validate that made it is never reused from the cache.

The end-to-end runs use the statsmodels `macrodata` table (US quarterly figures, 1959 to 2009), dated by quarter, with
only the ingest and validate stages."""
from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import client_for, error_lines, read_json, run_cli, run_dir_of, run_id_from, set_stages, show, stage_runs, tracking_uri
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.artifacts import download_artifacts

from mlops_nb.validate import DataQualityError, StaleDataError, check_freshness, require_fresh

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def test_the_newest_row_decides_and_the_limit_is_inclusive():
    frame = pd.DataFrame({"at": pd.to_datetime(["2026-06-01", "2026-06-28 12:00", None], format="ISO8601")})
    _eq(check_freshness(frame, "at", "2d", now=NOW).fresh, True)  # exactly 2 days old
    _eq(check_freshness(frame, "at", "47h", now=NOW).fresh, False)
    late = check_freshness(frame, "at", "1d", now=NOW)
    _eq((late.newest, late.age_seconds, late.max_age), ("2026-06-28T12:00:00+00:00", 172800.0, "1d"))
    _eq(late.detail, "the newest 'at' is 2026-06-28T12:00:00+00:00, 2d 0h old, older than data.max_age 1d.")


def test_text_times_and_time_zones_are_read_as_instants():
    text = pd.DataFrame({"at": ["2026-06-30T09:00:00-03:00", "not a time", "2026-06-29"]})
    _eq(check_freshness(text, "at", "1h", now=NOW).newest, "2026-06-30T12:00:00+00:00")
    _eq(check_freshness(text, "at", "1h", now=NOW).fresh, True)
    future = check_freshness(pd.DataFrame({"at": [NOW + timedelta(hours=3)]}), "at", "1h", now=NOW)
    _eq((future.fresh, future.detail), (True, "the newest 'at' is 2026-06-30T15:00:00+00:00, 3h 0m in the future (a clock or time zone to check); fresh."))


def test_no_evidence_counts_as_stale_and_fail_stops_with_one_line():
    blank = check_freshness(pd.DataFrame({"at": [None, None]}), "at", "30d", now=NOW)
    absent = check_freshness(pd.DataFrame({"x": [1]}), "at", "30d", now=NOW)
    _eq((blank.fresh, absent.fresh, blank.newest, np.isnan(blank.age_seconds)), (False, False, None, True))
    _eq(require_fresh(blank, "warn"), blank)
    with pytest.raises(StaleDataError) as e: require_fresh(absent, "fail")
    _eq(str(e.value), "the data is stale: the data has no column 'at' (data.time_column), so its age is unknown and it counts "
        "as stale (data.max_age 30d). Ingest newer data, or set data.freshness: warn to go on with it.")
    _eq(isinstance(e.value, DataQualityError), True)
    _fail(lambda: check_freshness(pd.DataFrame({"x": [1]}), None, "30d"), contains="data.max_age is set but data.time_column is not")
    _fail(lambda: require_fresh(blank, "ignore"), contains="data.freshness must be warn or fail")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-10**7, 10**8), min_size=1, max_size=20), st.integers(1, 10**7))
def test_fresh_exactly_when_the_newest_row_is_within_max_age(seconds_ago, limit):
    frame = pd.DataFrame({"at": [pd.Timestamp(NOW) - pd.Timedelta(seconds=s) for s in seconds_ago]})
    result = check_freshness(frame, "at", f"{limit}s", now=NOW)
    _eq(result.fresh, min(seconds_ago) <= limit)
    _eq(result.age_seconds, float(min(seconds_ago)))


# ---------------------------------------------------------------- end to end


def macro_frame(newest: pd.Timestamp | None = None) -> pd.DataFrame:
    "US quarterly macro data with a date per quarter and whether real GDP fell; shifted so the last quarter is `newest`."
    data = sm.datasets.macrodata.load_pandas().data
    dates = pd.PeriodIndex.from_fields(year=data["year"].astype(int), quarter=data["quarter"].astype(int), freq="Q").to_timestamp()
    if newest is not None: dates = dates + (newest - dates.max())
    frame = data.drop(columns=["year", "quarter", "realgdp"]).assign(date=dates.strftime("%Y-%m-%d %H:%M:%S"))
    frame["gdp"] = np.where(data["realgdp"].diff().fillna(1) < 0, "down", "up")
    return frame


def validate_run(project, *settings_):
    code, out, err = run_cli("run", "--project", project, *[a for s in settings_ for a in ("--set", s)])
    run_id = run_id_from(out)
    return {"code": code, "out": out, "err": err, "run_id": run_id, "dir": run_dir_of(project, run_id)}


def statuses(run) -> list:
    return [s["status"] for s in read_json(run["dir"] / "run.json")["stages"]]


def quality(project, run) -> dict:
    client = client_for(project)
    with tempfile.TemporaryDirectory() as tmp:
        return read_json(download_artifacts(run_id=stage_runs(client, run["run_id"])["validate"].info.run_id,
                                            artifact_path="quality_report.json", dst_path=tmp, tracking_uri=tracking_uri(project)))


@pytest.fixture(scope="module")
def macro(tmp_path_factory):
    from mlops_nb.pipeline import init_project
    folder = tmp_path_factory.mktemp("fresh")
    macro_frame().to_csv(folder / "macro.csv", index=False)
    project = folder / "project"
    init_project(project, folder / "macro.csv", "gdp", time_column="date")
    set_stages(project, ["ingest", "validate"])
    runs = {"fail": validate_run(project, "data.max_age=30d", "data.freshness=fail"),
            "warn": validate_run(project, "data.max_age=30d"),
            "again": validate_run(project, "data.max_age=30d"),
            "unchecked": validate_run(project),
            "unchecked_again": validate_run(project)}
    macro_frame(pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s") - pd.Timedelta(hours=2)).to_csv(folder / "macro.csv", index=False)
    runs["fresh"] = validate_run(project, "data.max_age=1d", "data.freshness=fail")
    return {"project": project, "runs": runs}


@pytest.mark.slow
def test_stale_data_with_fail_stops_the_run_with_one_line(macro):
    run = macro["runs"]["fail"]
    assert run["code"] == 1, show(run["code"], run["out"], run["err"])
    lines = error_lines(run["err"])
    _eq(len(lines), 1)
    assert lines[0].startswith("error: stage 'validate' failed in cell "), lines
    assert "StaleDataError: the data is stale: the newest 'date' is 2009-07-01T00:00:00+00:00, " in lines[0], lines
    assert lines[0].endswith(" old, older than data.max_age 30d. Ingest newer data, or set data.freshness: warn to go on with it."), lines
    assert "Traceback" not in run["err"]
    _eq(statuses(run), ["ok", "failed"])


@pytest.mark.slow
def test_stale_data_with_warn_is_reported_and_the_run_goes_on(macro):
    project, run = macro["project"], macro["runs"]["warn"]
    assert run["code"] == 0, show(run["code"], run["out"], run["err"])
    assert "STALE DATA (data.freshness: warn): the newest 'date' is 2009-07-01T00:00:00+00:00" in run["out"], run["out"]
    full = quality(project, run)
    report = full["freshness"]
    _eq((report["column"], report["newest"], report["max_age"], report["fresh"]), ("date", "2009-07-01T00:00:00+00:00", "30d", False))
    groups = full["representativeness"]  # no slices: no shares, but the classes too small for a test split are listed
    counts = macro_frame()["gdp"].value_counts().sort_index()
    _eq((groups["reference"], groups["shares"]), ("no reference: no slices are set (slices in mlops.yaml)", []))
    _eq([(c["group"], c["rows"], c["rows_needed"]) for c in groups["classes_too_small"]], [("down", int(counts["down"]), 500), ("up", int(counts["up"]), 500)])
    validate = stage_runs(client_for(project), run["run_id"])["validate"]
    _eq(validate.data.tags["freshness"], "stale")
    assert validate.data.metrics["data_age_hours"] > 24 * 365 * 16, validate.data.metrics


@pytest.mark.slow
def test_a_freshness_check_is_never_reused_but_validate_without_one_is(macro):
    runs = macro["runs"]
    _eq(statuses(runs["again"]), ["cached", "ok"])  # same data, same settings as the run before: judged against the clock again
    _eq(read_json(runs["again"]["dir"] / "validate" / "cache.json"), {"volatile": "it judged the data's freshness against the clock"})
    _eq(statuses(runs["unchecked_again"]), ["cached", "cached"])
    assert "freshness not checked (data.max_age is not set)" in (runs["unchecked"]["out"]), runs["unchecked"]["out"]


@pytest.mark.slow
def test_fresh_data_passes_even_with_fail(macro):
    project, run = macro["project"], macro["runs"]["fresh"]
    assert run["code"] == 0, show(run["code"], run["out"], run["err"])
    _eq(statuses(run), ["ok", "ok"])
    report = quality(project, run)["freshness"]
    _eq((report["fresh"], report["max_age"]), (True, "1d"))
    assert 7000 <= report["age_seconds"] <= 7200 + 600, report  # two hours, and the time the run took
    _eq(stage_runs(client_for(project), run["run_id"])["validate"].data.tags["freshness"], "fresh")
