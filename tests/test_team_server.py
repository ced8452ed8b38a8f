"""The team store, for real: `mlops-nb server` on a private PostgreSQL cluster, a project whose `tracking_uri` points
at it, one pipeline run, then two pipelines at once on the same project; the registry stays consistent (versions
without gaps or duplicates, each tagged with its run, one chain of alias moves in the audit trail, exactly one
@champion), and `runs`, `models`, `lineage` read it back. Real processes throughout: the server, its database and
every pipeline run are subprocesses, driven through the command line.

The registry's compare-and-set is also raced directly (no pipeline: seconds), on the server, where no file lock can
serialise two machines: of two registrations that compared with the same champion, exactly one may promote.
"""
from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import TIMEOUT, cli_command, cli_env, error_lines, run_cli, run_id_from, show
from fastcore.test import test_eq as _eq
from postgres import free_port, postgres_or_fail, postgres_url  # noqa: F401 - postgres_url is a fixture

SMALL = ["--set", "train.n_iter=1", "--set", "train.n_splits=2", "--set", "train.candidates=[logistic_regression]",
         "--set", "pipeline.cache=false"]  # every run trains and registers: a cached chain would register nothing new


def call(*argv, env: dict | None = None) -> tuple:
    "`mlops-nb ARGV` in this process: (exit code, stdout, stderr)."
    from mlops_nb.cli import main
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        for k, v in saved.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


def _group_cmdlines(pgid: int) -> list[str]:
    "The command lines of every process in a process group (what `ps` shows any user)."
    lines = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit(): continue
        with contextlib.suppress(OSError, ValueError):
            if os.getpgid(int(proc.name)) == pgid:
                lines.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return lines


