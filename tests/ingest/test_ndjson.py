"""NDJSON decoding: fast path, bad lines, widening, huge lines."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidal.ingest import decode, decode_ndjson
from tidal.ingest.ndjson import MAX_RAW_BYTES, _count_lines


def lines_of(d) -> list[int]:
    assert d.lines is not None
    assert d.lines.dtype == np.int64
    return d.lines.tolist()


def where(d) -> list[tuple[int, str]]:
    return [(p.line, p.reason) for p in d.problems]


def test_clean_input_takes_every_line():
    d = decode_ndjson(b'{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n{"a": 3}\n')
    assert d.table.to_pylist() == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 3, "b": None},
    ]
    assert d.problems == []
    assert lines_of(d) == [1, 2, 3]
    assert d.source == "ndjson bytes"


def test_last_line_without_newline():
    d = decode_ndjson(b'{"a": 1}\n{"a": 2}')
    assert d.table.column("a").to_pylist() == [1, 2]
    assert lines_of(d) == [1, 2]


def test_nested_objects_stay_structs():
    d = decode_ndjson(
        b'{"k": {"pod": {"name": "p1"}, "ns": "a"}}\n{"k": {"pod": {"name": "p2", "uid": 7}}}\n'
    )
    t = d.table.schema.field("k").type
    assert pa.types.is_struct(t)
    assert pa.types.is_struct(t.field("pod").type)
    assert d.table.to_pylist() == [
        {"k": {"pod": {"name": "p1", "uid": None}, "ns": "a"}},
        {"k": {"pod": {"name": "p2", "uid": 7}, "ns": None}},
    ]


def test_blank_lines_crlf_and_bom_are_fine():
    data = b'\xef\xbb\xbf{"a": 1}\r\n\r\n   \n\t\r\n{"a": 2}\r\n\n{"a": 3}\r\n'
    d = decode_ndjson(data)
    assert d.problems == []
    assert d.table.column("a").to_pylist() == [1, 2, 3]
    assert lines_of(d) == [1, 5, 7]


def test_indented_lines_are_not_blank():
    d = decode_ndjson(b'  {"a": 1}\n\n\t{"a": 2}\n')
    assert d.table.column("a").to_pylist() == [1, 2]
    assert lines_of(d) == [1, 3]


@pytest.mark.parametrize("data", [b"", "", b"\n\n", b"   \r\n  ", b"\xef\xbb\xbf"])
def test_empty_input(data):
    d = decode_ndjson(data)
    assert d.table.num_rows == 0
    assert d.problems == []
    assert lines_of(d) == []


def test_bad_lines_are_reported_and_good_rows_kept():
    data = (
        b'{"a": 1}\n'  # 1
        b"not json\n"  # 2
        b"\n"  # 3 blank
        b"[1, 2]\n"  # 4 array
        b'{"a": 2}\n'  # 5
        b"42\n"  # 6 number
        b'{"a": 3,}\n'  # 7 trailing comma
        b'"text"\n'  # 8 string
        b'{"a": 4} {"a": 5}\n'  # 9 two objects
        b'{"a": 6}\n'  # 10
        b'{"a": 7'  # 11 truncated
    )
    d = decode_ndjson(data)
    assert d.table.column("a").to_pylist() == [1, 2, 6]
    assert lines_of(d) == [1, 5, 10]
    got = where(d)
    assert [line for line, _ in got] == [2, 4, 6, 7, 8, 9, 11]
    reasons = dict(got)
    assert reasons[4] == reasons[6] == reasons[8] == "not a JSON object"
    for line in (2, 7, 9, 11):
        assert reasons[line].startswith("invalid JSON: ")
    assert "truncated" in reasons[11]
    assert {p.line: p.raw for p in d.problems}[9] == '{"a": 4} {"a": 5}'


def test_only_bad_lines():
    d = decode_ndjson(b"oops\n[]\n")
    assert d.table.num_rows == 0
    assert [line for line, _ in where(d)] == [1, 2]
    assert lines_of(d) == []


def test_problem_raw_is_cut_to_64_kib():
    data = b'{"a": 1}\n{"x": "' + b"y" * (MAX_RAW_BYTES * 2) + b"\n"
    d = decode_ndjson(data)
    assert [p.line for p in d.problems] == [2]
    raw = d.problems[0].raw
    assert raw is not None and len(raw.encode()) == MAX_RAW_BYTES


def test_invalid_utf8_is_a_problem():
    d = decode_ndjson(b'{"a": "ok"}\n{"a": "\xff\xfe"}\n{"a": "fine"}\n')
    assert d.table.column("a").to_pylist() == ["ok", "fine"]
    assert lines_of(d) == [1, 3]
    assert [p.line for p in d.problems] == [2]
    assert d.problems[0].reason.startswith("invalid JSON")


def test_int_then_string_widens_to_string():
    d = decode_ndjson(b'{"a": 1}\n{"a": "x"}\n{"a": 2}\n{"a": "y"}\n')
    assert d.problems == []
    assert d.table.schema.field("a").type == pa.string()
    assert d.table.column("a").to_pylist() == ["1", "x", "2", "y"]
    assert lines_of(d) == [1, 2, 3, 4]


def test_int_then_float_widens_to_float():
    d = decode_ndjson(b'{"a": 1}\n{"a": 2.5}\n{"a": 3}\n')
    assert d.table.schema.field("a").type == pa.float64()
    assert d.table.column("a").to_pylist() == [1.0, 2.5, 3.0]


def test_conflicts_keep_every_value_and_order_with_bad_lines():
    rows = [
        b'{"id": 0, "v": 1, "s": {"x": 1}}',
        b'{"id": 1, "v": "one", "s": {"x": "x"}}',
        b"garbage",
        b'{"id": 3, "v": 2.5, "s": "flat"}',
        b'{"id": 4, "v": true}',
        b'{"id": 5, "v": {"deep": [1, 2]}, "s": {"y": 2}}',
        b'{"id": 6, "v": [1, 2]}',
        b'{"id": 7, "v": null}',
    ]
    d = decode_ndjson(b"\n".join(rows) + b"\n")
    assert where(d)[0][0] == 3 and len(d.problems) == 1
    assert d.table.column("id").to_pylist() == [0, 1, 3, 4, 5, 6, 7]
    assert lines_of(d) == [1, 2, 4, 5, 6, 7, 8]
    v = d.table.column("v").to_pylist()
    assert v[1] == "one" and v[-1] is None
    assert v[0] in ("1", "1.0") and v[2] == "2.5"
    assert v[3] in ("true", "True")
    assert "deep" in v[4] and v[5].replace(" ", "") == "[1,2]"
    s = d.table.column("s").to_pylist()
    assert "flat" in s and all(x is not None for x in s[:3])


def test_nested_conflict_widens_inside_struct():
    d = decode_ndjson(b'{"k": {"n": 1, "m": "a"}}\n{"k": {"n": "two"}}\n')
    assert d.table.column("k").to_pylist() == [{"n": "1", "m": "a"}, {"n": "two", "m": None}]


def test_conflicts_under_keys_holding_slashes():
    d = decode_ndjson(b'{"a/b": 1}\n{"a/b": "x"}\n{"k": {"p/q": [1]}}\n{"k": {"p/q": ["s"]}}\n')
    assert d.problems == []
    assert d.table.column("a/b").to_pylist() == ["1", "x", None, None]
    assert d.table.column("k").to_pylist()[2:] == [{"p/q": ["1"]}, {"p/q": ["s"]}]


def test_list_element_conflict_across_lines():
    d = decode_ndjson(b'{"a": [1, 2]}\n{"a": ["x"]}\n{"a": []}\n')
    assert d.table.column("a").to_pylist() == [["1", "2"], ["x"], []]


def test_many_alternating_conflicts_stay_fast():
    rows = [b'{"i": %d, "v": %s}' % (i, b'"s"' if i % 2 else b"%d" % i) for i in range(20_000)]
    start = time.perf_counter()
    d = decode_ndjson(b"\n".join(rows))
    assert time.perf_counter() - start < 5
    assert d.table.column("i").to_pylist() == list(range(20_000))
    v = d.table.column("v").to_pylist()
    assert v[:4] == ["0", "s", "2", "s"]


def test_mixed_list_in_one_row_becomes_json_text():
    d = decode_ndjson(b'{"a": [1, "x"], "b": 1}\n{"a": [2], "b": 2}\n')
    assert d.problems == []
    assert d.table.column("b").to_pylist() == [1, 2]
    a = d.table.column("a").to_pylist()
    assert a[0].replace(" ", "") == '[1,"x"]'
    assert a[1].replace(" ", "") == "[2]"


def test_duplicate_key_keeps_the_last_value():
    d = decode_ndjson(b'{"a": 1, "a": 2}\n{"a": 3}\n')
    assert d.problems == []
    assert d.table.column("a").to_pylist() == [2, 3]


def test_number_out_of_range_is_a_problem():
    d = decode_ndjson(b'{"a": 1}\n{"a": 1e999}\n')
    assert [p.line for p in d.problems] == [2]
    assert d.table.column("a").to_pylist() == [1]


def test_nan_accepted_on_both_paths():
    fast = decode_ndjson(b'{"a": NaN}\n{"a": 1.5}\n')
    slow = decode_ndjson(b'{"a": NaN}\n{"a": 1.5}\nbad\n')
    for d in (fast, slow):
        values = d.table.column("a").to_pylist()
        assert np.isnan(values[0]) and values[1] == 1.5
    assert slow.problems[0].line == 3 and fast.problems == []


def test_iso_timestamps_become_utc_timestamps():
    d = decode_ndjson(b'{"t": "2024-01-01T00:00:00Z"}\n{"t": "2024-01-01T02:00:00+02:00"}\n')
    assert d.table.schema.field("t").type == pa.timestamp("s", "UTC")
    assert d.table.column("t").cast(pa.int64()).to_pylist() == [1704067200, 1704067200]


def test_text_input_and_stable_source():
    d = decode_ndjson('{"a": "é"}\n')
    assert d.table.column("a").to_pylist() == ["é"]
    assert decode_ndjson(b"", source="x").source == "x"


def test_single_line_over_20_mb():
    big = b"x" * (21 << 20)
    data = b'{"a": 1}\n{"a": 2, "big": "' + big + b'"}\n{"a": 3}\n'
    start = time.perf_counter()
    d = decode(data)
    assert time.perf_counter() - start < 5
    assert d.problems == []
    assert d.table.column("a").to_pylist() == [1, 2, 3]
    assert len(d.table.column("big")[1].as_py()) == len(big)
    assert lines_of(d) == [1, 2, 3]


def test_huge_line_on_the_slow_path():
    big = b"y" * (17 << 20)
    data = b'oops\n{"a": "' + big + b'"}\n'
    d = decode(data)
    assert [p.line for p in d.problems] == [1]
    assert lines_of(d) == [2]
    assert d.table.column("a")[0].as_py() == big.decode()


def test_many_lines_across_blocks_keep_their_numbers():
    rows = [b'{"i": %d, "pad": "%s"}' % (i, b"p" * (i % 50)) for i in range(60_000)]
    rows[45_000] = b"{broken"
    data = b"\n".join(rows) + b"\n"
    d = decode_ndjson(data)
    assert [p.line for p in d.problems] == [45_001]
    expected = [i for i in range(60_000) if i != 45_000]
    assert d.table.column("i").to_pylist() == expected
    assert lines_of(d) == [i + 1 for i in expected]


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet="{\n a", max_size=40).map(str.encode),
    window=st.integers(min_value=1, max_value=9),
    bom=st.booleans(),
)
def test_count_lines_matches_a_plain_count(text: bytes, window: int, bom: bool):
    data = (b"\xef\xbb\xbf" if bom else b"") + text
    body = data[3:] if bom else data
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    expected = (len(lines), sum(line.startswith(b"{") for line in lines))
    arr = np.frombuffer(data, np.uint8)
    assert _count_lines(arr, 3 if bom else 0, window) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just(b""),
            st.just(b"  "),
            st.just(b"oops"),
            st.just(b"[1]"),
            st.just(b'{"a": 1} {"a": 2}'),
            st.integers(-5, 5).map(lambda i: b'{"a": %d}' % i),
            st.just(b'{"a": "s"}'),
            st.just(b'{"a": 1.5, "b": {"c": true}}'),
        ),
        max_size=12,
    ),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_every_line_is_a_row_or_a_problem(lines: list[bytes], sep: bytes):
    d = decode_ndjson(sep.join(lines))
    good = {
        i + 1 for i, line in enumerate(lines) if line.startswith(b'{"a": ') and b"} {" not in line
    }
    blank = {i + 1 for i, line in enumerate(lines) if not line.strip()}
    assert set(lines_of(d)) == good
    assert {p.line for p in d.problems} == set(range(1, len(lines) + 1)) - good - blank
    assert d.table.num_rows == len(good)
    if d.table.num_rows:
        values = d.table.column("a").to_pylist()
        originals = [
            lines[i - 1].split(b'"a": ')[1].split(b",")[0].rstrip(b"}") for i in lines_of(d)
        ]
        for value, raw in zip(values, originals, strict=True):
            assert str(value).strip('"') in (raw.decode().strip('"'), raw.decode() + ".0")


def test_lists_opening_with_nulls_keep_every_item():
    """pyarrow's JSON reader drops the nulls that open a list (found by schemathesis
    through the server: the memtable then failed to concatenate)."""
    body = (b'{"b": [null, null], "a": [false, 0]}\n{"b": [null]}\n{"b": null}\n'
            b'{"s": {"l": [[null, null], null, []]}, "n": [null, 1]}\n'
            b'{"n": [null, null, 2, null]}\n{"o": [null, {"x": 1}], "\\nkey": [[], true]}\n')
    d = decode_ndjson(body)
    assert d.problems == []
    d.table.validate(full=True)
    assert d.table.column("b").to_pylist() == [[None, None], [None], None, None, None, None]
    assert d.table.column("s").to_pylist()[3] == {"l": [[None, None], None, []]}
    assert d.table.column("n").to_pylist()[3:5] == [[None, 1], [None, None, 2, None]]
    assert d.table.column("o").to_pylist()[5] == [None, {"x": 1}]
    assert d.table.column("\nkey").to_pylist()[5] == "[[],true]"  # (a newline in a key)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=4)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["a", "b", "\nc", ""]), inner, max_size=3),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), JSON_VALUES, max_size=4),
                min_size=1, max_size=6))
def test_any_json_objects_decode_to_a_valid_table(rows: list[dict]):
    body = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    d = decode_ndjson(body)
    assert d.problems == []
    assert d.table.num_rows == len(rows)
    d.table.validate(full=True)
