"""Inputs through the whole store: bad lines, empty inputs, a huge line, type changes,
event times in every accepted form, and every accepted input type.

Unlike ``tests/ingest``, these go through ``Store.append`` and read back with
``timeline`` and ``sql``, on both backends where it matters.
"""

from __future__ import annotations

import gc
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import tidal

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
S = 1_000_000_000


def ns(table: pa.Table, field: str = "timestamp") -> list[int]:
    return table.column(field).cast(pa.int64()).to_pylist()


def dead_letters(path: Path) -> list[dict[str, object]]:
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


# --------------------------------------------------------------------------- bad lines

BAD_NDJSON = (
    b'{"timestamp": 1767225600, "entity": "a", "i": 1}\n'     # 1 good
    b'{oops\n'                                                 # 2 invalid JSON
    b'\n'                                                      # 3 blank: fine
    b'[1, 2]\n'                                                # 4 not an object
    b'{"timestamp": 1767225601, "entity": "a", "i": 5}\n'     # 5 good
    b'{"a": 1}{"b": 2}\n'                                      # 6 two objects
    b'{"timestamp": "not a time", "entity": "a", "i": 7}\n'   # 7 bad timestamp
    b'"text"\n'                                                # 8 not an object
    b'{"timestamp": 1767225602, "entity": "a", "i": 9}\n'     # 9 good
    b'{"timestamp": 1767225603, "entity": "a", "i": \n'       # 10 truncated
)
BAD_LINES = [2, 4, 6, 7, 8, 10]


@pytest.mark.parametrize("as_file", [False, True])
def test_reject_names_every_bad_line_and_stores_nothing(open_store, backend, tmp_path, as_file):
    store = open_store()
    data: object = BAD_NDJSON
    if as_file:
        data = tmp_path / "bad.ndjson"
        data.write_bytes(BAD_NDJSON)
    with pytest.raises(tidal.IngestError) as info:
        store.append(data)
    err = info.value
    assert [p.line for p in err.problems] == BAD_LINES
    assert all(p.reason for p in err.problems)
    assert err.line == 2
    by_line = {p.line: p for p in err.problems}
    assert "JSON" in by_line[2].reason and by_line[2].raw == "{oops"
    assert by_line[4].reason == "not a JSON object"
    assert by_line[7].field == "timestamp" and "not a time" in by_line[7].reason
    if as_file:
        assert err.source == str(data)
    assert store.max_seq() == -1
    assert store.read_from(0).num_rows == 0
    assert store.stats()["events"] == 0 and store.stats()["wal_bytes"] == 0
    assert not (tmp_path / "dead.ndjson").exists()
    # the store is untouched: the next append starts at _seq 0
    assert store.append(b'{"timestamp": 1767225600, "entity": "a"}').first_seq == 0
    if backend is not None:
        store.close()
        with tidal.open(backend) as again:
            assert again.max_seq() == 0


def test_skip_stores_the_good_and_dead_letters_the_bad(open_store, tmp_path):
    store = open_store()
    r = store.append(BAD_NDJSON, on_error="skip")
    assert (r.count, r.first_seq, r.last_seq, r.rejected) == (3, 0, 2, len(BAD_LINES))
    assert r.dead_letter == str(tmp_path / "dead.ndjson")
    assert store.timeline("a").column("i").to_pylist() == [1, 5, 9]
    assert ns(store.timeline("a")) == [T0, T0 + S, T0 + 2 * S]
    letters = dead_letters(tmp_path / "dead.ndjson")
    assert [d["line"] for d in letters] == BAD_LINES
    assert all(d["reason"] and d["source"] == "ndjson bytes" for d in letters)
    raws = {d["line"]: d["raw"] for d in letters}
    assert raws[2] == "{oops" and raws[4] == "[1, 2]" and raws[8] == '"text"'
    # a second skipping append adds to the dead letters and continues the _seq
    r2 = store.append(b'{"timestamp": 1767225609, "entity": "a", "i": 10}\nnope\n',
                      on_error="skip")
    assert (r2.first_seq, r2.rejected) == (3, 1)
    assert [d["line"] for d in dead_letters(tmp_path / "dead.ndjson")] == BAD_LINES + [2]
    # all lines bad: nothing stored, all dead-lettered
    r3 = store.append(b"{nope\n[]\n", on_error="skip")
    assert (r3.count, r3.first_seq, r3.rejected) == (0, None, 2)
    assert store.max_seq() == 3
    assert [d["line"] for d in dead_letters(tmp_path / "dead.ndjson")][-2:] == [1, 2]


