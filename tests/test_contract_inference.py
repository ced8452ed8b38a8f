"""What `infer_contract` writes and how contract values compare: tolerant bounds, category keys that never merge distinct
texts, missing values that never become a category, personal data tagged (and kept out of the file), and a digest
that changes with the content and only with it."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from fastcore.test import test_eq as _eq
from fastcore.test import test_fail as _fail
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_nb.contract import (
    BOUND_MARGIN,
    PII_SHARE,
    ColumnSpec,
    Contract,
    ContractError,
    clean_missing,
    detect_pii,
    infer_contract,
    label_key,
    label_lookup,
    looks_like_dates,
    tolerant_bounds,
)
from mlops_nb.data import load_example
from mlops_nb.validate import validate

finite = st.floats(allow_nan=False, allow_infinity=False)  # subnormal and huge numbers included


# ---------------------------------------------------------------- tolerant bounds

def test_bounds_widen_the_sample_range_by_two_widths_and_round_outwards():
    _eq(BOUND_MARGIN, 2)
    _eq(tolerant_bounds([9.71, 39.28]), (0.0, 98.5))             # width 29.57, step 0.1
    _eq(tolerant_bounds([143.5, 2501.0]), (0.0, 7220.0))         # width 2357.5, step 10
    _eq(tolerant_bounds([-3.0, 5.0]), (-19.0, 21.0))              # a negative value seen: no floor at 0
    _eq(tolerant_bounds([-0.5, -0.25]), (-1.0, 0.25))            # all negative: widened both ways
    _eq(tolerant_bounds([0.0531, 0.1634], margin=0), (0.053, 0.164))
    _eq(tolerant_bounds([0.0, 0.0]), (0.0, 0.0))
    _eq(tolerant_bounds([7.0]), (0.0, 21.0))                      # one value: its size is the scale
    _eq(tolerant_bounds([1e300, 1e300]), (0.0, 3e300))
    _eq(tolerant_bounds([1.0, math.inf]), (1.0, math.inf))        # no finite width: the observed values
    _eq(tolerant_bounds([0.0, 1e308]), (0.0, math.inf))           # widened past the largest float: no upper limit
    _eq(tolerant_bounds([5e-324]), (0.0, 1.5e-323))


def test_integer_bounds_are_whole_numbers():
    low, high = tolerant_bounds(np.array([1990, 2024]), integer=True)
    _eq((low, high, type(low), type(high)), (1922, 2092, int, int))
    _eq(tolerant_bounds([1, 5], integer=True), (0, 13))
    _eq(tolerant_bounds([0, 1], integer=True), (0, 3))
    _eq(tolerant_bounds([-7, -1], integer=True), (-19, 11))


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=1, max_size=40), st.sampled_from([0, 0.5, 1, 2]), st.booleans())
def test_bounds_always_hold_the_sample_and_keep_its_sign(values, margin, integer):
    if integer: values = [float(round(min(max(v, -2.0**62), 2.0**62))) for v in values]  # what an int64 column holds
    low, high = tolerant_bounds(values, integer, margin)
    assert low <= min(values) and high >= max(values), (values, low, high)
    if min(values) >= 0: assert low >= 0, (values, low)
    if integer: assert isinstance(low, int) and isinstance(high, int)
    wide_low, wide_high = tolerant_bounds(values, integer, margin + 1)
    assert wide_low <= low and wide_high >= high  # a larger margin never narrows them


def test_inferred_bounds_are_tolerant_and_floored_at_zero():
    df = load_example("breast-cancer")
    contract = infer_contract(df, "diagnosis")
    radius = contract.column("mean radius")
    _eq((radius.min, radius.max), (0.0, 70.4))
    _eq(all(c.min == 0.0 for c in contract.features), True)  # every measurement is non-negative
    exact = infer_contract(df, "diagnosis", margin=0).column("mean radius")
    _eq((exact.min, exact.max), (6.9, 28.2))  # the observed 6.981..28.11, rounded outwards


def test_a_constant_column_is_ignored_with_a_note_but_a_constant_with_gaps_is_kept():
    df = pd.DataFrame({"always": [3] * 30, "flag": [1.0, None] * 15, "x": np.arange(30) % 7, "y": [0, 1] * 15})
    contract = infer_contract(df, "y")
    _eq(contract.column("always").role, "ignore")
    _eq(contract.notes, ("always: the same value in every row, nothing for a model to learn: role ignore",))
    flag = contract.column("flag")
    _eq((flag.role, flag.nullable, flag.min, flag.max), ("feature", True, 0.0, 3.0))


# ---------------------------------------------------------------- category keys

def test_label_key_never_merges_distinct_texts():
    for a, b in [("1.1", "1.10"), ("007", "7"), ("1e3", "1000"), ("1.0", "1"), ("-0", "0"), ("A", "a"), ("1,5", "1.5")]:
        assert label_key(a) != label_key(b), (a, b)


def test_label_key_matches_a_number_with_its_plain_text():
    _eq({label_key(v) for v in (1, np.int64(1), np.int8(1), 1.0, np.float64(1.0), np.float32(1.0), "1", " 1 ")}, {"1"})
    _eq({label_key(v) for v in (1.5, np.float64(1.5), "1.5")}, {"1.5"})
    _eq({label_key(v) for v in (10**20, 1e20, "100000000000000000000")}, {"100000000000000000000"})
    _eq([label_key(v) for v in (True, np.bool_(True), "true", "TRUE", " True ")], ["true"] * 5)
    _eq([label_key(v) for v in (False, np.bool_(False), "false", "False")], ["false"] * 4)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12), st.text(max_size=12))
def test_distinct_texts_have_distinct_keys(a, b):
    a, b = a.strip(), b.strip()
    if a != b and not (a.lower() == b.lower() and a.lower() in ("true", "false")):
        assert label_key(a) != label_key(b), (a, b)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_an_integer_matches_in_every_type_a_csv_may_give_it(n):
    _eq({label_key(n), label_key(np.int64(n)), label_key(float(n)), label_key(str(n)), label_key(f" {n} ")}, {str(n)})


def test_lookup_reads_text_as_a_number_only_for_number_categories():
    find = label_lookup((0, 1))
    _eq([find(v) for v in ("1.0", " 0 ", "1e0", np.float64(1.0), "01", "2", "1.5", "x", "nan")], [1, 0, 1, 1, 1, -1, -1, -1, -1])
    find = label_lookup(("1", "1.0", "007"))
    _eq([find(v) for v in ("1", 1, 1.0, "1.0", "007", 7, "7", "1.00")], [0, 0, 0, 1, 2, -1, -1, -1])
    find = label_lookup((False, True))
    _eq([find(v) for v in ("YES", "no", "t", "F", 1, 0, "1.0", "0.0", np.bool_(True), "2", "maybe")],
        [1, 0, 1, 0, 1, 0, 1, 0, 1, -1, -1])


def test_only_ascii_digits_are_read_as_numbers():
    find = label_lookup((3, 4))  # Python's float() reads Arabic-Indic and full-width digits; a category key must not
    _eq([find(v) for v in ("3", "\u0663", "\uff14", "4.0")], [0, -1, -1, 1])


def test_validation_keeps_distinct_category_texts_apart():
    codes = ["1.1", "1.10", "007", "7", "1e3", "1000"]
    contract = Contract((ColumnSpec("code", "categorical", categories=codes),
                         ColumnSpec("y", "categorical", "target", False, categories=(0, 1))), "y")
    df = pd.DataFrame({"code": codes + ["1.100", "07"], "y": [0, 1] * 4})
    result = validate(df, contract)
    _eq(result.accepted["code"].tolist(), codes)
    _eq(result.quarantined["_reasons"].tolist(), ["code: unseen category '1.100'", "code: unseen category '07'"])


def test_categories_that_are_one_value_are_refused():
    _fail(lambda: ColumnSpec("size", "categorical", categories=[1, 1.0]), contains="duplicates: [1, 1.0] are the same value")
    _fail(lambda: ColumnSpec("flag", "boolean", categories=[True, "true"]), contains="duplicates")
    _eq(ColumnSpec("code", "categorical", categories=["1.1", "1.10"]).categories, ("1.1", "1.10"))


# ---------------------------------------------------------------- dates

CODES = {"mixed": ["m05", "t07", "a1", "q3"], "months": [f"m{i:02d}" for i in range(1, 13)],
         "terms": [f"t{i:02d}" for i in range(1, 30)], "others": ["x1", "AB12", "w52", "q3", "a1"],
         "clock_like": ["5p", "5h", "m5", "T12", "5M", "5s"]}
DATES = {"iso": [f"2024-01-{d:02d}" for d in range(1, 29)], "minutes": [f"2024-01-31 {h:02d}:00" for h in range(24)],
         "day_first": [f"{d:02d}/01/2024" for d in range(1, 32)], "zoned": [f"2024-03-{d:02d}T08:30:00Z" for d in range(1, 29)],
         "dotted": [f"{d}.5.2023" for d in range(1, 32)], "month_names": [f"Jan {d}, 2024" for d in range(1, 32)]}


def _frame(values) -> pd.DataFrame:
    return pd.DataFrame({"c": [values[i % len(values)] for i in range(120)], "y": [0, 1] * 60})


@pytest.mark.parametrize("name", list(CODES))
def test_category_codes_stay_model_inputs(name):
    spec = infer_contract(_frame(CODES[name]), "y").column("c")
    _eq((spec.kind, spec.role, spec.categories), ("categorical", "feature", tuple(sorted(CODES[name]))))


@pytest.mark.parametrize("name", list(DATES))
def test_dates_written_in_common_forms_are_dates(name):
    spec = infer_contract(_frame(DATES[name]), "y").column("c")
    _eq((spec.kind, spec.role), ("datetime", "ignore"))
    _eq(infer_contract(_frame(DATES[name]), "y", time_column="c").column("c").role, "time")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(r"[A-Za-z]{1,3}[0-9]{1,4}|[0-9]{1,3}[A-Za-z]{1,2}", fullmatch=True), min_size=3, max_size=30, unique=True))
def test_short_alphanumeric_codes_are_never_dates(codes):
    _eq(looks_like_dates(pd.Series(codes)).tolist(), [False] * len(codes))
    spec = infer_contract(_frame(codes), "y").column("c")
    _eq((spec.kind, spec.role, spec.categories), ("categorical", "feature", tuple(sorted(codes))))


def test_a_time_column_of_codes_is_refused():
    _fail(lambda: infer_contract(_frame(CODES["months"]), "y", time_column="c"), contains="time column 'c' does not hold dates (e.g. 'm01')")


# ---------------------------------------------------------------- missing values

MISSING = [None, np.nan, pd.NA, "", "  ", "NULL", "n/a", "None", "nan"]


def test_clean_missing_gives_none_never_the_text_none():
    s = pd.Series(["red", *MISSING, " blue "])
    cleaned = clean_missing(s)
    _eq(cleaned.dtype, np.dtype(object))
    _eq(cleaned.tolist(), ["red"] + [None] * len(MISSING) + ["blue"])
    _eq(clean_missing(s.astype("string")).tolist(), ["red"] + [None] * len(MISSING) + ["blue"])


def test_missing_values_are_never_a_category():
    df = pd.DataFrame({"color": (["red", "blue", "green"] * 3 + MISSING) * 4, "y": [0, 1] * 36})
    contract = infer_contract(df, "y")
    color = contract.column("color")
    _eq((color.kind, color.nullable, color.categories), ("categorical", True, ("blue", "green", "red")))
    result = validate(df, contract)
    _eq(result.report.n_quarantined, 0)
    accepted = result.accepted["color"]
    _eq(int(accepted.isna().sum()), 4 * len(MISSING))
    _eq(sorted(set(accepted.dropna())), ["blue", "green", "red"])


# ---------------------------------------------------------------- personal data

def _cpf(base: int) -> str:
    digits = f"{base:09d}"
    for weights in (range(10, 1, -1), range(11, 1, -1)):
        rest = sum(int(d) * w for d, w in zip(digits, weights)) % 11
        digits += str(0 if rest < 2 else 11 - rest)
    return digits


def _cnpj(base: int) -> str:
    digits = f"{base:012d}"
    for weights in ([5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2], [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]):
        rest = sum(int(d) * w for d, w in zip(digits, weights)) % 11
        digits += str(0 if rest < 2 else 11 - rest)
    return digits


def _luhn(prefix: str) -> str:
    for check in "0123456789":
        number = prefix + check
        total = sum(int(d) if i % 2 == 0 else (2 * int(d) - 9 if int(d) > 4 else 2 * int(d)) for i, d in enumerate(reversed(number)))
        if total % 10 == 0: return number


N = 60
RNG = np.random.default_rng(7)
CPFS = [_cpf(int(b)) for b in RNG.integers(10**7, 10**9, N)]
CNPJS = [_cnpj(int(b)) for b in RNG.integers(10**10, 10**12, N)]
CARDS = [_luhn(f"5{int(b):014d}") for b in RNG.integers(10**13, 10**14, N)]
AMEX = [_luhn(f"37{int(b):012d}") for b in RNG.integers(10**11, 10**12, N)]
PERSONAL = {
    "email": ([f"ana.souza{i}@mail.example.com.br" for i in range(N)], "e-mail addresses"),
    "phone_br": ([f"(11) 9{RNG.integers(1000, 9999)}-{RNG.integers(1000, 9999)}" for _ in range(N)], "phone numbers"),
    "phone_intl": ([f"+55 21 9{RNG.integers(1000, 9999)} {RNG.integers(1000, 9999)}" for _ in range(N)], "phone numbers"),
    "phone_us": ([f"{RNG.integers(200, 999)}.{RNG.integers(200, 999)}.{RNG.integers(1000, 9999)}" for _ in range(N)], "phone numbers"),
    "phone_e164": ([f"+1{RNG.integers(10**9, 10**10)}" for _ in range(N)], "phone numbers"),
    "celular": ([str(RNG.integers(10**10, 10**11)) for _ in range(N)], "phone numbers"),  # bare digits, the name says phone
    "cpf": ([f"{c[:3]}.{c[3:6]}.{c[6:9]}-{c[9:]}" for c in CPFS], "CPF numbers"),
    "cpf_digits": (CPFS, "CPF numbers"),
    "cpf_int": ([int(c) for c in CPFS], "CPF numbers"),
    "cnpj": ([f"{c[:2]}.{c[2:5]}.{c[5:8]}/{c[8:12]}-{c[12:]}" for c in CNPJS], "CNPJ numbers"),
    "cnpj_digits": (CNPJS, "CNPJ numbers"),
    "ssn": ([f"{RNG.integers(100, 899)}-{RNG.integers(10, 99)}-{RNG.integers(1000, 9999)}" for _ in range(N)], "SSN-like ids"),
    "customer_ssn": ([str(RNG.integers(10**8, 10**9)) for _ in range(N)], "SSN-like ids"),  # bare digits, the name says ssn
    "card": ([" ".join(c[i:i + 4] for i in range(0, 16, 4)) for c in CARDS], "payment card numbers"),
    "card_dashes": (["-".join(c[i:i + 4] for i in range(0, 16, 4)) for c in CARDS], "payment card numbers"),
    "amex": ([f"{c[:4]} {c[4:10]} {c[10:]}" for c in AMEX], "payment card numbers"),
    "card_int": ([int(c) for c in CARDS], "payment card numbers"),
}
ORDINARY = {
    "amount": RNG.uniform(0, 5000, N).round(2).tolist(),
    "count": RNG.integers(0, 30, N).tolist(),
    "zip": [f"{RNG.integers(10000, 99999)}" for _ in range(N)],
    "zip4": [f"{RNG.integers(10000, 99999)}-{RNG.integers(1000, 9999)}" for _ in range(N)],
    "cep": [f"{RNG.integers(10000, 99999)}-{RNG.integers(100, 999)}" for _ in range(N)],
    "order_id": [str(RNG.integers(10**9, 10**10)) for _ in range(N)],   # bare 10 digits
    "account": RNG.integers(10**10, 10**11, N).tolist(),               # bare 11 digits, as integers
    "barcode": [str(RNG.integers(10**12, 10**13)) for _ in range(N)],   # bare 13 digits
    "ref16": [str(RNG.integers(10**15, 10**16)) for _ in range(N)],     # bare 16 digits
    "nine": RNG.integers(10**8, 10**9, N).tolist(),
    "row": list(range(N)),
    "customer": [f"CUST-{i:06d}" for i in range(N)],
    "day": [f"2024-{RNG.integers(1, 12):02d}-{RNG.integers(1, 28):02d}" for _ in range(N)],
    "stamp": [f"2024-01-02 {RNG.integers(0, 23):02d}:{RNG.integers(0, 59):02d}" for _ in range(N)],
    "measure": [f"{RNG.integers(10000, 99999)}.{RNG.integers(10000, 99999)}" for _ in range(N)],
    "version": [f"{RNG.integers(1, 9)}.{RNG.integers(0, 20)}.{RNG.integers(0, 99)}" for _ in range(N)],
    "hotel": [f"Hotel {i}" for i in range(N)],
    "phone_owner": [["yes", "no"][i % 2] for i in range(N)],
    "note": [f"call me at home, ref {i}" for i in range(N)],
}


@pytest.mark.parametrize("name", list(PERSONAL))
def test_each_personal_data_pattern_is_detected(name):
    values, label = PERSONAL[name]
    _eq(detect_pii(pd.Series(values, name=name)), f"looks like {label} ({N} of {N} values)")


@pytest.mark.parametrize("name", list(ORDINARY))
def test_ordinary_columns_are_not_personal_data(name):
    _eq(detect_pii(pd.Series(ORDINARY[name], name=name)), None)


def test_bare_digits_need_a_name_that_says_phone_or_ssn():
    _eq(detect_pii(pd.Series(PERSONAL["celular"][0], name="reference")), None)
    _eq(detect_pii(pd.Series(PERSONAL["customer_ssn"][0], name="batch")), None)
    _eq(detect_pii(pd.Series(PERSONAL["celular"][0], name="MobilePhone")), f"looks like phone numbers ({N} of {N} values)")


def test_the_threshold_is_a_share_of_the_values():
    _eq(PII_SHARE, 0.8)
    emails = [f"u{i}@example.org" for i in range(80)]
    _eq(detect_pii(pd.Series(emails + ["n/a?"] * 20)), "looks like e-mail addresses (80 of 100 values)")
    _eq(detect_pii(pd.Series(emails[:79] + ["n/a?"] * 21)), None)
    _eq(detect_pii(pd.Series(emails[:40] + PERSONAL["cpf"][0][:40] + ["?"] * 20)),
        "looks like CPF numbers and e-mail addresses (80 of 100 values)")
    _eq(detect_pii(pd.Series([], dtype=object)), None)
    _eq(detect_pii(pd.Series([True, False] * 10)), None)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**19 - 1), min_size=20, max_size=60), st.booleans())
def test_random_numbers_are_never_personal_data(numbers, as_text):
    column = pd.Series([str(n) for n in numbers] if as_text else numbers, name="value", dtype=object if as_text else None)
    _eq(detect_pii(column), None)


def test_inferred_contract_tags_personal_columns_and_writes_none_of_their_values(tmp_path):
    df = pd.DataFrame({**{name: values for name, (values, _) in PERSONAL.items()}, **ORDINARY, "y": [0, 1] * (N // 2)})
    contract = infer_contract(df, "y")
    _eq(contract.pii_columns, tuple(PERSONAL))
    for name in PERSONAL:
        _eq(contract.column(name), ColumnSpec(name, "text", "ignore", nullable=False, pii=True))
    _eq([c.name for c in contract.columns if c.pii or c.name not in ORDINARY and c.name != "y"], list(PERSONAL))
    text = contract.to_yaml(tmp_path / "contract.yaml").read_text()
    _eq(f"#   - email: looks like e-mail addresses ({N} of {N} values): pii true, role ignore\n" in text, True)
    _eq("#   pii:        true for personal data" in text, True)
    for name, (values, _) in PERSONAL.items():
        assert not any(str(v) in text for v in values[:5]), name
    back = Contract.from_yaml(tmp_path / "contract.yaml")
    _eq(back, contract)
    _eq(back.pii_columns, tuple(PERSONAL))
    _eq(back.notes, contract.notes)
    _eq("<th>pii</th>" in contract._repr_html_(), True)


def test_pii_round_trips_and_is_checked():
    spec = ColumnSpec("email", "text", "feature", pii=True)
    contract = Contract((spec, ColumnSpec("y", "categorical", "target", False, categories=(0, 1))), "y")
    d = contract.to_dict()
    _eq(d["columns"][0], {"name": "email", "kind": "text", "role": "feature", "nullable": True, "pii": True})
    _eq("pii" in d["columns"][1], False)  # only written when true
    _eq(Contract.from_dict(d), contract)
    _eq(Contract.from_dict(d).column("email").pii, True)
    _eq(contract.pii_columns, ("email",))
    bad = dict(d, columns=[dict(d["columns"][0], pii="yes"), d["columns"][1]])
    _fail(lambda: Contract.from_dict(bad), contains="column 'email': pii must be true or false, got 'yes'")


# ---------------------------------------------------------------- digest

def test_digest_changes_with_content_not_with_comments(tmp_path):
    df = load_example("wine")
    contract = infer_contract(df, "cultivar")
    path = contract.to_yaml(tmp_path / "contract.yaml")
    digest = contract.digest()
    _eq((len(digest), int(digest, 16) >= 0), (64, True))
    _eq(Contract.from_yaml(path).digest(), digest)
    text = path.read_text()
    path.write_text("# reviewed on 2024-05-01 by the data team\n" + text.replace("# target:       the label column", "# target: what we predict"))
    _eq(Contract.from_yaml(path).digest(), digest)
    path.write_text(text.replace("kind: numeric", "kind: integer", 1))
    _eq(Contract.from_yaml(path).column("alcohol").kind, "integer")
    assert Contract.from_yaml(path).digest() != digest
    path.write_text(text.replace("max: 22.43", "max: 22.5", 1))
    _eq(Contract.from_yaml(path).column("alcohol").max, 22.5)
    assert Contract.from_yaml(path).digest() != digest
    path.write_text(text.replace("role: feature", "role: feature\n  pii: true", 1))
    assert Contract.from_yaml(path).digest() != digest


def test_digest_is_the_sha256_of_the_canonical_json():
    import hashlib
    import json
    contract = Contract((ColumnSpec("x", "numeric", min=0), ColumnSpec("y", "categorical", "target", False, categories=("a", "b"))), "y",
                        notes=("x: a note",))
    canonical = ('{"columns":[{"kind":"numeric","min":0.0,"name":"x","nullable":true,"role":"feature"},'
                 '{"categories":["a","b"],"kind":"categorical","name":"y","nullable":false,"role":"target"}],'
                 '"target":"y","time_column":null}')
    _eq(json.dumps(contract.to_dict(), sort_keys=True, separators=(",", ":")), canonical)
    _eq(contract.digest(), hashlib.sha256(canonical.encode()).hexdigest())
    _eq(Contract(contract.columns, "y").digest(), contract.digest())  # notes are comments, not content


def test_yaml_bounds_spelled_as_integers_are_the_same_content(tmp_path):
    contract = infer_contract(load_example("breast-cancer"), "diagnosis")
    path = contract.to_yaml(tmp_path / "contract.yaml")
    path.write_text(path.read_text().replace("min: 0.0", "min: 0"))
    _eq(Contract.from_yaml(path).digest(), contract.digest())
    _eq(yaml.safe_load(path.read_text())["columns"][0]["min"], 0)


def test_contract_errors_are_contract_errors():
    _fail(lambda: ColumnSpec("x", "numeric", min="low"), contains="min must be a number")
    assert issubclass(ContractError, ValueError)