@pytest.fixture(scope="module")
def server(postgres_url, tmp_path_factory):  # noqa: F811 - the fixture imported above
    "`mlops-nb server` on the private cluster (URL in MLFLOW_BACKEND_STORE_URI), 2 workers, a free port; stopped with SIGTERM."
    folder = tmp_path_factory.mktemp("team-server")
    port, log_path = free_port(), folder / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 - open while the server runs, closed below
    proc = subprocess.Popen(cli_command("server", "--artifacts-destination", folder / "artifacts", "--port", port, "--workers", "2"),
                            cwd=folder, env=cli_env({"MLFLOW_BACKEND_STORE_URI": postgres_url}), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log_path.read_text()
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                if r.status == 200: break
            assert time.monotonic() < deadline, "mlops-nb server did not answer within 300 s:\n" + log_path.read_text()
            time.sleep(1)
        yield {"url": base, "port": port, "log": log_path, "artifacts": folder / "artifacts", "pgid": proc.pid,
               "password": urlsplit(postgres_url).password, "database": postgres_url}
        proc.send_signal(signal.SIGTERM)  # to mlops-nb only: it stops its MLflow server and workers
        _eq(proc.wait(timeout=60), 0)
        _eq(log_path.read_text().rstrip().splitlines()[-1], "mlops-nb server: stopped")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def _client(server):
    from mlflow.tracking import MlflowClient
    return MlflowClient(server["url"])


# --- the server itself ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_password_is_in_no_output_and_no_command_line(server):
    "The database password reaches MLflow through the environment: never printed, never on a command line."
    text = server["log"].read_text()
    assert server["password"] not in text, "the database password was printed"
    shown = urlsplit(server["database"])
    assert f"  store      postgresql+psycopg2://127.0.0.1:{shown.port}/mlflow" in text.splitlines(), text
    assert f"  projects   tracking_uri: {server['url']}   (in mlops.yaml, or MLFLOW_TRACKING_URI)" in text.splitlines(), text
    cmdlines = _group_cmdlines(server["pgid"])
    _eq(len(cmdlines) >= 4, True)  # mlops-nb, mlflow server, uvicorn's parent and its 2 workers
    _eq([line for line in cmdlines if server["password"] in line], [])
    _eq(sum("--serve-artifacts" in line for line in cmdlines), 1)


@pytest.mark.slow
def test_one_line_errors_before_anything_starts(server, postgres_url, tmp_path):  # noqa: F811
    "A busy port, an unreachable database, a missing driver, a password on the command line, an open host: exit 2, one line."
    artifacts = ["--artifacts-destination", tmp_path / "artifacts"]
    cases = [
        (["--port", server["port"]], {"MLFLOW_BACKEND_STORE_URI": postgres_url},
         f"error: port {server['port']} on 127.0.0.1 is in use (another server?): stop it, or pass --port N"),
        ([], {"MLFLOW_BACKEND_STORE_URI": f"postgresql://mlflow:topsecret@127.0.0.1:{(closed := free_port())}/mlflow"},
         (f'error: cannot reach the database at postgresql+psycopg2://127.0.0.1:{closed}/mlflow: connection to server at "127.0.0.1", '
         f"port {closed} failed: Connection refused")),
        ([], {"MLFLOW_BACKEND_STORE_URI": "mysql://mlflow:topsecret@db.example.com/mlflow"},
         "error: the database driver for mysql:// is not installed (no module named 'MySQLdb'): pip install mysqlclient"),
        (["--backend-store-uri", "postgresql://mlflow:topsecret@db.example.com/mlflow"], {},
         ("error: --backend-store-uri postgresql://db.example.com/mlflow carries a password, which every user of this machine can read in "
         "the process list: put the whole URL in MLFLOW_BACKEND_STORE_URI instead, or only the password in PGPASSWORD")),
        (["--host", "0.0.0.0"], {"MLFLOW_BACKEND_STORE_URI": postgres_url},
         ("error: MLflow's tracking server does not authenticate: on 0.0.0.0 anyone who reaches port 5000 can read and change every run "
         "and model; keep 127.0.0.1 (the default), or put it behind a proxy that authenticates and pass --insecure-no-auth")),
    ]
    for args, env, expected in cases:
        code, out, err = call("server", *artifacts, *args, env={"MLFLOW_BACKEND_STORE_URI": "", **env})
        _eq((code, out, err.splitlines()), (2, "", [expected]))
        assert "topsecret" not in err


def test_missing_postgresql_programs_fail_the_fixture_saying_what_to_install(monkeypatch, tmp_path):
    "Without PostgreSQL's programs the fixture fails (never skips) and says to install Debian's postgresql package."
    import mlops_nb.server
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(mlops_nb.server, "DEBIAN_POSTGRES", tmp_path / "no-postgresql")
    with pytest.raises(pytest.fail.Exception) as failed, postgres_or_fail():
        pass
    _eq(str(failed.value), "cannot start a PostgreSQL cluster for the tests: PostgreSQL's `postgres` program is not installed: "
                           "install Debian's postgresql package (`apt-get install postgresql`), or put PostgreSQL's bin folder on PATH")
    code, _, err = call("server", "--postgres", tmp_path / "cluster", "--artifacts-destination", tmp_path / "artifacts", "--port", free_port())
    _eq((code, err.splitlines()[0].startswith("error: PostgreSQL's `postgres` program is not installed: install Debian's postgresql package")),
        (2, True))


# --- compare-and-set on a server -----------------------------------------------------------------------------------

def _register_at_once(url: str, rounds: list, barrier, results) -> None:
    "For each (model name, logged model): wait for the other process, then register, as a pipeline's register stage does."
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from mlflow.tracking import MlflowClient

    from mlops_nb.registry import register_version
    client = MlflowClient(url)
    for name, model_uri in rounds:
        barrier.wait(timeout=120)
        results.put(register_version(client, name, model_uri, gate_passed=True, compared_with=None).to_dict())


def _chain(changes, alias) -> list:
    return [(c.from_version, c.to_version) for c in changes if c.alias == alias]


@pytest.mark.slow
def test_two_registrations_racing_on_the_server_promote_exactly_one(server):
    "Both gates compared with 'no champion': one version is promoted, the other stays @challenger and says why, every round."
    from mlops_nb.registry import audit_trail, champion_version
    client = _client(server)
    experiment = client.create_experiment(f"race-{time.time_ns()}")
    names = [f"race-{round_}-{time.time_ns()}" for round_ in range(4)]
    models = [[f"models:/{client.create_logged_model(experiment, name='model').model_id}" for _ in names] for _ in range(2)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_register_at_once, args=(server["url"], list(zip(names, mine)), barrier, results)) for mine in models]
    for p in procs: p.start()
    done = [results.get(timeout=300) for _ in range(2 * len(names))]
    for p in procs: p.join(timeout=60)
    _eq([p.exitcode for p in procs], [0, 0])
    for name in names:
        registrations = sorted((r for r in done if r["name"] == name), key=lambda r: r["version"])
        _eq([r["version"] for r in registrations], [1, 2])
        winners = [r for r in registrations if "champion" in r["aliases"]]
        _eq(len(winners), 1)
        (winner,), (loser,) = winners, [r for r in registrations if r is not winners[0]]
        _eq((champion_version(client, name), loser["aliases"]), (winner["version"], ["challenger"]))  # it moved @challenger last
        assert loser["note"].startswith(f"not promoted: its gate compared it with no champion, but @champion is now v{winner['version']}"), loser
        trail = audit_trail(client, name)
        _eq(_chain(trail, "champion"), [(None, winner["version"])])  # one promotion, from no champion
        _eq(_chain(trail, "challenger"), [(None, winner["version"]), (winner["version"], loser["version"])])
        _eq(client.search_registered_models(f"name = '{name}.alias-lock'"), [])  # the lock was released


