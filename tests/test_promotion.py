"""Promotion is compare-and-set, every alias move is audited, and `promote` / `rollback` / `models` behave at the command line.

The registry is exercised directly (small models logged into throw-away stores), without pipeline runs: two processes
race to register against one SQLite store, and the `mlops-nb` commands run in-process against copies of one project.
"""
from __future__ import annotations

import contextlib
import getpass
import io
import json
import multiprocessing
import shutil
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastcore.test import test_eq as _eq
from hypothesis import given
from hypothesis import strategies as st

from mlops_nb.config import UsageError

MODEL = "race"


def _store(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _logged_models(uri: str, folder: Path, n: int) -> list:
    "Log `n` small fitted models into the store; their `models:/m-...` URIs."
    import mlflow
    from sklearn.linear_model import LogisticRegression
    mlflow.set_tracking_uri(uri)
    try:
        exp = mlflow.create_experiment(f"models-{time.time_ns()}", artifact_location=(folder / "artifacts").as_uri())
        uris = []
        for i in range(n):
            with mlflow.start_run(experiment_id=exp):
                model = LogisticRegression(C=1.0 + i).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
                uris.append(mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"]).model_uri)
    finally:
        mlflow.set_tracking_uri(None)  # it also set MLFLOW_TRACKING_URI, which would send the commands to this store
    return uris


def _register_after_barrier(uri, model_uri, barrier, results):
    "One racing process: wait for the other, then register against the stale champion v1."
    import os
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from mlflow.tracking import MlflowClient

    from mlops_nb.registry import register_version
    client = MlflowClient(uri)
    barrier.wait(timeout=120)
    registration = register_version(client, MODEL, model_uri, gate_passed=True, compared_with=1, tolerance_spent=0.004)
    results.put(registration.to_dict())


@pytest.fixture(scope="module")
def race(tmp_path_factory):
    "Champion v1, then two processes started together that both compared with v1 and both passed their gate."
    from mlflow.tracking import MlflowClient

    from mlops_nb.registry import register_version
    folder = tmp_path_factory.mktemp("race")
    uri = _store(folder)
    first, *racers = _logged_models(uri, folder, 3)
    register_version(MlflowClient(uri), MODEL, first, gate_passed=True, compared_with=None)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_register_after_barrier, args=(uri, m, barrier, results)) for m in racers]
    for p in procs: p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs: p.join(timeout=60)
    _eq([p.exitcode for p in procs], [0, 0])
    return uri, folder, sorted(outcomes, key=lambda r: "champion" not in r["aliases"])


def test_two_racing_runs_exactly_one_becomes_champion(race):
    from mlflow.tracking import MlflowClient
    uri, _, (winner, loser) = race
    _eq(([winner["aliases"], loser["aliases"]]), [["champion", "challenger"], ["challenger"]])
    _eq((winner["previous_champion"], loser["previous_champion"]), (1, winner["version"]))
    _eq(sorted([winner["version"], loser["version"]]), [2, 3])
    aliases = MlflowClient(uri).get_registered_model(MODEL).aliases
    _eq({a: int(v) for a, v in aliases.items()}, {"champion": winner["version"], "challenger": loser["version"]})


def test_the_loser_says_why_in_its_registration_and_tags(race):
    from mlflow.tracking import MlflowClient
    uri, _, (winner, loser) = race
    expected = (f"not promoted: its gate compared it with v1, but @champion is now v{winner['version']} (another run changed it "
                f"in the meantime), so it stays @challenger; run the pipeline again to compare it with v{winner['version']}, "
                f"or promote it with `mlops-nb promote v{loser['version']}`")
    _eq((winner["note"], loser["note"]), (None, expected))
    client = MlflowClient(uri)
    lost, won = client.get_model_version(MODEL, str(loser["version"])).tags, client.get_model_version(MODEL, str(winner["version"])).tags
    _eq((lost["gate"], lost["promotion_note"], "tolerance_spent" in lost), ("passed", expected, False))
    _eq((won.get("promotion_note"), won["tolerance_spent"]), (None, "0.004"))


def test_the_race_is_in_the_audit_trail_once(race):
    from mlflow.tracking import MlflowClient

    from mlops_nb.registry import audit_trail
    uri, _, (winner, loser) = race
    trail = audit_trail(MlflowClient(uri), MODEL)
    _eq([(c.from_version, c.to_version, c.source) for c in trail if c.alias == "champion"], [(None, 1, "gate"), (1, winner["version"], "gate")])
    _eq([(c.from_version, c.to_version) for c in trail if c.alias == "challenger"], [(None, 1), (1, winner["version"]), (winner["version"], loser["version"])])
    _eq({c.who for c in trail}, {getpass.getuser()})


