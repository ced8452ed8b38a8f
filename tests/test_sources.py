"""Reading data: CSV dialects (encoding, delimiter, decimal and thousands separators, quoting) sniffed or given, compressed
CSV, Excel sheets, Parquet; the source registry; SQL (SQLite) and HTTP JSON sources with pagination and bearer tokens
against a local server; incremental loads by a watermark; and the one-line refusals of source settings."""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_diabetes, load_iris
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from mlops_nb.config import UsageError, config_from_dict
from mlops_nb.data import read_table, sniff_csv
from mlops_nb.project import check_settings
from mlops_nb.sources import SOURCES, SourceRead, load_source, read_source, register_source, source_names, source_state_path

# ---------------------------------------------------------------------------------------------------------------- files


def _pt_br(frame: pd.DataFrame) -> str:
    "A frame as a Brazilian spreadsheet writes it: `;`, decimal commas, thousands dots."
    def cell(v):
        if isinstance(v, float): return f"{v:,.4f}".replace(",", "_").replace(".", ",").replace("_", ".")
        return str(v)
    return "\n".join([";".join(frame.columns)] + [";".join(cell(v) for v in row) for row in frame.itertuples(index=False)]) + "\n"


def test_diabetes_written_the_brazilian_way_reads_back_as_floats(tmp_path):
    frame = load_diabetes(as_frame=True, scaled=False).frame.astype(float).round(4) * 100  # values up to 34.600: thousands dots
    frame["região"] = np.array(["Sudeste", "Nordeste", "Norte", "Sul", "Centro-Oeste"])[np.arange(len(frame)) % 5]
    path = tmp_path / "diabetes.csv"
    path.write_bytes(_pt_br(frame).encode("cp1252"))
    _eq(sniff_csv(path), {"encoding": "cp1252", "delimiter": ";", "decimal": ",", "thousands": ".", "quotechar": '"'})
    back = read_table(path)
    _eq(list(back.columns), list(frame.columns))
    _eq(back.dtypes.drop("região").map(lambda t: t.kind).unique().tolist(), ["f"])
    _eq(np.round(back.drop(columns="região").to_numpy(), 4).tolist(), np.round(frame.drop(columns="região").to_numpy(), 4).tolist())


@pytest.mark.parametrize("encoding, expected", [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp1252", "cp1252"), ("latin-1", "cp1252"),
                                                ("utf-16", "utf-16"), ("cp1251", "cp1251")])
def test_encodings_are_sniffed(tmp_path, encoding, expected):
    words = (["Москва", "Санкт-Петербург", "Новосибирск", "Екатеринбург"] if encoding == "cp1251"
             else ["São Paulo", "Ação", "Zoë Köln", "crème brûlée"])
    frame = pd.DataFrame({"name": words * 30, "value": np.arange(len(words) * 30) / 4})
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False, encoding=encoding)
    _eq(sniff_csv(path)["encoding"], expected)
    _eq(read_table(path)["name"].tolist(), frame["name"].tolist())


def test_latin1_bytes_cp1252_leaves_undefined_read_as_latin1(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"code,name\n1,Jos\xe9 \x81\n2,Ana\n")  # 0x81: a C1 control in ISO-8859-1, undefined in CP-1252
    _eq(sniff_csv(path)["encoding"], "latin-1")
    _eq(read_table(path)["name"].tolist(), ["José \x81", "Ana"])


def test_iris_as_latin1_with_semicolons_and_quoted_text(tmp_path):
    iris = load_iris(as_frame=True).frame
    iris["espécie"] = np.array(["setosa; a flor", "versicolor \"azul\"", "virgínica"])[iris.pop("target")]
    path = tmp_path / "iris.csv"
    iris.to_csv(path, sep=";", decimal=",", index=False, encoding="latin-1")
    _eq(sniff_csv(path), {"encoding": "cp1252", "delimiter": ";", "decimal": ",", "thousands": "", "quotechar": '"'})
    back = read_table(path)
    _eq(back["sepal length (cm)"].tolist(), iris["sepal length (cm)"].tolist())
    _eq(back["espécie"].value_counts().to_dict(), {"setosa; a flor": 50, "versicolor \"azul\"": 50, "virgínica": 50})