def test_skip_dead_letter_keeps_the_raw_line_of_a_bad_timestamp(open_store, tmp_path):
    """A line refused for its timestamp is dropped from the store; the dead letter
    is then the only copy of that event, so it must carry the raw line."""
    store = open_store()
    store.append(b'{"timestamp": 1767225600, "entity": "a", "i": 1}\n'
                 b'{"timestamp": "not a time", "entity": "a", "i": 2, "keep": "me"}\n',
                 on_error="skip")
    (letter,) = dead_letters(tmp_path / "dead.ndjson")
    assert letter["line"] == 2 and letter["field"] == "timestamp"
    assert letter["raw"] is not None and "keep" in letter["raw"] and "not a time" in letter["raw"]


def test_bad_csv_rows_are_named_by_line(open_store, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,entity,n\n"
                    "2026-01-01T00:00:00Z,a,1\n"
                    "2026-01-01T00:00:01Z,a\n"
                    "2026-01-01T00:00:02Z,a,3\n"
                    "whenever,a,4\n")
    store = open_store(missing_timestamp="reject")
    with pytest.raises(tidal.IngestError) as info:
        store.append(path)
    assert [p.line for p in info.value.problems] == [3, 5]
    assert store.max_seq() == -1
    r = store.append(path, on_error="skip")
    assert (r.count, r.rejected) == (2, 2)
    assert store.timeline("a").column("n").to_pylist() == [1, 3]


# --------------------------------------------------------------------------- empty inputs


def _empty_inputs(tmp_path: Path) -> list[object]:
    (tmp_path / "empty.ndjson").write_bytes(b"")
    (tmp_path / "header.csv").write_text("timestamp,entity,n\n")
    (tmp_path / "empty.json").write_text("[]")
    pq.write_table(pa.table({"timestamp": pa.array([], pa.int64())}), tmp_path / "empty.parquet")
    return [
        b"", "", [], "\n\n", b"  \n", tmp_path / "empty.ndjson", str(tmp_path / "header.csv"),
        tmp_path / "empty.json", tmp_path / "empty.parquet", pa.table({}),
        pa.table({"timestamp": pa.array([], pa.int64()), "entity": pa.array([], pa.string())}),
        pd.DataFrame({"timestamp": [], "entity": []}), pl.DataFrame(),
    ]


def test_empty_inputs_store_nothing(open_store, backend, tmp_path):
    store = open_store()
    for data in _empty_inputs(tmp_path):
        r = store.append(data)
        assert (r.count, r.first_seq, r.last_seq, r.rejected) == (0, None, None, 0), data
    assert store.max_seq() == -1
    assert store.stats()["events"] == 0 and store.stats()["wal_bytes"] == 0
    assert store.sql("SELECT count(*) AS c FROM events").to_pylist() == [{"c": 0}]
    assert store.timeline("a").num_rows == 0
    store.append([{"timestamp": T0, "entity": "a"}])
    assert store.max_seq() == 0
    if backend is not None:
        store.close()
        with tidal.open(backend) as again:
            assert again.max_seq() == 0 and again.read_from(0).num_rows == 1


def test_sql_on_an_empty_store_knows_the_event_time_and_entity(open_store):
    """Every event has the configured timestamp and entity fields, so the usual
    query shapes must work before the first event arrives (and give no rows)."""
    store = open_store()
    store.append(b"")
    got = store.sql("SELECT count(*) AS c FROM events "
                    "WHERE entity = 'a' AND timestamp >= '2026-01-01'")
    assert got.to_pylist() == [{"c": 0}]


# --------------------------------------------------------------------------- a huge line


def test_a_100_mb_line_round_trips(tmp_path):
    size = 100_000_000
    with tidal.open(tmp_path / "store") as store:
        data = b"".join([b'{"timestamp": "2026-01-01T00:00:01Z", "entity": "big", "n": 1}\n',
                         b'{"timestamp": "2026-01-01T00:00:00Z", "entity": "big", "n": 2, '
                         b'"blob": "', b"x" * size, b'"}\n'])
        r = store.append(data)
        del data
        assert (r.count, r.first_seq, r.last_seq) == (2, 0, 1)
        t = store.timeline("big")
        assert t.column("n").to_pylist() == [2, 1]
        blob = t.column("blob")
        assert blob.null_count == 1 and len(blob[0].as_py()) == size
        del t, blob
        gc.collect()
        store.flush()
        got = store.sql("SELECT n, length(blob) AS l FROM events ORDER BY _seq").to_pylist()
        assert got == [{"n": 1, "l": None}, {"n": 2, "l": size}]
    with tidal.open(tmp_path / "store") as store:  # from the segment this time
        t = store.timeline("big", end="2026-01-01T00:00:01Z")
        assert t.column("n").to_pylist() == [2]
        assert t.column("blob")[0].as_py() == "x" * size
        del t
    gc.collect()


