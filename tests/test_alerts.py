"""Alerts that do not cry wolf: streams of monitoring windows through `signals` and `step`, with every notification
counted against the policy; the webhook against a real HTTP receiver on 127.0.0.1; the Prometheus gauges, rules
(`promtool check rules` and `promtool test rules`) and the Grafana drift panels."""
from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from fastcore.test import test_eq as _eq
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from mlops_nb.alerts import GAUGES, Notification, Signal, deliver, firing_alerts, gauges_text, signals, step, webhook_url
from mlops_nb.config import AlertSettings

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "mlops-nb.json"
PROMTOOL = "/usr/bin/promtool"
HOUR = 3600.0
PLANTED = "zq-PLANTED-feature-value-5521"  # a feature value in the reports; no notification may carry it

POLICY = AlertSettings()  # consecutive 2, cooldown 6h, min_rows 100, drift_share 0.1, group_top 5, resolve on
QUIET = replace(POLICY, cooldown="1000w")  # no re-notification within any test stream


# ---------------------------------------------------------------- reports as `VersionReport.to_dict()` gives them

def column(name: str, statistic: float, drifted: bool | None) -> dict:
    return {"column": name, "kind": "categorical", "test": "jensen_shannon", "statistic": statistic, "threshold": 0.1,
            "p_value": None, "drifted": drifted, "n": 500, "null_rate": [0.0, 0.01], "null_drift": False,
            "unseen_share": 0.02, "unseen": {PLANTED: 7}, "reason": ""}


def estimate(value: float | None, n: int = 400) -> dict:
    if value is None:
        return {"metric": "roc_auc", "value": None, "low": None, "high": None, "n": 3, "reason": "not enough labels yet (3 < 100)"}
    return {"metric": "roc_auc", "value": value, "low": value - 0.03, "high": value + 0.03, "n": n, "reason": ""}


def report(drifted: int, features: int = 50, version: int = 3, rows: int = 500, dropped: bool | None = False,
           estimated: float | None = 0.94, realized: float | None = 0.95, multivariate: float | None = None) -> dict:
    "A version report with `drifted` of `features` columns drifted (the first ones, most drifted first)."
    columns = [column(f"f{i:02d}", 0.9 - i / 100 if i < drifted else 0.01, i < drifted) for i in range(features)]
    mv = None if multivariate is None else {"statistic": multivariate, "threshold": 0.1, "drifted": multivariate > 0.1, "n": rows, "reason": ""}
    return {"version": version, "rows": rows, "columns": columns, "drifted": [c["column"] for c in columns if c["drifted"]],
            "drift_share": drifted / features, "prediction": None, "multivariate": mv,
            "performance": {"metric": "roc_auc", "reference": 0.96, "estimated": estimate(estimated), "realized": estimate(realized),
                            "dropped": dropped, "reason": "" if dropped is not None else "no estimate and no labels"},
            "verdict": "drift" if drifted else "no drift", "reason": ""}


def too_small(rows: int = 12, version: int = 3, features: int = 4) -> dict:
    "A report of a window too small to judge: no verdict per column, no performance."
    why = f"not enough rows ({rows} < 30)"
    columns = [{**column(f"f{i:02d}", 0.0, None), "statistic": None, "reason": why} for i in range(features)]
    return {**report(0, version=version, rows=rows, features=features), "columns": columns, "drift_share": None,
            "performance": {"metric": "roc_auc", "reference": 0.96, "estimated": estimate(None), "realized": estimate(None),
                            "dropped": None, "reason": why},
            "verdict": "not enough rows", "reason": why}


def run(reports: list, policy: AlertSettings = POLICY, every: float = HOUR, state: dict | None = None,
        round_trip: bool = True) -> tuple[list, dict]:
    """Each window (a report or a list of reports) through `signals` and `step`, `every` seconds apart; the state goes
    through JSON between windows as it does between monitoring runs. Returns (notifications with window index, state)."""
    sent = []
    for i, window in enumerate(reports):
        batch = [s for r in (window if isinstance(window, list) else [window]) for s in signals(r, policy)]
        state, notes = step(policy, state, batch, now=i * every)
        if round_trip: state = json.loads(json.dumps(state))
        sent += [(i, n) for n in notes]
    return sent, state


def kinds(sent: list, alert: str = "data_drift") -> list[tuple]:
    return [(i, n.kind) for i, n in sent if n.alert == alert]


# ---------------------------------------------------------------- streams: stable, flapping, gradual