def test_the_lock_file_sits_beside_the_sqlite_store(race):
    _, folder, _ = race
    _eq((folder / "mlflow.db.aliases.lock").exists(), True)


def _register_stale(uri, model_uri, results):
    import os
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from mlflow.tracking import MlflowClient

    from mlops_nb.registry import register_version
    start = time.monotonic()
    registration = register_version(MlflowClient(uri), MODEL, model_uri, gate_passed=True, compared_with=1)
    results.put((registration.to_dict(), time.monotonic() - start))


def test_a_registration_waits_for_the_lock_and_then_sees_the_new_champion(tmp_path):
    "While another process holds the alias lock and promotes v2, a run that compared with v1 must wait, then stay challenger."
    from mlflow.tracking import MlflowClient

    from mlops_nb.registry import alias_lock, champion_version, move_alias, register_version
    uri = _store(tmp_path)
    models = _logged_models(uri, tmp_path, 3)
    client = MlflowClient(uri)
    register_version(client, MODEL, models[0], gate_passed=True, compared_with=None)
    register_version(client, MODEL, models[1], gate_passed=False, compared_with=1)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    with alias_lock(uri):
        proc = ctx.Process(target=_register_stale, args=(uri, models[2], results))
        proc.start()
        deadline = time.monotonic() + 120
        while len(client.search_model_versions(f"name = '{MODEL}'")) < 3:  # its version exists: it is at the lock now
            assert time.monotonic() < deadline, "the racing process never registered its version"
            time.sleep(0.1)
        time.sleep(1.0)
        move_alias(client, MODEL, "champion", 1, 2, "another run's promotion", "promote")
    registration, seconds = results.get(timeout=120)
    proc.join(timeout=60)
    _eq((registration["version"], registration["aliases"], registration["previous_champion"]), (3, ["challenger"], 2))
    assert seconds > 1.0, seconds
    _eq(champion_version(client, MODEL), 2)


def test_a_gate_that_does_not_name_its_champion_never_promotes(tmp_path):
    from mlflow.tracking import MlflowClient

    from mlops_nb.registry import champion_version, register_version
    uri = _store(tmp_path)
    (model,) = _logged_models(uri, tmp_path, 1)
    registration = register_version(MlflowClient(uri), MODEL, model, gate_passed=True, compared_with="not recorded")
    _eq((registration.aliases, registration.note),
        (("challenger",), "not promoted: the gate did not record which champion it compared with ('not recorded'), so it stays @challenger"))
    _eq(champion_version(MlflowClient(uri), MODEL), None)


def test_lock_path_only_for_local_stores():
    from mlops_nb.registry import lock_path
    _eq(lock_path("sqlite:////srv/p/mlflow.db"), Path("/srv/p/mlflow.db.aliases.lock"))
    _eq(lock_path("file:///srv/mlruns"), Path("/srv/mlruns/.aliases.lock"))
    _eq([lock_path(u) for u in ("http://mlflow:5000", "https://u:p@mlflow.example.com", "postgresql://db/mlflow", "sqlite:///:memory:")],
        [None, None, None, None])


# --- the commands, on copies of one project ------------------------------------------------------------------------

def call(*argv) -> tuple:
    from mlops_nb.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def template(tmp_path_factory, breast_cancer_frame):
    "A project whose model has v1 (champion through its gate), v2 (failed its gate) and v3 (passed, lost its race to v1)."
    from mlflow.tracking import MlflowClient

    from mlops_nb.registry import register_version
    root = tmp_path_factory.mktemp("cli")
    breast_cancer_frame.to_csv(root / "bc.csv", index=False)
    _eq(call("init", root / "proj", "--data", root / "bc.csv", "--target", "diagnosis", "--name", "proj")[0], 0)
    uri = f"sqlite:///{root / 'proj' / 'mlflow.db'}"
    models = _logged_models(uri, root / "proj", 3)
    client = MlflowClient(uri)
    for model, passed, compared in zip(models, (True, False, True), (None, 1, None)):
        register_version(client, "proj", model, passed, compared)
    return root / "proj"


@pytest.fixture
def project(template, tmp_path):
    "A private copy of the template project (its store included), so that tests do not depend on each other."
    shutil.copytree(template, tmp_path / "proj")
    return tmp_path / "proj"


def _champion(project: Path) -> int | None:
    from mlflow.tracking import MlflowClient

    from mlops_nb.registry import champion_version
    return champion_version(MlflowClient(f"sqlite:///{project / 'mlflow.db'}"), "proj")