# --------------------------------------------------------------------------- type changes


def test_type_changes_across_lines_lose_no_value(open_store):
    store = open_store()
    store.append(b'{"timestamp": 1767225600, "entity": "a", "v": 1}\n'
                 b'{"timestamp": 1767225601, "entity": "a", "v": "two"}\n'
                 b'{"timestamp": 1767225602, "entity": "a", "v": 3.5}\n'
                 b'{"timestamp": 1767225603, "entity": "a", "v": {"k": 4}}\n'
                 b'{"timestamp": 1767225604, "entity": "a", "v": [5, "x"]}\n'
                 b'{"timestamp": 1767225605, "entity": "a", "v": null}\n'
                 b'{"timestamp": 1767225606, "entity": "a", "v": true}\n')
    want = ["1", "two", "3.5", '{"k":4}', '[5,"x"]', None, "true"]
    assert store.timeline("a").column("v").to_pylist() == want
    got = store.sql("SELECT v FROM events ORDER BY _seq").column("v").to_pylist()
    assert got == want


@pytest.mark.parametrize("flush_between", [False, True])
def test_type_changes_across_appends_lose_no_value(open_store, flush_between):
    store = open_store(compact_min_rows=1_000)
    values: list[object] = [1, "two", 3.5, 4]
    for i, v in enumerate(values):
        store.append([{"timestamp": T0 + i, "entity": "a", "v": v}])
        if flush_between:
            store.flush()
    want = ["1", "two", "3.5", "4"]
    assert store.timeline("a").column("v").to_pylist() == want
    assert store.sql("SELECT v FROM events ORDER BY _seq").column("v").to_pylist() == want
    assert store.sql("SELECT count(*) AS c FROM events WHERE v = 'two'").to_pylist() == [{"c": 1}]
    store.compact()
    assert store.timeline("a").column("v").to_pylist() == want
    assert store.sql("SELECT v FROM events ORDER BY _seq").column("v").to_pylist() == want


def test_int_then_float_across_appends_widens(open_store):
    store = open_store()
    store.append([{"timestamp": T0, "entity": "a", "v": 1}])
    store.flush()
    store.append([{"timestamp": T0 + 1, "entity": "a", "v": 2.5}])
    assert store.timeline("a").column("v").to_pylist() == [1.0, 2.5]
    got = store.sql("SELECT sum(v) AS s FROM events").to_pylist()
    assert got == [{"s": 3.5}]


@pytest.mark.parametrize("flush_between", [False, True])
def test_struct_then_scalar_across_appends_in_sql(open_store, flush_between):
    """A field that is an object in one append and a scalar in another: both the
    timeline and SQL must show every value (the object as JSON text)."""
    store = open_store()
    store.append([{"timestamp": T0, "entity": "a", "v": {"k": 1}}])
    if flush_between:
        store.flush()
    store.append([{"timestamp": T0 + 1, "entity": "a", "v": 7}])
    store.append([{"timestamp": T0 + 2, "entity": "a", "v": "s"}])
    want = ['{"k":1}', "7", "s"]
    assert store.timeline("a").column("v").to_pylist() == want
    got = store.sql("SELECT v FROM events ORDER BY _seq").column("v").to_pylist()
    assert [json.loads(x) if x and x.startswith("{") else x for x in got] == [{"k": 1}, "7", "s"]


def test_struct_segment_then_scalar_segment_in_sql(open_store):
    """The same with both values already flushed into (different) segments."""
    store = open_store(compact_min_rows=1_000)
    store.append([{"timestamp": T0, "entity": "a", "v": {"k": 1}}])
    store.flush()
    store.append([{"timestamp": T0 + 1, "entity": "a", "v": "two"}])
    store.flush()
    assert store.sql("SELECT count(*) AS c FROM events").to_pylist() == [{"c": 2}]
    got = store.sql("SELECT v FROM events ORDER BY _seq").column("v").to_pylist()
    assert len(got) == 2 and got[1] == "two" and json.loads(got[0]) == {"k": 1}


# --------------------------------------------------------------------------- event time