def test_a_stable_stream_sends_nothing():
    "48 hourly windows with 1 of 50 features drifting (share 0.02 < 0.1) and intact performance: 0 notifications."
    sent, state = run([report(1) for _ in range(48)])
    _eq(sent, [])
    _eq(state, {"format": 1, "alerts": {}})


def test_a_stream_flapping_around_the_threshold_never_fires_with_hysteresis():
    "Share 0.08, 0.12, 0.08, ... for 48 windows: never two breaches in a row, so consecutive=2 (and 3) send nothing."
    flapping = [report(4 if i % 2 == 0 else 6) for i in range(48)]
    _eq(run(flapping)[0], [])
    _eq(run(flapping, replace(POLICY, consecutive=3))[0], [])
    # without hysteresis the same stream pages on every flip: 24 firing and 23 resolved notifications
    sent, _ = run(flapping, replace(QUIET, consecutive=1))
    _eq(kinds(sent).count((47, "firing")), 1)
    _eq([k for _, k in kinds(sent)].count("firing"), 24)
    _eq([k for _, k in kinds(sent)].count("resolved"), 23)
    _eq(len(sent), 47)


def test_a_firing_alert_that_flaps_is_not_resolved_and_not_repeated():
    "Fired, then alternating clear and breaching windows: no two clear windows in a row, so it stays firing, silently."
    stream = [report(10), report(10)] + [report(4 if i % 2 == 0 else 10) for i in range(20)] + [report(0), report(0)]
    sent, state = run(stream, QUIET)
    _eq(kinds(sent), [(1, "firing"), (23, "resolved")])
    _eq(state["alerts"], {})


def gradual() -> list:
    "Drift grows by one feature an hour to 20 of 50 (share 0.40), holds, then recedes two features an hour to none."
    rising = [report(i) for i in range(21)]  # share i/50: 0.10 first reached at window 5
    holding = [report(20) for _ in range(10)]  # windows 21..30
    receding = [report(max(20 - 2 * k, 0)) for k in range(1, 18)]  # windows 31..47: 0.36, 0.32, ..., 0.08 at 38, 0.04 at 39
    return rising + holding + receding


def test_a_gradual_drift_fires_once_and_resolves_once():
    "Breaching from window 5: fires at 6 (second breach); clear from window 38: resolved at 39. One of each."
    sent, state = run(gradual(), QUIET)
    _eq(kinds(sent), [(6, "firing"), (39, "resolved")])
    _eq([(n.severity, n.top) for _, n in sent], [("report", ("f00", "f01", "f02", "f03", "f04")), ("report", ("f00", "f01"))])
    _eq(sent[0][1].summary.split(";")[0], "v3: 6 of 50 features drifted (share 0.12 >= 0.10): f00, f01, f02, f03, f04 and 1 more")
    _eq(state["alerts"], {})
    _eq(run(gradual(), replace(QUIET, resolve=False))[0], sent[:1])  # resolve off: the alert resolves silently


def test_a_gradual_drift_is_repeated_once_per_cooldown_while_it_lasts():
    "The same stream with the default 6 h cooldown: re-sent at 12, 18, 24, 30 and 36 (breaching windows 6 h apart)."
    sent, _ = run(gradual())
    _eq(kinds(sent), [(6, "firing"), (12, "firing"), (18, "firing"), (24, "firing"), (30, "firing"), (36, "firing"), (39, "resolved")])


