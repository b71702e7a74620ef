"""Event time parsing: everything ends as int64 nanoseconds UTC."""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tidal.errors import QueryError
from tidal.model.time import TIMESTAMP_TYPE, now_ns, parse_instant, to_ns, to_timestamp_array

S = 1_000_000_000
MAX = 2**63 - 1
BAD = "bad"  # expected marker: present but unparseable


def ns_of(text: str) -> int:
    """Oracle: Python's own ISO parser (UTC when no offset), exact to the microsecond."""
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * S + delta.microseconds * 1000


@dataclass(frozen=True)
class Case:
    text: str | None
    expected: int | None | str


STRING_CASES = [
    Case("1970-01-01T00:00:01Z", S),
    Case("2023-11-14T22:13:20Z", 1_700_000_000 * S),
    Case("2023-11-14T22:13:20.5Z", 1_700_000_000 * S + 500_000_000),
    Case("2023-11-14T22:13:20.123456789Z", 1_700_000_000 * S + 123_456_789),
    Case("2023-11-14T22:13:20.1234567891234Z", 1_700_000_000 * S + 123_456_789),
    Case("2023-11-14T22:13:20.000001Z", 1_700_000_000 * S + 1000),
    Case("2023-11-14T23:13:20+01:00", 1_700_000_000 * S),
    Case("2023-11-14T23:13:20+0100", 1_700_000_000 * S),
    Case("2023-11-14T23:13:20+01", 1_700_000_000 * S),
    Case("2023-11-14T20:43:20.25-01:30", 1_700_000_000 * S + 250_000_000),
    Case("2023-11-14 22:13:20", 1_700_000_000 * S),
    Case("2023-11-14T22:13:20", 1_700_000_000 * S),
    Case("2023-11-14T22:13:20.000000007", 1_700_000_000 * S + 7),
    Case("2023-11-14T22:13", 1_699_999_980 * S),
    Case("2023-11-14", ns_of("2023-11-14")),
    Case("1969-12-31T23:59:59.5Z", -500_000_000),
    Case("1900-03-01", ns_of("1900-03-01")),
    Case("2024-02-29", ns_of("2024-02-29")),
    Case("2000-02-29T12:00:00Z", ns_of("2000-02-29T12:00:00+00:00")),
    Case("2262-04-11T23:47:16.854775807Z", MAX),
    Case("1677-09-21T00:12:44Z", -9_223_372_036 * S),
    Case("1677-09-21T00:12:43.999999999Z", -9_223_372_036 * S - 1),
    Case("1677-09-21T00:12:43.145224192Z", -(2**63)),
    Case("1677-09-21T00:12:43.145224191Z", BAD),
    Case("  2023-11-14T22:13:20Z ", 1_700_000_000 * S),
    Case("2023-11-14t22:13:20z", 1_700_000_000 * S),
    Case("2023-11-14T22:13:20,5Z", 1_700_000_000 * S + 500_000_000),
    # numbers in strings follow the numeric rule
    Case("1700000000", 1_700_000_000 * S),
    Case("1700000000.25", 1_700_000_000 * S + 250_000_000),
    Case("1.7e9", 1_700_000_000 * S),
    Case("1700000000123", 1_700_000_000_123_000_000),
    Case("1700000000123456", 1_700_000_000_123_456_000),
    Case("1700000000123456789", 1_700_000_000_123_456_789),
    Case("-1", -S),
    Case("0", 0),
    # nulls and empties
    Case(None, None),
    Case("", None),
    Case("   ", None),
    # bad
    Case("x", BAD),
    Case("nan", BAD),
    Case("inf", BAD),
    Case("2023-02-29", BAD),
    Case("2023-13-01", BAD),
    Case("2023-00-10", BAD),
    Case("2023-04-31", BAD),
    Case("2023-11-14T24:00:00Z", BAD),
    Case("2023-11-14T23:60:00Z", BAD),
    Case("2023-11-14T22:13:20+05:3", BAD),
    Case("2023-11-14T22:13:20+25:00", BAD),
    Case("2023-11-14T22:13:20Q", BAD),
    Case("2262-04-12", BAD),
    Case("9999-12-31T23:59:59Z", BAD),
    Case("1e30", BAD),
    Case("true", BAD),
    Case("14/11/2023", BAD),
]


