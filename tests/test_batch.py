"""Batch scoring (`mlops_nb.batch.score_file`, `mlops-nb predict`): exact counts and reasons on messy files, CSV and
Parquet, chunked = unchunked, bounded memory, atomic outputs, model references, and row conservation on any frame."""
from __future__ import annotations

import contextlib
import io
import re
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, show
from fastcore.test import test_eq as _eq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving import add_version, example_frame, project_client, served_project

from mlops_nb import batch
from mlops_nb.batch import open_model, quarantine_path, read_chunks, score_file
from mlops_nb.cli import main
from mlops_nb.config import UsageError, load_config
from mlops_nb.contract import Contract

N_MESSY = 120


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "The breast-cancer project: v1 (a logistic regression) @champion, v2 (a random forest) @challenger."
    from sklearn.ensemble import RandomForestClassifier
    p = served_project(tmp_path_factory.mktemp("batch"))
    assert add_version(p) == 1
    assert add_version(p, RandomForestClassifier(n_estimators=20, random_state=0), promote=False) == 2
    return p


@pytest.fixture(scope="module")
def contract(project):
    return Contract.from_yaml(project / load_config(project).contract)


@pytest.fixture(scope="module")
def model(project):
    return open_model(project_client(project), "served")


def features_frame(n: int, seed: int = 0) -> pd.DataFrame:
    "`n` rows of the example's features (no target), sampled with replacement."
    frame = example_frame()
    frame = frame.drop(columns=frame.columns[-1])
    return frame.sample(n, replace=True, random_state=seed).reset_index(drop=True)


def messy_frame(contract: Contract) -> tuple[pd.DataFrame, dict]:
    "N_MESSY rows with known bad ones; returns (frame, {row: reason prefix})."
    frame = features_frame(N_MESSY).astype(object)
    a, b = contract.features[0].name, contract.features[1].name
    frame.loc[3, a] = "n/a-ish"
    frame.loc[10, b] = contract.column(b).max * 10 + 1
    frame.loc[11, a] = None
    frame.loc[50, a], frame.loc[50, b] = "x", "y"
    frame.loc[119, b] = -1e9
    frame["customer_id"] = [f"id-{i}" for i in range(N_MESSY)]  # not in the contract: passed through, not used
    bad = {3: f"{a}: not a number ('n/a-ish')", 10: f"{b}: ", 11: f"{a}: missing (not nullable)",
           50: f"{a}: not a number ('x'); {b}: not a number ('y')", 119: f"{b}: "}
    return frame, bad


def _read(path):
    return pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path, dtype={"customer_id": str})


# ---------------------------------------------------------------- exact counts and reasons

@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_messy_file_exact_counts_reasons_and_row_conservation(project, contract, model, tmp_path, fmt):
    frame, bad = messy_frame(contract)
    src = tmp_path / f"messy.{fmt}"
    frame.to_csv(src, index=False) if fmt == "csv" else frame.astype(str).replace({"None": None}).to_parquet(src)
    summary = score_file(project, src, tmp_path / f"out.{fmt}", chunk_rows=16, progress=False)
    _eq((summary["rows"], summary["accepted"], summary["quarantined"], summary["version"], summary["model"]),
        (N_MESSY, N_MESSY - len(bad), len(bad), 1, "served"))
    scored, quarantined = _read(tmp_path / f"out.{fmt}"), _read(tmp_path / f"out.quarantine.{fmt}")
    _eq(quarantined["_row"].tolist(), sorted(bad))
    for row, reason in zip(quarantined["_row"], quarantined["_reasons"]):
        assert reason.startswith(bad[row]), (row, reason)
    assert "above max" in quarantined.set_index("_row").loc[10, "_reasons"] and "below min" in quarantined.set_index("_row").loc[119, "_reasons"]
    # accepted + quarantined = input, exactly: every row once, with its own cells
    _eq(sorted(scored["_row"].tolist() + quarantined["_row"].tolist()), list(range(N_MESSY)))
    _eq(scored["customer_id"].tolist(), [f"id-{i}" for i in scored["_row"]])
    _eq(quarantined["customer_id"].tolist(), [f"id-{i}" for i in quarantined["_row"]])
    _eq(len(scored) + len(quarantined), len(frame))
    # the scores are the version's pipeline on the same rows
    probabilities = [f"probability_{c}" for c in model.classes]
    _eq(list(scored.columns), list(frame.columns) + ["_row", "prediction", *probabilities, "model_version"])
    rows = features_frame(N_MESSY).iloc[scored["_row"]]
    reference = model.pipeline.predict_proba(rows[model.features])
    np.testing.assert_allclose(scored[probabilities].to_numpy(), reference, rtol=0, atol=1e-12)
    _eq(scored["prediction"].tolist(), [model.classes[i] for i in reference.argmax(axis=1)])
    _eq(set(scored["model_version"]), {1})
    _eq(sum(summary["reasons"].values()) >= len(bad), True)


