"""How fast does mlops-nb score a batch for drift against a stored reference profile, and does it reach Evidently's verdicts?

What it measures
----------------
The same drift statistics on the same seeded files, two ways:

* **mlops-nb** - the reference profile is built once from the reference file (timed apart: it happens at training
  time), saved as JSON, and loaded; then the profiled columns of the current file are streamed in chunks of
  `monitor.chunk_rows` rows as Arrow tables (`mlops_nb.batch.read_tables`: text dictionary-encoded, no pandas frame)
  into a `WindowAccumulator` and scored with `score_window`: the counting and scoring of
  `mlops-nb monitor --input FILE`, minus validating the rows against the contract and scoring them with the model. Two lines: the same per-column statistics as
  Evidently (`mlops-nb`), and everything the profile holds (`mlops-nb (all of monitor)`: also the multivariate signal,
  a PCA reconstruction error per row).
* **Evidently** (the peer) - `Report([DataDriftPreset()])` (0.7.x) on the reference and current files read with
  `pandas.read_parquet`, with an explicit `DataDefinition` (numerical and categorical columns). Evidently needs
  pandas < 3, so it runs in its own virtual environment, `benchmarks/.venv-evidently`, created on first use with
  `python -m venv` and `pip install "evidently>=0.7,<0.8" "pandas<3" pyarrow`.

Both use the statistics Evidently picks for more than 1,000 reference rows: the Wasserstein distance normed by the
reference standard deviation for numeric columns and the Jensen-Shannon distance (natural log) of the category
frequencies for categorical ones, a column drifting when its statistic reaches 0.1. mlops-nb computes them from the
profile's bins, Evidently from the raw values: the values differ a little, the verdicts must not. The table lists
every column's statistic and verdict from both tools; "agree" means both verdicts are the designed one.

The data: `--rows` rows (default 1,000,000) x 50 columns, 25 numeric (normal, exponential, uniform, Poisson counts
and a two-component mixture, five of each with their own location and scale) and 25 categorical (2 to 40 text
categories with skewed frequencies), plus a `label` column neither tool tests. Ten columns drift, five of each kind,
by designed amounts (the "designed" figure of the table is the exact population value of the statistic: a mean
shift of 0.3 sd is a normed Wasserstein distance of 0.3). The other 40 are drawn from the same distribution in both
files. The reference file always has at most 1,000,000 rows; `--rows 10000000` writes a 10M-row current file and
runs mlops-nb only (the streaming goal).

Each tool runs in a fresh interpreter (mlops-nb after a warm-up on 1,000 rows). Wall time covers reading the files
and computing every column's verdict. Peak memory is the process's high-water resident set size (`VmHWM`, reset
through `/proc/self/clear_refs` after the imports; Linux only) above its resident size at that moment: what the batch
costs on top of the loaded libraries (for Evidently that includes the two files as DataFrames, which it needs).

How to run
----------
    . .venv/bin/activate
    nice -n 10 python benchmarks/drift.py                   # 1M x 50, mlops-nb and Evidently (a few minutes)
    nice -n 10 python benchmarks/drift.py --rows 10000000   # 10M x 50 streamed, mlops-nb only
    python benchmarks/drift.py --rows 100000                # a quick check
    python benchmarks/drift.py --chunk-rows 25000           # the memory/speed trade-off of monitor.chunk_rows
    python benchmarks/drift.py --keep /tmp/drift-files      # keep (and reuse) the files and the profile

The timings are wall-clock on a shared machine: the script prints the load average and warns when other processes
compete for the CPUs, and it reports CPU time next to wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_REQUIREMENTS = ("evidently>=0.7,<0.8", "pandas<3", "pyarrow")
REFERENCE_ROWS = 1_000_000
CHUNK = 1_000_000
NUMERIC_KINDS = ("normal", "exponential", "uniform", "poisson", "mixture")
CARDINALITIES = (2, 5, 12, 25, 40)
DRIFTED = (0, 6, 12, 18, 24)  # the same positions among the numeric and among the categorical columns: one per kind
THRESHOLD = 0.1
NUMERIC = [f"num_{i:02d}" for i in range(25)]
CATEGORICAL = [f"cat_{i:02d}" for i in range(25)]
FEATURES = NUMERIC + CATEGORICAL


# ---------------------------------------------------------------------------------------------------------- data
def numeric_design(i:int)->dict:
    "Column `num_i`: its kind, reference parameters, the drifted parameters (or None) and the designed normed distance."
    kind = NUMERIC_KINDS[i % len(NUMERIC_KINDS)]
    loc, scale = 10.0 * (i // 5) - 20.0, 1.0 + 0.5 * (i // 5)
    if kind == "normal": ref, cur, effect = {"loc": loc, "scale": scale}, {"loc": loc + 0.3 * scale, "scale": scale}, 0.3
    elif kind == "exponential": ref, cur, effect = {"scale": scale}, {"scale": 1.4 * scale}, 0.4        # W1 = 0.4 mean, sd = mean
    elif kind == "uniform": ref, cur, effect = {"low": loc, "high": loc + scale}, {"low": loc + 0.1 * scale, "high": loc + 1.1 * scale}, 0.1 * 12 ** 0.5
    elif kind == "poisson": ref, cur, effect = {"lam": 20.0 + 4 * i}, {"lam": 20.0 + 4 * i + 0.5 * (20.0 + 4 * i) ** 0.5}, 0.5
    else:  # two normals (sd 0.5 scale) at loc -/+ scale; drift moves 20% of the mass from the left one to the right one
        ref, cur = {"loc": loc, "scale": scale, "right": 0.5}, {"loc": loc, "scale": scale, "right": 0.7}
        effect = 0.2 * 2 * scale / (scale * (0.25 + 1.0) ** 0.5)
    drifted = i in DRIFTED
    return {"kind": kind, "reference": ref, "current": cur if drifted else ref, "designed": effect if drifted else 0.0}


def categorical_design(i:int)->dict:
    "Column `cat_i`: its categories, reference and current frequencies and the designed Jensen-Shannon distance."
    import numpy as np
    from scipy.optimize import brentq
    from scipy.spatial.distance import jensenshannon

    k = CARDINALITIES[i % len(CARDINALITIES)]
    ref = np.array([0.7, 0.3]) if k == 2 else 1.0 / np.arange(1, k + 1) ** (0.6 + 0.1 * (i // 5))
    ref = ref / ref.sum()
    cur, target = ref, (0.2, 0.25, 0.3, 0.2, 0.25)[DRIFTED.index(i)] if i in DRIFTED else 0.0
    if target:  # move a share t of the frequencies onto the reversed order, t chosen to give the target distance
        t = brentq(lambda t: jensenshannon(ref, (1 - t) * ref + t * ref[::-1]) - target, 0.0, 1.0)
        cur = (1 - t) * ref + t * ref[::-1]
    return {"categories": [f"{CATEGORICAL[i]}_{j:02d}" for j in range(k)], "reference": ref, "current": cur,
            "designed": float(jensenshannon(ref, cur))}


def _chunk(which:str, rows:int, part:int, seed:int):
    "An Arrow table of `rows` rows of the reference or current file (a deterministic function of seed, file and part)."
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng([seed, part, 0 if which == "reference" else 1])
    arrays, names = [], []
    for i, name in enumerate(NUMERIC):
        d = numeric_design(i)
        p = d[which]
        if d["kind"] == "normal": x = rng.normal(p["loc"], p["scale"], rows)
        elif d["kind"] == "exponential": x = rng.exponential(p["scale"], rows)
        elif d["kind"] == "uniform": x = rng.uniform(p["low"], p["high"], rows)
        elif d["kind"] == "poisson": x = rng.poisson(p["lam"], rows).astype(float)
        else: x = rng.normal(np.where(rng.random(rows) < p["right"], p["loc"] + p["scale"], p["loc"] - p["scale"]), 0.5 * p["scale"])
        arrays.append(pa.array(np.round(x, 3))); names.append(name)  # measured to 3 decimals, as real readings are
    for i, name in enumerate(CATEGORICAL):
        d = categorical_design(i)
        codes = rng.choice(len(d["categories"]), rows, p=d[which])
        arrays.append(pa.DictionaryArray.from_arrays(pa.array(codes.astype("int32")), pa.array(d["categories"])).cast(pa.string()))
        names.append(name)
    arrays.append(pa.array(np.where(arrays[1].to_numpy() + rng.normal(0, 1, rows) > 1.5, "yes", "no"))); names.append("label")
    return pa.table(arrays, names=names)


def write_file(path:Path, which:str, rows:int, seed:int)->None:
    "Write the reference or current file, a million rows at a time (one Parquet row group each)."
    import pyarrow.parquet as pq

    writer = None
    for part, start in enumerate(range(0, rows, CHUNK)):
        table = _chunk(which, min(CHUNK, rows - start), part, seed)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


# ---------------------------------------------------------------------------------------------------------- memory
def _status(field:str)->float:
    "A field of /proc/self/status, in MiB."
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE).group(1)) / 1024


def memory_baseline()->float:
    "Reset the high-water mark of the resident set; return the resident size now (MiB)."
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def memory_added(baseline:float)->dict:
    return {"peak_mb": _status("VmHWM"), "added_mb": _status("VmHWM") - baseline}


# ---------------------------------------------------------------------------------------------------------- evidently
def evidently_worker(folder:Path, chunk_rows:int|None=None)->dict:
    "Evidently's DataDriftPreset on the two files (this runs in benchmarks/.venv-evidently)."
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    baseline = memory_baseline()
    start, cpu = time.perf_counter(), time.process_time()
    reference = pd.read_parquet(folder / "reference.parquet", columns=FEATURES)
    current = pd.read_parquet(folder / "current.parquet", columns=FEATURES)
    read = time.perf_counter() - start
    snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(current, data_definition=definition),
                                               Dataset.from_pandas(reference, data_definition=definition))
    columns = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            value = float(metric["value"])
            columns[config["column"]] = {"test": config["method"], "statistic": value, "threshold": config["threshold"],
                                         "drifted": value >= config["threshold"]}
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"tool": "Evidently", "wall": wall, "cpu": cpu, "read": read, "columns": columns, "rows": len(current),
            **memory_added(baseline)}


def evidently_python()->Path:
    "The interpreter of benchmarks/.venv-evidently, created and filled on first use."
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print(f"setup     creating {EVIDENTLY_VENV.relative_to(HERE.parent)} with {', '.join(EVIDENTLY_REQUIREMENTS)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *EVIDENTLY_REQUIREMENTS], check=True)
    return python


# ---------------------------------------------------------------------------------------------------------- mlops-nb
def profile_worker(folder:Path, chunk_rows:int|None=None)->dict:
    "Build the reference profile from the reference file, as the evaluate stage does at training time; save it as JSON."
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from mlops_nb.contract import infer_contract
    from mlops_nb.prepare import build_preprocessor
    from mlops_nb.profile import build_profile
    from mlops_nb.train import model_pipeline

    start, cpu = time.perf_counter(), time.process_time()
    train = pd.read_parquet(folder / "reference.parquet")
    held_out = _chunk("reference", 20_000, 10_000, 0).to_pandas()  # rows the model never saw
    contract = infer_contract(train.iloc[:100_000], "label")
    sample = train.iloc[:50_000]
    model = model_pipeline(build_preprocessor(contract, sample), LogisticRegression(max_iter=200)).fit(sample[FEATURES], sample["label"])
    fitted = time.perf_counter() - start
    profile = build_profile(train, held_out, model, contract, positive_class="yes", name="bench")
    profile.save(folder / "profile.json")
    kinds = {name: p.kind for name, p in profile.features.items()}
    return {"tool": "mlops-nb profile", "wall": time.perf_counter() - start, "cpu": time.process_time() - cpu, "model": fitted,
            "bytes": (folder / "profile.json").stat().st_size, "kinds": kinds, "rows": len(train)}


def score(profile, path:Path, settings)->tuple:
    "Stream `path` through a WindowAccumulator and score it; (report, seconds reading, seconds counting, seconds scoring)."
    from mlops_nb.batch import read_tables
    from mlops_nb.drift import score_window
    from mlops_nb.profile import WindowAccumulator

    accumulator, reading, counting = WindowAccumulator(profile), 0.0, 0.0
    chunks = read_tables(path, settings.chunk_rows, columns=list(profile.features))
    while True:
        start = time.perf_counter()
        try: table = next(chunks)
        except StopIteration: break
        middle = time.perf_counter()
        accumulator.add(table)
        reading, counting = reading + middle - start, counting + time.perf_counter() - middle
    start = time.perf_counter()
    report = score_window(profile, accumulator.counts(), settings, "roc_auc")
    return report, reading, counting, time.perf_counter() - start


def warm_up(profile, path:Path, settings)->None:
    "Score 1,000 rows once: imports and first-use caches are not part of the timing."
    from mlops_nb.batch import read_tables
    from mlops_nb.drift import score_window
    from mlops_nb.profile import WindowAccumulator

    accumulator = WindowAccumulator(profile)
    accumulator.add(next(read_tables(path, 1000, columns=list(profile.features))))
    score_window(profile, accumulator.counts(), settings, "roc_auc")


def mlops_worker(folder:Path, chunk_rows:int|None=None, full:bool=False)->dict:
    "Score the current file against the stored profile: the same statistics as Evidently, or (`full`) all of monitoring."
    from dataclasses import replace

    from mlops_nb.config import MonitorSettings
    from mlops_nb.profile import Profile

    settings = MonitorSettings() if chunk_rows is None else MonitorSettings(chunk_rows=chunk_rows)
    profile = Profile.load(folder / "profile.json")
    if not full: profile = replace(profile, multivariate=None, calibration=None)
    warm_up(profile, folder / "current.parquet", settings)
    baseline = memory_baseline()
    start, cpu = time.perf_counter(), time.process_time()
    report, reading, counting, scoring = score(profile, folder / "current.parquet", settings)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    columns = {c.column: {"test": c.test, "statistic": c.statistic, "threshold": c.threshold, "drifted": c.drifted, "reason": c.reason}
               for c in report.columns}
    return {"tool": "mlops-nb" + (" (all of monitor)" if full else ""), "wall": wall, "cpu": cpu, "read": reading, "count": counting,
            "score": scoring, "columns": columns, "rows": report.rows, "multivariate": report.multivariate, "chunk_rows": settings.chunk_rows,
            **memory_added(baseline)}


# ---------------------------------------------------------------------------------------------------------- main
def run_worker(python:Path, tool:str, folder:Path, chunk_rows:int|None=None)->dict:
    "Run one tool's worker in a fresh interpreter; return its measurements."
    chunks = [] if chunk_rows is None else ["--chunk-rows", str(chunk_rows)]
    proc = subprocess.run([str(python), str(Path(__file__).resolve()), "--worker", tool, "--folder", str(folder), *chunks],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0: sys.exit(f"{tool} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])


WORKERS = {"evidently": evidently_worker, "profile": profile_worker, "mlops-nb": mlops_worker,
           "mlops-nb-full": lambda folder, chunk_rows: mlops_worker(folder, chunk_rows, full=True)}


def _fmt(value, digits:int=3)->str:
    return "-" if value is None else f"{value:.{digits}f}"


def verdict(column:dict|None)->str:
    if column is None: return "-"
    return f"{_fmt(column['statistic'])} {'drift' if column['drifted'] else 'ok' if column['drifted'] is False else '?'}"


SAME_TEST = {"wasserstein": "Wasserstein distance (normed)", "jensen_shannon": "Jensen-Shannon distance"}  # mlops-nb -> Evidently


def print_columns(results:list)->int:
    "The per-column table; returns how many columns got another test or verdict than designed from either tool."
    tools = [r for r in results if r["tool"] in ("mlops-nb", "Evidently")]
    print(f"\n{'column':8} {'kind':16} {'test':15} {'designed':>9}" + "".join(f" {r['tool']:>17}" for r in tools) + "  agree")
    differ = 0
    for name in FEATURES:
        i = int(name[-2:])
        design = numeric_design(i) if name in NUMERIC else categorical_design(i)
        kind = design["kind"] if name in NUMERIC else f"{len(design['categories'])} categories"
        expected = design["designed"] >= THRESHOLD
        found = [r["columns"].get(name, {}) for r in tools]
        test = found[0].get("test", "-")
        same = all(SAME_TEST.get(test) == f.get("test") for f in found[1:])
        agree = same and all(f.get("drifted") == expected for f in found)
        differ += not agree
        print(f"{name:8} {kind:16} {test:15} {design['designed']:>9.3f}" + "".join(f" {verdict(f or None):>17}" for f in found)
              + ("  yes" if agree else "  NO" + ("" if same else " (another test)")))
    return differ


def _rows(path:Path)->int|None:
    "Rows of an existing Parquet file, None when there is none."
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows if path.exists() else None


def main(argv=None)->int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the current file (default 1000000); above 1M: mlops-nb only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-evidently", action="store_true", help="run mlops-nb only")
    p.add_argument("--chunk-rows", type=int, help="rows per chunk of the mlops-nb stream (default: monitor.chunk_rows)")
    p.add_argument("--keep", type=Path, help="write the files to this folder and keep them (default: a temporary folder)")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(WORKERS[args.worker](args.folder, args.chunk_rows)))
        return 0

    evidently = not args.no_evidently and args.rows <= REFERENCE_ROWS
    python = evidently_python() if evidently else None
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    reference_rows = min(args.rows, REFERENCE_ROWS)
    print(f"data      reference {reference_rows:,} rows, current {args.rows:,} rows x 50 columns (25 numeric, 25 categorical, "
          f"10 drifted), seed {args.seed}; {cpus} CPUs, load average {load:.1f}", flush=True)
    if load > 0.5 * cpus: print("warning   other processes compete for the CPUs: wall times are inflated, CPU times less so", flush=True)
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        for which, rows in (("reference", reference_rows), ("current", args.rows)):
            if _rows(folder / f"{which}.parquet") != rows: write_file(folder / f"{which}.parquet", which, rows, args.seed)
        size = (folder / "current.parquet").stat().st_size / 2**20
        print(f"written   in {time.perf_counter() - start:.1f}s; current.parquet {size:,.0f} MiB", flush=True)
        profile = folder / "profile.json"
        if not profile.exists() or profile.stat().st_mtime < (folder / "reference.parquet").stat().st_mtime:
            print("running   mlops-nb profile (training time, not part of the comparison) ...", flush=True)
            built = run_worker(Path(sys.executable), "profile", folder)
            print(f"profile   {built['wall']:.1f}s ({built['cpu']:.1f}s CPU, {built['model']:.1f}s of it fitting the model), "
                  f"{built['bytes'] / 1024:,.0f} KiB of JSON", flush=True)
        results = []
        for tool in ("mlops-nb", "mlops-nb-full") + (("evidently",) if evidently else ()):
            print(f"running   {tool} ...", flush=True)
            results.append(run_worker(python if tool == "evidently" else Path(sys.executable), tool, folder, args.chunk_rows))
    differ = print_columns(results)
    peer = next((r for r in results if r["tool"] == "Evidently"), None)
    print(f"\n{'':26}{'wall (CPU)':>18}{'x Evidently wall (CPU)':>24}{'peak RSS':>11}{'added':>10}{'drifted':>9}")
    for r in results:
        ratio = f"{peer['wall'] / r['wall']:.0f}x ({peer['cpu'] / r['cpu']:.0f}x)" if peer else "-"
        found = sum(c["drifted"] is True for c in r["columns"].values())
        print(f"{r['tool']:<26}{r['wall']:>8.2f}s ({r['cpu']:6.2f}s){ratio:>24}{r['peak_mb']:>8,.0f} MB{r['added_mb']:>7,.0f} MB{found:>9}")
    for r in results:
        if "count" in r: print(f"{r['tool']}: {r['chunk_rows']:,} rows per chunk; reading {r['read']:.2f}s, counting {r['count']:.2f}s, "
                               f"scoring {r['score']:.3f}s" + (f"; multivariate: {r['multivariate'].get('reason')}" if r.get("multivariate") else ""))
    if peer: print(f"Evidently: reading {peer['read']:.2f}s, the report {peer['wall'] - peer['read']:.2f}s")
    ours, full = results[0], results[1]
    goals = [(f"{args.rows:,} x 50 scored with the verdicts designed", differ == 0),
             ("<= +100 MiB per batch", ours["added_mb"] <= 100 and full["added_mb"] <= 100)]
    if peer and args.rows == 1_000_000: goals.insert(0, (">= 100x faster than Evidently at 1M x 50 (wall)", peer["wall"] / ours["wall"] >= 100))
    if args.rows >= 10_000_000: goals.append(("10M x 50 streamed in <= 20 s", ours["wall"] <= 20 and full["wall"] <= 20))
    print("\nmlops-nb goals: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in goals))
    load = os.getloadavg()[0]
    if load > 0.5 * cpus: print(f"warning: load average {load:.1f} at the end: other processes may have distorted the timings")
    return 0 if all(ok for _, ok in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