def expectation(cases: list[Case]) -> tuple[list[int | None], list[bool]]:
    values = [c.expected if isinstance(c.expected, int) else None for c in cases]
    bad = [c.expected == BAD for c in cases]
    return values, bad


@pytest.mark.parametrize("case", STRING_CASES, ids=lambda c: repr(c.text))
def test_one_string(case: Case) -> None:
    ns, bad = to_ns(pa.array([case.text], pa.string()))
    values, bad_expected = expectation([case])
    assert ns.type == pa.int64()
    assert ns.to_pylist() == values
    assert bad.tolist() == bad_expected


@pytest.mark.parametrize("string_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_all_strings_together(string_type: pa.DataType) -> None:
    """Mixed forms in one array take the grouped and fallback paths."""
    arr = pa.array([c.text for c in STRING_CASES], string_type)
    ns, bad = to_ns(arr)
    values, bad_expected = expectation(STRING_CASES)
    assert ns.to_pylist() == values
    assert bad.tolist() == bad_expected


def test_byte_parser_fallback_matches_arrow() -> None:
    """A value Arrow refuses in a big group sends the whole group through our own parser."""
    base = np.arange(2000, dtype=np.int64) * 1_000_003_007 + 1_600_000_000 * S
    texts = pa.array(base, TIMESTAMP_TYPE).cast(pa.string()).to_pylist()
    assert texts[0].endswith("Z")
    naive = [t[:-1].replace(" ", "T") for t in texts]
    poisoned = [*texts, "2023-02-30T00:00:00Z", *naive, "2023-02-30T00:00:00"]
    ns, bad = to_ns(pa.array(poisoned))
    assert ns.to_pylist() == [*base.tolist(), None, *base.tolist(), None]
    assert np.flatnonzero(bad).tolist() == [2000, 4001]


def test_sliced_string_array() -> None:
    arr = pa.array(["x", "1970-01-01t00:00:02z", "1970-01-01 00:00:03", "y"]).slice(1, 2)
    ns, bad = to_ns(arr)
    assert ns.to_pylist() == [2 * S, 3 * S]
    assert not bad.any()


def test_dictionary_strings_and_chunks() -> None:
    dict_arr = pa.array(
        ["1970-01-01T00:00:01Z", "x", None, "1970-01-01T00:00:01Z"]
    ).dictionary_encode()
    ns, bad = to_ns(pa.chunked_array([dict_arr, dict_arr.slice(1)]))
    assert ns.to_pylist() == [S, None, None, S, None, None, S]
    assert bad.tolist() == [False, True, False, False, True, False, False]


@pytest.mark.parametrize(
    ("values", "unit", "expected"),
    [
        ([1, 1_700_000_000, -5], "auto", [S, 1_700_000_000 * S, -5 * S]),
        ([99_999_999_999], "auto", [BAD]),  # < 1e11: seconds, beyond int64 ns
        ([100_000_000_000], "auto", [100_000_000_000 * 1_000_000]),  # ms
        ([1_700_000_000_000], "auto", [1_700_000_000_000 * 1_000_000]),
        ([1_700_000_000_000_000], "auto", [1_700_000_000_000_000 * 1000]),
        (
            [1_700_000_000_000_000_000, MAX, -MAX - 1],
            "auto",
            [1_700_000_000_000_000_000, MAX, -MAX - 1],
        ),
        ([-1_700_000_000_000], "auto", [-1_700_000_000_000 * 1_000_000]),
        ([1, 2], "s", [S, 2 * S]),
        ([1, 2], "ms", [1_000_000, 2_000_000]),
        ([1, 2], "us", [1000, 2000]),
        ([1, 2], "ns", [1, 2]),
        ([10**10, -(10**10)], "s", [BAD, BAD]),
        ([9_223_372_036, 9_223_372_037], "s", [9_223_372_036 * S, BAD]),
        ([-9_223_372_036, -9_223_372_037], "s", [-9_223_372_036 * S, BAD]),
        ([None, 3], "s", [None, 3 * S]),
    ],
)
def test_integers(values: list[int | None], unit: str, expected: list[object]) -> None:
    ns, bad = to_ns(pa.array(values, pa.int64()), unit)
    assert ns.to_pylist() == [e if isinstance(e, int) else None for e in expected]
    assert bad.tolist() == [e == BAD for e in expected]


@pytest.mark.parametrize(
    "int_type", [pa.int8(), pa.int16(), pa.int32(), pa.uint8(), pa.uint32(), pa.uint64()]
)
def test_integer_widths(int_type: pa.DataType) -> None:
    ns, bad = to_ns(pa.array([1, None, 100], int_type))
    assert ns.to_pylist() == [S, None, 100 * S]
    assert not bad.any()


def test_uint64_beyond_int64_is_bad() -> None:
    ns, bad = to_ns(pa.array([2**64 - 1, 2**63, 2**63 - 1], pa.uint64()))
    assert ns.to_pylist() == [None, None, MAX]
    assert bad.tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("values", "unit", "expected"),
    [
        (
            [1.5, -0.5, 1_700_000_000.25],
            "auto",
            [1_500_000_000, -500_000_000, 1_700_000_000 * S + 250_000_000],
        ),
        ([1_700_000_000_123.5], "auto", [1_700_000_000_123_500_000]),
        ([0.001], "s", [1_000_000]),
        ([1.5], "ms", [1_500_000]),
        ([1.5], "us", [1500]),
        ([1.4], "ns", [1]),
        ([float("nan"), float("inf"), float("-inf"), 1e30, -1e30], "auto", [BAD] * 5),
        ([None, 2.0], "s", [None, 2 * S]),
    ],
)
def test_floats(values: list[float | None], unit: str, expected: list[object]) -> None:
    ns, bad = to_ns(pa.array(values, pa.float64()), unit)
    assert ns.to_pylist() == [e if isinstance(e, int) else None for e in expected]
    assert bad.tolist() == [e == BAD for e in expected]