def test_cooldown_over_a_long_firing_stretch():
    "72 hourly breaching windows: fired at 1, then once per 6 h: 12 notifications; with 1 h cooldown, 71."
    stretch = [report(30) for _ in range(72)]
    sent, _ = run(stretch)
    _eq([i for i, _ in sent], [1, 7, 13, 19, 25, 31, 37, 43, 49, 55, 61, 67])
    _eq(len(run(stretch, replace(POLICY, cooldown="1h"))[0]), 71)
    _eq(len(run(stretch, replace(POLICY, cooldown="5h"))[0]), 1 + 70 // 5)
    # windows every 20 minutes: a 6 h cooldown is 18 windows
    _eq([i for i, _ in run(stretch, every=1200)[0]], [1, 19, 37, 55])


def test_small_windows_count_for_nothing():
    "Windows below alerts.min_rows (100) neither fire, nor break a streak, nor resolve, nor re-notify."
    breach, small_breach, small_clear = report(10), report(10, rows=50), report(0, rows=50)
    _eq(run([small_breach] * 10)[0], [])
    _eq(kinds(run([breach, small_clear, small_clear, breach])[0]), [(3, "firing")])
    _eq(kinds(run([breach, small_breach, breach])[0]), [(2, "firing")])
    sent, state = run([breach, breach] + [small_clear] * 10, QUIET)
    _eq((kinds(sent), firing_alerts(state)), ([(1, "firing")], {"data_drift/3": "report"}))
    sent, _ = run([breach, breach] + [small_breach] * 10 + [breach])  # 12 h of small windows: no re-notification from them
    _eq(kinds(sent), [(1, "firing"), (12, "firing")])
    _eq(run([too_small()] * 10 + [breach, breach])[0][0][0], 11)  # not enough rows: breached None, ignored


def test_one_grouped_alert_for_40_drifted_features():
    "40 of 50 features drift: one data-drift notification naming the five most drifted and counting 35 more."
    sent, _ = run([report(40), report(40)], QUIET)
    _eq(len(sent), 1)
    note = sent[0][1]
    _eq((note.alert, note.top), ("data_drift", ("f00", "f01", "f02", "f03", "f04")))
    assert note.summary.startswith("v3: 40 of 50 features drifted (share 0.80 >= 0.10): f00, f01, f02, f03, f04 and 35 more;"), note.summary
    _eq(len(run([report(40)] * 2, replace(QUIET, group_top=2))[0][0][1].top), 2)


def test_alerts_are_kept_per_alert_and_version():
    "v3 drifts while v4 is stable; v4's performance drops: each (alert, version) has its own streak and notifications."
    windows = [[report(10, version=3), report(0, version=4, dropped=True, estimated=0.80, realized=None)] for _ in range(3)]
    sent, state = run(windows, QUIET)
    _eq(sorted((i, n.alert, n.version, n.severity) for i, n in sent),
        [(1, "data_drift", 3, "report"), (1, "performance", 4, "page")])
    _eq(firing_alerts(state), {"data_drift/3": "report", "performance/4": "page"})
    sent, state = run([[report(0, version=3), report(0, version=4)]] * 2, QUIET, state=state)
    _eq(sorted((i, n.kind, n.alert, n.version) for i, n in sent), [(1, "resolved", "data_drift", 3), (1, "resolved", "performance", 4)])


# ---------------------------------------------------------------- severity follows impact

def test_drift_with_intact_performance_is_reported_not_paged():
    sent, _ = run([report(25, dropped=False, estimated=0.95, realized=0.94)] * 30)
    _eq({n.severity for _, n in sent}, {"report"})
    _eq({n.alert for _, n in sent}, {"data_drift"})


def test_a_performance_drop_pages_and_escalates_the_drift_alert_at_once():
    "Drift fires as a report; when the estimated metric drops, the performance alert pages and the drift alert is re-sent as page."
    stream = [report(25)] * 3 + [report(25, dropped=True, estimated=0.81, realized=None)] * 2
    sent, state = run(stream)
    _eq([(i, n.alert, n.severity) for i, n in sent],
        [(1, "data_drift", "report"), (3, "data_drift", "page"), (4, "performance", "page")])
    _eq(firing_alerts(state), {"data_drift/3": "page", "performance/3": "page"})
    _eq(sent[2][1].summary, "v3: roc_auc dropped: estimated 0.810 [0.780, 0.840] (n=400), realized: not enough labels yet (3 < 100) vs 0.960 held out")


def test_unknown_performance_does_not_fire_or_resolve_and_drift_then_pages():
    "No estimate and no labels: the performance signal is unknown (ignored) and feature drift pages: the safe side wins."
    unknown = report(25, dropped=None, estimated=None, realized=None)
    drift, performance = signals(unknown, POLICY)
    _eq((drift.breached, drift.severity, performance.breached), (True, "page", None))
    _eq(performance.summary, "v3: performance unknown (no estimate and no labels)")
    sent, state = run([report(0, dropped=True, estimated=0.8)] * 2 + [unknown] * 5, QUIET)
    _eq([(i, n.alert) for i, n in sent], [(1, "performance"), (3, "data_drift")])
    _eq(firing_alerts(state), {"performance/3": "page", "data_drift/3": "page"})


def severities(reports: list, policy: AlertSettings = POLICY, alert: str = "data_drift") -> list:
    "The alert's firing severity after each window (None while it is not firing)."
    state, out = None, []
    for i, r in enumerate(reports):
        state, _ = step(policy, state, signals(r, policy), now=i * HOUR)
        state = json.loads(json.dumps(state))
        out.append(firing_alerts(state).get(f"{alert}/3"))
    return out


def test_a_one_window_performance_dip_pages_then_the_drift_alert_goes_back_to_a_report():
    "Drift for 24 hourly windows with one performance dip at window 3: paged at 3, a report again from 5 (two calm windows)."
    stream = [report(25)] * 3 + [report(25, dropped=True, estimated=0.81, realized=None)] + [report(25)] * 20
    _eq(severities(stream), [None] + ["report"] * 2 + ["page"] * 2 + ["report"] * 19)
    sent, state = run(stream)
    _eq([(i, n.alert, n.severity) for i, n in sent],  # the de-escalation is not sent on its own; the cooldown's reminders carry it
        [(1, "data_drift", "report"), (3, "data_drift", "page"), (9, "data_drift", "report"), (15, "data_drift", "report"),
         (21, "data_drift", "report")])
    _eq(firing_alerts(state), {"data_drift/3": "report"})
    got = samples(gauges_text({"versions": []}, state, now=0.0))
    _eq([k for k in got if k[0] == "mlops_nb_alert_firing"],
        [("mlops_nb_alert_firing", (("alert", "data_drift"), ("severity", "report"), ("version", "3")))])


def test_a_severity_that_flaps_keeps_the_page_and_sends_no_more_than_the_cooldown_allows():
    "Dips every other window: never two calm windows in a row, so it stays a page, re-sent only every 6 h."
    dip = report(25, dropped=True, estimated=0.81, realized=None)
    stream = [report(25)] * 3 + [dip if i % 2 == 0 else report(25) for i in range(21)]
    _eq(severities(stream), [None] + ["report"] * 2 + ["page"] * 21)
    sent, _ = run(stream)
    _eq([(i, n.severity) for i, n in sent if n.alert == "data_drift"], [(1, "report"), (3, "page"), (9, "page"), (15, "page"), (21, "page")])


def test_a_new_page_after_a_de_escalation_is_sent_at_once():
    dip = report(25, dropped=True, estimated=0.81, realized=None)
    stream = [report(25)] * 2 + [dip] + [report(25)] * 2 + [dip] + [report(25)] * 3
    _eq(severities(stream, QUIET), [None, "report", "page", "page", "report", "page", "page", "report", "report"])
    sent, _ = run(stream, QUIET)
    _eq([(i, n.severity) for i, n in sent if n.alert == "data_drift"], [(1, "report"), (2, "page"), (5, "page")])
    _eq(severities(stream, replace(QUIET, consecutive=1)), ["report", "report", "page", "report", "report", "page", "report", "report", "report"])


def test_a_state_written_before_the_calm_count_is_read():
    old = {"format": 1, "alerts": {"data_drift/3": {"alert": "data_drift", "version": 3, "firing": True, "streak": 0,
                                                    "since": 0.0, "notified": 0.0, "severity": "page"}}}
    state, sent = step(POLICY, old, signals(report(25), POLICY)[:1], now=HOUR)
    _eq((sent, state["alerts"]["data_drift/3"]["calm"], firing_alerts(state)), ([], 1, {"data_drift/3": "page"}))
    bad = {"alerts": {"data_drift/3": {**old["alerts"]["data_drift/3"], "calm": "1"}}}
    _eq(step(POLICY, bad, signals(report(25), POLICY)[:1], now=HOUR)[0]["alerts"]["data_drift/3"]["firing"], False)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([True, True, False, None]), st.sampled_from([500, 50]), st.sampled_from(["report", "page"])),
                max_size=40), st.integers(1, 3))
