"""One kernel per run: every stage starts from a fresh kernel's state, and a stage whose kernel dies, hangs or is
interrupted ends promptly with a one-line `StageFailed`, after which the session carries on in a new kernel."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest
from fastcore.test import test_eq as _eq

from mlops_nb.kernel import KernelSession, StageFailed


def notebook(path: Path, *sources: str) -> Path:
    "A notebook with a `parameters` cell and one code cell per source."
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("stage = ''", metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, str(path))
    return path


class Lines:
    "A file-like object collecting what a stage prints."
    def __init__(self): self.text = ""
    def write(self, text): self.text += text
    def flush(self): pass


def printed(session: KernelSession, nb: Path, executed: Path, timeout: float = 60) -> dict:
    "Run a notebook whose last cell prints JSON; return that JSON."
    out = Lines()
    session.run(nb, executed, {"stage": nb.stem}, timeout, out)
    return json.loads(out.text.strip().splitlines()[-1])


def pid_notebook(folder: Path) -> Path:
    return notebook(folder / "pid.ipynb", "import os, json\nprint(json.dumps({'pid': os.getpid()}))")


LEAVE_BEHIND = """
import logging, os, random, sys, warnings
import matplotlib, matplotlib.pyplot as plt, mlflow, numpy as np, pandas as pd
leftover = 42
mlflow.set_tracking_uri(TRACKING)
run = mlflow.start_run()
os.chdir('/')
os.environ['LEFT_BY_STAGE_ONE'] = '1'
warnings.simplefilter('error')
random.seed(0); np.random.seed(0)
sys.path.insert(0, '/left/by/stage/one')
plt.figure(); plt.plot([1, 2])
matplotlib.rcParams['lines.linewidth'] = 9.0
pd.set_option('display.max_rows', 3)
logging.getLogger().setLevel(logging.DEBUG)
print(json.dumps({'run_id': run.info.run_id}))
"""

LOOK = """
import json, logging, os, random, sys, warnings
import matplotlib, matplotlib.pyplot as plt, mlflow, numpy as np, pandas as pd
print(json.dumps({'leftover': 'leftover' in globals(), 'run': 'run' in globals(), 'active_run': mlflow.active_run() is not None,
                  'cwd': os.getcwd(), 'env': os.environ.get('LEFT_BY_STAGE_ONE'),
                  'error_filter': ('error', None, Warning, None, 0) in warnings.filters,
                  'sys_path': '/left/by/stage/one' in sys.path, 'figures': plt.get_fignums(),
                  'linewidth': matplotlib.rcParams['lines.linewidth'], 'max_rows': pd.get_option('display.max_rows'),
                  'log_level': logging.getLogger().level, 'execution_count': get_ipython().execution_count,
                  'numpy': float(np.random.random()), 'random': random.random(), 'pid': os.getpid()}))