def test_out_of_order_times_are_ordered_in_timelines(open_store):
    store = open_store()
    store.append([{"timestamp": T0 + 5 * S, "entity": "a", "n": 0},
                  {"timestamp": T0 + 1 * S, "entity": "a", "n": 1},
                  {"timestamp": T0 + 3 * S, "entity": "a", "n": 2}])
    store.flush()
    store.append([{"timestamp": T0 + 2 * S, "entity": "a", "n": 3},
                  {"timestamp": T0 - 9 * S, "entity": "a", "n": 4},
                  {"timestamp": T0 + 3 * S, "entity": "a", "n": 5}])
    store.append([{"timestamp": T0 + 4 * S, "entity": "a", "n": 6}])
    assert store.timeline("a").column("n").to_pylist() == [4, 1, 3, 2, 5, 6, 0]
    assert store.timeline("a", desc=True).column("n").to_pylist() == [0, 6, 5, 2, 3, 1, 4]
    assert store.timeline("a", T0 + 2 * S, T0 + 4 * S).column("n").to_pylist() == [3, 2, 5]
    assert store.read_from(0).column("n").to_pylist() == list(range(7))


TIME_FORMS: list[tuple[object, int]] = [
    ("2026-01-01T00:00:00Z", T0),
    ("2026-01-01T00:00:00z", T0),
    ("2026-01-01T01:30:00+01:30", T0),
    ("2025-12-31T19:00:00-05:00", T0),
    ("2026-01-01T02:00:00+0200", T0),
    ("2026-01-01T00:00:00.123456789Z", T0 + 123_456_789),
    ("2026-01-01T00:00:00.5+00:00", T0 + 500_000_000),
    ("2026-01-01T00:00:00", T0),  # no offset: UTC
    ("2026-01-01 00:00:07", T0 + 7 * S),
    ("2026-01-01", T0),
    ("1969-12-31T23:59:59Z", -S),
    (1_767_225_600, T0),  # epoch seconds
    (1_767_225_600_123, T0 + 123_000_000),  # ms
    (1_767_225_600_123_456, T0 + 123_456_000),  # us
    (1_767_225_600_123_456_789, T0 + 123_456_789),  # ns
    ("1767225600", T0),
    ("1767225600123", T0 + 123_000_000),
]


@pytest.mark.parametrize(("value", "want"), TIME_FORMS, ids=[repr(v) for v, _ in TIME_FORMS])
def test_every_time_form_maps_to_the_right_ns(value, want):
    with tidal.open() as store:
        store.append([{"timestamp": value, "entity": "a"}])
        store.append(json.dumps({"timestamp": value, "entity": "b"}))
        assert ns(store.timeline("a")) == [want]
        assert ns(store.timeline("b")) == [want]


def test_time_forms_mixed_in_one_input(open_store, tmp_path):
    store = open_store()
    text = "".join(json.dumps({"timestamp": v, "entity": "a", "i": i}) + "\n"
                   for i, (v, _) in enumerate(TIME_FORMS))
    store.append(text)
    store.flush()
    t = store.timeline("a")
    assert dict(zip(t.column("i").to_pylist(), ns(t), strict=True)) == {
        i: want for i, (_, want) in enumerate(TIME_FORMS)}
    assert ns(t) == sorted(ns(t))


def test_float_epoch_seconds_and_explicit_units():
    with tidal.open() as store:
        store.append([{"timestamp": 1_767_225_600.25, "entity": "a"}])
        assert ns(store.timeline("a")) == [T0 + 250_000_000]
    for unit, factor in (("s", S), ("ms", 10**6), ("us", 10**3), ("ns", 1)):
        with tidal.open(timestamp_unit=unit) as store:
            store.append([{"timestamp": 5, "entity": "a"}])
            store.append(b'{"timestamp": "7", "entity": "a"}')
            assert ns(store.timeline("a")) == [5 * factor, 7 * factor], unit


# --------------------------------------------------------------------------- input types

ROWS = [
    {"timestamp": "2026-01-01T00:00:02Z", "entity": "pod-1", "n": 0, "msg": "m0"},
    {"timestamp": "2026-01-01T00:00:00Z", "entity": "pod-1", "n": 1, "msg": "m1"},
    {"timestamp": "2026-01-01T00:00:01Z", "entity": "pod-2", "n": 2, "msg": "m2"},
]
NDJSON = "".join(json.dumps(r) + "\n" for r in ROWS)
ARROW = pa.table({
    "timestamp": pa.array([T0 + 2 * S, T0, T0 + S], pa.timestamp("ns", "UTC")),
    "entity": ["pod-1", "pod-1", "pod-2"],
    "n": [0, 1, 2],
    "msg": ["m0", "m1", "m2"],
})