def test_severity_is_the_highest_of_the_last_breaching_windows(stream, consecutive):
    """While an alert fires, its severity is the highest of its last `consecutive` counted breaching windows since it
    fired; with no cooldown repeats, a notification while firing is exactly a rise to page."""
    policy = replace(QUIET, consecutive=consecutive)
    state, since_fired = {}, []
    for i, (breached, rows, severity) in enumerate(stream):
        before = firing_alerts(state).get("data_drift/3")
        state, sent = step(policy, state, [Signal("data_drift", 3, breached, severity, None, 0.1, rows, "s")], now=i * HOUR)
        state = json.loads(json.dumps(state))
        after = firing_alerts(state).get("data_drift/3")
        counted = breached is not None and rows >= policy.min_rows
        if after is None: since_fired = []
        elif counted and breached: since_fired.append(severity)
        if after is not None: _eq(after, max(since_fired[-consecutive:], key=("report", "page").index))
        if before is not None and after is not None:
            _eq([(n.kind, n.severity) for n in sent], [("firing", "page")] if (before, after) == ("report", "page") else [])


def test_multivariate_and_prediction_drift_are_reported():
    r = {**report(0, multivariate=0.3), "prediction": {**column("prediction", 0.2, True), "kind": "categorical"}}
    got = signals(r, POLICY)
    _eq([(s.alert, s.breached, s.severity) for s in got],
        [("data_drift", False, "report"), ("performance", False, "page"), ("multivariate_drift", True, "report"),
         ("prediction_drift", True, "report")])
    sent, _ = run([r, r], QUIET)
    _eq(sorted((n.alert, n.severity) for _, n in sent), [("multivariate_drift", "report"), ("prediction_drift", "report")])