def test_us_quoted_thousands_and_tabs_and_pipes(tmp_path):
    us = tmp_path / "us.csv"
    us.write_text('id,amount\n1,"1,234.50"\n2,"12,000.00"\n3,7.25\n')
    _eq(sniff_csv(us), {"encoding": "utf-8", "delimiter": ",", "decimal": ".", "thousands": ",", "quotechar": '"'})
    _eq(read_table(us)["amount"].tolist(), [1234.5, 12000.0, 7.25])
    piped = tmp_path / "p.txt"
    piped.write_text("a|b|c\n1,5|x|2\n2,25|y|3\n")
    _eq(sniff_csv(piped)["delimiter"], "|")
    _eq(read_table(piped)["a"].tolist(), [1.5, 2.25])
    single = tmp_path / "q.csv"
    single.write_text("a;b\n'x;y';1,5\n'z';2,5\n")
    _eq(sniff_csv(single)["quotechar"], "'")
    _eq(read_table(single)["a"].tolist(), ["x;y", "z"])


def test_explicit_dialect_wins_over_sniffing(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("nome;valor\nJoão;1.234,5\nAna;2,5\n".encode("cp1252"))
    _eq(read_table(path)["valor"].tolist(), [1234.5, 2.5])
    _eq(read_table(path, csv={"decimal": ".", "thousands": ""})["valor"].tolist(), ["1.234,5", "2,5"])  # as told: text
    _eq(read_table(path, csv={"delimiter": ","}).columns.tolist(), ["nome;valor"])
    _eq(read_table(path, csv={"encoding": "latin-1"})["nome"].tolist(), ["João", "Ana"])
    _fail(lambda: read_table(path, csv={"encoding": "utf-8"}), contains="could not read t.csv as csv: 'utf-8' codec can't decode")


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zip"])
def test_compressed_csv(tmp_path, suffix):
    raw = "cidade;valor\nSão Paulo;1.234,56\nMaceió;7,5\n".encode("cp1252")
    path = tmp_path / f"t.csv{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(path, "w") as z: z.writestr("t.csv", raw)
    else: path.write_bytes({".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}[suffix](raw))
    _eq(sniff_csv(path)["encoding"], "cp1252")
    _eq(read_table(path).to_dict("list"), {"cidade": ["São Paulo", "Maceió"], "valor": [1234.56, 7.5]})


def test_zip_with_two_files_is_refused(tmp_path):
    path = tmp_path / "t.csv.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.csv", "a\n1\n")
        z.writestr("b.csv", "b\n2\n")
    _fail(lambda: read_table(path), contains="t.csv.zip holds 2 files: a zipped CSV must hold exactly one")


def test_excel_sheets_and_parquet(tmp_path):
    book = tmp_path / "book.xlsx"
    with pd.ExcelWriter(book) as xw:
        pd.DataFrame({"a": [1.5, 2.5], "cidade": ["Belém", "Natal"]}).to_excel(xw, sheet_name="vendas", index=False)
        pd.DataFrame({"b": [1, 2, 3]}).to_excel(xw, sheet_name="metas", index=False)
    _eq(read_table(book).to_dict("list"), {"a": [1.5, 2.5], "cidade": ["Belém", "Natal"]})
    _eq(read_table(book, sheet="metas")["b"].tolist(), [1, 2, 3])
    _eq(read_table(book, sheet=1)["b"].tolist(), [1, 2, 3])
    _fail(lambda: read_table(book, sheet=2), contains="book.xlsx has 2 sheet(s), so there is no sheet 2: its sheets are vendas, metas")
    cfg = config_from_dict({"data": {"path": "book.xlsx", "sheet": "metas"}}, tmp_path)
    _eq(read_source(cfg).frame["b"].tolist(), [1, 2, 3])
    pd.DataFrame({"x": [1.0, None]}).to_parquet(tmp_path / "t.parquet")
    _eq(read_source(config_from_dict({"data": {"path": "t.parquet"}}, tmp_path)).frame["x"].isna().tolist(), [False, True])


TEXT = st.text(alphabet="abcçãéíóúâêôàüñ ABCÇÃÉ", min_size=1, max_size=8).map(lambda s: "x" + s.strip())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(TEXT, st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 2)), st.integers(-10**6, 10**6)),
                     min_size=2, max_size=30),
       dialect=st.sampled_from([(",", ".", "utf-8"), (";", ",", "cp1252"), (";", ".", "utf-8-sig"), ("\t", ",", "latin-1"), ("|", ",", "utf-8")]))