def test_float32_and_decimal() -> None:
    ns, bad = to_ns(pa.array([1.5, None, float("nan")], pa.float32()))
    assert ns.to_pylist() == [1_500_000_000, None, None]
    assert bad.tolist() == [False, False, True]
    ns, bad = to_ns(pa.array([decimal.Decimal("1.25")], pa.decimal128(5, 2)))
    assert ns.to_pylist() == [1_250_000_000] and not bad.any()


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (pa.array([1, None], pa.timestamp("s")), [S, None]),
        (pa.array([1, None], pa.timestamp("ms", "UTC")), [1_000_000, None]),
        (pa.array([1], pa.timestamp("us", "Asia/Tokyo")), [1000]),
        (pa.array([7], pa.timestamp("ns", "+05:00")), [7]),
        (pa.array([10**12], pa.timestamp("s")), [BAD]),
        (pa.array([dt.date(1970, 1, 2), None]), [86_400 * S, None]),
        (pa.array([dt.date(1969, 12, 31)], pa.date64()), [-86_400 * S]),
        (pa.array([dt.date(9999, 1, 1)]), [BAD]),
    ],
)
def test_temporal_types(arr: pa.Array, expected: list[object]) -> None:
    ns, bad = to_ns(arr)
    assert ns.to_pylist() == [e if isinstance(e, int) else None for e in expected]
    assert bad.tolist() == [e == BAD for e in expected]


@pytest.mark.parametrize(
    "arr",
    [
        pa.array([True, None, False]),
        pa.array([{"a": 1}, None, {"a": 2}]),
        pa.array([[1], None, []]),
        pa.array([b"1", None, b"2"]),
    ],
    ids=["bool", "struct", "list", "binary"],
)
def test_unsupported_types_are_bad(arr: pa.Array) -> None:
    ns, bad = to_ns(arr)
    assert ns.to_pylist() == [None, None, None]
    assert bad.tolist() == [True, False, True]


