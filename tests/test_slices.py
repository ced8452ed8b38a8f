"""Slices: group labels from `mlops.yaml` (columns, bands, safe expressions), group shares against the champion's
training rows, groups and classes too small to evaluate, metrics per slice with seeded bootstrap intervals, the gate's
two rules per slice (gap to overall, challenger against champion on the same rows) failing closed, and the model card.

Library tests use data the code was not written for: the statsmodels `fair` survey (6,366 marriages, whether the wife
had an affair) and synthetic frames with a small minority group. The end-to-end tests share three pipeline runs of the
breast-cancer project with the smallest training."""
from __future__ import annotations

import json
import math
import tempfile

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml
from conftest import cancer_project, client_for, fast, read_json, run_cli, run_dir_of, run_id_from, show, stage_runs, tracking_uri
from fastcore.test import test_close as _close
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.artifacts import download_artifacts
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression

from mlops_nb.champion import Champion, ComparisonRule, compare_slices_with_champion, compare_with_champion, lineage_record, slice_gap_check
from mlops_nb.evaluate import gate, plot_slices
from mlops_nb.metrics import classification_metrics
from mlops_nb.registry import model_card
from mlops_nb.slices import (
    MISSING_GROUP,
    ReferenceGroups,
    SliceError,
    compare_shares,
    group_counts,
    representativeness,
    slice_labels,
    slice_labels_each,
    slice_metrics,
    too_small,
)

FEATURES = ["rate_marriage", "age", "yrs_married", "children", "religious", "educ", "occupation", "occupation_husb"]


@pytest.fixture(scope="module")
def fair() -> pd.DataFrame:
    "The statsmodels `fair` survey with a yes/no target: did the wife report any affair."
    frame = sm.datasets.fair.load_pandas().data
    return frame.assign(affair=np.where(frame["affairs"] > 0, "yes", "no")).drop(columns=["affairs"])


# ---------------------------------------------------------------- labels


def test_column_bands_and_expression_labels_on_the_fair_survey(fair):
    labels = slice_labels(fair, {"religious": "religious", "age": {"column": "age", "bins": [17.5, 27, 37, 42]},
                                 "young_parents": {"expr": "children > 0 and yrs_married < 5"}})
    _eq(labels["religious"].value_counts().sort_index().to_dict(), {"1": 1021, "2": 2267, "3": 2422, "4": 656})
    age = fair["age"]
    _eq(labels["age"].value_counts(sort=False).to_dict(),
        {"[17.5, 27)": int(((age >= 17.5) & (age < 27)).sum()), "[27, 37)": int(((age >= 27) & (age < 37)).sum()),
         "[37, 42]": int(((age >= 37) & (age <= 42)).sum())})
    _eq(int(labels["age"].isna().sum()), 0)  # 42, the top edge, is in the last band
    _eq(labels["age"][age == 42].unique().tolist(), ["[37, 42]"])
    expected = (fair["children"] > 0) & (fair["yrs_married"] < 5)
    _eq(labels["young_parents"].value_counts().to_dict(), {"False": int((~expected).sum()), "True": int(expected.sum())})
    _eq([s.index.equals(fair.index) for s in labels.values()], [True, True, True])


def test_rows_that_cannot_be_placed_get_no_group():
    frame = pd.DataFrame({"age": [10, 30, None, 200, 120, 0], "region": ["n", None, "s", "s", "n", "e"]})
    labels = slice_labels(frame, {"age": {"column": "age", "bins": [0, 50, 120]}, "region": "region",
                                  "old_north": {"expr": "age > 60 and region == 'n'"}})
    _eq(labels["age"].astype(object).where(labels["age"].notna(), None).tolist(), ["[0, 50)", "[0, 50)", None, None, "[50, 120]", "[0, 50)"])
    _eq(labels["region"].where(labels["region"].notna(), None).tolist(), ["n", None, "s", "s", "n", "e"])
    _eq(labels["old_north"].where(labels["old_north"].notna(), None).tolist(), ["False", None, None, "False", "True", "False"])
    _eq(group_counts(labels)["age"], {"[0, 50)": 3, "[50, 120]": 1, MISSING_GROUP: 2})


