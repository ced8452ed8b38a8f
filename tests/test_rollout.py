"""Rollout policies at the library level: stored in the registry, checked, audited, failing closed; the router's split,
stickiness and decisions; the canary judgement and its compare-and-set take-out raced by two processes; the A/B report.

One project with two registered versions (v1 @champion, v2 @challenger) is shared by the module; each test sets the
policy it needs and looks only at the audit entries it adds.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom
from serving import add_version, project_client, served_project

from mlops_nb.config import UsageError, load_config
from mlops_nb.registry import audit_trail, current_user, promote, rollback
from mlops_nb.rollout import (
    MODES,
    ROLLOUT_TAG,
    Decision,
    Policy,
    RolloutState,
    Router,
    ab_compare,
    ab_report,
    judge_canary,
    read_state,
    rollout_status,
    routing_key_of,
    set_policy,
    state_from,
    status_of,
    take_out_canary,
)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    p = served_project(tmp_path_factory.mktemp("rollout"))
    _eq(add_version(p), 1)
    _eq(add_version(p, promote=False), 2)
    return p


@pytest.fixture
def registry(project):
    "(client, model name) with the policy turned off before and after the test."
    client, name = project_client(project), load_config(project).model_name
    set_policy(client, name, "champion", reason="reset")
    yield client, name
    set_policy(client, name, "champion", reason="reset")


def _added(client, name, before: int) -> list:
    return audit_trail(client, name)[before:]


# --- the policy in the registry ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,share,expected_share,versions,describe", [
    ("canary", 10, 10.0, [1, 2], "canary: 10% to v2"),
    ("canary", 0.05, 0.05, [1, 2], "canary: 0.05% to v2"),
    ("ab", None, 50.0, [1, 2], "ab: 50% to v2"),
    ("ab", 30, 30.0, [1, 2], "ab: 30% to v2"),
    ("shadow", None, 0.0, [1, 2], "shadow: v2 scores a copy of every request"),
    ("blue-green", None, 0.0, [1, 2], "blue-green: all traffic to @champion, v2 kept loaded"),
])
def test_policy_round_trip_and_audit(registry, mode, share, expected_share, versions, describe):
    client, name = registry
    before = len(audit_trail(client, name))
    policy = set_policy(client, name, mode, share=share, key="column:mean radius", reason="trying v2")
    _eq((policy.mode, policy.challenger, policy.share, policy.key, policy.base, policy.by, policy.reason),
        (mode, 2, expected_share, "column:mean radius", 1, current_user(), "trying v2"))
    _eq(len(policy.id), 12)
    state = read_state(client, name)
    _eq(state, RolloutState(1, 2, policy))
    _eq(state.versions(), versions)
    _eq(Policy.from_json(client.get_registered_model(name).tags[ROLLOUT_TAG]), policy)
    [entry] = _added(client, name, before)
    _eq((entry.alias, entry.from_version, entry.to_version, entry.source, entry.who),
        ("rollout", None, 2, "rollout", current_user()))
    _eq(entry.why, f"{describe} (policy {policy.id}): trying v2")


def test_policy_change_and_off_are_audited(registry):
    client, name = registry
    before = len(audit_trail(client, name))
    first = set_policy(client, name, "canary", 5)
    second = set_policy(client, name, "canary", 20, version=2)
    off = set_policy(client, name, "champion")
    _eq((off.mode, off.challenger, off.share), ("champion", None, 0.0))
    _eq([(e.from_version, e.to_version, e.why) for e in _added(client, name, before)],
        [(None, 2, f"canary: 5% to v2 (policy {first.id})"), (2, 2, f"canary: 20% to v2 (policy {second.id})"),
         (2, None, f"off: all traffic to @champion (policy {off.id})")])
    _eq(read_state(client, name).versions(), [1])


@pytest.mark.parametrize("kwargs,message", [
    ({"mode": "rainbow"}, "unknown rollout mode 'rainbow': use one of champion, canary, shadow, ab, blue-green"),
    ({"mode": "canary"}, "canary needs a share: the percentage of traffic for the challenger"),
    ({"mode": "canary", "share": 101}, "the canary share must be between 0 and 100 (percent); got 101"),
    ({"mode": "ab", "share": -1}, "the ab share must be between 0 and 100 (percent); got -1"),
    ({"mode": "canary", "share": "ten"}, "the canary share must be a number between 0 and 100; got 'ten'"),
    ({"mode": "canary", "share": float("nan")}, "the canary share must be between 0 and 100 (percent); got nan"),
    ({"mode": "canary", "share": True}, "the canary share must be between 0 and 100 (percent); got True"),
    ({"mode": "shadow", "share": 10}, "shadow takes no share"),
    ({"mode": "blue-green", "share": 10}, "blue-green takes no share"),
    ({"mode": "canary", "share": 10, "version": 1}, "v1 is @champion already: a canary needs a challenger that is not the champion"),
    ({"mode": "shadow", "version": 7}, "'served' has no version 7: its versions are v1, v2"),
    ({"mode": "ab", "share": 50, "key": "cookie:id"}, "routing key 'cookie:id' must be header:NAME or column:NAME"),
])
def test_invalid_policies_change_nothing(registry, kwargs, message):
    client, name = registry
    current = set_policy(client, name, "canary", 10)
    before = len(audit_trail(client, name))
    _fail(lambda: set_policy(client, name, **kwargs), contains=message)
    with pytest.raises(UsageError):
        set_policy(client, name, **kwargs)
    _eq(len(audit_trail(client, name)), before)
    _eq(read_state(client, name).policy, current)


def test_no_model_and_no_challenger(tmp_path):
    project = served_project(tmp_path)
    client, name = project_client(project), load_config(project).model_name
    _eq(read_state(client, name), RolloutState(None, None, Policy(), "there is no registered model 'served' yet"))
    _fail(lambda: set_policy(client, name, "canary", 10), contains="there is no registered model 'served': train and register a version first")
    client.create_registered_model(name)
    client.create_model_version(name, source=str(tmp_path))
    _fail(lambda: set_policy(client, name, "shadow", version=1), contains="'served' has no @champion: a shadow needs a champion to compare with")
    client.set_registered_model_alias(name, "champion", "1")
    _fail(lambda: set_policy(client, name, "shadow"), contains="shadow needs a challenger: 'served' has no @challenger")
    _eq(audit_trail(client, name), [])


@pytest.mark.parametrize("text,why", [
    ("{not json", "it is not valid JSON"),
    ("[1, 2]", "it is not a JSON object"),
    ('{"mode": "canary", "challenger": 2, "share": 250}', "its share 250 is not a percentage between 0 and 100"),
    ('{"mode": "canary", "challenger": 2, "share": "10"}', "its share '10' is not a percentage between 0 and 100"),
    ('{"mode": "canary", "challenger": "two", "share": 10}', "its challenger 'two' is not a version number"),
    ('{"mode": "teleport", "challenger": 2}', "its mode 'teleport' is not one of"),
    ('{"mode": "shadow"}', "mode shadow has no challenger version"),
    ('{"mode": "ab", "challenger": 2, "share": 50, "colour": "red"}', "it has unknown fields ['colour']"),
    ('{"mode": "ab", "challenger": 2, "share": 50, "key": "cookie:x"}', "its routing key 'cookie:x' is not header:NAME or column:NAME"),
])
def test_corrupt_tag_fails_closed_to_the_champion(registry, text, why):
    client, name = registry
    client.set_registered_model_tag(name, ROLLOUT_TAG, text)
    state = read_state(client, name)
    _eq((state.champion, state.policy.mode, state.versions()), (1, "champion", [1]))
    assert state.note.startswith(f"the rollout policy of '{name}' (tag {ROLLOUT_TAG}) cannot be read: {why}"), state.note
    assert state.note.endswith("all traffic goes to @champion until it is set again"), state.note
    _eq(state.policy.reason, state.note)
    _eq({Router(state).route(f"k{i}", f"r{i}") for i in range(200)}, {Decision(1, "champion", None)})
    _eq(set_policy(client, name, "canary", 10).mode, "canary")  # an operator can always set a valid policy again


def test_a_promoted_challenger_takes_all_the_traffic(registry):
    client, name = registry
    for mode, share in (("canary", 50), ("ab", 50), ("shadow", None)):
        set_policy(client, name, mode, share)
        promote(client, name, 2, reason="the challenger won")
        try:
            state = read_state(client, name)
            _eq((state.champion, state.policy.mode, state.versions()), (2, "champion", [2]))
            _eq(state.note, f"v2, the {mode} challenger, is @champion now: all traffic goes to it")
            _eq({Router(state).route(f"k{i}", "r") for i in range(500)}, {Decision(2, "champion", None)})
        finally:
            rollback(client, name, reason="back to v1")
        _eq(read_state(client, name).policy.mode, mode)  # v2 is a challenger again: the stored policy applies again


def test_blue_green_keeps_both_versions_loaded_across_promote_and_rollback(registry):
    client, name = registry
    set_policy(client, name, "blue-green")
    _eq(read_state(client, name).versions(), [1, 2])
    promote(client, name, 2, reason="switch to green")
    try:
        state = read_state(client, name)
        _eq((state.policy.mode, state.versions()), ("blue-green", [2, 1]))
        _eq(Router(state).route("k", "r"), Decision(2, "champion", None))
    finally:
        rollback(client, name, reason="switch back to blue")
    state = read_state(client, name)
    _eq((state.versions(), Router(state).route("k", "r")), ([1, 2], Decision(1, "champion", None)))


# --- the router ---------------------------------------------------------------------------------------------------

def _state(mode="canary", share=10.0, policy_id="p1", champion=1, challenger=2) -> RolloutState:
    return RolloutState(champion, challenger, Policy(mode, challenger, share, id=policy_id, base=champion))


@pytest.mark.parametrize("share", [1, 5, 10, 33.3, 50, 90, 99.5])
def test_split_share_within_a_binomial_interval(share):
    router = Router(_state(share=share, policy_id=f"share-{share}"))
    keys = [f"customer-{i}" for i in range(2000)]
    to_challenger = sum(router.route(k, "ignored").version == 2 for k in keys)
    low, high = binom.interval(0.999, 2000, share / 100)
    assert low <= to_challenger <= high, (share, to_challenger, low, high)
    _eq(to_challenger, sum(router.bucket(k) < round(share * 100) for k in keys))
    by_request = sum(router.route(None, f"request-{i}").version == 2 for i in range(2000))  # no key: by request id
    assert low <= by_request <= high, (share, by_request, low, high)


@pytest.mark.parametrize("share,expected", [(0, 0), (100, 2000)])
def test_split_edges(share, expected):
    router = Router(_state(share=share))
    _eq(sum(router.route(f"k{i}", f"r{i}").arm == "challenger" for i in range(2000)), expected)


@settings(max_examples=200, deadline=None)
@given(key=st.text(min_size=1), share=st.floats(0, 100), ids=st.lists(st.text(), min_size=2, max_size=5))
def test_routing_is_sticky_per_key(key, share, ids):
    router = Router(_state(share=share, policy_id="sticky"))
    first = router.route(key, ids[0])
    _eq([router.route(key, r) for r in ids], [first] * len(ids))
    _eq(Router(_state(share=share, policy_id="sticky")).route(key, "other"), first)  # every worker agrees


def test_the_policy_id_salts_the_split():
    keys = [f"k{i}" for i in range(2000)]
    a = {k for k in keys if Router(_state(share=50, policy_id="first")).route(k, "r").arm == "challenger"}
    b = {k for k in keys if Router(_state(share=50, policy_id="second")).route(k, "r").arm == "challenger"}
    low, high = binom.interval(0.999, 2000, 0.25)  # independent splits overlap on about a quarter of the keys
    assert low <= len(a & b) <= high, len(a & b)


def test_decisions_per_mode():
    _eq(Router(_state("champion", 0)).route("k", "r"), Decision(1, "champion", None))
    _eq(Router(_state("shadow", 0)).route("k", "r"), Decision(1, "champion", 2))
    _eq(Router(_state("blue-green", 0)).route("k", "r"), Decision(1, "champion", None))
    _eq(Router(_state("canary", 100)).route("k", "r"), Decision(2, "challenger", None))
    _eq(Router(_state("ab", 100)).route("k", "r"), Decision(2, "challenger", None))
    _eq(Router(_state("canary", 100, champion=None)).route("k", "r"), Decision(None, "champion", None))
    _eq(Router(_state("shadow", 0, champion=None)).route("k", "r"), Decision(None, "champion", None))
    _eq(set(MODES), {"champion", "canary", "shadow", "ab", "blue-green"})


def test_routing_keys():
    from starlette.datastructures import Headers
    headers = Headers({"X-Routing-Key": "user-7"})
    _eq(routing_key_of("header:X-Routing-Key", headers, []), "user-7")
    _eq(routing_key_of("header:X-Routing-Key", {"x-routing-key": "user-7"}, []), "user-7")
    _eq(routing_key_of("header:X-Routing-Key", {}, [{"a": 1}]), None)
    _eq(routing_key_of("column:customer", {}, [{"customer": 42}, {"customer": 43}]), "42")
    _eq(routing_key_of("column:customer", {}, [{"other": 1}]), None)
    _eq(routing_key_of("column:customer", {}, []), None)
    _eq(Router(RolloutState(1, 2, Policy("ab", 2, 50.0, key="column:customer", id="x"))).routing_key, "column:customer")
    _eq(Router(_state(), "column:customer").key({}, [{"customer": "c1"}]), "c1")


def test_routing_is_fast():
    router = Router(_state(share=10))
    start = time.perf_counter()
    for i in range(50_000): router.route("customer-123", "r")
    per_route = (time.perf_counter() - start) / 50_000
    assert per_route < 20e-6, f"{per_route * 1e6:.2f} us per route"


# --- canary health ---------------------------------------------------------------------------------------------------

CHAMPION = {"requests": 1000, "errors": 10, "error_rate": 0.01, "p50_ms": 1.0, "p95_ms": 2.0}


@pytest.mark.parametrize("canary,healthy,why", [
    ({"requests": 99, "errors": 99, "p95_ms": 900.0}, None, "the canary has answered 99 of the 100 requests it needs before it is judged"),
    (None, None, "the canary has answered 0 of the 100 requests it needs before it is judged"),
    ({"requests": 100, "errors": 3, "p95_ms": 2.0}, True,
     "error rate 3.0% (3 of 100) against the champion's 1.0% (10 of 1000); p95 latency 2.0 ms against the champion's 2.0 ms: within the margins"),
    ({"requests": 100, "errors": 4, "p95_ms": 2.0}, False,
     "error rate 4.0% (4 of 100) against the champion's 1.0% (10 of 1000): more than 2.0% above it"),
    ({"requests": 200, "errors": 200, "p95_ms": None}, False,
     "error rate 100.0% (200 of 200) against the champion's 1.0% (10 of 1000): more than 2.0% above it"),
    ({"requests": 100, "errors": 0, "p95_ms": 52.0}, True,
     "error rate 0.0% (0 of 100) against the champion's 1.0% (10 of 1000); p95 latency 52.0 ms against the champion's 2.0 ms: within the margins"),
    ({"requests": 100, "errors": 0, "p95_ms": 52.1}, False,
     "p95 latency 52.1 ms against the champion's 2.0 ms: more than 50 ms above it (error rate 0.0% (0 of 100) against the champion's 1.0% (10 of 1000))"),
])
def test_judge_canary(canary, healthy, why):
    _eq(judge_canary(CHAMPION, canary, 100, 0.02, 50), (healthy, why))


def test_judge_canary_with_an_idle_champion():
    _eq(judge_canary({}, {"requests": 100, "errors": 0, "p95_ms": 3.0}, 100, 0.02, 50),
        (True, "error rate 0.0% (0 of 100) against the champion's 0.0% (0 of 0); p95 latency not compared (no successful requests to time on both)"))
    _eq(judge_canary({}, {"requests": 100, "errors": 3, "p95_ms": 3.0}, 100, 0.02, 50)[0], False)


RACER = """
import sys, time
from pathlib import Path
from mlflow.tracking import MlflowClient
from mlops_nb.rollout import take_out_canary
uri, name, policy_id, go, who = sys.argv[1:]
client = MlflowClient(uri)
client.get_registered_model(name)  # warm: the race is the take-out, not the imports
Path(go + "." + who).touch()
while not Path(go).exists(): time.sleep(0.001)
print(take_out_canary(client, name, policy_id, f"error rate judged by worker {who}"))
"""


def test_take_out_canary_is_compare_and_set_across_processes(registry, tmp_path):
    client, name = registry
    policy = set_policy(client, name, "canary", 25)
    before = len(audit_trail(client, name))
    go = tmp_path / "go"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, client.tracking_uri, name, policy.id, str(go), who],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for who in ("a", "b")]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{who}").exists() for who in ("a", "b")):
        assert time.monotonic() < deadline and all(r.poll() is None for r in racers), [r.communicate() for r in racers]
        time.sleep(0.05)
    go.touch()
    outputs = [r.communicate(timeout=120) for r in racers]
    results = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    _eq(results, ["False", "True"])
    [entry] = _added(client, name, before)
    winner = "a" if outputs[0][0].strip().endswith("True") else "b"
    _eq((entry.alias, entry.from_version, entry.to_version, entry.source),
        ("rollout", 2, None, "auto-rollback"))
    _eq(entry.why, f"canary v2 taken out (0%): error rate judged by worker {winner}")
    state = read_state(client, name)
    _eq((state.policy.mode, state.policy.share, state.policy.challenger, state.versions()), ("canary", 0.0, 2, [1]))
    _eq(state.policy.reason, f"taken out automatically: error rate judged by worker {winner}")
    _eq({Router(state).route(f"k{i}", "r").version for i in range(500)}, {1})


def test_take_out_canary_refuses_a_changed_policy(registry):
    client, name = registry
    old = set_policy(client, name, "canary", 10)
    new = set_policy(client, name, "canary", 10)
    before = len(audit_trail(client, name))
    _eq(take_out_canary(client, name, old.id, "stale judgement"), False)
    shadow = set_policy(client, name, "shadow")
    _eq(take_out_canary(client, name, shadow.id, "not a canary"), False)
    _eq([e.why for e in _added(client, name, before)], [f"shadow: v2 scores a copy of every request (policy {shadow.id})"])
    _eq(read_state(client, name).policy, shadow)
    assert new.id != old.id


# --- status and the A/B report ---------------------------------------------------------------------------------------

def test_status_of_shares():
    stats = {1: {"requests": 750, "errors": 0, "error_rate": 0.0, "p50_ms": 1.0, "p95_ms": 2.0},
             2: {"requests": 250, "errors": 5, "error_rate": 0.02, "p50_ms": 1.5, "p95_ms": 3.0}}
    st_ = status_of("m", _state("canary", 25), stats)
    _eq([(r["version"], r["role"], r["configured_share"], r["live_share"], r["requests"], r["errors"]) for r in st_["versions"]],
        [(1, "champion", 75.0, 75.0, 750, 0), (2, "challenger", 25.0, 25.0, 250, 5)])
    _eq((st_["requests"], st_["summary"]), (1000, "'m': @champion v1; canary: 25% to v2"))
    taken = RolloutState(1, 2, Policy("canary", 2, 0.0, id="t", reason="taken out automatically: error rate 40%"))
    _eq(status_of("m", taken, {})["summary"], "'m': @champion v1; canary: 0% to v2 (taken out automatically: error rate 40%)")
    _eq([r["live_share"] for r in status_of("m", taken, {})["versions"]], [None])
    corrupt = state_from("m", {"champion": 1}, {ROLLOUT_TAG: "{"})
    assert status_of("m", corrupt, {})["summary"].startswith("'m': @champion v1; off: all traffic to @champion [the rollout policy of 'm'"), corrupt


def _labelled(n: int, right_a: float, right_b: float, seed: int = 0, classes=(0, 1), since: float = 2e9) -> pd.DataFrame:
    "Synthetic labelled log rows: each arm right on a known share of its requests."
    rng, rows = np.random.default_rng(seed), []
    for arm, version, right in (("champion", 1, right_a), ("challenger", 2, right_b)):
        for i in range(n):
            label = classes[int(rng.integers(0, len(classes)))]
            hit = rng.random() < right
            guess = label if hit else [c for c in classes if c != label][int(rng.integers(0, len(classes) - 1))]
            top = rng.uniform(0.5, 1.0)
            proba = {str(c): (top if c == guess else (1 - top) / (len(classes) - 1)) for c in classes}
            rows.append({"request_id": f"{arm}-{i}", "row": 0, "ts": since + i, "version": version, "role": "primary", "arm": arm,
                         "status": "ok", "prediction": guess, "probabilities": json.dumps(proba), "label": label})
    return pd.DataFrame(rows)


AB = Policy("ab", 2, 50.0, id="ab", since="2033-05-18T03:33:20.000Z", base=1)  # = 2e9 seconds


def test_ab_clear_winner():
    r = ab_compare(_labelled(500, 0.70, 0.90), AB, [0, 1], 1, min_labels=100)
    _eq((r["metric"], r["winner"], r["enough"], r["arms"]["A"]["n"], r["arms"]["B"]["n"]), ("roc_auc", "B", True, 500, 500))
    _eq((r["arms"]["A"]["versions"], r["arms"]["B"]["versions"]), ([1], [2]))
    assert 0 < r["low"] < r["difference"] < r["high"], r
    assert r["decision"].startswith("B (v2) is better: roc_auc B - A = +"), r["decision"]
    assert r["decision"].endswith("n A = 500, n B = 500); promote it with `mlops-nb promote v2`"), r["decision"]
    r = ab_compare(_labelled(500, 0.90, 0.70), AB, [0, 1], 1, min_labels=100)
    _eq(r["winner"], "A")
    assert r["high"] < 0 and r["decision"].startswith("A (the champion) is better"), r


def test_ab_accuracy_is_exact_and_the_interval_covers_no_difference():
    frame = _labelled(400, 0.8, 0.8, seed=3)
    r = ab_compare(frame, AB, [0, 1], 1, min_labels=100)
    for arm, role in (("A", "champion"), ("B", "challenger")):
        part = frame[frame["arm"] == role]
        _eq(r["arms"][arm]["accuracy"], float((part["prediction"] == part["label"]).mean()))
    _eq(r["winner"], None)
    assert r["low"] < 0 < r["high"] and r["decision"].startswith("no significant difference yet"), r


def test_ab_not_enough_labels():
    frame = _labelled(150, 0.6, 0.95)
    frame = frame.drop(frame[frame["arm"] == "challenger"].index[:90])
    r = ab_compare(frame, AB, [0, 1], 1, min_labels=100)
    _eq((r["enough"], r["winner"], r["difference"], r["low"], r["high"]), (False, None, None, None, None))
    _eq(r["decision"], "not enough labelled requests yet (n A = 150, n B = 60 < 100): keep the test running")


def test_ab_counts_only_labelled_primary_answers_since_the_policy():
    frame = _labelled(120, 0.7, 0.9)
    extra = frame.iloc[:30].assign(role="shadow")
    early = frame.iloc[:40].assign(ts=2e9 - 10)
    unlabelled = frame.iloc[:25].assign(label=None)
    failed = frame.iloc[:5].assign(status="error")
    r = ab_compare(pd.concat([frame, extra, early, unlabelled, failed], ignore_index=True), AB, [0, 1], 1, min_labels=100)
    _eq((r["arms"]["A"]["n"], r["arms"]["B"]["n"]), (120, 120))


def test_ab_multiclass_and_one_class_arms_use_accuracy():
    r = ab_compare(_labelled(300, 0.5, 0.9, classes=("a", "b", "c")), AB, ["a", "b", "c"], None, min_labels=100)
    _eq((r["metric"], r["winner"], r["arms"]["A"]["roc_auc"]), ("accuracy", "B", None))
    frame = _labelled(200, 0.6, 0.9)
    frame.loc[frame["arm"] == "champion", "label"] = 1
    r = ab_compare(frame, AB, [0, 1], 1, min_labels=100)
    _eq((r["metric"], r["arms"]["A"]["roc_auc"]), ("accuracy", None))


def test_ab_report_needs_an_ab_policy(tmp_path):
    _fail(lambda: ab_report(tmp_path / "none.db", Policy("canary", 2, 10.0), [0, 1], 1, 100),
          contains="there is no A/B test running (the rollout policy is canary: 10% to v2)")


def test_status_and_ab_report_read_the_prediction_log(registry, tmp_path):
    from mlops_nb.telemetry import LogEntry, PredictionLog
    client, name = registry
    policy = set_policy(client, name, "ab", 50)
    frame = _labelled(120, 0.6, 0.95, since=time.time())
    path = tmp_path / "predictions.db"
    log = PredictionLog(path)
    try:
        entries = [LogEntry(r.request_id, 0, r.ts - 1e-3 * (i % 5), "served", r.version, "primary", r.arm, {"x": 1.0}, r.prediction,
                            json.loads(r.probabilities), 1.0 + r.version, "ok", None) for i, r in enumerate(frame.itertuples())]
        entries += [LogEntry("failed-1", 0, time.time(), "served", 2, "primary", "challenger", {}, None, None, 9.0, "error", "the model raised ValueError")]
        _eq(log.put(entries), 0)
        log.flush()
        for r in frame.itertuples(): _eq(log.add_feedback(r.request_id, r.label), True)
    finally:
        log.close()
    report = ab_report(path, read_state(client, name).policy, [0, 1], 1, min_labels=100)
    _eq(report, ab_compare(frame, policy, [0, 1], 1, min_labels=100))
    _eq((report["winner"], report["arms"]["A"]["n"], report["arms"]["B"]["n"]), ("B", 120, 120))
    status = rollout_status(client, name, path, window_seconds=600)
    _eq([(r["version"], r["role"], r["configured_share"], r["requests"], r["errors"], r["live_share"]) for r in status["versions"]],
        [(1, "champion", 50.0, 120, 0, 49.79), (2, "challenger", 50.0, 121, 1, 50.21)])
    _eq((status["versions"][0]["p95_ms"], status["versions"][1]["p95_ms"]), (2.0, 3.0))
    _eq(status["summary"], f"'{name}': @champion v1; ab: 50% to v2")
    canary = set_policy(client, name, "canary", 10)
    _eq(take_out_canary(client, name, canary.id, "error rate 100.0%"), True)
    status = rollout_status(client, name, path, window_seconds=600)  # a canary taken out is still shown, at 0%
    _eq([(r["version"], r["role"], r["configured_share"], r["requests"]) for r in status["versions"]], [(1, "champion", 100.0, 120), (2, "challenger", 0.0, 121)])
    _eq(status["summary"], f"'{name}': @champion v1; canary: 0% to v2 (taken out automatically: error rate 100.0%)")