def _audit(project: Path) -> list:
    code, out, err = call("audit", "--project", project, "--json")
    _eq((code, err), (0, ""))
    return json.loads(out)


def test_promote_a_version_that_lost_its_race(project):
    before = datetime.now(UTC) - timedelta(seconds=1)
    code, out, err = call("promote", "v3", "--project", project, "--reason", "passed its gate; lost only the race")
    _eq((code, err, out.splitlines()[0]), (0, "", "'proj' @champion: v1 -> v3"))
    _eq(_champion(project), 3)
    last = _audit(project)[-1]
    at = datetime.fromisoformat(last.pop("at"))
    assert before <= at <= datetime.now(UTC), at
    _eq(last, {"alias": "champion", "from_version": 1, "to_version": 3, "why": "passed its gate; lost only the race",
               "source": "promote", "run_id": None, "who": getpass.getuser()})


@pytest.mark.parametrize("argv, message", [
    (["promote", "v2"], "error: 'proj' v2 failed its gate: promote it anyway with --force --reason TEXT"),
    (["promote", "v2", "--force"], "error: --force needs --reason TEXT: say why the gate is overridden"),
    (["promote", "v2", "--force", "--reason", "   "], "error: --force needs --reason TEXT: say why the gate is overridden"),
    (["promote", "v7"], "error: 'proj' has no version 7: its versions are v1, v2, v3"),
    (["promote", "seven"], "error: 'seven' is not a model version: write it as v3 or 3"),
    (["promote", "v1"], "error: 'proj' v1 is already @champion"),
    (["rollback"], "error: 'proj' has no earlier champion in its audit trail to roll back to (@champion is v1)"),
])
def test_usage_errors_are_one_line_and_change_nothing(project, argv, message):
    trail = _audit(project)
    _eq(call(*argv, "--project", project), (2, "", message + "\n"))
    _eq((_champion(project), _audit(project)), (1, trail))


def test_force_with_a_reason_overrides_the_gate_and_is_recorded(project):
    code, out, _ = call("promote", "2", "--force", "--reason", "v1 breaks on the new region; v2 does not", "--project", project)
    _eq((code, out.splitlines()[0]), (0, "'proj' @champion: v1 -> v2 (forced: the gate is overridden)"))
    last = _audit(project)[-1]
    _eq((last["from_version"], last["to_version"], last["source"], last["why"]), (1, 2, "force", "v1 breaks on the new region; v2 does not"))


def test_rollback_walks_back_the_champion_history(project):
    call("promote", "v3", "--project", project)
    call("promote", "v2", "--force", "--reason", "hotfix", "--project", project)
    _eq(_champion(project), 2)
    code, out, _ = call("rollback", "--project", project, "--reason", "hotfix made it worse")
    _eq((code, out.splitlines()[0], _champion(project)), (0, "'proj' @champion: v2 -> v3", 3))
    _eq(call("rollback", "--project", project)[1].splitlines()[0], "'proj' @champion: v3 -> v1")
    _eq(call("rollback", "--project", project), (2, "", "error: 'proj' has no earlier champion in its audit trail to roll back to (@champion is v1)\n"))
    _eq([(c["from_version"], c["to_version"], c["source"], c["why"]) for c in _audit(project) if c["alias"] == "champion"],
        [(None, 1, "gate", "gate passed"), (1, 3, "promote", "promoted by hand; its gate passed"), (3, 2, "force", "hotfix"),
         (2, 3, "rollback", "hotfix made it worse"), (3, 1, "rollback", "rolled back from v3")])


def test_rollback_refuses_when_the_alias_was_moved_outside_the_trail(project):
    from mlflow.tracking import MlflowClient
    MlflowClient(f"sqlite:///{project / 'mlflow.db'}").set_registered_model_alias("proj", "champion", "2")
    _eq(call("rollback", "--project", project),
        (2, "", ("error: @champion of 'proj' is v2, but its audit trail ends at v1: the alias was moved outside mlops-nb; "
                 "set it with `mlops-nb promote vN --force --reason TEXT`\n")))
    _eq(_champion(project), 2)


def test_audit_lists_every_alias_change(project):
    code, out, _ = call("audit", "--project", project)
    lines = out.splitlines()
    _eq((code, lines[0].split()), (0, ["at", "who", "alias", "from", "to", "source", "why"]))
    _eq([line.split()[1:6] for line in lines[1:]],
        [[getpass.getuser(), "@challenger", "-", "v1", "register"], [getpass.getuser(), "@champion", "-", "v1", "gate"],
         [getpass.getuser(), "@challenger", "v1", "v2", "register"], [getpass.getuser(), "@challenger", "v2", "v3", "register"]])