@pytest.mark.parametrize("expr, says", [
    ("age.__class__", "uses attribute access"),
    ("__import__('os').system('touch /tmp/pwned')", "uses a call"),
    ("region[0] == 'n'", "uses indexing"),
    ("[x for x in region]", "uses ListComp"),
    ("lambda: 1", "uses Lambda"),
    ("age > 3 if region else 1", "uses IfExp"),
    ("age ** 1000000 > 1", "uses Pow"),
    ("2 ** 1000000 > age", "computes with constants only"),
    ("'x' * 1000000000 == region", "computes with constants only"),
    ("@secret > 1", "is not valid"),
    ("age >", "is not valid"),
    ("1 == 1", "reads no column"),
    ("salary > 3", "column 'salary' is not in the data"),
])
def test_an_expression_is_only_columns_constants_and_operators(expr, says):
    frame = pd.DataFrame({"age": [1, 2], "region": ["n", "s"]})
    _fail(lambda: slice_labels(frame, {"probe": {"expr": expr}}), contains="slice 'probe': ")
    _fail(lambda: slice_labels(frame, {"probe": {"expr": expr}}), contains=says)


def test_a_bad_slice_is_one_line_naming_it_and_the_others_still_compute(fair):
    with pytest.raises(SliceError) as e:
        slice_labels(fair, {"ok": "religious", "income": {"column": "income", "bins": [0, 10]}})
    _eq(str(e.value), "slice 'income': column 'income' is not in the data")
    _eq(len(str(e.value).splitlines()), 1)
    labels, problems = slice_labels_each(fair, {"ok": "religious", "income": "income", "kind": {"column": "affair", "bins": [0, 1]}})
    _eq(list(labels), ["ok"])
    _eq(problems, {"income": "slice 'income': column 'income' is not in the data",
                   "kind": "slice 'kind': column 'affair' is not numeric, so it cannot be cut into bins"})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdefgr_ ()[]<>=!&|~+-*/%.,'\"`@0123456789", max_size=40))
def test_any_expression_gives_labels_or_a_slice_error(expr):
    frame = pd.DataFrame({"a": [1.0, 2.0, None], "b": ["x", "y", "z"], "region": ["n", "s", None]})
    try: labels = slice_labels(frame, {"s": {"expr": expr}})
    except SliceError as e:
        assert str(e).startswith("slice 's': ") and "\n" not in str(e)
        return
    _eq(len(labels["s"]), 3)
    _eq(labels["s"].index.equals(frame.index), True)


# ---------------------------------------------------------------- shares and too small


def test_group_shares_against_a_reference_show_a_shrunk_group(fair):
    spec = {"religious": "religious"}
    older = fair.iloc[:3000]
    newer = pd.concat([fair.iloc[3000:][fair["religious"].iloc[3000:] != 4], fair.iloc[3000:][fair["religious"].iloc[3000:] == 4].head(10)])
    shares = compare_shares(group_counts(slice_labels(newer, spec)), group_counts(slice_labels(older, spec)))
    ref = older["religious"].value_counts().sort_index()
    now = newer["religious"].value_counts().sort_index()
    _eq(shares["group"].tolist(), ["1", "2", "3", "4"])
    _eq(shares["rows"].tolist(), now.tolist())
    _eq(shares["reference_rows"].tolist(), ref.tolist())
    _eq(int(shares["rows"].iloc[3]), 10)
    _close(shares["difference"].iloc[3], 10 / len(newer) - ref.iloc[3] / 3000, eps=1e-12)
    _close(shares["share"].sum(), 1.0, eps=1e-12)


def test_a_group_or_class_too_small_for_the_test_split_is_listed(fair):
    counts = group_counts(slice_labels(fair, {"occupation": "occupation"}))
    _eq(counts["occupation"], {"1": 41, "2": 859, "3": 2783, "4": 1834, "5": 740, "6": 109})
    small = too_small(counts, min_rows=100, test_share=0.2)  # a group needs 500 rows for 100 test rows
    _eq([(s["group"], s["rows"], s["test_rows"], s["rows_needed"]) for s in small], [("1", 41, 8.2, 500), ("6", 109, 21.8, 500)])
    _eq(too_small({"class": {"no": 4313, "yes": 2053}}, 100, 0.2), [])
    _eq(too_small({"class": {"no": 4313, "yes": 2053}}, 500, 0.2)[0]["group"], "yes")