def _write(path: Path, data: bytes, compression: str | None = None) -> Path:
    with pa.output_stream(str(path), compression=compression) as out:
        out.write(data)
    return path


def _input(kind: str, tmp_path: Path) -> object:
    csv = "timestamp,entity,n,msg\n" + "".join(
        f"{r['timestamp']},{r['entity']},{r['n']},{r['msg']}\n" for r in ROWS)
    match kind:
        case "dicts":
            return [dict(r) for r in ROWS]
        case "table":
            return ARROW
        case "record batch":
            return ARROW.to_batches()[0]
        case "batch reader":
            return pa.RecordBatchReader.from_batches(ARROW.schema, ARROW.to_batches())
        case "pandas":
            return pd.DataFrame({
                "timestamp": pd.to_datetime([r["timestamp"] for r in ROWS], utc=True),
                "entity": [r["entity"] for r in ROWS],
                "n": [r["n"] for r in ROWS],
                "msg": [r["msg"] for r in ROWS],
            })
        case "polars":
            return pl.DataFrame({
                "timestamp": [datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in (2, 0, 1)],
                "entity": [r["entity"] for r in ROWS],
                "n": [r["n"] for r in ROWS],
                "msg": [r["msg"] for r in ROWS],
            })
        case "ndjson bytes":
            return NDJSON.encode()
        case "ndjson str":
            return NDJSON
        case "x.ndjson" | "x.jsonl" | "x.json":
            return _write(tmp_path / kind, NDJSON.encode())
        case "array.json":
            return _write(tmp_path / kind, json.dumps(ROWS, indent=2).encode())
        case "x.csv":
            return _write(tmp_path / kind, csv.encode())
        case "x.parquet":
            pq.write_table(ARROW, tmp_path / kind)
            return tmp_path / kind
        case "x.arrow" | "x.feather":
            feather.write_feather(ARROW, tmp_path / kind)
            return tmp_path / kind
        case "stream.ipc":
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, ARROW.schema) as writer:
                writer.write_table(ARROW)
            return _write(tmp_path / kind, sink.getvalue().to_pybytes())
        case "x.ndjson.gz":
            path = tmp_path / kind
            path.write_bytes(gzip.compress(NDJSON.encode()))
            return path
        case "x.ndjson.zst" | "array.json.zst":
            body = NDJSON if kind.startswith("x") else json.dumps(ROWS)
            return _write(tmp_path / kind, body.encode(), "zstd")
        case "x.csv.gz":
            return _write(tmp_path / kind, csv.encode(), "gzip")
        case "x.csv.zst":
            return _write(tmp_path / kind, csv.encode(), "zstd")
        case "parquet bytes":
            sink = pa.BufferOutputStream()
            pq.write_table(ARROW, sink)
            return sink.getvalue().to_pybytes()
        case "ipc stream bytes":
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, ARROW.schema) as writer:
                writer.write_table(ARROW)
            return sink.getvalue().to_pybytes()
        case "path str":
            return str(_write(tmp_path / "as-str.ndjson", NDJSON.encode()))
    raise AssertionError(kind)


INPUT_KINDS = ["dicts", "table", "record batch", "batch reader", "pandas", "polars",
               "ndjson bytes", "ndjson str", "x.ndjson", "x.jsonl", "x.json", "array.json",
               "x.csv", "x.parquet", "x.arrow", "x.feather", "stream.ipc", "x.ndjson.gz",
               "x.ndjson.zst", "array.json.zst", "x.csv.gz", "x.csv.zst", "parquet bytes",
               "ipc stream bytes", "path str"]


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_every_input_type_through_append(kind, tmp_path):
    with tidal.open(tmp_path / "store", memtable_bytes=1 << 30) as store:
        r = store.append(_input(kind, tmp_path))
        assert (r.count, r.first_seq, r.last_seq, r.rejected) == (3, 0, 2, 0)
        for flushed in (False, True):
            t = store.timeline("pod-1")
            assert t.column("n").to_pylist() == [1, 0], flushed
            assert t.column("msg").to_pylist() == ["m1", "m0"]
            assert ns(t) == [T0, T0 + 2 * S]
            assert ns(store.timeline("pod-2")) == [T0 + S]
            got = store.sql("SELECT n, entity FROM events ORDER BY _seq").to_pylist()
            assert got == [{"n": r["n"], "entity": r["entity"]} for r in ROWS]
            store.flush()