def test_not_enough_rows_gives_unknown_signals():
    got = signals(too_small(), POLICY)
    _eq([(s.alert, s.breached, s.rows, s.summary) for s in got],
        [("data_drift", None, 12, "v3: not enough rows (12 < 30)"), ("performance", None, 12, "v3: not enough rows (12 < 30)")])
    mv = {**too_small(), "multivariate": {"statistic": None, "threshold": 0.1, "drifted": None, "n": 12, "reason": "not enough rows (12 < 30)"}}
    _eq(signals(mv, POLICY)[2].breached, None)


def test_a_zero_share_never_breaches_even_with_a_zero_threshold():
    _eq(signals(report(0), replace(POLICY, drift_share=0.0))[0].breached, False)
    _eq(signals(report(1), replace(POLICY, drift_share=0.0))[0].breached, True)


def test_signals_read_the_report_dataclass_like_its_dict():
    drift = pytest.importorskip("mlops_nb.drift")
    if not hasattr(drift, "VersionReport"): pytest.skip("no VersionReport yet")
    d = report(12, multivariate=0.05)
    _eq(signals(drift.VersionReport.from_dict(d), POLICY), signals(d, POLICY))


# ---------------------------------------------------------------- the state

def test_a_state_that_cannot_be_read_starts_again():
    signal = signals(report(10), POLICY)[:1]
    for bad in (None, {}, [], "x", {"alerts": []}, {"alerts": {"data_drift/3": "garbage"}},
                {"alerts": {"data_drift/3": {"firing": "yes", "streak": 1, "severity": "report"}}},
                {"alerts": {"data_drift/3": {"firing": True, "streak": 0, "severity": "urgent"}}}):
        state, sent = step(POLICY, bad, signal, now=0)
        _eq((sent, state["alerts"]["data_drift/3"]["streak"], state["alerts"]["data_drift/3"]["firing"]), ([], 1, False))


def test_step_does_not_change_its_input_state():
    state, _ = step(POLICY, {}, signals(report(10), POLICY), now=0)
    frozen = json.dumps(state, sort_keys=True)
    step(POLICY, state, signals(report(10), POLICY), now=HOUR)
    _eq(json.dumps(state, sort_keys=True), frozen)


windows = st.lists(st.tuples(st.sampled_from([True, False, None]), st.sampled_from([500, 50]), st.sampled_from([3, 4])),
                   max_size=40)


@settings(max_examples=150, deadline=None)
@given(windows, st.integers(1, 4), st.sampled_from(["1000w", "3h"]), st.booleans())
def test_policy_properties(stream, consecutive, cooldown, resolve):
    """Over any stream: the JSON round trip changes nothing; ignored windows (small or unknown) can be dropped without
    changing anything; an alert fires only after `consecutive` counted breaches in a row and resolves only after as
    many clear windows; with no cooldown repeats, firing and resolved alternate, starting with firing."""
    policy = replace(POLICY, consecutive=consecutive, cooldown=cooldown, resolve=resolve)
    def notes(items, round_trip):
        state, out = {}, []
        for i, (breached, rows, version) in items:
            state, sent = step(policy, state, [Signal("data_drift", version, breached, "report", None, 0.1, rows, "s")], now=i * HOUR)
            if round_trip: state = json.loads(json.dumps(state))
            out += [(i, n.kind, n.version) for n in sent]
        return out
    indexed = list(enumerate(stream))
    sent = notes(indexed, True)
    _eq(notes(indexed, False), sent)
    counted = [(i, w) for i, w in indexed if w[0] is not None and w[1] >= policy.min_rows]
    _eq(notes(counted, True), sent)
    for version in (3, 4):
        mine = [(i, w[0]) for i, w in counted if w[2] == version]
        was_firing = False
        for i, kind, _ in (n for n in sent if n[2] == version):
            before = [b for j, b in mine if j <= i][-consecutive:]
            if kind == "resolved" or not was_firing: _eq(before, [kind == "firing"] * consecutive)
            else: _eq(before[-1], True)
            if cooldown == "1000w" and resolve: _eq(kind, "resolved" if was_firing else "firing")
            was_firing = kind == "firing" if resolve else True
        if not resolve: _eq({k for _, k, v in sent if v == version} <= {"firing"}, True)