def test_representativeness_with_and_without_a_reference(fair):
    spec = {"religious": "religious", "income": "income"}
    reference = ReferenceGroups(7, group_counts(slice_labels(fair.iloc[:2000], {"religious": "religious"})), {"religious": "religious"},
                                "the training rows of champion v7")
    report = representativeness(fair, spec, "affair", reference, min_rows=140, test_share=0.2)  # 700 rows needed
    _eq(report.reference, "the training rows of champion v7")
    _eq(report.problems, {"income": "slice 'income': column 'income' is not in the data"})
    _eq(report.shares["reference_rows"].tolist(), fair.iloc[:2000]["religious"].value_counts().sort_index().tolist())
    _eq([(s["group"], s["rows"]) for s in report.too_small], [("4", 656)])
    _eq(report.classes_too_small, [])
    plain = json.loads(json.dumps(report.to_dict()))
    _eq((plain["min_rows"], plain["test_share"], len(plain["shares"])), (140, 0.2, 4))
    first = representativeness(fair, {"religious": "religious"}, "affair", ReferenceGroups(None), 100, 0.2)
    _eq(first.reference, "no reference yet: there is no champion")
    _eq(first.shares["reference_share"].isna().all(), True)


# ---------------------------------------------------------------- metrics per slice


@pytest.fixture(scope="module")
def fair_model(fair):
    "A logistic regression trained on 4,000 marriages, scored on the other 2,366."
    shuffled = fair.sample(frac=1, random_state=0)  # the survey's rows are sorted: affairs first
    train, test = shuffled.iloc[:4000], shuffled.iloc[4000:]
    model = LogisticRegression(max_iter=5000).fit(train[FEATURES], train["affair"])
    return {"model": model, "train": train, "test": test, "proba": model.predict_proba(test[FEATURES])}


def test_metrics_per_slice_equal_the_metrics_of_each_groups_rows(fair_model):
    test, proba, model = fair_model["test"], fair_model["proba"], fair_model["model"]
    labels = slice_labels(test, {"religious": "religious"})
    result = slice_metrics(labels, test["affair"], proba, model.classes_, "yes", ["roc_auc", "recall", "log_loss"],
                           min_rows=100, samples=300, seed=3)
    counts = test["religious"].value_counts().sort_index()
    _eq(result.table["n"].tolist(), counts.tolist())
    _eq(int(result.table["n"].sum()), len(test))
    _eq(result.table["status"].tolist(), ["judged", "judged", "judged", "judged"])
    overall = classification_metrics(test["affair"], proba, model.classes_, "yes")
    for row in result.table.to_dict(orient="records"):
        rows = (test["religious"] == float(row["group"])).to_numpy()
        expected = classification_metrics(test["affair"][rows], proba[rows], model.classes_, "yes")
        _eq((row["n_no"], row["n_yes"]), (int((test["affair"][rows] == "no").sum()), int((test["affair"][rows] == "yes").sum())))
        for m in ("roc_auc", "recall", "log_loss"):
            _close(row[m], expected[m], eps=1e-12)
            assert row[f"{m}_low"] <= row[m] <= row[f"{m}_high"], (m, row)
        _close(row["roc_auc_gap"], expected["roc_auc"] - overall["roc_auc"], eps=1e-12)
        _close(row["log_loss_gap"], overall["log_loss"] - expected["log_loss"], eps=1e-12)  # lower is better: negative is worse


def test_intervals_are_seeded(fair_model):
    test, proba, model = fair_model["test"], fair_model["proba"], fair_model["model"]
    labels = slice_labels(test, {"religious": "religious"})
    def run(seed): return slice_metrics(labels, test["affair"], proba, model.classes_, "yes", ["roc_auc"], 100, 200, 0.9, seed).table
    _eq(run(1).equals(run(1)), True)
    _eq(run(1)["roc_auc_low"].tolist() == run(2)["roc_auc_low"].tolist(), False)