def test_any_table_written_in_a_dialect_reads_back_exactly(tmp_path, rows, dialect):
    "Text with accents, floats with up to two decimals and integers, written in any dialect, are read back as written."
    delimiter, decimal, encoding = dialect
    frame = pd.DataFrame(rows, columns=["nome", "valor", "n"])
    frame["valor"] = frame["valor"] + 0.5  # never a whole number only: the column is written with a decimal mark
    path = tmp_path / "t.csv"
    frame.to_csv(path, sep=delimiter, decimal=decimal, index=False, encoding=encoding)
    back = read_table(path)
    _eq(back["nome"].tolist(), frame["nome"].tolist())
    _eq(back["valor"].tolist(), frame["valor"].tolist())
    _eq(back["n"].tolist(), frame["n"].tolist())


# ------------------------------------------------------------------------------------------------------------- registry


def test_a_registered_source_needs_no_change_to_the_core(tmp_path):
    calls = []

    def weather(cfg, state):
        calls.append(state)
        return pd.DataFrame({"day": [1, 2, 3], "rain": [0.0, 4.5, 1.0]})
    register_source("weather", weather)
    try:
        cfg = config_from_dict({"data": {"source": "weather", "watermark": "day"}}, tmp_path)
        first = load_source(cfg)
        _eq((first.read.description, first.read.state, len(first.frame)), ("weather", {"column": "day", "high": 3, "rows": 3}, 3))
        second = load_source(cfg)  # the reader ignores the state: read_source keeps only the rows beyond the high mark
        _eq((len(second.read.frame), second.earlier_rows, len(second.frame)), (0, 3, 3))
        _eq(calls, [None, {"column": "day", "high": 3, "rows": 3}])
        _eq("weather" in source_names(), True)
        check_settings(cfg)  # a registered name is a valid data.source
    finally:
        del SOURCES["weather"]
    _fail(lambda: check_settings(cfg), contains="unknown data.source 'weather': choose from file, http, sql")


def test_a_source_declared_as_an_entry_point_is_found(tmp_path, monkeypatch):
    (tmp_path / "rain_source.py").write_text("import pandas as pd\ndef read(cfg, state):\n    return pd.DataFrame({'mm': [1.5, 2.5]})\n")
    info = tmp_path / "rain_source-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rain-source\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[mlops_nb.sources]\nrain = rain_source:read\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        _eq(read_source(config_from_dict({"data": {"source": "rain"}}, tmp_path)).frame["mm"].tolist(), [1.5, 2.5])
    finally:
        SOURCES.pop("rain", None)
        sys.modules.pop("rain_source", None)


def test_a_source_returning_something_else_is_refused(tmp_path):
    register_source("broken", lambda cfg, state: [1, 2])
    try: _fail(lambda: read_source(config_from_dict({"data": {"source": "broken"}}, tmp_path)), contains="source 'broken' returned list")
    finally: del SOURCES["broken"]
    _fail(lambda: register_source("", print), contains="a source needs a non-empty name")