def test_csv_cells_pass_through_unchanged(project, tmp_path):
    "A CSV is read as text: accepted rows repeat their input cells exactly (no float re-formatting)."
    text = features_frame(5).to_csv(index=False, float_format="%.6e")
    (tmp_path / "in.csv").write_text(text)
    score_file(project, tmp_path / "in.csv", tmp_path / "out.csv", progress=False)
    original = pd.read_csv(io.StringIO(text), dtype=str)
    _eq(pd.read_csv(tmp_path / "out.csv", dtype=str)[original.columns].values.tolist(), original.values.tolist())


def test_csv_and_parquet_give_the_same_scores(project, contract, tmp_path):
    frame, _ = messy_frame(contract)
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.astype(str).replace({"None": None}).to_parquet(tmp_path / "in.parquet")
    score_file(project, tmp_path / "in.csv", tmp_path / "a.csv", progress=False)
    score_file(project, tmp_path / "in.parquet", tmp_path / "b.parquet", progress=False)
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_parquet(tmp_path / "b.parquet")
    _eq(a["_row"].tolist(), b["_row"].tolist())
    _eq(a["prediction"].tolist(), b["prediction"].tolist())
    np.testing.assert_allclose(a.filter(like="probability_").to_numpy(), b.filter(like="probability_").to_numpy(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- streaming

@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_chunked_equals_unchunked(project, contract, tmp_path, fmt):
    frame, _ = messy_frame(contract)
    src = tmp_path / f"in.{fmt}"
    frame.to_csv(src, index=False) if fmt == "csv" else frame.astype(str).replace({"None": None}).to_parquet(src, row_group_size=25)
    for rows in (1, 7, 10_000):
        score_file(project, src, tmp_path / f"out{rows}.{fmt}", chunk_rows=rows, progress=False)
    for name in ("out{}.{}", "out{}.quarantine.{}"):
        whole = _read(tmp_path / name.format(10_000, fmt))
        exact = [c for c in whole.columns if not c.startswith("probability_")]
        for rows in (1, 7):
            part = _read(tmp_path / name.format(rows, fmt))
            pd.testing.assert_frame_equal(part[exact], whole[exact], check_exact=True)
            # probabilities: the same up to the last bits (BLAS sums a different number of rows at a time)
            np.testing.assert_allclose(part.drop(columns=exact).to_numpy(), whole.drop(columns=exact).to_numpy(), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_every_chunk_holds_at_most_chunk_rows_and_memory_stays_bounded(project, tmp_path, monkeypatch):
    "A file many chunks long: validation never sees more than `chunk_rows` rows, and the peak memory is a chunk's, not the file's."
    n, chunk = 60_000, 2_000
    frame = features_frame(n, seed=1)
    frame.to_csv(tmp_path / "big.csv", index=False)
    seen, real = [], batch.validate
    monkeypatch.setattr(batch, "validate", lambda df, *a, **k: (seen.append(len(df)), real(df, *a, **k))[1])
    model = open_model(project_client(project), "served")
    monkeypatch.setattr(batch, "open_model", lambda *a, **k: model)  # loaded before measuring
    tracemalloc.start()
    try:
        summary = score_file(project, tmp_path / "big.csv", tmp_path / "big.parquet", chunk_rows=chunk, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _eq((summary["rows"], summary["accepted"], summary["quarantined"]), (n, n, 0))
    _eq((len(seen), max(seen), sum(seen)), (n // chunk, chunk, n))
    whole = frame.astype(str).memory_usage(deep=True).sum()  # the file as text in memory: what an unchunked read holds
    assert peak < whole / 5, f"peak {peak / 2**20:.1f} MiB for a file of {whole / 2**20:.1f} MiB in memory"
    _eq(pd.read_parquet(tmp_path / "big.parquet", columns=["_row"])["_row"].tolist(), list(range(n)))


def test_progress_bar_on_stderr_and_summary_line(project, tmp_path, monkeypatch, capsys):
    features_frame(300).to_csv(tmp_path / "in.csv", index=False)
    monkeypatch.setattr(batch, "PROGRESS_MIN_BYTES", 0)
    summary = score_file(project, tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=50)
    out, err = capsys.readouterr()
    assert "scoring in.csv" in err and "100%" in err, err
    _eq(out, batch.summary_line(summary) + "\n")
    assert out.startswith("scored 300 rows of in.csv with 'served' v1 in ") and "300 accepted -> " in out and "0 quarantined -> " in out, out
    monkeypatch.setattr(batch, "PROGRESS_MIN_BYTES", 10**12)
    score_file(project, tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=50)
    assert "scoring in.csv" not in capsys.readouterr().err  # a small file: no bar


# ---------------------------------------------------------------- atomic outputs

def test_a_failure_leaves_no_half_written_output(project, tmp_path, monkeypatch):
    features_frame(100).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "out.csv").write_text("earlier output\n")
    calls, real = [], batch.score_chunk
    def failing(*args):
        calls.append(1)
        if len(calls) == 3: raise RuntimeError("the disk is full")
        return real(*args)
    monkeypatch.setattr(batch, "score_chunk", failing)
    with pytest.raises(RuntimeError, match="the disk is full"):
        score_file(project, tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=10, progress=False)
    _eq(len(calls), 3)
    _eq((tmp_path / "out.csv").read_text(), "earlier output\n")
    _eq(sorted(p.name for p in tmp_path.iterdir()), ["in.csv", "out.csv"])  # no quarantine file, no temporary files


def test_bad_input_fails_before_writing(project, contract, tmp_path):
    frame = features_frame(20)
    frame.drop(columns=contract.features[2].name).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(UsageError, match=rf"missing contract columns \['{contract.features[2].name}'\]"):
        score_file(project, tmp_path / "short.csv", tmp_path / "out.csv", progress=False)
    frame.assign(prediction=1).to_csv(tmp_path / "clash.csv", index=False)
    with pytest.raises(UsageError, match="the input already has column\\(s\\) prediction"):
        score_file(project, tmp_path / "clash.csv", tmp_path / "out.csv", progress=False)
    with pytest.raises(UsageError, match="input file not found"):
        score_file(project, tmp_path / "nope.csv", tmp_path / "out.csv", progress=False)
    with pytest.raises(UsageError, match="unsupported data format '.json'"):
        score_file(project, tmp_path / "short.csv", tmp_path / "out.json", progress=False)
    with pytest.raises(UsageError, match="must be three different files"):
        score_file(project, tmp_path / "short.csv", tmp_path / "short.csv", progress=False)
    _eq(sorted(p.name for p in tmp_path.iterdir()), ["clash.csv", "short.csv"])


def test_header_only_and_compressed_inputs(project, tmp_path):
    frame = features_frame(30)
    frame.head(0).to_csv(tmp_path / "empty.csv", index=False)
    summary = score_file(project, tmp_path / "empty.csv", tmp_path / "out.parquet", progress=False)
    _eq((summary["rows"], summary["accepted"], summary["quarantined"]), (0, 0, 0))
    _eq(len(pd.read_parquet(tmp_path / "out.parquet")), 0)
    _eq(pd.read_parquet(tmp_path / "out.quarantine.parquet").columns[-2:].tolist(), ["_row", "_reasons"])
    frame.to_csv(tmp_path / "in.csv.gz", index=False)
    _eq(score_file(project, tmp_path / "in.csv.gz", tmp_path / "gz.csv", chunk_rows=7, progress=False)["accepted"], 30)
    _eq(quarantine_path(tmp_path / "scores.csv.gz"), tmp_path / "scores.quarantine.csv.gz")
    _eq(quarantine_path("scores.parquet").name, "scores.quarantine.parquet")


def test_ragged_csv_is_a_one_line_error(project, tmp_path):
    text = features_frame(3).to_csv(index=False)
    (tmp_path / "ragged.csv").write_text(text + text.splitlines()[1] + ",1,2\n")
    with pytest.raises(UsageError, match="could not read ragged.csv near row 0: Error tokenizing data"):
        score_file(project, tmp_path / "ragged.csv", tmp_path / "out.csv", progress=False)
    _eq(sorted(p.name for p in tmp_path.iterdir()), ["ragged.csv"])


# ---------------------------------------------------------------- model references

def test_model_refs(project, tmp_path):
    features_frame(40).to_csv(tmp_path / "in.csv", index=False)
    for ref, version in ((None, 1), ("@champion", 1), ("@challenger", 2), ("v2", 2), ("served@v1", 1), ("served@challenger", 2)):
        summary = score_file(project, tmp_path / "in.csv", tmp_path / "out.csv", ref, progress=False)
        _eq((ref, summary["version"], set(pd.read_csv(tmp_path / "out.csv")["model_version"])), (ref, version, {version}))
    for ref, message in (("v9", "'served' has no version 9"), ("@staging", "'served' has no @staging: its aliases are @challenger (v2), @champion (v1)"),
                         ("other@champion", "there is no registered model 'other' in this store"),
                         ("latest@", "'latest@' names no alias")):
        with pytest.raises(UsageError, match=re.escape(message)):
            score_file(project, tmp_path / "in.csv", tmp_path / "out.csv", ref, progress=False)


def test_no_champion_is_a_clear_error(tmp_path):
    bare = served_project(tmp_path / "bare")
    features_frame(5).to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(UsageError, match=r"there is no registered model 'served' in this store; promote a version first \(mlops-nb promote vN\) or name one with --model vN"):
        score_file(bare, tmp_path / "in.csv", tmp_path / "out.csv", progress=False)


# ---------------------------------------------------------------- the command line

def _call(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_cli_predict(project, contract, tmp_path):
    frame, bad = messy_frame(contract)
    frame.to_csv(tmp_path / "in.csv", index=False)
    code, out, err = _call("predict", "--project", project, "--input", tmp_path / "in.csv", "--output", tmp_path / "s.parquet",
                           "--quarantine", tmp_path / "bad.csv", "--model", "@challenger", "--chunk-rows", "33")
    _eq((code, err), (0, ""))
    assert out.startswith(f"scored {N_MESSY} rows of in.csv with 'served' v2 in ") and \
        out.rstrip().endswith(f"{N_MESSY - len(bad)} accepted -> {tmp_path / 's.parquet'}, {len(bad)} quarantined -> {tmp_path / 'bad.csv'}"), out
    _eq(pd.read_csv(tmp_path / "bad.csv")["_row"].tolist(), sorted(bad))
    _eq(set(pd.read_parquet(tmp_path / "s.parquet")["model_version"]), {2})
    code, out, err = _call("predict", "--project", project, "--input", tmp_path / "in.csv", "--output", tmp_path / "t.csv", "-q")
    _eq((code, out, err), (0, "", ""))
    for argv, message in ((["--model", "v7"], "error: 'served' has no version 7: its versions are v1, v2\n"),
                          (["--chunk-rows", "0"], "error: chunk_rows must be at least 1, got 0\n"),
                          (["--model", "@nope"], "error: 'served' has no @nope: its aliases are @challenger (v2), @champion (v1)\n")):
        _eq(_call("predict", "--project", project, "--input", tmp_path / "in.csv", "--output", tmp_path / "u.csv", *argv), (2, "", message))
    code, _, err = _call("predict", "--project", project, "--output", tmp_path / "u.csv")
    _eq((code, err), (2, "error: the following arguments are required: --input (see `mlops-nb predict --help`)\n"))
    assert not (tmp_path / "u.csv").exists()


def test_cli_predict_subprocess(project, tmp_path):
    "The real command: exit 0, the summary on stdout; a model that cannot be loaded is one line and exit 1."
    features_frame(50).to_csv(tmp_path / "in.csv", index=False)
    code, out, err = run_cli("predict", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", cwd=project, timeout=120)
    assert code == 0 and out.startswith("scored 50 rows of in.csv with 'served' v1") and "Traceback" not in err, show(code, out, err)
    _eq(len(pd.read_csv(tmp_path / "out.csv")), 50)


# ---------------------------------------------------------------- any frame: every row lands in exactly one file

_cells = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-10**6, 10**6),
                   st.sampled_from(["", "NA", "abc", " 1.5 ", "1e3", "-0", "null", "💥", "1,5"]))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_rows_are_conserved_on_any_frame(project, model, tmp_path_factory, monkeypatch, data):
    monkeypatch.setattr(batch, "open_model", lambda *a, **k: model)
    base = features_frame(data.draw(st.integers(0, 40), label="rows"), seed=data.draw(st.integers(0, 10**6), label="seed")).astype(object)
    n = len(base)
    for col in data.draw(st.lists(st.sampled_from(list(base.columns)), max_size=6, unique=True), label="columns"):
        for i in data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=n), label="cells") if n else []:
            base.iat[i, base.columns.get_loc(col)] = data.draw(_cells)
    folder = tmp_path_factory.mktemp("any")
    fmt = data.draw(st.sampled_from(["csv", "parquet"]), label="format")
    src = folder / f"in.{fmt}"
    base.to_csv(src, index=False) if fmt == "csv" else base.astype(str).to_parquet(src)
    chunk = data.draw(st.integers(1, 50), label="chunk_rows")
    summary = score_file(project, src, folder / f"out.{fmt}", chunk_rows=chunk, progress=False)
    scored, bad = _read(folder / f"out.{fmt}"), _read(folder / f"out.quarantine.{fmt}")
    _eq((summary["rows"], summary["accepted"] + summary["quarantined"], len(scored), len(bad)), (n, n, summary["accepted"], summary["quarantined"]))
    _eq(sorted(scored["_row"].tolist() + bad["_row"].tolist()), list(range(n)))
    assert bad["_reasons"].map(lambda r: isinstance(r, str) and len(r) > 0).all()
    if len(scored): np.testing.assert_allclose(scored.filter(like="probability_").sum(axis=1).to_numpy(), np.ones(len(scored)), atol=1e-9)


def test_read_chunks_positions(tmp_path):
    features_frame(25).to_parquet(tmp_path / "in.parquet", row_group_size=4)
    _eq([(int(f.index[0]), len(f), t.num_rows) for t, f in read_chunks(tmp_path / "in.parquet", chunk_rows=10)],
        [(0, 10, 10), (10, 10, 10), (20, 5, 5)])


def test_a_version_that_cannot_be_served_is_one_line_and_status_1(project, tmp_path, monkeypatch):
    "A version stored with pickle (not skops) is never loaded: the command says so in one line and exits 1, writing nothing."
    import mlflow
    from sklearn.dummy import DummyClassifier

    from mlops_nb.registry import register_version
    client = project_client(project)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        with mlflow.start_run(experiment_id=client.get_experiment_by_name("served").experiment_id):
            uri = mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model", serialization_format="cloudpickle").model_uri
    finally:
        mlflow.set_tracking_uri(previous)
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set_tracking_uri exports it: the command must find the project's store
    version = register_version(client, "served", uri, False, -1).version
    features_frame(5).to_csv(tmp_path / "in.csv", index=False)
    code, out, err = _call("predict", "--project", project, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", "--model", f"v{version}")
    assert (code, out, err.count("\n")) == (1, "", 1), err
    assert err.startswith("error: ") and f"v{version}" in err and "Traceback" not in err, err
    _eq(sorted(p.name for p in tmp_path.iterdir()), ["in.csv"])


def _allocated_between_chunks(chunks) -> list:
    "Arrow's allocated bytes after each chunk is dropped, above what was allocated before the first chunk was read."
    import pyarrow as pa
    before, sizes = pa.total_allocated_bytes(), []  # other tests of this process may still hold Arrow memory
    for chunk in chunks:
        del chunk
        sizes.append(pa.total_allocated_bytes() - before)
    return sizes


@pytest.mark.parametrize("reader", ["read_chunks", "read_tables"])
def test_parquet_reading_memory_stays_flat_over_chunks(tmp_path, reader):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(0)
    rows, columns = 400_000, 10
    pq.write_table(pa.table({f"c{i}": rng.normal(size=rows) for i in range(columns)}), tmp_path / "big.parquet", row_group_size=50_000)
    sizes = _allocated_between_chunks(getattr(batch, reader)(tmp_path / "big.parquet", 5000))
    _eq(len(sizes), 80)
    assert max(sizes[10:]) - sizes[10] < 2**20, [s // 2**20 for s in sizes]  # flat: read buffers are not held until the file closes
    assert max(sizes) < rows * columns * 8, max(sizes) // 2**20  # under the file's decoded size (pre-buffered: 46 MB, above it)


def test_read_tables_projects_columns_and_encodes_text(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlops_nb.batch import read_tables
    pq.write_table(pa.table({"x": [1, None, 3], "city": ["a", None, "b"], "big": pa.array(["u", "v", "w"], pa.large_string()), "skip": [0.5, 1.5, 2.5]}),
                   tmp_path / "f.parquet")
    tables = list(read_tables(tmp_path / "f.parquet", 2, columns=["city", "x", "big", "not there"]))
    _eq([(t.num_rows, t.column_names) for t in tables], [(2, ["x", "city", "big"]), (1, ["x", "city", "big"])])
    _eq([str(tables[0].schema.field(c).type) for c in ("x", "city", "big")],
        ["int64", "dictionary<values=string, indices=int32, ordered=0>", "dictionary<values=string, indices=int32, ordered=0>"])
    _eq(pa.concat_tables(tables).column("city").to_pylist(), ["a", None, "b"])
    (tmp_path / "f.csv").write_text("x,city\n1,a\n,b\n")
    _eq([t.to_pydict() for t in read_tables(tmp_path / "f.csv", 10, columns=["city"])], [{"city": ["a", "b"]}])
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(UsageError, match="could not read bad.parquet"): list(read_tables(tmp_path / "bad.parquet"))
    with pytest.raises(UsageError, match="chunk_rows must be at least 1"): list(read_tables(tmp_path / "f.csv", 0))


def test_an_excel_input_is_refused_with_what_to_do(tmp_path):
    workbook = tmp_path / "rows.xlsx"
    pd.DataFrame({"a": [1.0, 2.0]}).to_excel(workbook, index=False)
    with pytest.raises(UsageError, match=r"^rows\.xlsx is an Excel workbook: batch scoring streams CSV or Parquet files; save the sheet as one of them$"):
        next(read_chunks(workbook))