def test_multiclass_slices_on_the_wine_data():
    wine = load_wine(as_frame=True).frame.assign(cultivar=lambda f: f["target"].map({0: "a", 1: "b", 2: "c"}))
    train, test = wine.iloc[::2], wine.iloc[1::2]
    features = ["alcohol", "malic_acid", "color_intensity"]
    model = LogisticRegression(max_iter=5000).fit(train[features], train["cultivar"])
    proba = model.predict_proba(test[features])
    result = slice_metrics(slice_labels(test, {"alcohol": {"column": "alcohol", "bins": [11, 13, 15]}}), test["cultivar"], proba,
                           model.classes_, None, ["roc_auc", "log_loss"], min_rows=20, samples=200)
    _eq(result.table[["group", "n", "n_a", "n_b", "n_c", "status"]].values.tolist(),
        [["[11, 13)", 46, 2, 33, 11, "judged"], ["[13, 15]", 43, 27, 3, 13, "judged"]])
    for row in result.table.to_dict(orient="records"):
        rows = ((test["alcohol"] >= 13) if row["group"] == "[13, 15]" else (test["alcohol"] < 13)).to_numpy()
        _close(row["roc_auc"], classification_metrics(test["cultivar"][rows], proba[rows], model.classes_)["roc_auc"], eps=1e-12)
    check = slice_gap_check(result, 0.05)
    _eq((check.passed, check.outcome), (False, "1 group below overall"))
    assert check.detail.startswith("alcohol=[13, 15] "), check.detail


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["p", "q", "r", None]), min_size=30, max_size=120), st.integers(0, 2**16))
def test_groups_partition_the_placed_rows_and_score_their_own_rows(groups, seed):
    rng = np.random.default_rng(seed)
    y = np.where(rng.random(len(groups)) < 0.5, "yes", "no")
    p_yes = rng.random(len(groups))
    proba = np.column_stack([1 - p_yes, p_yes])
    labels = slice_labels(pd.DataFrame({"g": groups}), {"g": "g"})
    result = slice_metrics(labels, y, proba, np.array(["no", "yes"]), "yes", ["accuracy", "roc_auc"], min_rows=10, samples=100, seed=seed)
    placed = np.array([g is not None for g in groups])
    _eq(int(result.table["n"].sum()), int(placed.sum()))
    for row in result.table.to_dict(orient="records"):
        rows = np.array([g == row["group"] for g in groups])
        expected = classification_metrics(y[rows], proba[rows], ["no", "yes"], "yes")
        _close(row["accuracy"], expected["accuracy"], eps=1e-12)
        _eq(math.isnan(row["roc_auc"]), math.isnan(expected["roc_auc"]))
        _eq(row["status"], "too small" if rows.sum() < 10 else "undefined" if math.isnan(expected["roc_auc"]) else "judged")


def minority_frame(n: int, minority: int, seed: int) -> pd.DataFrame:
    "Rows where the label depends on x1 for the majority but on x2 for a small 'island' group."
    rng = np.random.default_rng(seed)
    region = np.where(np.arange(n) < minority, "island", rng.choice(["north", "south"], n))
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    signal = np.where(region == "island", 2.5 * x2, 2.5 * x1)
    y = np.where(signal + rng.normal(scale=0.7, size=n) > 0, "yes", "no")
    return pd.DataFrame({"x1": x1, "x2": x2, "region": region, "y": y}).sample(frac=1, random_state=seed).reset_index(drop=True)