# ------------------------------------------------------------------------------------------------------------------ sql


@pytest.fixture
def shop(tmp_path):
    "A SQLite database with 5 sales, ids 1..5 and timestamps one day apart."
    engine = create_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    pd.DataFrame({"id": range(1, 6), "at": pd.date_range("2024-01-01", periods=5, freq="D").astype(str), "amount": [1.5, 2.0, 3.0, 4.5, 5.0],
                  "bought": ["sim", "não", "sim", "sim", "não"]}).to_sql("sales", engine, index=False)
    engine.dispose()
    return tmp_path


def _add_sales(folder, rows):
    engine = create_engine(f"sqlite:///{folder / 'shop.db'}")
    pd.DataFrame(rows, columns=["id", "at", "amount", "bought"]).to_sql("sales", engine, index=False, if_exists="append")
    engine.dispose()


@pytest.fixture
def statements():
    "Every SQL statement any engine sends while the test runs."
    seen = []
    def record(conn, cursor, statement, parameters, context, executemany): seen.append((statement, parameters))
    event.listen(Engine, "before_cursor_execute", record)
    yield seen
    event.remove(Engine, "before_cursor_execute", record)


def test_sql_watermark_reads_only_new_rows_and_keeps_earlier_ones(shop, statements):
    cfg = config_from_dict({"data": {"source": "sql", "url": "sqlite:///shop.db", "table": "sales", "watermark": "id"}}, shop)
    first = load_source(cfg)
    _eq((len(first.frame), first.earlier_rows, first.read.state), (5, 0, {"column": "id", "high": 5, "rows": 5}))
    _add_sales(shop, [(6, "2024-01-06", 6.5, "sim"), (7, "2024-01-07", 7.5, "não")])
    statements.clear()
    second = load_source(cfg)
    _eq([s for s, _ in statements if "sales" in s], ['SELECT * FROM (SELECT * FROM sales) AS source_rows WHERE id > ?'])
    _eq([p for s, p in statements if "sales" in s], [(5,)])
    _eq(second.read.frame["id"].tolist(), [6, 7])  # only the new rows were read
    _eq(second.frame["id"].tolist(), [1, 2, 3, 4, 5, 6, 7])  # the earlier ones kept
    _eq((second.earlier_rows, second.read.state), (5, {"column": "id", "high": 7, "rows": 2}))
    state = source_state_path(cfg)
    _eq((state.parent, json.loads(state.read_text())), (shop / "runs" / ".cache" / ".sources", {"column": "id", "high": 7, "rows": 2}))
    _eq(pd.read_parquet(state.with_suffix(".parquet"))["id"].tolist(), [1, 2, 3, 4, 5, 6, 7])
    # another table is another history
    other = config_from_dict({"data": {"source": "sql", "url": "sqlite:///shop.db", "query": "SELECT * FROM sales WHERE amount > 3", "watermark": "id"}}, shop)
    _eq(load_source(other).frame["id"].tolist(), [4, 5, 6, 7])


def test_sql_watermark_on_a_timestamp_text_column(shop):
    cfg = config_from_dict({"data": {"source": "sql", "url": "sqlite:///shop.db", "table": "sales", "watermark": "at"}}, shop)
    _eq(load_source(cfg).read.state, {"column": "at", "high": "2024-01-05", "rows": 5})
    _add_sales(shop, [(6, "2024-01-09", 6.5, "sim")])
    again = load_source(cfg)
    _eq((again.read.frame["id"].tolist(), len(again.frame)), ([6], 6))


def test_protect_is_applied_before_rows_are_kept(shop):
    cfg = config_from_dict({"data": {"source": "sql", "url": "sqlite:///shop.db", "table": "sales", "watermark": "id"}}, shop)
    load_source(cfg, protect=lambda rows: rows.assign(bought="***"))
    kept = pd.read_parquet(source_state_path(cfg).with_suffix(".parquet"))
    _eq(kept["bought"].unique().tolist(), ["***"])