"""


@pytest.fixture(scope="module")
def heavy_session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session")
    with KernelSession(folder, imports=("numpy", "pandas", "matplotlib.pyplot", "mlflow")) as session:
        yield session, folder


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


def test_isolation_between_stages(heavy_session, store, tmp_path):
    "Nothing one stage leaves behind (variables, MLflow run, cwd, env, sys.path, warnings, figures, options, seeds) reaches the next."
    session, folder = heavy_session
    fresh = printed(session, notebook(tmp_path / "look.ipynb", LOOK), tmp_path / "00.ipynb")
    left = printed(session, notebook(tmp_path / "leave.ipynb", f"import json\nTRACKING = {store!r}", LEAVE_BEHIND), tmp_path / "01.ipynb")
    seen = printed(session, tmp_path / "look.ipynb", tmp_path / "02.ipynb")
    again = printed(session, tmp_path / "look.ipynb", tmp_path / "03.ipynb")
    same = {k: seen[k] for k in seen if k not in ("numpy", "random")}
    _eq(same, {"leftover": False, "run": False, "active_run": False, "cwd": str(folder.resolve()), "env": None, "error_filter": False,
               "sys_path": False, "figures": [], "linewidth": fresh["linewidth"], "max_rows": 60, "log_level": fresh["log_level"],
               "execution_count": fresh["execution_count"], "pid": fresh["pid"]})
    _eq(fresh["linewidth"] != 9.0, True)
    # the random state is fresh entropy: neither stage one's seed nor a fixed seed of the session's
    _eq(seen["numpy"] in (0.5488135039273248, fresh["numpy"], again["numpy"]), False)
    _eq(seen["random"] in (0.8444218515250481, fresh["random"], again["random"]), False)
    from mlflow.tracking import MlflowClient
    _eq(MlflowClient(store).get_run(left["run_id"]).info.status, "FINISHED")


def test_failed_stage_reuses_the_kernel_and_ends_its_mlflow_run(heavy_session, store, tmp_path):
    session, _ = heavy_session
    pid = printed(session, pid_notebook(tmp_path), tmp_path / "pid0.ipynb")["pid"]
    bad = notebook(tmp_path / "bad.ipynb", f"import mlflow\nmlflow.set_tracking_uri({store!r})\nrun = mlflow.start_run()\n"
                   "open('run_id', 'w').write(run.info.run_id)", "x = 1", "raise ValueError('no rows left\\nafter filtering')")
    with pytest.raises(StageFailed) as failed:
        session.run(bad, tmp_path / "bad_out.ipynb", {"stage": "train"}, 60)
    _eq((str(failed.value), failed.value.reason, failed.value.stage), ("stage 'train' failed in cell 5: ValueError: no rows left", "error", "train"))
    _eq(nbformat.read(tmp_path / "bad_out.ipynb", as_version=4).metadata.papermill.exception, True)
    _eq(printed(session, pid_notebook(tmp_path), tmp_path / "pid1.ipynb")["pid"], pid)
    from mlflow.tracking import MlflowClient
    run_id = (heavy_session[1] / "run_id").read_text()
    _eq(MlflowClient(store).get_run(run_id).info.status, "FAILED")


def test_no_client_left_open(heavy_session, tmp_path):
    "Each stage's notebook client is closed: the parent's open file descriptors do not grow with the stages."
    session, _ = heavy_session
    nb = pid_notebook(tmp_path)
    printed(session, nb, tmp_path / "a.ipynb")
    session.ready()  # the reset after a stage has a client of its own, for a moment
    before = len(os.listdir("/proc/self/fd"))
    for i in range(4): printed(session, nb, tmp_path / f"b{i}.ipynb")
    session.ready()
    _eq(len(os.listdir("/proc/self/fd")), before)


@pytest.fixture
def light_session(tmp_path):
    with KernelSession(tmp_path, imports=("json",)) as session:
        yield session


DEATHS = {
    "exit": ("import os\nos._exit(1)", "stage 'ingest': its kernel died (exit code 1)"),
    "sigkill": ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "stage 'ingest': its kernel died (killed by signal 9 - out of memory?)"),
    "segfault": ("import ctypes\nctypes.string_at(0)", "stage 'ingest': its kernel died (killed by signal 11 (SIGSEGV))"),
}


@pytest.mark.parametrize("how", list(DEATHS))
def test_dying_kernel(light_session, tmp_path, how):
    "A kernel that dies ends its stage within seconds; the notebook says so; the next stage runs in a new kernel."
    code, message = DEATHS[how]
    pid = printed(light_session, pid_notebook(tmp_path), tmp_path / "pid0.ipynb")["pid"]
    executed = tmp_path / "died.ipynb"
    executed.write_text("left by an earlier attempt")
    start = time.monotonic()
    with pytest.raises(StageFailed) as failed:
        light_session.run(notebook(tmp_path / "die.ipynb", "x = 1", code, "print('never')"), executed, {"stage": "ingest"}, 30)
    _eq((str(failed.value), failed.value.reason), (message, "died"))
    _eq(time.monotonic() - start < 5, True)
    nb = nbformat.read(executed, as_version=4)
    _eq((nb.metadata.papermill.exception, message in nb.cells[0].source), (True, True))
    _eq(printed(light_session, pid_notebook(tmp_path), tmp_path / "pid1.ipynb")["pid"] != pid, True)


HANGS = {
    "sleep": "import time\ntime.sleep(10**6)",
    # a C loop (catastrophic regular-expression backtracking) with Ctrl-C ignored: only killing the kernel stops it
    "busy_c_loop": "import re, signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nre.match('(a+)+$', 'a' * 60 + 'b')",
}


@pytest.mark.parametrize("how", list(HANGS))
def test_hanging_kernel_times_out(light_session, tmp_path, how):
    "A stage past its timeout is stopped at the timeout, with the processes it started; the next stage runs."
    pid = printed(light_session, pid_notebook(tmp_path), tmp_path / "pid0.ipynb")["pid"]
    child = "import subprocess\nopen('child', 'w').write(str(subprocess.Popen(['sleep', '1000']).pid))"
    start = time.monotonic()
    with pytest.raises(StageFailed) as failed:
        light_session.run(notebook(tmp_path / "hang.ipynb", child, HANGS[how]), tmp_path / "hang_out.ipynb", {"stage": "train"}, 3)
    elapsed = time.monotonic() - start
    _eq((str(failed.value), failed.value.reason), ("stage 'train' timed out after 3s (pipeline.timeouts.train): its kernel was stopped", "timeout"))
    _eq(3 <= elapsed < 6, True)
    _eq(nbformat.read(tmp_path / "hang_out.ipynb", as_version=4).metadata.papermill.exception, True)
    child_pid = int((tmp_path / "child").read_text())
    time.sleep(0.2)
    _eq(Path(f"/proc/{child_pid}").exists() and "Z" not in Path(f"/proc/{child_pid}/stat").read_text().split()[2], False)
    _eq(printed(light_session, pid_notebook(tmp_path), tmp_path / "pid1.ipynb")["pid"] != pid, True)


def test_ctrl_c_propagates_and_the_session_goes_on(light_session, tmp_path):
    "Ctrl-C during a stage: KeyboardInterrupt reaches the caller within seconds, and a later stage still runs."
    pid = printed(light_session, pid_notebook(tmp_path), tmp_path / "pid0.ipynb")["pid"]
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        light_session.run(notebook(tmp_path / "hang.ipynb", "import time\ntime.sleep(10**6)"), tmp_path / "hang_out.ipynb", {"stage": "train"}, None)
    _eq(time.monotonic() - start < 5, True)
    nb = nbformat.read(tmp_path / "hang_out.ipynb", as_version=4)
    _eq("stage 'train' was interrupted: its kernel was stopped" in nb.cells[0].source, True)
    _eq(printed(light_session, pid_notebook(tmp_path), tmp_path / "pid1.ipynb")["pid"] != pid, True)


def test_close_stops_the_kernel(tmp_path):
    session = KernelSession(tmp_path, imports=("json",))
    pid = printed(session, pid_notebook(tmp_path), tmp_path / "pid_out.ipynb")["pid"]
    session.close()
    time.sleep(0.2)
    _eq(Path(f"/proc/{pid}").exists(), False)
    with pytest.raises(RuntimeError, match="closed"):
        session.run(pid_notebook(tmp_path), tmp_path / "again.ipynb", {"stage": "x"}, 10)


def test_kernel_that_cannot_start(tmp_path):
    "A kernel that dies while loading its imports: the stage fails with one line after two tries, not after the warm-up timeout."
    (tmp_path / "dies_on_import.py").write_text("import os\nos._exit(3)\n")
    start = time.monotonic()
    with KernelSession(tmp_path, imports=("dies_on_import",)) as session, pytest.raises(StageFailed) as failed:
        session.run(pid_notebook(tmp_path), tmp_path / "out.ipynb", {"stage": "ingest"}, 30)
    _eq((str(failed.value), failed.value.reason), ("stage 'ingest': its kernel could not start: RuntimeError: the kernel died (exit code 3)", "died"))
    _eq(time.monotonic() - start < 20, True)
    _eq((tmp_path / "out.ipynb").exists(), False)


def test_a_stage_never_inherits_the_callers_mlflow_run(tmp_path, monkeypatch):
    "A shell with MLFLOW_EXPERIMENT_ID (or a run id) set must not steer a stage: it starts its own run by id."
    for name, value in (("MLFLOW_EXPERIMENT_ID", "2"), ("MLFLOW_EXPERIMENT_NAME", "someone-elses"), ("MLFLOW_RUN_ID", "abc")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KEPT_BY_THE_STAGE", "yes")
    session = KernelSession(tmp_path, imports=("json",))
    try:
        nb = notebook(tmp_path / "env.ipynb", "import os, json\nprint(json.dumps({k: os.environ.get(k) for k in "
                      "('MLFLOW_EXPERIMENT_ID', 'MLFLOW_EXPERIMENT_NAME', 'MLFLOW_RUN_ID', 'KEPT_BY_THE_STAGE')}))")
        _eq(printed(session, nb, tmp_path / "env_out.ipynb"),
            {"MLFLOW_EXPERIMENT_ID": None, "MLFLOW_EXPERIMENT_NAME": None, "MLFLOW_RUN_ID": None, "KEPT_BY_THE_STAGE": "yes"})
    finally:
        session.close()


def test_close_kills_a_kernel_still_starting(tmp_path):
    "A run that stops before its first stage (e.g. a bad setting) does not wait for the kernel's imports: the kernel is killed at once."
    (tmp_path / "slow_to_import.py").write_text("import os, time\nopen('kernel.pid', 'w').write(str(os.getpid()))\ntime.sleep(120)\n")
    session = KernelSession(tmp_path, imports=("slow_to_import",))
    deadline = time.monotonic() + 60
    while not (tmp_path / "kernel.pid").exists() and time.monotonic() < deadline: time.sleep(0.05)
    pid = int((tmp_path / "kernel.pid").read_text())
    start = time.monotonic()
    session.close()
    _eq(time.monotonic() - start < 10, True)
    time.sleep(0.2)
    _eq(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2], False)
    (tmp_path / "kernel.pid").unlink()
    for _ in range(3):  # closed at once, maybe before the kernel process exists: it is never warmed (or it is killed)
        start = time.monotonic()
        KernelSession(tmp_path, imports=("slow_to_import",)).close()
        _eq(time.monotonic() - start < 10, True)


def test_the_kernel_has_the_environment_of_its_session_creation(tmp_path):
    "The kernel starts in another thread, maybe after the caller restored its environment: it gets the one the session was made in."
    from mlops_nb.project import environment
    with environment({"SET_FOR_THIS_RUN": "token-from-the-run"}):
        session = KernelSession(tmp_path, imports=("json",))
    try:
        _eq("SET_FOR_THIS_RUN" in os.environ, False)
        nb = notebook(tmp_path / "env.ipynb", "import os, json\nprint(json.dumps({'value': os.environ.get('SET_FOR_THIS_RUN')}))")
        _eq(printed(session, nb, tmp_path / "env_out.ipynb"), {"value": "token-from-the-run"})
    finally:
        session.close()


def test_the_kernels_standard_error_goes_to_the_log(tmp_path):
    "Start-up chatter and anything a stage writes to file descriptor 2 land in the session's log, not on the user's terminal."
    log = tmp_path / "kernels.log"
    with KernelSession(tmp_path, imports=("json",), log=log) as session:
        session.run(notebook(tmp_path / "err.ipynb", "import os\nos.write(2, b'written to descriptor 2\\n')"), tmp_path / "err_out.ipynb",
                    {"stage": "x"}, 60)
    _eq("written to descriptor 2\n" in log.read_text(), True)


def test_many_notebooks_on_one_kernel_keep_their_outputs(tmp_path):
    "Notebooks share the kernel's one lasting client, with resets between them: each gets exactly its own outputs, in order."
    with KernelSession(tmp_path, imports=("json",)) as session:
        for i in range(5):
            out = Lines()
            session.run(notebook(tmp_path / f"n{i}.ipynb", f"print('first {i}')", f"print('second {i}')"), tmp_path / f"n{i}_out.ipynb",
                        {"stage": f"s{i}"}, 60, out)
            _eq(out.text, f"first {i}\nsecond {i}\n")
            cells = nbformat.read(tmp_path / f"n{i}_out.ipynb", as_version=4).cells
            _eq([c.outputs[0]["text"] for c in cells if c.cell_type == "code" and c.outputs], [f"first {i}\n", f"second {i}\n"])


def _sockets(session: KernelSession, tmp_path: Path, name: str) -> dict:
    code = ("import json\nfrom ipykernel.kernelapp import IPKernelApp\napp = IPKernelApp.instance()\n"
            "print(json.dumps({'transport': app.transport, 'ip': app.ip}))")
    return printed(session, notebook(tmp_path / f"{name}.ipynb", code), tmp_path / f"{name}_out.ipynb")


def test_the_kernel_listens_on_unix_sockets_in_a_private_folder_removed_with_it(tmp_path):
    "No TCP port that every local account could read the outputs from: Unix sockets in a folder only this user may enter, gone with the kernel."
    session = KernelSession(tmp_path, imports=("json",))
    try:
        first = _sockets(session, tmp_path, "first")
        folder = Path(first["ip"]).parent
        _eq((first["transport"], folder.stat().st_mode & 0o777, folder.name.startswith("mlops-nb-kernel-")), ("ipc", 0o700, True))
        with pytest.raises(StageFailed):
            session.run(notebook(tmp_path / "die.ipynb", "import os\nos._exit(1)"), tmp_path / "die_out.ipynb", {"stage": "x"}, 30)
        second = _sockets(session, tmp_path, "second")  # a new kernel: the dead one's folder is gone
        _eq((Path(second["ip"]).parent != folder, folder.exists()), (True, False))
    finally:
        session.close()
    _eq(Path(second["ip"]).parent.exists(), False)
