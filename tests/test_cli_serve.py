"""The serving commands of `mlops-nb`: `serve`, `rollout ...`, `ab-report`, `predict` (argument parsing and one-line
errors), rollout policies set and read back through the command line, and the Dockerfile's command."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
from configparser import ConfigParser
from pathlib import Path

import httpx
import pytest
from conftest import cli_command
from fastcore.test import test_eq as _eq
from serving import add_version, example_frame, free_port, project_client, running_server, served_project

from mlops_nb import cli
from mlops_nb.cli import main, parser
from mlops_nb.rollout import read_state

ROOT = Path(__file__).resolve().parent.parent


def call(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "v1 @champion, v2 @challenger."
    p = served_project(tmp_path_factory.mktemp("cli-serve"))
    assert add_version(p) == 1
    assert add_version(p, promote=False) == 2
    return p


# ---------------------------------------------------------------- parsing

def test_new_commands_parse():
    p = parser()
    a = p.parse_args(["serve", "--project", "/p", "--host", "0.0.0.0", "--port", "9000", "--workers", "2", "--insecure-no-auth",
                      "--set", "serve.max_rows=10", "--set", "serve.poll_seconds=0.5"])
    _eq((a.func, a.project, a.host, a.port, a.workers, a.insecure_no_auth, a.set),
        (cli.cmd_serve, "/p", "0.0.0.0", 9000, 2, True, ["serve.max_rows=10", "serve.poll_seconds=0.5"]))
    a = p.parse_args(["serve"])
    _eq((a.project, a.host, a.port, a.workers, a.insecure_no_auth, a.set), (".", None, None, None, False, []))
    a = p.parse_args(["rollout", "canary", "12.5", "--version", "v3", "--key", "column:customer", "--reason", "try it"])
    _eq((a.func, a.mode, a.share, a.version, a.key, a.reason, a.project), (cli.cmd_rollout, "canary", 12.5, "v3", "column:customer", "try it", "."))
    _eq((p.parse_args(["rollout", "ab"]).share, p.parse_args(["rollout", "ab", "30"]).share), (None, 30.0))
    for mode in ("shadow", "blue-green"):
        a = p.parse_args(["rollout", mode, "--version", "2"])
        _eq((a.func, a.mode, a.version, hasattr(a, "share"), hasattr(a, "key")), (cli.cmd_rollout, mode, "2", False, False))
    a = p.parse_args(["rollout", "off", "--reason", "done"])
    _eq((a.func, a.mode, a.reason, hasattr(a, "version")), (cli.cmd_rollout, "off", "done", False))
    a = p.parse_args(["rollout", "status", "--json", "--window", "60"])
    _eq((a.func, a.json, a.window), (cli.cmd_rollout_status, True, 60.0))
    a = p.parse_args(["ab-report", "--json", "--confidence", "0.9"])
    _eq((a.func, a.json, a.confidence), (cli.cmd_ab_report, True, 0.9))
    a = p.parse_args(["predict", "--input", "a.csv", "--output", "b.parquet", "--model", "@challenger", "--quarantine", "q.csv", "--chunk-rows", "10", "-q"])
    _eq((a.func, a.input, a.output, a.model, a.quarantine, a.chunk_rows, a.quiet), (cli.cmd_predict, "a.csv", "b.parquet", "@challenger", "q.csv", 10, True))
    _eq(cli.ROLLOUT_MODES, {"canary": "canary", "shadow": "shadow", "ab": "ab", "blue-green": "blue-green", "off": "champion"})


@pytest.mark.parametrize("argv, message", [
    (["rollout"], "the following arguments are required: MODE (see `mlops-nb rollout --help`)"),
    (["rollout", "canary"], "the following arguments are required: SHARE (see `mlops-nb rollout canary --help`)"),
    (["rollout", "canary", "ten"], "argument SHARE: 'ten' is not a percentage: give a number between 0 and 100, e.g. 10 (see `mlops-nb rollout canary --help`)"),
    (["rollout", "ab", "101"], "argument SHARE: 101 is not between 0 and 100 (a percentage of the traffic) (see `mlops-nb rollout ab --help`)"),
    (["rollout", "shadow", "20"], "unrecognized arguments: 20 (see `mlops-nb --help`)"),
    (["rollout", "off", "--version", "v2"], "unrecognized arguments: --version v2 (see `mlops-nb --help`)"),
    (["rollout", "canary", "10", "--version", "latest"], "'latest' is not a model version: write it as v3 or 3"),
    (["serve", "--port", "http"], "argument --port: invalid int value: 'http' (see `mlops-nb serve --help`)"),
    (["serve", "--workers", "two"], "argument --workers: invalid int value: 'two' (see `mlops-nb serve --help`)"),
    (["predict", "--output", "x.csv"], "the following arguments are required: --input (see `mlops-nb predict --help`)"),
    (["predict", "--input", "x.csv", "--output", "y.csv", "--chunk-rows", "many"], "argument --chunk-rows: invalid int value: 'many' (see `mlops-nb predict --help`)"),
    (["ab-report", "--confidence", "high"], "argument --confidence: invalid float value: 'high' (see `mlops-nb ab-report --help`)"),
])
def test_usage_mistakes_are_one_line_with_status_2(argv, message):
    _eq(call(*argv), (2, "", f"error: {message}\n"))


def test_help_and_version_still_exit_0(capsys):
    _eq(main(["rollout", "--help"]), 0)
    assert "usage: mlops-nb rollout" in capsys.readouterr().out
    _eq(main(["--version"]), 0)


# ---------------------------------------------------------------- rollouts through the command line

def _policy(project):
    return read_state(project_client(project), "served").policy


@pytest.mark.slow
def test_rollout_set_and_status(project):
    code, out, err = call("rollout", "canary", "10", "--project", project, "--reason", "first look at v2", "--key", "column:customer")
    policy = _policy(project)
    _eq((code, err, policy.mode, policy.challenger, policy.share, policy.key, policy.reason),
        (0, "", "canary", 2, 10.0, "column:customer", "first look at v2"))
    _eq(out.splitlines()[0], f"'served' rollout: canary: 10% to v2 (policy {policy.id})")
    assert out.splitlines()[1].startswith(f"  recorded  {policy.since} by ") and out.splitlines()[1].endswith(": first look at v2"), out
    _eq(out.splitlines()[2], "  running servers apply it within 2s; see it with `mlops-nb rollout status`")

    code, out, err = call("rollout", "status", "--project", project, "--json")
    status = json.loads(out)
    _eq((code, status["policy"]["mode"], status["policy"]["id"], status["champion"], status["challenger_alias"], status["requests"]),
        (0, "canary", policy.id, 1, 2, 0))
    _eq([(v["version"], v["role"], v["configured_share"], v["live_share"]) for v in status["versions"]],
        [(1, "champion", 90.0, None), (2, "challenger", 10.0, None)])
    code, out, _ = call("rollout", "status", "--project", project)
    lines = out.splitlines()
    _eq((code, lines[0]), (0, "'served': @champion v1; canary: 10% to v2"))
    assert lines[1].startswith(f"  policy    {policy.id} set {policy.since} by ") and lines[2] == "  traffic   last 300s: 0 requests", out
    _eq([line.split()[:4] for line in lines[4:6]], [["v1", "champion", "90%", "-"], ["v2", "challenger", "10%", "-"]])

    for argv, (mode, share, challenger) in ((["shadow"], ("shadow", 0.0, 2)), (["ab"], ("ab", 50.0, 2)), (["ab", "25"], ("ab", 25.0, 2)),
                                            (["blue-green", "--version", "v2"], ("blue-green", 0.0, 2)), (["off"], ("champion", 0.0, None))):
        code, out, err = call("rollout", *argv, "--project", project)
        p = _policy(project)
        _eq((argv, code, err, p.mode, p.share, p.challenger), (argv, 0, "", mode, share, challenger))
        assert out.startswith(f"'served' rollout: {p.describe()} (policy {p.id})"), out
    code, out, _ = call("audit", "--project", project, "--json")
    rollouts = [c for c in json.loads(out) if c["source"] == "rollout"]
    _eq(len(rollouts), 6)
    assert rollouts[0]["why"].startswith("canary: 10% to v2") and rollouts[-1]["why"].startswith("off: all traffic to @champion"), rollouts


@pytest.mark.parametrize("argv, message", [
    (["canary", "5", "--version", "v1"], "v1 is @champion already: a canary needs a challenger that is not the champion"),
    (["canary", "5", "--version", "v9"], "'served' has no version 9: its versions are v1, v2"),
    (["ab", "--key", "cookie:session"], "routing key 'cookie:session' must be header:NAME or column:NAME"),
])
def test_rollout_mistakes(project, argv, message):
    before = _policy(project)
    _eq(call("rollout", *argv, "--project", project), (2, "", f"error: {message}\n"))
    _eq(_policy(project), before)


def test_rollout_without_a_model(tmp_path):
    bare = served_project(tmp_path)
    _eq(call("rollout", "canary", "5", "--project", bare),
        (2, "", "error: there is no registered model 'served': train and register a version first\n"))
    code, out, _ = call("rollout", "status", "--project", bare, "--json")
    _eq((code, json.loads(out)["champion"], json.loads(out)["versions"]), (0, None, []))
    _eq(call("rollout", "status", "--project", tmp_path / "nowhere")[0], 2)


def test_ab_report(project):
    _eq(call("rollout", "off", "--project", project)[0], 0)
    code, _, err = call("ab-report", "--project", project)
    _eq((code, err), (2, "error: there is no A/B test running (the rollout policy is off: all traffic to @champion): start one with `mlops-nb rollout ab 50`\n"))
    _eq(call("rollout", "ab", "--project", project)[0], 0)
    code, out, err = call("ab-report", "--project", project)
    _eq((code, err, out.splitlines()[0]), (0, "", "not enough labelled requests yet (n A = 0, n B = 0 < 100): keep the test running"))
    _eq(out.splitlines()[1:], ["  A (champion, -): 0 labelled", "  B (challenger, -): 0 labelled"])
    report = json.loads(call("ab-report", "--project", project, "--json")[1])
    _eq((report["enough"], report["winner"], report["arms"]["A"]["n"], report["arms"]["B"]["n"]), (False, None, 0, 0))
    _eq(call("rollout", "off", "--project", project)[0], 0)


# ---------------------------------------------------------------- serve

def test_serve_refuses_a_public_host_without_a_token(project, monkeypatch):
    monkeypatch.delenv("MLOPS_NB_TOKEN", raising=False)
    code, out, err = call("serve", "--project", project, "--host", "0.0.0.0", "--port", free_port())
    _eq((code, out, err.count("\n")), (2, "", 1))
    assert err.startswith("error: refusing to listen on 0.0.0.0 without a token: set MLOPS_NB_TOKEN"), err
    _eq(call("serve", "--project", project, "--port", "70000")[0], 2)
    code, _, err = call("serve", "--project", project, "--set", "serve.max_rows")
    _eq(code, 2)
    assert err.startswith("error: ") and err.count("\n") == 1, err


def test_serve_passes_its_options_to_the_server(project):
    "`--set` reaches the running server: with serve.max_rows=2 a three-row request gets 413."
    frame = example_frame()
    rows = json.loads(frame.drop(columns=frame.columns[-1]).head(3).to_json(orient="records"))
    with running_server(project, "--set", "serve.max_rows=2", "--workers", "1") as server:
        _eq(httpx.post(f"{server.url}/predict", json=rows, timeout=10).status_code, 413)
        ok = httpx.post(f"{server.url}/predict", json=rows[:2], timeout=10)
        _eq((ok.status_code, ok.headers["X-Model-Version"], len(ok.json()["predictions"])), (200, "1", 2))


# ---------------------------------------------------------------- the container

def _instructions(text: str) -> list[tuple[str, str]]:
    "(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", joined, re.MULTILINE)]


def _argv(value: str) -> list[str]:
    return json.loads(value) if value.startswith("[") else shlex.split(value)


def test_dockerfile_runs_the_serve_command_the_tests_run():
    dockerfile = (ROOT / "Dockerfile").read_text()
    steps = _instructions(dockerfile)
    kinds = [k for k, _ in steps]
    _eq(steps[0], ("FROM", "python:3.11-slim"))
    cmd = [_argv(v) for k, v in steps if k == "CMD"]
    entry = [_argv(v) for k, v in steps if k == "ENTRYPOINT"]
    _eq((len(cmd), kinds.count("ENTRYPOINT") <= 1), (1, True))
    assert all(v.startswith("[") for k, v in steps if k in ("CMD", "ENTRYPOINT")), "exec form: signals reach the server"
    argv = (entry[0] if entry else []) + cmd[-1]
    _eq(argv[0], "mlops-nb")
    args = parser().parse_args(argv[1:])
    _eq((args.command, args.func, args.host, args.port, args.project, args.insecure_no_auth), ("serve", cli.cmd_serve, "0.0.0.0", 8080, "/project", False))
    _eq([v for k, v in steps if k == "EXPOSE"], [str(args.port)])
    # the tests' servers run the same entry point with the same command
    test_cmd = cli_command("serve", "--project", "/p", "--port", "1")
    _eq(("from mlops_nb.cli import console" in test_cmd[2], parser().parse_args(test_cmd[3:]).func), (True, cli.cmd_serve))
    ini = ConfigParser(delimiters=["="])
    ini.read(ROOT / "settings.ini")
    _eq(ini["DEFAULT"]["console_scripts"], "mlops-nb=mlops_nb.cli:console")
    # not root, and the package comes from the repository
    users = [v for k, v in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0") and kinds.index("USER") < kinds.index("CMD"), users
    copied = [part for k, v in steps if k == "COPY" for part in v.split()[:-1]]
    _eq(sorted(copied), ["README.md", "mlops_nb", "settings.ini", "setup.py"])
    assert all((ROOT / c).exists() for c in copied)
    assert any(k == "RUN" and "pip install ." in v for k, v in steps)
    assert "MLOPS_NB_TOKEN" in dockerfile  # the token a non-loopback bind needs is documented where the bind is


def test_dockerignore_keeps_local_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    for entry in (".venv", ".git", "runs", "mlruns", "mlflow.db", "mlartifacts", "predictions", "_docs", "_proc", "**/__pycache__"):
        assert entry in ignored, entry
    for needed in ("mlops_nb", "settings.ini", "setup.py", "README.md"):
        assert needed not in ignored, needed


def test_the_dockerfile_command_without_a_token_says_what_to_do(project, monkeypatch):
    "What `docker run` without MLOPS_NB_TOKEN prints: one line, status 2, before anything listens."
    argv = json.loads(next(v for k, v in _instructions((ROOT / "Dockerfile").read_text()) if k == "CMD"))
    argv[argv.index("--project") + 1] = str(project)
    env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_NB_TOKEN", "MLFLOW_TRACKING_URI")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    p = subprocess.run(cli_command(*argv[1:]), env=env, capture_output=True, text=True, timeout=120, check=False)
    _eq((p.returncode, p.stdout, p.stderr.count("\n")), (2, "", 1))
    assert p.stderr.startswith("error: refusing to listen on 0.0.0.0 without a token: set MLOPS_NB_TOKEN"), p.stderr
