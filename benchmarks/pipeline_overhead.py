"""How much wall time does `mlops-nb run` add on top of the computation it performs?

What it measures
----------------
Two ways of doing the same work on the same seeded synthetic dataset (~100k rows by default):

* **mlops-nb run** - the command a user runs, timed end to end as a subprocess: CLI start, MLflow store set-up,
  one papermill-executed notebook (fresh Jupyter kernel) per stage, Parquet hand-offs between stages, MLflow
  logging (params, metrics, artifacts, figures, the model with signature and input example, registration) and an
  HTML export of every executed notebook.
* **plain script** (the peer) - the same library functions called in one Python process, without papermill,
  Jupyter or MLflow: read the CSV, fingerprint it, validate it against the project's contract, split, build the
  preprocessor, `train_candidates` with the same settings (candidates, n_splits, n_iter, seed, primary metric,
  overfit tolerance, max_train_rows), `evaluate_model` + `evaluation_plots` (plus the CV-scores plot the train
  runbook draws; every figure saved as PNG like the runbooks do) and finally the model saved with skops. The peer's
  time includes its own imports (it runs in a fresh interpreter too) but not the interpreter start.

Both sides read their settings from the project's `mlops.yaml` through `mlops_nb.config.load_config`, with the same
`--set` overrides, so they train on identical rows with identical seeds; the script checks that both report the same
held-out primary metric. It prints both wall times, their ratio, and a per-stage breakdown of the pipeline (from
`runs/<run>/run.json`) next to the peer's time for the same step, with each stage split into kernel start/papermill
bookkeeping, the runbook's import cell and its work cells (from the executed notebooks' papermill metadata); a stage's
fixed cost is everything but its work cells.

Then, against the CLI start (`mlops-nb --help`, median of 3):

* **cached re-run** - `mlops-nb run` a second time with nothing changed: every stage should come from the cache, and
  the run should take less than a second beyond the CLI start.
* **empty stages** - a pipeline of six stages whose notebooks only build their stage context (`--no-cache`): what a
  stage costs when it does no work, per stage.

How to run
----------
    . .venv/bin/activate
    python benchmarks/pipeline_overhead.py                       # 100,000 rows, temp work folder
    python benchmarks/pipeline_overhead.py --rows 20000 --workdir /tmp/bench
    python benchmarks/pipeline_overhead.py --set train.n_iter=1 --set train.n_splits=3   # quick check
    python benchmarks/pipeline_overhead.py --profile             # also time the fixed costs (imports, kernel, nbconvert)

The work folder gets `data.csv`, `project/` (created with `mlops-nb init`, its own SQLite MLflow store) and
`plain/` (the peer's outputs). A given `--workdir` must not already hold a project. `MLFLOW_TRACKING_URI` is removed
from the pipeline's environment so that the run always records to the project's local store.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = "label"
STAGES = ("ingest", "validate", "prepare", "train", "evaluate", "register")


# ---------------------------------------------------------------------------------------------------------- data
def make_dataset(rows:int, path:Path, seed:int=0)->Path:
    "A seeded binary classification table: 18 numeric features, 2 categorical text columns, a few missing values, string labels."
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=20, n_informative=8, random_state=seed)
    df = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(20)])
    # Two categorical columns derived from (and replacing) two features, so they carry signal.
    df["region"] = pd.cut(df.pop("f00"), [-np.inf, -1.0, 0.0, 1.0, np.inf], labels=["north", "south", "east", "west"]).astype(str)
    df["segment"] = np.where(df.pop("f01") > 0.3, "retail", np.where(df["f02"] > 0, "business", "public"))
    rng = np.random.default_rng(seed)
    for col, share in (("f02", 0.01), ("f05", 0.005), ("segment", 0.01)):  # a few missing values
        df.loc[rng.random(rows) < share, col] = np.nan
    df[TARGET] = np.where(y == 1, "churn", "stay")
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


# ---------------------------------------------------------------------------------------------------------- peer
def plain_script(project:Path, overrides:list, out:Path)->dict:
    """The peer: the pipeline's computation with the library functions in this process, no papermill, no MLflow.

    Mirrors the runbooks step by step (ingest, validate, prepare, train, evaluate), minus their Parquet hand-offs and
    logging. Returns wall time in total and per step, and the held-out metrics."""
    steps, t0 = {}, time.perf_counter()
    mark = [t0]
    def lap(name):
        now = time.perf_counter(); steps[name] = now - mark[0]; mark[0] = now

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlops_nb.config import data_path, load_config, parse_overrides
    from mlops_nb.contract import Contract
    from mlops_nb.data import fingerprint, read_table, save_skops
    from mlops_nb.evaluate import evaluate_model, evaluation_plots
    from mlops_nb.prepare import build_preprocessor, split_data
    from mlops_nb.train import plot_cv_scores, train_candidates
    from mlops_nb.validate import check_quarantine_share, validate
    cfg = load_config(project, parse_overrides(overrides))
    out.mkdir(parents=True, exist_ok=True)
    lap("imports")

    df = read_table(data_path(cfg), cfg.data.format)                                    # ingest
    digest = fingerprint(df)
    lap("ingest")
    contract = Contract.from_yaml(project / cfg.contract)                                # validate
    result = validate(df, contract, cfg.validate.unknown_columns)
    check_quarantine_share(result, cfg.validate.max_quarantine_share)
    lap("validate")
    split = split_data(result.accepted, contract, cfg.prepare.test_size, cfg.prepare.split, cfg.seed)   # prepare
    preprocessor = build_preprocessor(contract, split.train)
    lap("prepare")
    features = [column for _, _, columns in preprocessor.transformers for column in columns]           # train
    X, y = split.train[features], split.train[contract.target]
    t = cfg.train
    trained = train_candidates(X, y, preprocessor, t.candidates, t.primary_metric, t.n_splits, t.n_iter, cfg.seed,
                               t.overfit_tolerance, t.max_train_rows, positive_class=cfg.data.positive_class,
                               time=split.train[contract.time_column] if split.strategy == "time" else None)
    fig = plot_cv_scores(trained); fig.savefig(out / "cv_scores.png", dpi=110, bbox_inches="tight"); plt.close(fig)
    save_skops(trained.model, out / "model.skops")
    lap("train")
    model = trained.model                                                               # evaluate
    evaluation = evaluate_model(model, split.test[list(model.feature_names_in_)], split.test[contract.target],
                                positive_class=cfg.data.positive_class)
    for name, fig in evaluation_plots(evaluation).items():
        fig.savefig(out / name, dpi=110, bbox_inches="tight"); plt.close(fig)
    lap("evaluate")
    return {"seconds": time.perf_counter() - t0, "steps": steps, "metrics": evaluation.metrics, "fingerprint": digest,
            "best": trained.best, "rows": len(df), "accepted": len(result.accepted)}


def _child_cpu()->float:
    "User + system CPU seconds used so far by waited-for child processes (and their waited-for children)."
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_peer(project:Path, overrides:list, out:Path)->dict:
    "Run `plain_script` in a fresh interpreter (so it pays its own imports, like each pipeline kernel) and return its result."
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
            f"from pipeline_overhead import plain_script\n"
            f"print('RESULT ' + json.dumps(plain_script(__import__('pathlib').Path({str(project)!r}), {overrides!r}, "
            f"__import__('pathlib').Path({str(out)!r})), default=float))\n")
    cpu, start = _child_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - start, _child_cpu() - cpu
    if proc.returncode != 0: sys.exit(f"plain script failed:\n{proc.stderr[-3000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return {**json.loads(line[7:]), "wall": wall, "cpu": cpu}


# ---------------------------------------------------------------------------------------------------------- pipeline
def mlops_nb_command()->str:
    "The `mlops-nb` console script of this interpreter's environment."
    exe = Path(sys.executable).parent / "mlops-nb"
    found = str(exe) if exe.exists() else shutil.which("mlops-nb")
    if not found: sys.exit("mlops-nb is not installed in this environment: pip install -e . first")
    return found


def _run_dirs(project:Path)->list:
    "The project's run folders (those holding a run.json)."
    return [p.parent for p in (project / "runs").glob("*/run.json")]


def run_pipeline_cli(project:Path, overrides:list, flags:tuple=())->dict:
    "Time `mlops-nb run --project PROJECT [FLAGS]` as a user runs it; return wall time and the run's run.json."
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    cmd = [mlops_nb_command(), "run", "--project", str(project), *flags] + [a for o in overrides for a in ("--set", o)]
    before = set(_run_dirs(project))
    cpu, start = _child_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall, cpu = time.perf_counter() - start, _child_cpu() - cpu
    if proc.returncode != 0: sys.exit(f"mlops-nb run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    run_dir = max(set(_run_dirs(project)) - before, key=lambda p: p.stat().st_mtime)
    return {"wall": wall, "cpu": cpu, "run_dir": run_dir, "run": json.loads((run_dir / "run.json").read_text()), "stdout": proc.stdout}


def stage_cells(executed:Path)->dict:
    "Split an executed runbook's time into its import cell (first code cell after `parameters`) and its other cells."
    import nbformat
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
            and "parameters" not in c.metadata.get("tags", [])]
    durations = [float(c.metadata.get("papermill", {}).get("duration") or 0.0) for c in code]
    return {"imports": durations[0] if durations else 0.0, "work": sum(durations[1:])}


def cli_start(times:int=3)->float:
    "Median wall time of `mlops-nb --help`: the CLI's start, the floor of any `mlops-nb` command."
    import statistics
    walls = []
    for _ in range(times):
        start = time.perf_counter()
        subprocess.run([mlops_nb_command(), "--help"], capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
    return statistics.median(walls)


EMPTY_STAGES = 6


def empty_stages_project(work:Path, data:Path)->Path:
    "A project whose pipeline is EMPTY_STAGES stages that only build their stage context: the fixed cost of a stage."
    import nbformat
    import yaml
    project = work / "empty-stages"
    subprocess.run([mlops_nb_command(), "init", str(project), "--data", str(data), "--target", TARGET],
                   check=True, capture_output=True, text=True)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell("params = {}")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell("from mlops_nb.stage import stage_context\nctx = stage_context(params)")]
    nbformat.write(nb, project / "runbooks" / "empty.ipynb")
    cfg = yaml.safe_load((project / "mlops.yaml").read_text())
    cfg["stages"] = [{"name": f"empty{i}", "notebook": "runbooks/empty.ipynb"} for i in range(1, EMPTY_STAGES + 1)]
    (project / "mlops.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project


def statuses(run:dict)->dict:
    "Stage status -> how many stages of a run.json ended with it."
    counts = {}
    for stage in run["stages"]: counts[stage["status"]] = counts.get(stage["status"], 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------------------- profile
def _fresh(code:str)->float:
    "Seconds a fresh interpreter of this environment needs to run `code` (the measured part, excluding its start)."
    wrapped = f"import time as _t\n_s = _t.perf_counter()\n{code}\nprint('T', _t.perf_counter() - _s)"
    proc = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, check=False,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    if proc.returncode != 0: return float("nan")
    return float(next(l for l in proc.stdout.splitlines() if l.startswith("T "))[2:])


def profile_fixed_costs(run_dir:Path, work:Path)->list:
    "Time the pipeline's fixed costs in isolation, each in a fresh interpreter (median of 3 where cheap)."
    import statistics
    empty = work / "empty.ipynb"
    import nbformat
    nb = nbformat.v4.new_notebook(); nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, empty)
    train_nb = next((run_dir / "notebooks").glob("*_train.ipynb"))
    uri = f"sqlite:///{work / 'profile-mlflow.db'}"
    tests = [
        ("python -c pass (interpreter start)", None),
        ("import pandas", "import pandas"),
        ("import sklearn + mlops_nb.train", "import mlops_nb.train"),
        ("import mlflow", "import mlflow"),
        ("import mlflow + mlflow.sklearn", "import mlflow, mlflow.sklearn"),
        ("import mlops_nb.cli (CLI start)", "import mlops_nb.cli"),
        ("papermill: execute a 1-cell notebook", (f"import papermill\npapermill.execute_notebook({str(empty)!r}, {str(work / 'empty.out.ipynb')!r}, "
                                                  "kernel_name='python3', progress_bar=False, log_output=False)")),
        ("  same, without import papermill", (f"import papermill\n_s = _t.perf_counter()\npapermill.execute_notebook({str(empty)!r}, "
                                             f"{str(work / 'empty.out.ipynb')!r}, kernel_name='python3', progress_bar=False, log_output=False)")),
        ("nbconvert HTML export of executed train nb", (f"import nbformat\nfrom nbconvert import HTMLExporter\n"
                                                         f"HTMLExporter().from_notebook_node(nbformat.read({str(train_nb)!r}, as_version=4))")),
        ("  same, exporter already imported", (f"import nbformat\nfrom nbconvert import HTMLExporter\n_s = _t.perf_counter()\n"
                                              f"HTMLExporter().from_notebook_node(nbformat.read({str(train_nb)!r}, as_version=4))")),
        ("MLflow: new SQLite store (migrations)", (f"import mlflow\nfrom mlflow.tracking import MlflowClient\n_s = _t.perf_counter()\n"
                                                   f"MlflowClient({uri!r}).search_experiments()")),
        ("MLflow: create run + log 5 params (existing store)", (f"import mlflow\nfrom mlflow.tracking import MlflowClient\n_s = _t.perf_counter()\n"
                                                                f"c = MlflowClient({uri!r}); r = c.create_run('0')\n"
                                                                "for i in range(5): c.log_param(r.info.run_id, f'p{i}', i)")),
    ]
    rows = []
    for label, code in tests:
        if code is None:
            times = []
            for _ in range(3):
                s = time.perf_counter(); subprocess.run([sys.executable, "-c", "pass"], check=True); times.append(time.perf_counter() - s)
            rows.append((label, statistics.median(times))); continue
        once = "new SQLite" in label
        if once and (work / "profile-mlflow.db").exists(): (work / "profile-mlflow.db").unlink()
        times = [_fresh(code) for _ in range(1 if once else 3)]
        rows.append((label, statistics.median(times)))
    return rows


# ---------------------------------------------------------------------------------------------------------- main
def main(argv=None)->int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000, help="rows of the synthetic dataset (default 100000)")
    p.add_argument("--workdir", type=Path, help="work folder (default: a temporary folder, removed afterwards)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="setting override passed to both sides (repeatable)")
    p.add_argument("--profile", action="store_true", help="also time the pipeline's fixed costs in isolation")
    args = p.parse_args(argv)

    tmp = None
    if args.workdir is None: tmp = work = Path(tempfile.mkdtemp(prefix="mlops-nb-bench-"))
    else: work = args.workdir.resolve(); work.mkdir(parents=True, exist_ok=True)
    project = work / "project"
    if (project / "mlops.yaml").exists(): sys.exit(f"{project} already exists: give an empty --workdir")
    try:
        t = time.perf_counter()
        data = make_dataset(args.rows, work / "data.csv")
        print(f"dataset   {args.rows:,} rows -> {data} ({data.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t:.1f}s)", flush=True)
        subprocess.run([mlops_nb_command(), "init", str(project), "--data", str(data), "--target", TARGET],
                       check=True, capture_output=True, text=True)
        from mlops_nb.config import load_config, parse_overrides
        cfg = load_config(project, parse_overrides(args.set))
        tr = cfg.train
        settings = (f"candidates={','.join(tr.candidates)}, n_splits={tr.n_splits}, n_iter={tr.n_iter}, seed={cfg.seed}, "
                    f"max_train_rows={tr.max_train_rows}")
        print(f"settings  {settings}", flush=True)

        # Untimed warm-up: the first import of each library after install or boot reads it from disk; neither side
        # should pay that for the other. Then warn when other work competes for the CPUs.
        warm = "import matplotlib.pyplot, mlops_nb.train, mlops_nb.evaluate, mlflow.sklearn, papermill, nbconvert, skops.io"
        subprocess.run([sys.executable, "-c", warm], capture_output=True, check=False, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
        load, cpus = os.getloadavg()[0], os.cpu_count() or 1
        if load > 0.5 * cpus: print(f"warning   load average {load:.1f} on {cpus} CPUs: other processes may distort the timings", flush=True)

        print("running   plain script ...", flush=True)
        peer = run_peer(project, args.set, work / "plain")
        print(f"          {peer['wall']:.1f}s wall, {peer['cpu']:.1f}s CPU", flush=True)
        print("running   mlops-nb run ...", flush=True)
        pipe = run_pipeline_cli(project, args.set)
        print(f"          {pipe['wall']:.1f}s wall, {pipe['cpu']:.1f}s CPU  ({pipe['run_dir']})", flush=True)

        metric = tr.primary_metric
        run = pipe["run"]
        ours, theirs = peer["metrics"].get(metric), run["summary"].get("metrics", {}).get(f"test_{metric}")
        stages = {s["name"]: s["seconds"] for s in run["stages"]}
        notebooks = {p.stem.split("_", 1)[1]: p for p in (pipe["run_dir"] / "notebooks").glob("*.ipynb")}

        print("\nper stage          pipeline   = kernel+papermill  + import cell  + work cells  | fixed  | plain script  overhead")
        peer_steps, fixed = peer["steps"], []
        for name, seconds in stages.items():
            cells = stage_cells(notebooks[name]) if name in notebooks else {"imports": 0.0, "work": 0.0}
            rest = seconds - cells["imports"] - cells["work"]
            fixed.append(seconds - cells["work"])
            plain = peer_steps.get(name)
            tail = f"| {plain:10.1f}s  {seconds - plain:+7.1f}s" if plain is not None else "|          -         -"
            print(f"  {name:<14} {seconds:8.1f}s   = {rest:14.1f}s  + {cells['imports']:9.1f}s  + {cells['work']:9.1f}s  "
                  f"| {fixed[-1]:5.1f}s {tail}")
        outside = pipe["wall"] - sum(stages.values())
        print(f"  {'outside stages':<14} {outside:8.1f}s   (CLI start, MLflow store + run set-up, notebook/HTML logging)"
              f"   | imports {peer_steps['imports']:.1f}s")

        print("\n" + "-" * 72)
        print(f"rows: {args.rows:,}   settings: candidates={','.join(tr.candidates)}, n_splits={tr.n_splits}, n_iter={tr.n_iter}")
        print(f"plain script : {peer['wall']:.1f} s   (CPU {peer['cpu']:.1f} s)")
        print(f"mlops-nb run : {pipe['wall']:.1f} s   (ratio {pipe['wall'] / peer['wall']:.2f}x, overhead {pipe['wall'] - peer['wall']:.1f} s;"
              f" CPU {pipe['cpu']:.1f} s, {pipe['cpu'] / peer['cpu']:.2f}x)")
        print("  " + "  ".join(f"{n} {s:.1f}s" for n, s in stages.items()) + f"  outside-stages {outside:.1f}s")
        if ours is None or theirs is None:
            print(f"test {metric}: missing (plain {ours}, pipeline {theirs})")
        elif ours == theirs:
            print(f"same test {metric}: {ours:.4f} == {theirs:.4f}")
        else:
            print(f"DIFFERENT test {metric}: plain {ours!r} != pipeline {theirs!r} (diff {ours - theirs:+.2e}); "
                  f"best candidate plain={peer['best']}, pipeline={run['summary'].get('params', {}).get('best_candidate')}")
        fp = run["summary"].get("tags", {}).get("data_fingerprint")
        if fp and fp != peer["fingerprint"]: print(f"DIFFERENT data fingerprint: plain {peer['fingerprint'][:12]} != pipeline {fp[:12]}")

        print(f"fixed cost per stage (all but its work cells): mean {sum(fixed) / len(fixed):.2f} s over {len(fixed)} stages")

        print("\nrunning   mlops-nb --help (CLI start, median of 3), a cached re-run, and a pipeline of empty stages ...", flush=True)
        start_cli = cli_start()
        print(f"CLI start (mlops-nb --help): {start_cli:.2f} s", flush=True)
        again = run_pipeline_cli(project, args.set)
        counts = statuses(again["run"])
        cached = counts.get("cached", 0)
        print(f"cached re-run: {again['wall']:.2f} s = CLI start + {again['wall'] - start_cli:.2f} s "
              f"({cached} of {len(again['run']['stages'])} stages cached"
              + (f"; {', '.join(f'{n} {k}' for k, n in counts.items() if k != 'cached')}" if cached < len(again["run"]["stages"]) else "") + ")"
              + f"   goal: < 1 s beyond CLI start: {'met' if cached == len(again['run']['stages']) and again['wall'] - start_cli < 1 else 'NOT met'}",
              flush=True)
        blank = run_pipeline_cli(empty_stages_project(work, data), [], ("--no-cache",))
        per_stage = [s["seconds"] for s in blank["run"]["stages"]]
        print(f"empty stages: {blank['wall']:.2f} s for {len(per_stage)} stages = CLI start {start_cli:.2f} s + "
              f"{blank['wall'] - start_cli - sum(per_stage):.2f} s run set-up/records + {sum(per_stage):.2f} s in stages "
              f"({sum(per_stage) / len(per_stage):.2f} s per stage: {', '.join(f'{x:.2f}' for x in per_stage)})")
        goal = 1.2 if args.rows >= 100_000 else 1.5 if args.rows <= 1_000 else None
        if goal: print(f"one run: {pipe['wall'] / peer['wall']:.2f}x the plain script   goal at {args.rows:,} rows: <= {goal}x: "
                       f"{'met' if pipe['wall'] / peer['wall'] <= goal else 'NOT met'}")

        load = os.getloadavg()[0]
        if load > 0.5 * (os.cpu_count() or 1): print(f"warning: load average {load:.1f} at the end: other processes may have distorted the timings")
        if args.profile:
            print("\nfixed costs, each in a fresh interpreter (median of 3):")
            for label, seconds in profile_fixed_costs(pipe["run_dir"], work):
                print(f"  {label:<52} {seconds:6.2f}s")
        return 0
    finally:
        if tmp is not None: shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