# ---------------------------------------------------------------- sinks: the log and a webhook

class Receiver:
    "A real HTTP receiver on 127.0.0.1 in a thread: records each POST; answers `status` after `delay` seconds."
    def __init__(self, status: int = 200, delay: float = 0.0):
        self.posts, self.status, self.delay = [], status, delay
        outer = self
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append({"path": self.path, "type": self.headers["Content-Type"], "body": body})
                time.sleep(outer.delay)
                self.send_response(outer.status); self.end_headers()
            def log_message(self, *args): pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def notifications() -> list[Notification]:
    sent, _ = run([report(40), report(40, dropped=True, estimated=0.8)], QUIET)
    return [n for _, n in sent]


def test_the_webhook_gets_one_json_post_with_every_notification_and_no_feature_values():
    notes = notifications()
    _eq([(n.alert, n.severity) for n in notes], [("data_drift", "page")])
    lines = []
    with Receiver() as receiver:
        url = f"http://127.0.0.1:{receiver.port}/hooks/alerts"
        _eq(deliver(notes, url, log=lines.append), [])
    _eq(len(receiver.posts), 1)
    post = receiver.posts[0]
    _eq((post["path"], post["type"]), ("/hooks/alerts", "application/json"))
    body = json.loads(post["body"])
    _eq(sorted(body), ["notifications", "source", "text"])
    _eq((body["source"], body["text"]), ("mlops-nb", "\n".join(lines)))
    _eq(body["notifications"], [n.to_dict() for n in notes])
    _eq(body["notifications"][0]["top"], ["f00", "f01", "f02", "f03", "f04"])
    assert PLANTED not in post["body"].decode(), "a feature value left the machine"
    _eq(lines, [notes[0].line()])
    assert lines[0].startswith("mlops-nb alert FIRING [page] data_drift v3: 40 of 50 features drifted"), lines[0]


def test_a_failing_webhook_gives_an_error_and_never_raises_nor_shows_credentials():
    notes = notifications()
    secret = "hook-user:s3cret-pass"
    with Receiver(status=500) as receiver:
        url = f"http://{secret}@127.0.0.1:{receiver.port}/services/T0KEN-IN-PATH?key=QUERY-SECRET"
        _eq(deliver(notes, url, log=None), [f"webhook http://127.0.0.1:{receiver.port} answered 500"])
        _eq(len(receiver.posts), 1)
    with Receiver(delay=2.0) as slow:
        errors = deliver(notes, f"http://127.0.0.1:{slow.port}/", log=None, timeout=0.3)
    _eq(errors, [f"webhook http://127.0.0.1:{slow.port} failed: ReadTimeout"])
    down = Receiver()
    down.server.server_close()  # the port is free again: nobody listens
    errors = deliver(notes, f"http://{secret}@127.0.0.1:{down.port}/T0KEN-IN-PATH", log=None)
    _eq(errors, [f"webhook http://127.0.0.1:{down.port} failed: ConnectError"])
    for bad in ("not a url", "ftp://files.example/x", "http://[::1"):
        _eq(len(deliver(notes, bad, log=None)), 1)
    for text in errors: assert "s3cret" not in text and "T0KEN" not in text and "QUERY" not in text, text


def test_nothing_to_send_posts_nothing():
    with Receiver() as receiver:
        _eq(deliver([], f"http://127.0.0.1:{receiver.port}/", log=None), [])
    _eq(receiver.posts, [])
    lines = []
    _eq(deliver(notifications(), None, log=lines.append), [])  # no webhook configured: the log only
    _eq(len(lines), 1)


def test_the_webhook_url_comes_only_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLOPS_NB_ALERT_WEBHOOK", "http://127.0.0.1:9/x")
    _eq(webhook_url(POLICY), "http://127.0.0.1:9/x")
    _eq(webhook_url(replace(POLICY, webhook_env="MY_HOOK")), None)
    monkeypatch.setenv("MY_HOOK", "")
    _eq(webhook_url(replace(POLICY, webhook_env="MY_HOOK")), None)
    _eq(webhook_url(POLICY, {"MLOPS_NB_ALERT_WEBHOOK": "https://hooks.example/a"}), "https://hooks.example/a")