def test_sql_errors_are_one_line(shop):
    cfg = config_from_dict({"data": {"source": "sql", "url": "sqlite:///shop.db", "table": "refunds"}}, shop)
    _fail(lambda: read_source(cfg), contains="cannot read the sql source sqlite:///")
    _fail(lambda: read_source(config_from_dict({"data": {"source": "sql", "url": "nodb://x/y", "table": "t"}}, shop)),
          contains="cannot read the sql source nodb://x/y (table t): NoSuchModuleError")
    cfg = config_from_dict({"data": {"source": "sql", "url": "sqlite:///shop.db", "table": "sales", "watermark": "price"}}, shop)
    _fail(lambda: read_source(cfg), contains="data.watermark 'price' is not a column of")


# ----------------------------------------------------------------------------------------------------------------- http


class _Api(BaseHTTPRequestHandler):
    "Pages of orders: /v1 (next in the body), /link (next in a Link header), /fail (500); it records every Authorization header."
    seen: ClassVar[list] = []
    orders: ClassVar[list] = [{"id": i, "city": c, "total": t, "customer": {"uf": u}} for i, (c, t, u) in
              enumerate([("Recife", 10.5, "PE"), ("Natal", 4.0, "RN"), ("Olinda", 7.0, "PE"), ("Recife", 1.5, "PE"), ("Maceió", 3.0, "AL")], 1)]

    def do_GET(self):
        _Api.seen.append(self.headers.get("Authorization"))
        path, _, query = self.path.partition("?")
        page = int(query.removeprefix("page=") or 1)
        rows = self.orders[(page - 1) * 2: page * 2]
        more = page * 2 < len(self.orders)
        headers = {}
        if path == "/v1": body = {"result": {"items": rows}, "paging": {"next": f"/v1?page={page + 1}" if more else None}}
        elif path == "/away":  # its next page is on another host name (the same server, named localhost)
            body = {"items": rows, "next": f"http://localhost:{self.server.server_address[1]}/v1?page=2"}
        elif path == "/link":
            body = rows
            if more: headers["Link"] = f'<http://{self.headers["Host"]}/link?page={page + 1}>; rel="next"'
        else:
            self.send_response(500); self.end_headers(); return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        for k, v in headers.items(): self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args): pass


@pytest.fixture(scope="module")
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_pages_by_body_key_with_a_bearer_token(api, tmp_path, monkeypatch):
    monkeypatch.setenv("ORDERS_TOKEN", "tok-3f9a-secret")
    _Api.seen.clear()
    cfg = config_from_dict({"data": {"source": "http", "url": f"{api}/v1", "records": "result.items", "next_page": "paging.next",
                                     "secret_env": "ORDERS_TOKEN"}}, tmp_path)
    got = read_source(cfg)
    _eq(got.frame["id"].tolist(), [1, 2, 3, 4, 5])
    _eq(got.frame["customer.uf"].tolist(), ["PE", "RN", "PE", "PE", "AL"])
    _eq(got.description, f"{api}/v1 (3 pages)")
    _eq(_Api.seen, ["Bearer tok-3f9a-secret"] * 3)


def test_the_token_is_never_sent_to_another_host(api, tmp_path, monkeypatch):
    monkeypatch.setenv("ORDERS_TOKEN", "tok-3f9a-secret")
    _Api.seen.clear()
    cfg = config_from_dict({"data": {"source": "http", "url": f"{api}/away", "secret_env": "ORDERS_TOKEN"}}, tmp_path)
    port = api.rsplit(":", 1)[1]
    _fail(lambda: read_source(cfg), contains=f"http source {api}/away: the next page http://localhost:{port}/v1?page=2 is not on data.url's "
          "host; the token ($ORDERS_TOKEN) is only sent there, so the read stops")
    _eq(_Api.seen, ["Bearer tok-3f9a-secret"])  # the first page only


