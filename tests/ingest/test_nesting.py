"""The nesting limit: events deeper than MAX_DEPTH levels are bad lines, on every input path,
quickly, and without recursion; the byte kernels behind it match a plain reference."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidal
from tidal.ingest import _kernels, decode_ndjson, nesting
from tidal.ingest.nesting import (
    MAX_DEPTH,
    TOO_DEEP,
    deep_field,
    deep_records,
    newline_free_blocks,
    risky_spans,
)

HUGE = 10_000  # levels: pyarrow takes a second for one such line, msgspec and json recurse


def nested(levels: int, leaf: Any = 1, *, kind: str = "object") -> Any:
    """A value ``levels`` deep: {"a": {"a": ... leaf}} or [[... leaf]]."""
    value = leaf
    for _ in range(levels):
        value = {"a": value} if kind == "object" else [value]
    return value


def deep_line(levels: int) -> bytes:
    """An event ``levels`` deep, as one NDJSON line built without recursion."""
    return b'{"a":' * levels + b"1" + b"}" * levels


def event(i: int, **fields: Any) -> dict[str, Any]:
    return {"timestamp": 1_767_225_600 + i, "entity": "e", "i": i, **fields}


def line(i: int, **fields: Any) -> bytes:
    return json.dumps(event(i, **fields)).encode()


def dead_letters(path: Path) -> list[dict[str, Any]]:
    return [msgspec.json.decode(x) for x in path.read_bytes().splitlines()]


# ------------------------------------------------------------------ every input path


@dataclass(frozen=True)
class Case:
    name: str
    data: Callable[[Path], object]  # given tmp_path
    bad: list[int]  # lines (or records, or array items) too deep
    good: list[int]  # the "i" of the events stored with on_error="skip"


def _ndjson(*parts: bytes) -> bytes:
    return b"\n".join(parts) + b"\n"


def _write(name: str, data: bytes) -> Callable[[Path], object]:
    def make(tmp_path: Path) -> object:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return make


HUGE_NDJSON = _ndjson(line(1), deep_line(HUGE), line(3))
SHORT_DEEP_NDJSON = _ndjson(line(1), line(2, x=nested(MAX_DEPTH)), line(3), deep_line(40))
HUGE_ARRAY = b"[" + line(1) + b"," + deep_line(HUGE) + b",\n" + line(3) + b"]"

CASES = [
    Case("ndjson bytes, huge line", lambda _: HUGE_NDJSON, [2], [1, 3]),
    Case("ndjson text, huge line", lambda _: HUGE_NDJSON.decode(), [2], [1, 3]),
    Case("ndjson, one level too deep", lambda _: SHORT_DEEP_NDJSON, [2, 4], [1, 3]),
    Case("ndjson, deep array",
         lambda _: _ndjson(line(1)[:-1] + b', "x": ' + b"[" * HUGE + b"]" * HUGE + b"}"),
         [1], []),
    Case("ndjson, unclosed", lambda _: _ndjson(line(1), b"[" * 100_000, line(3)), [2], [1, 3]),
    Case("ndjson with other bad lines", lambda _: _ndjson(b"{oops", deep_line(HUGE), line(3),
                                                          deep_line(40), line(5)),
         [2, 4], [3, 5]),
    Case("ndjson file", _write("e.ndjson", HUGE_NDJSON), [2], [1, 3]),
    Case("json array bytes, huge item", lambda _: HUGE_ARRAY, [2], [1, 3]),
    Case("json array file, huge item", _write("e.json", HUGE_ARRAY), [2], [1, 3]),
    Case("json array file, item one too deep",
         _write("e.json", json.dumps([event(1), nested(MAX_DEPTH + 1), event(3)]).encode()),
         [2], [1, 3]),
    Case("list of dicts, huge", lambda _: [event(1), nested(HUGE), event(3)], [2], [1, 3]),
    Case("list of dicts, deep lists",
         lambda _: [event(1, x=nested(MAX_DEPTH, kind="array")), event(2, x=nested(30))],
         [1], [2]),
    Case("pandas DataFrame",
         lambda _: pd.DataFrame([event(1, x={"b": 1}), event(2, x=nested(HUGE))]), [2], [1]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_reject_names_the_deep_lines_quickly(case: Case, open_store, tmp_path: Path) -> None:
    store = open_store()
    data = case.data(tmp_path)
    started = time.perf_counter()
    with pytest.raises(tidal.IngestError) as info:
        store.append(data)
    assert time.perf_counter() - started < 0.5
    deep = [p for p in info.value.problems if p.reason == TOO_DEEP]
    assert [p.line for p in deep] == case.bad
    assert all(p.raw for p in deep)
    assert f"line {case.bad[0]}: {TOO_DEEP}" in str(info.value)
    assert store.max_seq() == -1


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_skip_keeps_the_good_lines(case: Case, open_store, tmp_path: Path) -> None:
    store = open_store()
    receipt = store.append(case.data(tmp_path), on_error="skip")
    assert receipt.count == len(case.good)
    stored = store.read_from(0)
    assert (stored.column("i").to_pylist() if stored.num_rows else []) == case.good
    letters = [d for d in dead_letters(tmp_path / "dead.ndjson") if d["reason"] == TOO_DEEP]
    assert [d["line"] for d in letters] == case.bad


def test_the_limit_itself_goes_all_the_way(tmp_path: Path) -> None:
    """MAX_DEPTH levels of objects, of arrays, and of Arrow maps: WAL, flush, SQL, reopen."""
    objects = event(1, x=nested(MAX_DEPTH - 1))
    arrays = event(2, y=nested(MAX_DEPTH - 1, kind="array"))
    assert deep_records([objects, arrays]) == []
    store = tidal.open(tmp_path / "s")
    store.append(_ndjson(json.dumps(objects).encode()))
    store.append([arrays])
    store.flush()
    assert store.sql("SELECT count(*) AS n FROM events").column("n").to_pylist() == [2]
    store.close()
    store = tidal.open(tmp_path / "s")
    timeline = store.timeline("e")
    assert timeline.column("x").to_pylist()[0] == objects["x"]
    assert timeline.column("y").to_pylist()[1] == arrays["y"]
    store.append(b'{"timestamp": 1, "entity": "e"}')  # replayed after reopening
    store.close()
    tidal.open(tmp_path / "s").close()
    maps: pa.DataType = pa.int8()
    for _ in range(MAX_DEPTH - 1):
        maps = pa.map_(pa.string(), maps)  # two Arrow levels each: 62 for the WAL
    table = pa.table({"timestamp": [1], "entity": ["e"], "m": pa.nulls(1, maps)})
    with tidal.open(tmp_path / "maps") as store:
        assert store.append(table).count == 1
        store.flush()


def _deep_struct(levels: int) -> pa.DataType:
    t: pa.DataType = pa.int8()
    for _ in range(levels):
        t = pa.struct([("y", t)])
    return t


@pytest.mark.parametrize("form", ["table", "batch", "batches", "parquet", "arrow file"])
def test_an_arrow_type_too_deep_refuses_the_input(form: str, open_store, tmp_path: Path) -> None:
    table = pa.table({"timestamp": [1], "entity": ["e"], "x": pa.nulls(1, _deep_struct(40))})
    data: object = table
    if form == "batch":
        data = table.to_batches()[0]
    elif form == "batches":
        data = [pa.table({"timestamp": [1]}), table]
    elif form == "parquet":
        data = tmp_path / "deep.parquet"
        pq.write_table(table, data)
    elif form == "arrow file":
        data = tmp_path / "deep.arrow"
        feather.write_feather(table, data)
    store = open_store()
    for on_error in ("reject", "skip"):
        with pytest.raises(tidal.DecodeError) as info:
            store.append(data, on_error=on_error)
        assert f"field 'x{'.y' * (MAX_DEPTH - 1)}' is {TOO_DEEP}" in str(info.value)
    assert store.max_seq() == -1


def test_deep_field_names_the_path() -> None:
    schema = pa.schema([("ok", pa.int8()), ("x", _deep_struct(40))])
    assert deep_field(schema) == "x" + ".y" * (MAX_DEPTH - 1)  # x is at depth 2
    assert deep_field(pa.schema([("x", _deep_struct(MAX_DEPTH - 1))])) is None
    assert deep_field(pa.schema([("x", _deep_struct(MAX_DEPTH))])) is not None
    lists = pa.list_(pa.struct([("m", pa.map_(pa.string(), pa.list_(pa.int8())))]))
    assert deep_field(pa.schema([("l", lists)]), limit=3) == "l[].m"
    assert deep_field(pa.schema([("l", lists)]), limit=5) is None
    words = pa.dictionary(pa.int8(), pa.string())
    assert deep_field(pa.schema([("d", words)]), limit=1) is None


# ------------------------------------------------------------- the common case is cheap


def test_shallow_ndjson_is_never_scanned_line_by_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> np.ndarray:
        raise AssertionError("scanned lines of shallow input")

    monkeypatch.setattr("tidal.ingest.ndjson.deep_lines", refuse)
    short = b"".join(line(i, k={"p": {"n": "x"}}, l=[1, 2]) + b"\n" for i in range(5000))
    long = b"".join(line(i, m="x" * 3000, v=[[1]] * 300) + b"\n" for i in range(50))
    for data in (short, long):  # long lines with fewer than PARSE_SAFE_OPENS brackets
        d = decode_ndjson(data)
        assert d.problems == [] and d.table.num_rows == data.count(b"\n")


def test_many_brackets_in_strings_or_wide_arrays_are_not_deep() -> None:
    data = _ndjson(line(1, s="[" * 5000 + '"\\"{' * 2000), line(2, w=[[[1]]] * 3000))
    d = decode_ndjson(data)
    assert d.problems == []
    assert d.table.column("i").to_pylist() == [1, 2]


def test_a_huge_line_costs_milliseconds() -> None:
    for levels in (HUGE, 100_000, 1_000_000):  # pyarrow crashes on 20,000
        started = time.perf_counter()
        d = decode_ndjson(_ndjson(line(1), deep_line(levels)))
        assert time.perf_counter() - started < 1.0
        assert [(p.line, p.reason) for p in d.problems] == [(2, TOO_DEEP)]


def test_records_that_contain_themselves_are_too_deep() -> None:
    loop: dict[str, Any] = {"timestamp": 1}
    loop["self"] = loop
    with tidal.open() as store:
        with pytest.raises(tidal.IngestError) as info:
            store.append([event(1), loop])
        assert [(p.line, p.reason) for p in info.value.problems] == [(2, TOO_DEEP)]


# ------------------------------------------------------------------------ the kernels


def reference_line_depths(data: bytes) -> list[int]:
    """Byte by byte; a quote after an odd run of backslashes does not count."""
    out, depth, top, in_string, run = [], 0, 0, False, 0
    for c in data:
        if c == 10:
            out.append(max(top, 0))
            depth, top, in_string, run = 0, 0, False, 0
            continue
        if c == 0x22 and run % 2 == 0:
            in_string = not in_string
        elif not in_string and c in b"{[":
            depth += 1
            top = max(top, depth)
        elif not in_string and c in b"}]":
            depth -= 1
        run = run + 1 if c == 0x5C else 0
    return [*out, max(top, 0)]


def python_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(python_depth, value.values()), default=0)
    if isinstance(value, list | tuple):
        return 1 + max(map(python_depth, value), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80).map(lambda b: bytes(b'{}[]"\\\n a,'[x % 10] for x in b)),
       st.sampled_from([1, 2, 3, 7, 64, 1 << 19]))
def test_line_depths_match_the_reference(data: bytes, window: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_kernels, "WINDOW_BYTES", window)
        got = _kernels.line_depths(np.frombuffer(data, np.uint8)).tolist()
    assert got == reference_line_depths(data)


json_values = st.recursive(
    st.none() | st.integers() | st.text(alphabet='ab[]{}",\\\n', max_size=6),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(alphabet='k[}"\\', max_size=3), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, max_size=5), st.sampled_from([None, 1]),
       st.sampled_from([1, 3, 8, 1 << 19]))
def test_array_items_split_like_a_parser(items: list[Any], indent: int | None,
                                         window: int) -> None:
    doc = json.dumps(items, indent=indent).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_kernels, "WINDOW_BYTES", window)
        found = _kernels.array_items(np.frombuffer(doc, np.uint8))
    assert found is not None
    starts, stops, depths = found
    texts = [doc[a:b] for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
    assert [json.loads(t) for t in texts] == items
    assert depths.tolist() == [python_depth(x) for x in items]
    lines = b"\n".join(json.dumps(x).encode() for x in items)
    depths_by_line = _kernels.line_depths(np.frombuffer(lines, np.uint8)).tolist()
    assert depths_by_line[: len(items)] == [python_depth(x) for x in items]


@pytest.mark.parametrize("doc", [b"", b" ", b"{}", b"[1] [2]", b"[1, 2", b"x[1]", b"[1]x", b"]"])
def test_array_items_refuse_what_is_not_one_array(doc: bytes) -> None:
    assert _kernels.array_items(np.frombuffer(doc, np.uint8)) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=6), st.integers(1, 6))
def test_deep_records_match_a_recursive_walk(values: list[Any], limit: int) -> None:
    records = [{"v": v} for v in values] + values
    expected = [i for i, r in enumerate(records) if python_depth(r) > limit
                and isinstance(r, dict | list | tuple)]
    assert deep_records(records, limit=limit) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 30)), max_size=12),
       st.booleans())
def test_risky_spans_cover_every_bracket_heavy_line(shape: list[tuple[int, int]],
                                                    bom: bool) -> None:
    """With 8-byte blocks and a threshold of 16 brackets: every line holding 16 or more
    lies inside a span."""
    lines = [b"[" * opens + b"x" * pad for opens, pad in shape]
    data = (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines)
    start = 3 if bom else 0
    arr = np.frombuffer(data, np.uint8)
    free = newline_free_blocks(arr[start:] == 10, 8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nesting, "PARSE_SAFE_OPENS", 16)
        spans = risky_spans(arr, start, free, 8).tolist()
    offset = start
    for text in lines:
        if text.count(b"[") >= 16:
            assert any(lo <= offset and offset + len(text) <= hi for lo, hi in spans), (
                text, spans)
        offset += len(text) + 1