def test_audit_of_a_model_with_no_versions(tmp_path, breast_cancer_frame):
    breast_cancer_frame.to_csv(tmp_path / "bc.csv", index=False)
    _eq(call("init", tmp_path / "empty", "--data", tmp_path / "bc.csv", "--target", "diagnosis")[0], 0)
    _eq(call("audit", "--project", tmp_path / "empty"), (0, "no alias changes recorded for 'empty' yet\n", ""))
    _eq(call("audit", "--project", tmp_path / "empty", "--json"), (0, "[]\n", ""))


# --- a store that cannot be read ------------------------------------------------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_models_against_an_unreachable_server_is_one_line_and_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = _closed_port()
    (tmp_path / "mlops.yaml").write_text(f"project: remote\ntracking_uri: http://127.0.0.1:{port}\n")
    code, out, err = call("models", "--project", tmp_path)
    _eq((code, out, err.count("\n")), (2, "", 1))
    _eq(err.split(": MlflowException: ")[0], f"error: cannot read the versions of 'remote' from the MLflow store at http://127.0.0.1:{port}")


def test_models_against_a_store_that_is_not_a_database(project):
    (project / "mlflow.db").write_bytes(b"this is not a SQLite database" * 100)
    code, out, err = call("models", "--project", project)
    _eq((code, out, err.count("\n")), (2, "", 1))
    assert err.startswith(f"error: cannot read model versions from the MLflow store at sqlite:///{project / 'mlflow.db'}: "), err


def test_model_versions_raises_instead_of_an_empty_table():
    from mlflow.tracking import MlflowClient

    from mlops_nb.registry import model_versions
    port = _closed_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        with pytest.raises(UsageError, match=f"^cannot read the versions of 'x' from the MLflow store at http://127.0.0.1:{port}: MlflowException: "):
            model_versions(MlflowClient(f"http://127.0.0.1:{port}"), "x")


def test_credentials_in_the_store_uri_are_not_printed(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = _closed_port()
    (tmp_path / "mlops.yaml").write_text(f"project: remote\ntracking_uri: http://alice:s3cret@127.0.0.1:{port}\n")
    expected = {"models": "cannot read the versions of 'remote' from", "audit": "cannot read the audit trail from",
                "lineage": "cannot read lineage from", "rollback": "cannot roll back in", "promote": "cannot promote in"}
    for command, doing in expected.items():
        code, out, err = call(command, *(["v1"] if command == "promote" else []), "--project", tmp_path)
        _eq((code, out, err.split(": ")[0:2]), (2, "", ["error", f"{doing} the MLflow store at http://127.0.0.1:{port}"]))
        _eq(("s3cret" in err, "alice" in err), (False, False))


# --- properties -----------------------------------------------------------------------------------------------------

@given(st.integers(min_value=1, max_value=10**9))
def test_parse_version_reads_every_spelling(n):
    from mlops_nb.registry import parse_version
    _eq([parse_version(f"v{n}"), parse_version(str(n)), parse_version(f" V{n} "), parse_version(n)], [n] * 4)


@given(st.text(max_size=20))
def test_parse_version_accepts_only_versions(text):
    from mlops_nb.registry import parse_version
    digits = text.strip()[1:] if text.strip()[:1] in ("v", "V") else text.strip()
    try:
        n = parse_version(text)
    except UsageError as e:
        _eq(str(e), f"'{text}' is not a model version: write it as v3 or 3")
    else:
        _eq((digits.isascii() and digits.isdigit(), n), (True, int(digits)))


@given(st.lists(st.one_of(st.tuples(st.just("promote"), st.integers(1, 6)), st.just(("rollback",))), max_size=30))
def test_champion_history_is_a_stack_of_promotions(ops):
    "Any sequence of promotions and rollbacks: the history's last entry is the champion, rollbacks undo promotions in order."
    from mlops_nb.registry import AliasChange, champion_history
    stack, changes = [], []
    for op in ops:
        if op[0] == "promote" and (not stack or stack[-1] != op[1]):
            changes.append(AliasChange("champion", stack[-1] if stack else None, op[1], "", "promote", who="t", at="t"))
            stack.append(op[1])
        elif op[0] == "rollback" and len(stack) >= 2:
            changes.append(AliasChange("champion", stack[-1], stack[-2], "", "rollback", who="t", at="t"))
            stack.pop()
    _eq(champion_history(changes), stack)