def test_http_pages_by_link_header_and_watermark(api, tmp_path):
    cfg = config_from_dict({"data": {"source": "http", "url": f"{api}/link", "watermark": "id"}}, tmp_path)
    first = load_source(cfg)
    _eq((len(first.frame), first.read.state), (5, {"column": "id", "high": 5, "rows": 5}))
    again = load_source(cfg)
    _eq((len(again.read.frame), again.earlier_rows, len(again.frame)), (0, 5, 5))
    _fail(lambda: read_source(config_from_dict({"data": {"source": "http", "url": f"{api}/link", "max_pages": 2}}, tmp_path)),
          contains="more than data.max_pages=2 pages")


def test_http_errors_are_one_line_without_the_token(api, tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_NB_DATA_SECRET", "tok-never-shown")
    with pytest.raises(UsageError) as e: read_source(config_from_dict({"data": {"source": "http", "url": f"{api}/fail"}}, tmp_path))
    _eq(str(e.value), f"http source {api}/fail: the server answered 500 Internal Server Error")
    with pytest.raises(UsageError) as e: read_source(config_from_dict({"data": {"source": "http", "url": "http://127.0.0.1:9/x"}}, tmp_path))
    _eq(("\n" in str(e.value), "tok-never-shown" in str(e.value), str(e.value).startswith("http source http://127.0.0.1:9/x: ConnectError")),
        (False, False, True))
    cfg = config_from_dict({"data": {"source": "http", "url": f"{api}/v1"}}, tmp_path)
    _fail(lambda: read_source(cfg), contains="cannot tell which list holds the rows (none found): set data.records")


# ------------------------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize("data, message", [
    ({"source": "sql", "table": "t"}, "data.source is sql but data.url is not set"),
    ({"source": "sql", "url": "sqlite:///x.db"}, "data.source is sql and neither of data.query and data.table is set: set exactly one"),
    ({"source": "sql", "url": "sqlite:///x.db", "table": "t", "query": "SELECT 1"}, "data.source is sql and both of data.query and data.table are set"),
    ({"source": "http"}, "data.source is http but data.url is not set"),
    ({"source": "ftp"}, "unknown data.source 'ftp': choose from file, http, sql"),
    ({"source": "file", "path": "a.csv", "watermark": "id"}, "data.watermark is set but data.source is file"),
])
def test_source_settings_are_refused_in_one_line(tmp_path, data, message):
    with pytest.raises(UsageError) as e: check_settings(config_from_dict({"data": data}, tmp_path))
    _eq(str(e.value).startswith(message) and "\n" not in str(e.value), True)


def test_user_source_result_is_a_source_read(tmp_path):
    register_source("fixed", lambda cfg, state: SourceRead(pd.DataFrame({"a": [1]}), "fixed rows"))
    try: _eq(read_source(config_from_dict({"data": {"source": "fixed"}}, tmp_path)).description, "fixed rows")
    finally: del SOURCES["fixed"]


# ----------------------------------------------------------------------------------------------------------------- init


def test_init_from_an_excel_sheet_writes_the_sheet(tmp_path):
    from mlops_nb.config import load_config
    from mlops_nb.project import init_project
    wine = load_iris(as_frame=True).frame
    wine["espécie"] = np.array(["setosa", "versicolor", "virgínica"])[wine.pop("target")]
    book = tmp_path / "flores.xlsx"
    with pd.ExcelWriter(book) as xw:
        pd.DataFrame({"nota": ["dados na aba 'medidas'"]}).to_excel(xw, sheet_name="leia-me", index=False)
        wine.to_excel(xw, sheet_name="medidas", index=False)
    cfg = init_project(tmp_path / "p", book, "espécie", source={"sheet": "medidas"}, copy_runbooks=False)
    data = load_config(tmp_path / "p").data
    _eq((data.path, data.sheet, data.csv, cfg.data.source), (str(book), "medidas", {}, "file"))
    _eq(read_source(load_config(tmp_path / "p")).frame.shape, (150, 5))