def test_the_gate_fails_a_group_far_below_overall_and_lists_the_small_ones():
    train, test = minority_frame(3000, 150, 0), minority_frame(2000, 150, 1)
    model = LogisticRegression().fit(train[["x1", "x2"]], train["y"])
    labels = slice_labels(test, {"region": "region"})
    result = slice_metrics(labels, test["y"], model.predict_proba(test[["x1", "x2"]]), model.classes_, "yes", ["roc_auc"],
                           min_rows=100, samples=300)
    _eq(result.table[["group", "n", "status"]].values.tolist(), [["island", 150, "judged"], ["north", 915, "judged"], ["south", 935, "judged"]])
    check = slice_gap_check(result, 0.05)
    _eq((check.passed, check.outcome), (False, "1 group below overall"))
    assert check.detail.startswith("region=island "), check.detail
    _eq(check.value, result.table["roc_auc_gap"].min())
    assert check.value < -0.1, check.value  # the island group is far worse: the model learned the majority's rule
    small = slice_gap_check(slice_metrics(labels, test["y"], model.predict_proba(test[["x1", "x2"]]), model.classes_, "yes",
                                          ["roc_auc"], min_rows=200, samples=100), 0.05)
    _eq((small.passed, small.outcome), (True, "no group below overall"))
    assert small.detail.endswith("Too small to judge (fewer than 200 test rows, evaluate.slice_min_rows): region=island (150)."), small.detail
    unjudged = slice_gap_check(slice_metrics(labels, test["y"], model.predict_proba(test[["x1", "x2"]]), model.classes_, "yes",
                                             ["roc_auc"], min_rows=5000, samples=100), 0.05)  # no group is big enough: no evidence
    _eq((unjudged.passed, unjudged.outcome), (False, "cannot judge"))
    assert unjudged.detail.startswith("no group of any slice has the rows to be judged, so roc_auc per slice is unknown."), unjudged.detail
    verdict = gate({"roc_auc": 0.9}, {"roc_auc": 0.8}, None, (check,))
    _eq((verdict.passed, verdict.summary), (False, "failed: roc_auc per slice >= overall - 0.05: 1 group below overall"))
    fig = plot_slices(result, 0.05)
    _eq([t.get_text() for t in fig.axes[0].get_yticklabels()], ["region=island (n=150)", "region=north (n=915)", "region=south (n=935)"])


def test_no_slices_leave_the_gate_as_it_was():
    before = gate({"roc_auc": 0.9}, {"roc_auc": 0.8})
    _eq((before.passed, before.summary, [c.name for c in before.checks]), (True, "passed: 1 of 1 checks", ["roc_auc >= 0.8"]))
    _eq(gate({"roc_auc": 0.9}, {"roc_auc": 0.8}, None, ()).to_dict(), before.to_dict())


# ---------------------------------------------------------------- per slice against the champion


@pytest.fixture(scope="module")
def duel():
    "A champion that learned both rules (it saw x2) and a challenger that did not, on rows the champion never saw."
    champion_rows, test = minority_frame(3000, 400, 2), minority_frame(2400, 400, 3)
    features = ["x1", "x2"]
    champion_rows = champion_rows.assign(island=(champion_rows["region"] == "island").astype(float))
    test = test.assign(island=(test["region"] == "island").astype(float))
    test["x1_island"], champion_rows["x1_island"] = test["x2"] * test["island"], champion_rows["x2"] * champion_rows["island"]
    champion_model = LogisticRegression().fit(champion_rows[features + ["island", "x1_island"]], champion_rows["y"])
    challenger = LogisticRegression().fit(champion_rows[features], champion_rows["y"])
    columns = features + ["island", "x1_island", "region", "y"]
    champion = Champion(5, champion_model, lineage_record(champion_rows, columns))
    seen = pd.concat([champion_rows.head(300), test]).reset_index(drop=True)  # 300 rows the champion trained on
    comparison = compare_with_champion(challenger, champion, seen, "y", columns, "roc_auc", "yes", ComparisonRule(samples=200))
    return {"champion": champion, "challenger": challenger, "test": seen, "comparison": comparison}


