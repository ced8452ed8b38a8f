"""`init` and `run` on files as Brazilian and European spreadsheet software writes them, with no option: a `;`-separated
CSV with decimal commas, thousands dots, dd/mm/yyyy dates and CP-1252 accents, and a Latin-1 CSV; through the real CLI."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import fast, run_cli, run_dir_of, run_id_from, show
from sklearn.datasets import load_breast_cancer

N = 600
CITIES = ["São Paulo", "Maceió", "Brasília", "Goiânia", "Florianópolis"]


def _brazilian(seed: int = 11) -> tuple[pd.DataFrame, str]:
    "A credit table (typed values) and its text as a Brazilian spreadsheet exports it."
    rng = np.random.default_rng(seed)
    renda = np.round(rng.lognormal(8.2, 0.7, N), 2)  # monthly income, 500 to 50.000 reais: thousands dots
    taxa = np.round(rng.uniform(0.05, 0.95, N), 3)
    idade = rng.integers(18, 80, N)
    cidade = rng.choice(CITIES, N)
    logit = 0.0008 * (renda - 4000) - 2.5 * (taxa - 0.5) + 0.02 * (idade - 45)
    aprovado = np.where(rng.random(N) < 1 / (1 + np.exp(-logit)), "sim", "não")
    cadastro = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 700, N), unit="D")
    typed = pd.DataFrame({"cliente": [f"Cliente Nº {i} — João" for i in range(N)], "cidade": cidade, "renda": renda, "taxa": taxa,
                          "idade": idade, "cadastro": cadastro, "aprovado": aprovado})

    def money(v: float) -> str:  # 12345.6 -> "12.345,60"
        return f"{v:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
    lines = ["cliente;cidade;renda;taxa;idade;cadastro;aprovado"]
    for r in typed.itertuples():
        lines.append(f"{r.cliente};{r.cidade};{money(r.renda)};{str(r.taxa).replace('.', ',')};{r.idade};{r.cadastro:%d/%m/%Y};{r.aprovado}")
    return typed, "\r\n".join(lines) + "\r\n"


def _latin1_cancer() -> pd.DataFrame:
    "scikit-learn's breast cancer data with Portuguese labels and a clinic column, to be written as Latin-1."
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.drop(columns="target").iloc[:, :8]
    frame.insert(0, "clínica", np.array(["Hospital São José", "Clínica Médica Ação", "Policlínica Irmã Dulce"])[np.arange(len(frame)) % 3])
    frame["diagnóstico"] = np.where(bunch.target == 1, "benigno", "maligno")
    return frame


@pytest.fixture(scope="module")
def brazil(tmp_path_factory):
    base = tmp_path_factory.mktemp("brazil")
    typed, text = _brazilian()
    csv = base / "clientes.csv"
    csv.write_bytes(text.encode("cp1252"))
    project = base / "credito"
    init = run_cli("init", project, "--data", csv, "--target", "aprovado", "--time-column", "cadastro")
    assert init[0] == 0, show(*init)
    code, out, err = run_cli("run", "--project", project, *fast)
    assert code == 0, show(code, out, err)
    return {"typed": typed, "project": project, "run_dir": run_dir_of(project, run_id_from(out)), "out": out, "init": init[1]}


@pytest.fixture(scope="module")
def latin1(tmp_path_factory):
    base = tmp_path_factory.mktemp("latin1")
    frame = _latin1_cancer()
    csv = base / "cancer.csv"
    frame.to_csv(csv, index=False, encoding="latin-1")
    project = base / "cancer"
    init = run_cli("init", project, "--data", csv, "--target", "diagnóstico")
    assert init[0] == 0, show(*init)
    code, out, err = run_cli("run", "--project", project, *fast)
    assert code == 0, show(code, out, err)
    return {"frame": frame, "project": project, "run_dir": run_dir_of(project, run_id_from(out)), "out": out}


def test_brazilian_csv_dialect_is_written_into_the_settings(brazil):
    settings = yaml.safe_load((brazil["project"] / "mlops.yaml").read_text(encoding="utf-8"))
    assert settings["data"]["csv"] == {"encoding": "cp1252", "delimiter": ";", "decimal": ",", "thousands": ".", "quotechar": '"'}
    assert "  csv        read as cp1252, delimiter ';', decimal ',', thousands '.'   (detected: data.csv in mlops.yaml wins)" in brazil["init"]


def test_brazilian_csv_numbers_are_numbers_in_the_contract(brazil):
    contract = yaml.safe_load((brazil["project"] / "contract.yaml").read_text(encoding="utf-8"))
    cols = {c["name"]: c for c in contract["columns"]}
    assert (cols["renda"]["kind"], cols["taxa"]["kind"], cols["idade"]["kind"]) == ("numeric", "numeric", "integer")
    assert cols["cidade"]["kind"] == "categorical" and sorted(cols["cidade"]["categories"]) == sorted(CITIES)
    assert cols["aprovado"]["categories"] == ["não", "sim"]
    assert (cols["cadastro"]["kind"], cols["cadastro"]["role"], contract["time_column"]) == ("datetime", "time", "cadastro")


def test_brazilian_csv_runs_end_to_end_with_exact_values(brazil):
    snapshot = pd.read_parquet(brazil["run_dir"] / "ingest" / "data.parquet")
    typed = brazil["typed"]
    assert snapshot.shape == typed.shape
    assert snapshot["renda"].dtype.kind == "f" and snapshot["taxa"].dtype.kind == "f"
    assert snapshot["renda"].tolist() == typed["renda"].tolist()
    assert snapshot["taxa"].tolist() == typed["taxa"].tolist()
    assert snapshot["cidade"].tolist() == typed["cidade"].tolist()
    assert snapshot["cliente"].iloc[7] == "Cliente Nº 7 — João"
    assert snapshot["cadastro"].tolist() == typed["cadastro"].tolist()  # dd/mm/yyyy read day first
    assert "register" in {p.name for p in brazil["run_dir"].iterdir()}, brazil["out"]


@pytest.mark.slow
def test_latin1_csv_dialect_and_accented_names(latin1):
    settings = yaml.safe_load((latin1["project"] / "mlops.yaml").read_text(encoding="utf-8"))
    assert settings["data"]["csv"] == {"encoding": "cp1252", "delimiter": ",", "decimal": ".", "thousands": "", "quotechar": '"'}
    assert settings["data"]["target"] == "diagnóstico"
    contract = yaml.safe_load((latin1["project"] / "contract.yaml").read_text(encoding="utf-8"))
    cols = {c["name"]: c for c in contract["columns"]}
    assert sorted(cols["clínica"]["categories"]) == ["Clínica Médica Ação", "Hospital São José", "Policlínica Irmã Dulce"]


@pytest.mark.slow
def test_latin1_csv_runs_end_to_end_with_exact_values(latin1):
    snapshot = pd.read_parquet(latin1["run_dir"] / "ingest" / "data.parquet")
    frame = latin1["frame"]
    assert list(snapshot.columns) == list(frame.columns)
    assert snapshot["clínica"].tolist() == frame["clínica"].tolist()
    assert snapshot["mean radius"].tolist() == frame["mean radius"].tolist()
    assert "register" in {p.name for p in latin1["run_dir"].iterdir()}, latin1["out"]