# ---------------------------------------------------------------- Prometheus gauges, rules and the dashboard

def samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_gauges_of_a_monitoring_result():
    two = {"created": "2026-03-01T12:00:00+00:00", "window": {"source": "log"}, "problems": [],
           "versions": [report(3, features=4, multivariate=0.25, realized=None), too_small(version=4)]}
    two["versions"][0]["prediction"] = {**column("prediction", 0.05, False)}
    state = {"format": 1, "alerts": {"data_drift/3": {"alert": "data_drift", "version": 3, "firing": True, "streak": 0,
                                                      "since": 0.0, "notified": 0.0, "severity": "report"},
                                     "performance/4": {"alert": "performance", "version": 4, "firing": False, "streak": 1,
                                                       "since": None, "notified": None, "severity": "report"}}}
    text = gauges_text(two, state)
    got = samples(text)
    v3 = (("version", "3"),)
    _eq(got[("mlops_nb_drift_share", v3)], 0.75)
    _eq(got[("mlops_nb_drift_score", (("feature", "f00"), ("test", "jensen_shannon"), ("version", "3")))], 0.9)
    _eq(got[("mlops_nb_feature_drifted", (("feature", "f03"), ("version", "3")))], 0.0)
    _eq(got[("mlops_nb_multivariate_drift", v3)], 0.25)
    _eq(got[("mlops_nb_prediction_drift", v3)], 0.05)
    _eq(got[("mlops_nb_performance", (("kind", "estimated"), ("metric", "roc_auc"), ("version", "3")))], 0.94)
    _eq(got[("mlops_nb_performance", (("kind", "reference"), ("metric", "roc_auc"), ("version", "3")))], 0.96)
    _eq(got[("mlops_nb_performance_dropped", (("metric", "roc_auc"), ("version", "3")))], 0.0)
    _eq(got[("mlops_nb_monitor_rows", (("version", "4"),))], 12.0)
    _eq(got[("mlops_nb_monitor_last_run_timestamp_seconds", ())], 1772366400.0)
    _eq(got[("mlops_nb_alert_firing", (("alert", "data_drift"), ("severity", "report"), ("version", "3")))], 1.0)
    # unknown values are left out, never NaN: v4 has no drift share; v3 no realized metric; v4's pending alert is not firing
    _eq(len(got), (4 + 4 + 1 + 1 + 1 + 2 + 1 + 1) + (1 + 1) + 1 + 1)  # v3, v4, the run's time, one firing alert
    assert "NaN" not in text
    _eq({name for name, _ in got}, set(GAUGES))
    _eq(gauges_text(two, firing_alerts(state)), text)  # the firing map or the whole state
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False)
    _eq((p.returncode, p.stdout + p.stderr), (0, ""))


def test_gauges_of_an_empty_result_and_an_unreadable_time():
    _eq(samples(gauges_text({"versions": []}, None, now=1000.0)), {("mlops_nb_monitor_last_run_timestamp_seconds", ()): 1000.0})
    _eq(samples(gauges_text({"created": "yesterday", "versions": []}, {}, now=5.0)), {("mlops_nb_monitor_last_run_timestamp_seconds", ()): 5.0})
    before = time.time()
    stamp = samples(gauges_text({"versions": []}))[("mlops_nb_monitor_last_run_timestamp_seconds", ())]
    assert before <= stamp <= time.time(), stamp


def rule_names(path: Path = RULES) -> dict:
    return {r["alert"]: r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]}