def test_each_slice_is_compared_on_the_same_fresh_rows_for_both_models(duel):
    test, comparison = duel["test"], duel["comparison"]
    _eq((comparison.n_rows, comparison.left_out), (2400, 300))
    labels = slice_labels(test, {"region": "region"})
    result = compare_slices_with_champion(duel["challenger"], duel["champion"], comparison, test, labels, "y", "roc_auc", "yes",
                                          min_rows=100, tolerance=0.05)
    fresh = test[comparison.fresh]
    _eq(result.table["n"].tolist(), fresh["region"].value_counts().sort_index().tolist())
    _eq(int(result.table["n"].sum()), comparison.n_rows)
    island = result.table.set_index("group").loc["island"]
    rows = fresh[fresh["region"] == "island"]
    mine = classification_metrics(rows["y"], duel["challenger"].predict_proba(rows[["x1", "x2"]]), duel["challenger"].classes_, "yes")["roc_auc"]
    theirs = classification_metrics(rows["y"], duel["champion"].model.predict_proba(rows[["x1", "x2", "island", "x1_island"]]),
                                    duel["champion"].model.classes_, "yes")["roc_auc"]
    _close(island["challenger"], mine, eps=1e-12)
    _close(island["champion"], theirs, eps=1e-12)
    _eq(island["status"], "worse")
    _eq(result.table.set_index("group")["status"].to_dict(), {"island": "worse", "north": "not worse", "south": "not worse"})
    _eq((result.outcome, result.passed, result.check().passed), ("worse", False, False))
    _eq(result.check().name, "roc_auc per slice vs champion v5")
    assert result.detail.startswith(f"on region=island (n={len(rows)}) the challenger's roc_auc "), result.detail


def test_a_slice_that_cannot_be_compared_fails_closed(duel):
    test, comparison, champion, challenger = duel["test"], duel["comparison"], duel["champion"], duel["challenger"]
    labels, problems = slice_labels_each(test, {"region": "region", "county": "county"})
    missing = compare_slices_with_champion(challenger, champion, comparison, test, labels, "y", "roc_auc", "yes", 100, 0.5, problems)
    _eq((missing.outcome, missing.passed), ("cannot judge", False))
    _eq(missing.detail, "slice 'county': column 'county' is not in the data (tolerance 0.5).")
    lacking = compare_slices_with_champion(challenger, champion, comparison, test.drop(columns=["x1_island"]), labels, "y", "roc_auc", "yes", 100, 0.5)
    _eq(lacking.outcome, "cannot compare")
    _eq(lacking.detail, "cannot compare the slices with champion v5: champion v5 needs columns this data lacks ('x1_island'). "
        "The challenger is not promoted.")

    class Broken(LogisticRegression):
        def predict_proba(self, X): raise MemoryError("no room")
    broken = Champion(5, Broken().fit(test[["x1", "x2"]], test["y"]), champion.lineage)
    scored = compare_slices_with_champion(challenger, broken, comparison, test, labels, "y", "roc_auc", "yes", 100, 0.5)
    _eq((scored.outcome, scored.passed), ("cannot compare", False))
    _eq(scored.detail, "cannot compare the slices with champion v5: champion v5 could not score the new rows (MemoryError: no room). "
        "The challenger is not promoted.")
    unknown = compare_slices_with_champion(challenger, Champion(None, problem="the model registry could not be read (OSError)"),
                                           comparison, test, labels, "y", "roc_auc", "yes", 100, 0.5)
    _eq((unknown.outcome, unknown.passed), ("cannot compare", False))
    small = compare_slices_with_champion(challenger, champion, comparison, test, labels, "y", "roc_auc", "yes", 5000, 0.05)
    # every group too small: nothing was compared, and no evidence is not a pass
    _eq((small.outcome, small.passed, small.table["status"].unique().tolist()), ("cannot judge", False, ["too small"]))
    assert small.detail.startswith("no group of any slice has enough rows new to champion v5, so they cannot be compared (tolerance 0.05). "
                                   "Too small to judge (fewer than 5000 rows new to champion v5"), small.detail
    first = compare_slices_with_champion(challenger, Champion(None), comparison, test, labels, "y", "roc_auc", "yes")
    _eq((first.outcome, first.passed, math.isnan(first.check().value)), ("no champion yet", True, True))