@pytest.mark.slow
def test_a_lock_left_by_a_dead_holder_is_removed_and_a_live_one_waited_for(server):
    from mlops_nb.config import UsageError
    from mlops_nb.registry import LOCK_TAG, registry_lock
    client, name = _client(server), f"locks-{time.time_ns()}"
    client.create_registered_model(f"{name}.alias-lock", tags={LOCK_TAG: "someone@another-machine:4242:dead"})
    start = time.monotonic()
    with registry_lock(client, name, timeout=30, stale=1.0) as lock:
        waited = time.monotonic() - start
        _eq(client.get_registered_model(lock).tags[LOCK_TAG].split(":")[1], str(os.getpid()))
        held = rf"another process \(.*:{os.getpid()}:.*\) has held the alias lock of '{name}' for more than 0.5s"
        with pytest.raises(UsageError, match=held), registry_lock(client, name, timeout=0.5, stale=60): pass
    assert waited > 1.0, waited
    _eq(client.search_registered_models(f"name = '{name}.alias-lock'"), [])


# --- pipelines against the server ----------------------------------------------------------------------------------
# Three pipeline runs (one, then two at once): `slow`, run by CI. The default run keeps the server's own checks above,
# the registration race on the server, and the same commands against the embedded store (test_cli_e2e, test_lineage).

