"""How fast does `mlops_nb.validate` check a batch against the data contract, and does it catch every bad row?

What it measures
----------------
Two validators on the same seeded data with the same rules:

* **mlops-nb** - `validate(df, contract)`: accepted rows coerced to their kinds, quarantined rows with their reasons,
  and the quality report.
* **pandera** (the peer) - a `DataFrameSchema` built from the *same* `Contract` (one `Column` per checked contract
  column: its dtype with `coerce=True`, `nullable`, `ge`/`le` for the bounds, `isin` for the categories and labels),
  run with `validate(df, lazy=True)`; a bad row is one that appears in the `failure_cases` of its `SchemaErrors`.

The data: the breast cancer rows (18 numeric features, a categorical `site` column drawn at random, and the 0/1
`target`: 20 columns) resampled to `--rows` rows (default 1,000,000). The contract is inferred from the 569 clean rows.
Then `--bad` rows (default 10,000) are broken, one value each, in seven ways: text in a number column (`mean radius`
holds objects, as a CSV export with stray text does), a number above its column's max, one below its min, a missing
value in a column that may not have one, an unseen category, an unknown label and a missing label (`target` holds
objects too).

Each validator runs in a fresh interpreter that builds the data, warms up on 1,000 rows, then times three calls on the
whole batch: the first call (what a batch job pays: fresh memory is page-faulted in) and the median of the three. Peak
memory is that process's maximum resident set size (`getrusage`), in total and above what it held before the first
call (the data itself). The bad rows each validator found, missed and wrongly flagged are compared with the injected
ones; for mlops-nb the reason of every injected row is also checked against the expected one.

Call latency, the cost a server pays per request: the median (and 90th percentile) wall time of many calls on 1 row
and on 100 rows of clean data.

How to run
----------
    . .venv/bin/activate
    pip install pandera                          # the peer (a dev requirement)
    python benchmarks/validation.py              # 1,000,000 rows, 10,000 bad
    python benchmarks/validation.py --rows 200000 --bad 2000 --calls 500

The timings are wall-clock on a shared machine: the script prints the load average and warns when other processes
compete for the CPUs, and it reports CPU time next to wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

TOOLS = ("mlops-nb", "pandera")
SITES = ("left", "right", "bilateral")


# ---------------------------------------------------------------------------------------------------------- data
def make_data(rows:int, bad:int, seed:int=0):
    "The seeded batch, its contract (inferred from the clean rows) and the injected bad rows: {row: expected reason}."
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    from mlops_nb.contract import infer_contract
    from mlops_nb.validate import _number

    cancer = load_breast_cancer(as_frame=True).frame
    rng = np.random.default_rng(seed)
    clean = cancer[list(cancer.columns[:18])].copy()
    clean.insert(2, "site", rng.choice(SITES, len(clean)))
    clean["target"] = cancer["target"]
    contract = infer_contract(clean, "target")
    big = clean.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    texture, area = contract.column("mean texture"), contract.column("mean area")
    high, low = texture.max + 1000.0, area.min - 1000.0
    kinds = [("mean radius", "not measured", "mean radius: not a number ('not measured')"),
             ("mean texture", high, f"mean texture: {_number(high)} above max {_number(texture.max)}"),
             ("mean area", low, f"mean area: {_number(low)} below min {_number(area.min)}"),
             ("mean perimeter", np.nan, "mean perimeter: missing (not nullable)"),
             ("site", "upper", "site: unseen category 'upper'"),
             ("target", "unknown", "target: unknown label 'unknown'"),
             ("target", None, "target: missing")]
    assert all(not contract.column(c).nullable for c in ("mean perimeter", "target"))
    big["mean radius"] = big["mean radius"].astype(object)
    big["target"] = big["target"].astype(object)
    positions = rng.choice(rows, bad, replace=False)
    expected = {}
    for (column, value, reason), part in zip(kinds, np.array_split(positions, len(kinds))):
        big.loc[part, column] = value
        expected.update(dict.fromkeys(part.tolist(), reason))
    return big, contract, expected, clean


# ---------------------------------------------------------------------------------------------------------- validators
def pandera_schema(contract):
    "A pandera schema with the contract's rules: dtype (coerced), nullability, bounds, categories and labels."
    import pandera.pandas as pa

    columns = {}
    for spec in contract.columns:
        if spec.role == "ignore": continue
        checks, is_target = [], spec.name == contract.target
        if spec.kind in ("numeric", "integer") and not is_target:
            dtype = "float64" if spec.kind == "numeric" else "Int64" if spec.nullable else "int64"
            if spec.min is not None: checks.append(pa.Check.ge(spec.min))
            if spec.max is not None: checks.append(pa.Check.le(spec.max))
        elif spec.kind == "boolean": dtype = "boolean" if spec.nullable else "bool"
        elif spec.kind == "datetime": dtype = "datetime64[ns]"
        elif spec.categories is not None:
            labels = list(spec.categories)
            dtype = "int64" if all(isinstance(k, int) and not isinstance(k, bool) for k in labels) else "str"
            checks.append(pa.Check.isin(labels if is_target else [str(k) for k in labels]))
        else: dtype = "str"
        columns[spec.name] = pa.Column(dtype, checks, nullable=spec.nullable and not is_target, coerce=True)
    return pa.DataFrameSchema(columns, strict=False)


def validator(tool:str, contract):
    "For `tool`: the bare call df -> result, and a function df -> (set of bad row positions, {row: reasons} or None)."
    if tool == "mlops-nb":
        from mlops_nb.validate import validate
        def call(df): return validate(df, contract)
        def run(df):
            q = call(df).quarantined
            return set(q["_row"].tolist()), dict(zip(q["_row"].tolist(), q["_reasons"]))
        return call, run
    import pandera.pandas as pa
    schema = pandera_schema(contract)
    def call(df): return schema.validate(df, lazy=True)
    def run(df):
        try: call(df)
        except pa.errors.SchemaErrors as e:
            index = e.failure_cases["index"].dropna()
            return set(df.index.get_indexer(index.unique())) - {-1}, None
        return set(), None
    return call, run


def _peak_mb()->float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(tool:str, rows:int, bad:int, calls:int, seed:int)->dict:
    "Everything measured for one validator, in this (fresh) process."
    big, contract, expected, clean = make_data(rows, bad, seed)
    call, run = validator(tool, contract)
    run(big.iloc[:1000])  # warm-up: imports, first-use caches
    before, times, cpus, found, reasons = _peak_mb(), [], [], None, None
    for _ in range(3):
        start, cpu = time.perf_counter(), time.process_time()
        found, reasons = run(big)
        times.append(time.perf_counter() - start); cpus.append(time.process_time() - cpu)
    peak = _peak_mb()
    injected = set(expected)
    wrong_reason = None if reasons is None else sum(1 for r in injected & found if expected[r] not in reasons[r])
    latency = {}
    for n, repeat in ((1, calls), (100, max(calls // 4, 20))):
        sample = clean.iloc[:n]
        call(sample)
        laps, cpu_laps = [], []
        for _ in range(repeat):
            start, cpu = time.perf_counter(), time.process_time()
            call(sample)
            laps.append(time.perf_counter() - start); cpu_laps.append(time.process_time() - cpu)
        laps.sort()
        latency[str(n)] = {"median_ms": 1000 * statistics.median(laps), "p90_ms": 1000 * laps[int(0.9 * (len(laps) - 1))],
                           "cpu_median_ms": 1000 * statistics.median(cpu_laps)}
    return {"tool": tool, "first": times[0], "median": statistics.median(times), "cpu_first": cpus[0], "cpu_median": statistics.median(cpus),
            "peak_mb": peak, "added_mb": peak - before, "found": len(injected & found), "missed": len(injected - found),
            "false_alarms": len(found - injected), "wrong_reason": wrong_reason, "latency": latency,
            "columns": big.shape[1], "rows": len(big)}


def run_worker(tool:str, args)->dict:
    "Run `worker` in a fresh interpreter; return its measurements."
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tool, "--rows", str(args.rows), "--bad", str(args.bad),
           "--calls", str(args.calls), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0: sys.exit(f"{tool} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[7:])


# ---------------------------------------------------------------------------------------------------------- main
def main(argv=None)->int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the batch (default 1000000)")
    p.add_argument("--bad", type=int, default=10_000, help="rows with one injected bad value (default 10000)")
    p.add_argument("--calls", type=int, default=2000, help="calls timed for the 1-row latency (a quarter of them for 100 rows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=TOOLS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.rows, args.bad, args.calls, args.seed)))
        return 0

    import importlib.util
    if importlib.util.find_spec("pandera") is None: sys.exit("pandera is not installed: pip install pandera (it is a dev requirement)")
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    print(f"batch     {args.rows:,} rows x 20 columns, {args.bad:,} bad rows of 7 kinds, seed {args.seed}; "
          f"{cpus} CPUs, load average {load:.1f}", flush=True)
    if load > 0.5 * cpus: print("warning   other processes compete for the CPUs: wall times are inflated, CPU times less so", flush=True)
    results = []
    for tool in TOOLS:
        print(f"running   {tool} ...", flush=True)
        results.append(run_worker(tool, args))

    print(f"\n{'':10}{'first call (CPU)':>20}{'median of 3 (CPU)':>20}{'peak RSS':>11}{'added':>9}"
          f"{'bad found':>11}{'missed':>8}{'false alarms':>14}{'wrong reason':>14}")
    for r in results:
        reason = "-" if r["wrong_reason"] is None else f"{r['wrong_reason']:,}"
        print(f"{r['tool']:<10}{r['first']:>10.2f}s ({r['cpu_first']:.2f}s){r['median']:>11.2f}s ({r['cpu_median']:.2f}s)"
              f"{r['peak_mb']:>8,.0f} MB{r['added_mb']:>6,.0f} MB{r['found']:>11,}{r['missed']:>8,}{r['false_alarms']:>14,}{reason:>14}")
    print("\ncall latency on clean rows, wall median / 90th percentile (CPU median):")
    for n in ("1", "100"):
        print(f"  {n:>3} row{'s' if n != '1' else ' '}  " + "   ".join(
            f"{r['tool']} {r['latency'][n]['median_ms']:.2f} / {r['latency'][n]['p90_ms']:.2f} ms "
            f"({r['latency'][n]['cpu_median_ms']:.2f} ms)" for r in results))
    ours = results[0]
    goals = [("1M x 20 batch <= 0.75 s (median of 3)", ours["median"] <= 0.75 or ours["rows"] < 1_000_000),
             ("every bad row found, with its reason", ours["missed"] == 0 and ours["false_alarms"] == 0 and ours["wrong_reason"] == 0),
             ("1-row call <= 1 ms (median)", ours["latency"]["1"]["median_ms"] <= 1.0),
             ("100-row call <= 1 ms (median)", ours["latency"]["100"]["median_ms"] <= 1.0)]
    print("\nmlops-nb goals: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in goals))
    load = os.getloadavg()[0]
    if load > 0.5 * cpus: print(f"warning: load average {load:.1f} at the end: other processes may have distorted the timings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
