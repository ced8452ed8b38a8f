"""How much faster is a sweep of pipeline runs on a Dask cluster than the same runs one after another?

What it measures
----------------
The same eight pipeline runs (by default the bundled breast-cancer example with `seed=1..8`, small training
settings, the stages `mlops-nb sweep` runs: everything but `register`), done two ways in ONE invocation:

* **one after another** - `run_pipeline` called eight times in this process, as a loop of `mlops-nb run` would
  do them (without the CLI start);
* **sweep** - `run_sweep` on a `LocalCluster` of `--workers` worker processes (default 2), timed end to end:
  cluster start, the tasks (each an ordinary `run_pipeline` in a worker), the comparison table, the plot and the
  sweep run logged to MLflow, cluster stop.

Each way gets its own fresh copy of the project (its own SQLite MLflow store), and `pipeline.cache` is off, so that
neither reuses the other's stage outputs and both do the same work. It prints both wall times, the speed-up (one
after another / sweep) and each run's seconds. On a machine with N free cores the speed-up is bounded by
min(N, workers); the runs of the sweep share the project's store, so each one is also a check that concurrent runs
on one SQLite store work (every run must finish).

How to run
----------
    . .venv/bin/activate
    python benchmarks/sweep.py                     # 8 runs, 2 workers
    python benchmarks/sweep.py --runs 4 --workers 2 --set train.n_iter=2
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

SMALL = ["train.n_iter=1", "train.n_splits=2", "train.candidates=[logistic_regression]", "pipeline.cache=false"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=8, help="pipeline runs in each way (default 8)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the sweep's local cluster (default 2)")
    p.add_argument("--example", default="breast-cancer", help="bundled example the runs train on")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra settings for every run")
    p.add_argument("--workdir", help="where the two projects go (default: a temporary folder)")
    args = p.parse_args(argv)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

    from mlops_nb.config import load_config, merge, parse_overrides
    from mlops_nb.pipeline import run_pipeline
    from mlops_nb.project import example_project
    from mlops_nb.sweep import run_sweep, sweep_tasks

    work = Path(args.workdir or tempfile.mkdtemp(prefix="sweep-bench-")).resolve()
    overrides = parse_overrides(SMALL + args.set)
    tasks = sweep_tasks([f"seed={','.join(str(s) for s in range(1, args.runs + 1))}"])
    print(f"{args.runs} pipeline runs of '{args.example}' ({' '.join(SMALL + args.set)}), in {work}", flush=True)

    serial_project = example_project(args.example, work / "one-after-another")
    stages = [s for s in load_config(serial_project, overrides).stages if s != "register"]  # what the sweep runs
    base = merge(overrides, {"stages": stages})
    serial, statuses = [], []
    start = time.perf_counter()
    for task in tasks:
        t = time.perf_counter()
        result = run_pipeline(load_config(serial_project, merge(base, task.overrides)), warn=lambda line: None)
        serial.append(time.perf_counter() - t)
        statuses.append(result.status)
        print(f"  one after another: run {task.index} {result.status} {serial[-1]:.1f}s", flush=True)
    serial_total = time.perf_counter() - start

    sweep_project = example_project(args.example, work / "sweep")
    start = time.perf_counter()
    sweep = run_sweep(sweep_project, tasks, overrides, workers=args.workers,
                      progress=lambda event, d: print(f"  sweep: {d}" if event == "cluster" else
                                                      f"  sweep: run {d[2].index} {d[3]['status']} {d[3]['seconds']}s", flush=True))
    sweep_total = time.perf_counter() - start

    print()
    print(f"one after another  {serial_total:8.1f}s   ({args.runs} runs, mean {sum(serial) / len(serial):.1f}s per run)")
    print(f"sweep, {args.workers} workers   {sweep_total:8.1f}s   (mean {sweep.table['seconds'].mean():.1f}s per run inside the workers)")
    print(f"speed-up           {serial_total / sweep_total:8.2f}x")
    failed = [s for s in statuses if s != "FINISHED"] + [s for s in sweep.table["status"] if s != "FINISHED"]
    if failed:
        print(f"error: {len(failed)} runs did not finish: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