@pytest.fixture(scope="module")
def team(server, tmp_path_factory):
    """A project created with MLFLOW_TRACKING_URI set to the server, then given `tracking_uri` in its mlops.yaml; one
    pipeline run, then two at once. Returns the project, the run ids (first the single run) and each run's output."""
    from mlops_nb.data import load_example
    root = tmp_path_factory.mktemp("team")
    load_example("breast-cancer").to_csv(root / "bc.csv", index=False)
    project = root / "project"
    code, out, err = run_cli("init", project, "--data", root / "bc.csv", "--target", "diagnosis", "--name", "team",
                             env={"MLFLOW_TRACKING_URI": server["url"]})
    assert code == 0, show(code, out, err)
    settings = yaml.safe_load((project / "mlops.yaml").read_text())
    settings["tracking_uri"] = server["url"]
    (project / "mlops.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    code, out, err = run_cli("run", "--project", project, "-q", *SMALL)
    assert code == 0, show(code, out, err)
    outputs = [out]
    procs = [subprocess.Popen(cli_command("run", "--project", project, "-q", *SMALL), env=cli_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, show(p.returncode, out, err)
        outputs.append(out)
    return {"project": project, "runs": [run_id_from(o) for o in outputs], "outputs": outputs}


@pytest.mark.slow
def test_runs_record_to_the_server_and_artifacts_go_through_it(team, server):
    project = team["project"]
    for out in team["outputs"]:
        assert f"  tracking {server['url']}" in out.splitlines(), out
    _eq(len(set(team["runs"])), 3)
    _eq([p.name for p in (project / "mlflow.db", project / "mlartifacts") if p.exists()], [])  # nothing recorded locally
    client = _client(server)
    for run_id in team["runs"]:
        run = client.get_run(run_id)
        _eq((run.info.status, run.info.artifact_uri.startswith("mlflow-artifacts:/")), ("FINISHED", True))
    notebooks = sorted(p.name for p in server["artifacts"].rglob("*.ipynb"))
    _eq(len(notebooks) >= 3 * 6, True)  # every stage's executed notebook of the three runs, on the server's disk
    assert server["password"] not in server["log"].read_text()


@pytest.mark.slow
def test_the_registry_stays_consistent_after_concurrent_runs(team, server):
    "Versions 1-3 without gaps or duplicates, each tagged with its run; one alias chain in the audit trail; one @champion."
    from mlops_nb.registry import audit_trail
    client = _client(server)
    versions = sorted(client.search_model_versions("name = 'team'"), key=lambda v: int(v.version))
    _eq([int(v.version) for v in versions], [1, 2, 3])
    by_run = {v.tags["pipeline_run_id"]: int(v.version) for v in versions}
    _eq(sorted(by_run), sorted(team["runs"]))
    _eq(by_run[team["runs"][0]], 1)
    for run_id in team["runs"]:
        tags = client.get_run(run_id).data.tags
        _eq(tags["model_version"], str(by_run[run_id]))
    aliases = client.get_registered_model("team").aliases
    _eq(sorted(aliases), ["challenger", "champion"])
    trail = audit_trail(client, "team")
    champions, challengers = _chain(trail, "champion"), _chain(trail, "challenger")
    _eq(len(challengers), 3)
    for chain in (champions, challengers):
        _eq([before for before, _ in chain], [None] + [after for _, after in chain[:-1]])  # each move starts where the last ended
    _eq(champions[-1][1], int(aliases["champion"]))
    _eq(challengers[-1][1], int(aliases["challenger"]))
    claimed = {run_id for run_id in team["runs"] if "champion" in client.get_run(run_id).data.tags["model_aliases"].split(",")}
    _eq(sorted(c.run_id for c in trail if c.alias == "champion"), sorted(claimed))  # a run says "champion" iff it moved it
    _eq(champions[0], (None, 1))
    for v in versions:
        if v.tags["gate"] == "passed" and team["runs"][0] != v.tags["pipeline_run_id"] and v.tags["pipeline_run_id"] not in claimed:
            assert v.tags["promotion_note"].startswith("not promoted: its gate compared it with v1, but @champion is now v"), v.tags
    _eq(client.search_registered_models("name = 'team.alias-lock'"), [])


@pytest.mark.slow
def test_runs_models_and_lineage_read_the_server(team, server):
    project = team["project"]
    code, out, err = run_cli("runs", "--project", project)
    assert code == 0, show(code, out, err)
    rows = out.splitlines()[1:]
    _eq(sorted(row.split()[0] for row in rows), sorted(team["runs"]))
    _eq([row.split()[3] for row in rows], ["FINISHED"] * 3)
    code, out, err = run_cli("models", "--project", project)
    assert code == 0, show(code, out, err)
    rows = out.splitlines()[1:]
    _eq([int(row.split()[0]) for row in rows], [3, 2, 1])
    _eq(sum("@champion" in row for row in rows), 1)
    champion = next(int(row.split()[0]) for row in rows if "@champion" in row)
    code, out, err = run_cli("lineage", "--project", project, "--json")
    assert code == 0, show(code, out, err)
    info = json.loads(out)
    client = _client(server)
    made_by = client.get_model_version("team", str(champion)).tags["pipeline_run_id"]
    _eq((info["model"], info["version"], info["aliases"][0], info["pipeline_run"]["run_id"]), ("team", champion, "champion", made_by))
    _eq([n["stage"] for n in info["notebooks"]], ["ingest", "validate", "prepare", "train", "evaluate", "register"])
    _eq(info["settings"]["tracking_uri"], server["url"])
    _eq(error_lines(err), [])


@pytest.mark.slow
def test_a_project_pointing_at_a_server_that_does_not_answer_gets_one_line(team, tmp_path):
    port = free_port()  # nothing listens on it
    settings = yaml.safe_load((team["project"] / "mlops.yaml").read_text())
    (tmp_path / "mlops.yaml").write_text(yaml.safe_dump({**settings, "tracking_uri": f"http://127.0.0.1:{port}"}, sort_keys=False))
    code, out, err = run_cli("models", "--project", tmp_path)
    _eq((code, out, len(err.splitlines())), (2, "", 1))
    assert err.startswith(f"error: cannot read the versions of 'team' from the MLflow store at http://127.0.0.1:{port}: "), err