def test_the_model_card_lists_slices_too_small_groups_and_importance():
    slices = {"metric": "roc_auc", "overall": {"roc_auc": 0.9}, "min_rows": 100, "confidence": 0.9, "problems": {"county": "slice 'county': column 'county' is not in the data"},
              "groups": [{"slice": "region", "group": "island", "n": 60, "roc_auc": 0.7, "roc_auc_low": 0.6, "roc_auc_high": 0.8, "roc_auc_gap": -0.2, "status": "too small"},
                         {"slice": "region", "group": "north", "n": 900, "roc_auc": None, "roc_auc_low": None, "roc_auc_high": None, "roc_auc_gap": None, "status": "undefined"}],
              "champion": {"outcome": "worse", "detail": "on region=north ..."}}
    card = model_card("m", 2, "use", {}, {}, {}, {"passed": False, "summary": "failed", "checks": []}, slices=slices,
                      importance={"x1": 0.5, "x2": 0.25})
    section = card.split("## Slices\n")[1].split("## Global feature importance")[0]
    _eq(section.splitlines()[4:6], ["| region | island | 60 | 0.7000 | 0.6000 to 0.8000 | -0.2000 | too small |",
                                    "| region | north | 900 |  |  |  | undefined |"])
    assert "**Too small to judge**: region=island (60 rows)." in section
    assert "**Not computed**: slice 'county': column 'county' is not in the data" in section
    assert "**Against the champion, per slice** (worse): on region=north ..." in section
    _eq(card.split("## Global feature importance\n")[1].split("\n\n")[1].splitlines()[2:], ["| x1 | 0.5 |", "| x2 | 0.25 |"])


# ---------------------------------------------------------------- end to end


SLICES = {"size": {"column": "mean radius", "bins": [0, 14, 30]}, "rough": {"expr": "`mean texture` > 20"},
          "smooth": {"expr": "`mean smoothness` > 0.12"}}


def set_slices(project, slices: dict, **evaluate) -> None:
    path = project / "mlops.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["slices"] = slices
    cfg["evaluate"] = {**cfg.get("evaluate", {}), **evaluate}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def artifact_json(project, run_id: str, path: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return read_json(download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=tracking_uri(project)))


@pytest.fixture(scope="module")
def sliced(tmp_path_factory, breast_cancer_frame):
    "Three runs: the first (no champion) makes v1 champion, the second compares with it, the third has a slice on a missing column."
    project = cancer_project(tmp_path_factory.mktemp("slices"), breast_cancer_frame)
    set_slices(project, SLICES, slice_min_rows=30, slice_tolerance=0.05)
    runs = []
    for i in range(3):
        if i == 2: set_slices(project, {**SLICES, "site": "site"})
        code, out, err = run_cli("run", "--project", project, *fast)
        assert code == 0, show(code, out, err)
        runs.append({"out": out, "run_id": run_id_from(out), "dir": run_dir_of(project, run_id_from(out))})
    return {"project": project, "runs": runs}


@pytest.mark.slow
def test_evaluate_writes_slice_metrics_plot_and_gate_checks(sliced):
    first = sliced["runs"][0]
    table = read_json(first["dir"] / "evaluate" / "slices.json")
    test = pd.read_parquet(first["dir"] / "prepare" / "test.parquet")
    _eq(len(test), 114)
    by_slice = {}
    for g in table["groups"]: by_slice.setdefault(g["slice"], {})[g["group"]] = g["n"]
    radius = test["mean radius"]
    _eq(by_slice["size"], {"[0, 14)": int((radius < 14).sum()), "[14, 30]": int((radius >= 14).sum())})
    _eq(by_slice["rough"], {"False": int((test["mean texture"] <= 20).sum()), "True": int((test["mean texture"] > 20).sum())})
    _eq(by_slice["smooth"]["True"], int((test["mean smoothness"] > 0.12).sum()))
    _eq([g["status"] for g in table["groups"] if g["slice"] == "smooth"], ["judged", "too small"])
    _eq((table["metric"], table["min_rows"], table["tolerance"], table["samples"]), ("roc_auc", 30, 0.05, 2000))
    gate_json = read_json(first["dir"] / "evaluate" / "gate.json")
    _eq([c["name"] for c in gate_json["checks"]], ["roc_auc >= 0.7", "roc_auc per slice >= overall - 0.05", "roc_auc per slice vs champion",
                                                   "roc_auc vs champion"])
    _eq(gate_json["passed"], True)
    assert "Too small to judge (fewer than 30 test rows, evaluate.slice_min_rows): smooth=True (" in gate_json["checks"][1]["detail"]
    client = client_for(sliced["project"])
    evaluate_run = stage_runs(client, first["run_id"])["evaluate"]
    _eq(sorted(a.path for a in client.list_artifacts(evaluate_run.info.run_id, "plots")),
        ["plots/calibration.png", "plots/confusion_matrix.png", "plots/precision_recall.png", "plots/roc.png", "plots/slices.png"])
    _eq(artifact_json(sliced["project"], evaluate_run.info.run_id, "slices.json")["groups"], table["groups"])