def test_promtool_checks_and_unit_tests_the_monitoring_rules():
    p = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run([PROMTOOL, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0 and "SUCCESS" in p.stdout, p.stdout + p.stderr
    rules = rule_names()
    monitoring = {"MlopsNbMonitorAlertFiring", "MlopsNbDataDrift", "MlopsNbPerformanceDrop", "MlopsNbMultivariateDrift", "MlopsNbMonitoringStale"}
    assert monitoring <= set(rules), sorted(monitoring - set(rules))
    _eq(rules["MlopsNbPerformanceDrop"]["labels"]["severity"], "page")
    _eq({r["alertname"] for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for r in t["alert_rule_test"]}, monitoring)


def test_the_dashboard_has_a_drift_row_on_the_gauges(tmp_path):
    dash = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: p for p in dash["panels"]}
    _eq(panels["Drift and performance (mlops-nb monitor)"]["type"], "row")
    _eq(len({p["id"] for p in dash["panels"]}), len(dash["panels"]))
    for title, gauge in (("Drift share", "mlops_nb_drift_share"), ("Drift score per feature", "mlops_nb_drift_score"),
                         ("Performance: estimated vs realized", "mlops_nb_performance")):
        assert gauge in panels[title]["targets"][0]["expr"], title
    drift_panels = [p for p in dash["panels"] if "mlops_nb_" in json.dumps(p.get("targets")) and
                    any(g in json.dumps(p["targets"]) for g in GAUGES)]
    _eq(len(drift_panels), 7)
    exprs = [t["expr"] for p in drift_panels for t in p["targets"]]
    rules = {"groups": [{"name": "panels", "rules": [{"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    p = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0 and f"SUCCESS: {len(exprs)} rules found" in p.stdout, p.stdout + p.stderr


# ---------------------------------------------------------------- the same policy on windows scored by the drift module

@pytest.fixture(scope="module")
def scored():
    """A model on 20 numeric features (5 informative) with its reference profile, and `window(k, seed)`: the report of
    2,000 fresh rows where the first k *uninformative* features are shifted by half a standard deviation."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    from mlops_nb.config import MonitorSettings
    from mlops_nb.contract import ColumnSpec, Contract
    from mlops_nb.drift import score_window
    from mlops_nb.prepare import build_preprocessor
    from mlops_nb.profile import WindowAccumulator, build_profile
    from mlops_nb.train import model_pipeline

    X, y = make_classification(n_samples=60_000, n_features=20, n_informative=5, n_redundant=0, shuffle=False, random_state=0)
    names = [f"x{i:02d}" for i in range(20)]
    order = np.random.default_rng(0).permutation(len(y))  # shuffle=False keeps the features in order but the rows by class
    frame = pd.DataFrame(X[order], columns=names).assign(y=np.where(y[order] == 1, "yes", "no"))
    contract = Contract(tuple(ColumnSpec(n, "numeric") for n in names) + (ColumnSpec("y", "categorical", role="target", categories=("no", "yes")),), "y")
    train, held_out, pool = frame.iloc[:10_000], frame.iloc[10_000:14_000], frame.iloc[14_000:].reset_index(drop=True)
    model = model_pipeline(build_preprocessor(contract, train), LogisticRegression(max_iter=1000)).fit(train[names], train["y"])
    profile = build_profile(train, held_out, model, contract, "yes", name="m", version=7)
    noise = names[5:]  # shuffle=False: the informative features come first
    settings_ = MonitorSettings(multivariate=False)

    def window(k: int, seed: int) -> dict:
        rows = pool.sample(2000, random_state=seed).copy()
        for name in noise[:k]: rows[name] += 0.5 * train[name].std()
        acc = WindowAccumulator(profile)
        proba = model.predict_proba(rows[names])
        acc.add(rows, model.classes_[proba.argmax(axis=1)], proba, rows["y"])
        return score_window(profile, acc.counts(), settings_, "accuracy").to_dict()
    return window


def test_streams_of_scored_windows(scored):
    """Real windows through the drift module: stable (no feature shifted), flapping (1 then 3 of 20 features: share
    0.05 / 0.15) and gradual (one more feature shifted per window up to 8, then back): exact notification counts."""
    stable = [scored(0, seed) for seed in range(12)]
    _eq({(r["verdict"], r["drift_share"], r["performance"]["dropped"]) for r in stable}, {("no drift", 0.0, False)})
    _eq(run(stable)[0], [])
    flapping = [scored(1 if i % 2 == 0 else 3, 100 + i) for i in range(12)]
    _eq([round(r["drift_share"], 2) for r in flapping[:2]], [0.05, 0.15])
    _eq(run(flapping)[0], [])
    shifts = list(range(9)) + list(range(7, -1, -1)) + [0, 0]  # share k/20 >= 0.1 from k = 2: windows 2..14
    gradual = [scored(k, 200 + i) for i, k in enumerate(shifts)]
    _eq([len(r["drifted"]) for r in gradual], shifts)
    sent, state = run(gradual, QUIET)
    _eq([(i, n.kind, n.alert, n.severity, n.version) for i, n in sent], [(3, "firing", "data_drift", "report", 7), (16, "resolved", "data_drift", "report", 7)])
    _eq(sorted(sent[0][1].top), ["x05", "x06", "x07"])  # all shifted alike: ranked by their measured distance
    _eq(state["alerts"], {})