def test_null_and_empty_inputs() -> None:
    ns, bad = to_ns(pa.array([None, None]))
    assert ns.to_pylist() == [None, None] and not bad.any()
    ns, bad = to_ns(pa.array([], pa.string()))
    assert len(ns) == 0 and len(bad) == 0
    ns, bad = to_ns(pa.chunked_array([], pa.float64()))
    assert len(ns) == 0 and len(bad) == 0


def test_chunked_input_is_combined() -> None:
    ns, bad = to_ns(pa.chunked_array([["1970-01-01T00:00:01Z"], ["2", "x"]]))
    assert ns.to_pylist() == [S, 2 * S, None]
    assert bad.tolist() == [False, False, True]


def test_unknown_unit_raises() -> None:
    with pytest.raises(ValueError, match="unknown time unit"):
        to_ns(pa.array([1]), "minutes")


def test_to_timestamp_array() -> None:
    ts, bad = to_timestamp_array(pa.array(["1970-01-01T00:00:01Z", "x", None]))
    assert ts.type == TIMESTAMP_TYPE
    assert ts.cast(pa.int64()).to_pylist() == [S, None, None]
    assert bad.tolist() == [False, True, False]


def test_large_uniform_arrays_match_oracle() -> None:
    base = np.arange(50_000, dtype=np.int64) * 7_919_000_013 + 1_500_000_000 * S
    arr = pa.array(base, TIMESTAMP_TYPE).cast(pa.string())
    ns, bad = to_ns(arr)
    assert np.array_equal(ns.to_numpy(), base) and not bad.any()
    mixed = pa.array(
        [
            t if i % 3 else str(v / S)
            for i, (t, v) in enumerate(zip(arr.to_pylist(), base.tolist(), strict=True))
        ]
    )
    ns, bad = to_ns(mixed)
    got = ns.to_numpy()
    exact = np.arange(len(base)) % 3 != 0
    assert np.array_equal(got[exact], base[exact])
    assert np.all(np.abs(got[~exact] - base[~exact]) < 1000)  # float seconds: sub-us rounding
    assert not bad.any()


# ------------------------------------------------------------------ parse_instant


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (5, 5),
        (np.int64(7), 7),
        (5.6, 6),
        (dt.datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=dt.UTC), S + 5000),
        (dt.datetime(1970, 1, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))), 0),
        (dt.date(1970, 1, 2), 86_400 * S),
        ("1970-01-01T00:00:01.5Z", 1_500_000_000),
        ("1970-01-01", 0),
        ("1700000000", 1_700_000_000),  # a number is ns, whether int or text
        (" 1767225600000000000 ", 1_767_225_600_000_000_000),
        ("1.5e9", 1_500_000_000),
        (np.datetime64("1970-01-01T00:00:01.000000001"), S + 1),
        (np.datetime64("NaT"), None),
        (pd.Timestamp("1970-01-01T00:00:00.000000001", tz="UTC"), 1),
        (pd.NaT, None),
    ],
)
def test_parse_instant(value: object, expected: int | None) -> None:
    assert parse_instant(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (dt.datetime(2020, 1, 1), "naive datetime; give a timezone"),
        (pd.Timestamp("2020-01-01"), "naive datetime; give a timezone"),
        ("garbage", "'garbage'"),
        ("", "''"),
        (True, "True"),
        (float("nan"), "nan"),
        (object(), "object"),
        ([1], r"\[1\]"),
    ],
)
def test_parse_instant_errors_name_the_argument(value: object, message: str) -> None:
    with pytest.raises(QueryError, match=message) as info:
        parse_instant(value, name="start")
    assert str(info.value).startswith("start:")


def test_now_ns_is_current() -> None:
    before = dt.datetime.now(dt.UTC)
    got = now_ns()
    after = dt.datetime.now(dt.UTC)
    assert parse_instant(before) <= got <= parse_instant(after) + 1000  # type: ignore[operator]