@pytest.mark.slow
def test_the_champion_carries_its_training_groups_and_validate_compares_with_them(sliced):
    project, (first, second, _) = sliced["project"], sliced["runs"]
    client = client_for(project)
    run_id = client.get_model_version("project", "1").run_id
    stored = artifact_json(project, run_id, "slices/groups.json")
    train = pd.read_parquet(first["dir"] / "prepare" / "train.parquet")
    _eq(stored["slices"], SLICES)
    _eq(stored["counts"]["size"], {"[0, 14)": int((train["mean radius"] < 14).sum()), "[14, 30]": int((train["mean radius"] >= 14).sum())})
    quality = artifact_json(project, stage_runs(client, first["run_id"])["validate"].info.run_id, "quality_report.json")
    _eq(quality["representativeness"]["reference"], "no reference yet: there is no champion")
    quality = artifact_json(project, stage_runs(client, second["run_id"])["validate"].info.run_id, "quality_report.json")
    shares = quality["representativeness"]
    _eq(shares["reference"], "the training rows of champion v1")
    accepted = pd.read_parquet(second["dir"] / "validate" / "data.parquet")
    size = [r for r in shares["shares"] if r["slice"] == "size"]
    _eq([(r["group"], r["rows"], r["reference_rows"]) for r in size],
        [("[0, 14)", int((accepted["mean radius"] < 14).sum()), stored["counts"]["size"]["[0, 14)"]),
         ("[14, 30]", int((accepted["mean radius"] >= 14).sum()), stored["counts"]["size"]["[14, 30]"])])
    _eq([(s["slice"], s["group"]) for s in shares["too_small"]], [("smooth", "True")])  # 25 rows: 5 expected test rows
    _eq(shares["classes_too_small"], [])
    _eq(read_json(second["dir"] / "validate" / "cache.json"), {"compared_with": "1"})
    _eq([s["status"] for s in read_json(second["dir"] / "run.json")["stages"]][:2], ["cached", "ok"])  # the champion changed


@pytest.mark.slow
def test_the_second_run_compares_each_slice_with_the_champion(sliced):
    second = sliced["runs"][1]
    table = read_json(second["dir"] / "evaluate" / "slices.json")["champion"]
    gate_json = read_json(second["dir"] / "evaluate" / "gate.json")
    _eq((table["champion_version"], table["outcome"], table["passed"]), (1, "not worse", True))
    judged = [g for g in table["groups"] if g["status"] != "too small"]
    _eq(sum(g["n"] for g in table["groups"] if g["slice"] == "size"), gate_json["comparison"]["n_rows"])
    _eq([g["difference"] for g in judged], [0.0] * len(judged))  # the same model (train was reused) on the same rows
    _eq(gate_json["checks"][2]["name"], "roc_auc per slice vs champion v1")


@pytest.mark.slow
def test_a_slice_on_a_missing_column_fails_the_gate_with_the_reason(sliced):
    project, third = sliced["project"], sliced["runs"][2]
    gate_json = read_json(third["dir"] / "evaluate" / "gate.json")
    _eq(gate_json["passed"], False)
    _eq(gate_json["summary"], "failed: roc_auc per slice >= overall - 0.05: cannot judge; roc_auc per slice vs champion v2: cannot judge")
    assert gate_json["checks"][1]["detail"].startswith("slice 'site': column 'site' is not in the data."), gate_json["checks"][1]["detail"]
    aliases = client_for(project).get_registered_model("project").aliases
    _eq(aliases, {"champion": 2, "challenger": 3})
    card = (third["dir"] / "register" / "model_card.md").read_text()
    assert "**Not computed**: slice 'site': column 'site' is not in the data" in card
    assert "**Too small to judge**: smooth=True (" in card
    assert "## Global feature importance" in card