@pytest.mark.parametrize("flags, message", [
    ([], "error: give exactly one of --data FILE, --sql-url URL and --http-url URL"),
    (["--data", "a.csv", "--sql-url", "sqlite:///x.db"], "error: give exactly one of --data FILE, --sql-url URL and --http-url URL (got --data and --sql-url)"),
    (["--sql-url", "postgresql://u:hunter2pw@db/x", "--sql-table", "t"], "error: setting 'data.url' must be a URL without a password"),
    (["--sql-url", "sqlite:///x.db"], "error: data.source is sql and neither of data.query and data.table is set: set exactly one"),
    (["--data", "a.csv", "--watermark", "id"], "error: --watermark and --secret-env go with --sql-url or --http-url: a file is read whole"),
    (["--http-url", "http://127.0.0.1:9/x", "--sql-table", "t"], "error: --sql-table and --sql-query go with --sql-url"),
])
def test_init_source_flags_are_refused_in_one_line(tmp_path, capsys, flags, message):
    from mlops_nb.cli import main
    _eq(main(["init", str(tmp_path / "p"), "--target", "y", *flags]), 2)
    err = capsys.readouterr().err
    _eq((err.startswith(message), err.count("\n"), "hunter2pw" in err, (tmp_path / "p").exists()), (True, 1, False, False))


def test_init_from_a_paged_json_api_through_the_command(tmp_path, monkeypatch, capsys):
    "`mlops-nb init --http-url` on 569 rows served 100 a page: the contract is inferred from every page; the token is in no file."
    from sklearn.datasets import load_breast_cancer

    from mlops_nb.cli import main
    from mlops_nb.config import load_config
    bunch = load_breast_cancer(as_frame=True)
    rows = bunch.frame.drop(columns="target").iloc[:, :5].assign(diagnosis=np.where(bunch.target == 1, "benign", "malignant")).to_dict("records")
    seen = []

    class Pages(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            start = int(self.path.partition("?from=")[2] or 0)
            body = {"rows": rows[start:start + 100], "next": f"/cases?from={start + 100}" if start + 100 < len(rows) else None}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)
        def log_message(self, *args): pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cases"
    monkeypatch.setenv("CASES_TOKEN", "tok-7c1e-not-for-files")
    try:
        code = main(["init", str(tmp_path / "p"), "--http-url", url, "--records", "rows", "--next-page", "next", "--secret-env", "CASES_TOKEN",
                     "--target", "diagnosis"])
    finally:
        server.shutdown()
        server.server_close()
    out, err = capsys.readouterr()
    _eq(code, 0)
    data = load_config(tmp_path / "p").data
    _eq((data.source, data.url, data.records, data.next_page, data.secret_env, data.csv), ("http", url, "rows", "next", "CASES_TOKEN", {}))
    _eq(seen, ["Bearer tok-7c1e-not-for-files"] * 6)
    _eq([str(p) for p in (tmp_path / "p").rglob("*") if p.is_file() and b"tok-7c1e" in p.read_bytes()], [])
    _eq("tok-7c1e" in out + err, False)


def test_a_watermark_column_with_no_values_sets_no_high_mark(tmp_path):
    "An all-missing time column says nothing about what is new: no high mark is kept, so the next load still reads its rows."
    pd.DataFrame({"x": [1, 2], "y": ["a", "b"], "at": pd.to_datetime([None, None])}).to_parquet(tmp_path / "d.parquet")
    cfg = config_from_dict({"data": {"path": "d.parquet", "target": "y", "watermark": "at"}}, tmp_path)
    first = load_source(cfg)
    _eq((len(first.frame), first.read.state), (2, {"column": "at", "high": None, "rows": 2}))
    pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "a"], "at": pd.to_datetime(["2024-01-01", None, "2024-01-03"])}).to_parquet(tmp_path / "d.parquet")
    _eq(len(load_source(cfg).read.frame), 3)
