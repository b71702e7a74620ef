"""``decode`` dispatch: Arrow objects, DataFrames, lists of dicts, bytes, text, paths."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import tidal.ingest as ingest
from tidal.errors import DecodeError
from tidal.ingest import Decoded, decode

TABLE = pa.table({"a": [1, 2], "s": ["x", "y"]})


def test_public_names():
    assert sorted(ingest.__all__) == sorted(
        [
            "FORMATS",
            "MAX_RAW_BYTES",
            "Decoded",
            "decode",
            "decode_buffer",
            "decode_ndjson",
            "decode_path",
            "decode_records",
            "detect_format",
            "write_dead_letter",
        ]
    )


def test_arrow_table_passes_through():
    d = decode(TABLE)
    assert isinstance(d, Decoded)
    assert d.table is TABLE and d.problems == [] and d.lines is None


def test_record_batch_and_batches_and_reader():
    batch = TABLE.to_batches()[0]
    assert decode(batch).table.equals(TABLE)
    assert decode([batch, batch]).table.num_rows == 4
    assert decode(iter([batch, batch])).table.num_rows == 4
    reader = pa.RecordBatchReader.from_batches(TABLE.schema, [batch, batch])
    d = decode(reader)
    assert d.table.num_rows == 4 and d.lines is None


def test_batches_with_different_schemas_are_widened():
    a = pa.record_batch({"v": [1]})
    b = pa.record_batch({"v": ["one"], "w": [2.5]})
    d = decode([a, b])
    assert d.table.to_pylist() == [{"v": "1", "w": None}, {"v": "one", "w": 2.5}]


def test_pandas_and_polars_frames():
    pdf = pd.DataFrame({"a": [1, 2], "s": ["x", "y"]}, index=[10, 11])
    d = decode(pdf)
    assert d.table.to_pylist() == TABLE.to_pylist() and d.source == "pandas DataFrame"
    assert d.table.column_names == ["a", "s"]
    d = decode(pl.DataFrame({"a": [1, 2], "s": ["x", "y"]}))
    assert d.table.to_pylist() == TABLE.to_pylist() and d.source == "polars DataFrame"


def test_pandas_column_of_mixed_objects_is_widened():
    d = decode(pd.DataFrame({"v": [1, "x"]}))
    assert d.table.column("v").to_pylist() == ["1", "x"]


def test_list_of_dicts_takes_every_key():
    d = decode([{"a": 1}, {"b": "x", "n": {"k": 1}}, {}])
    assert d.table.to_pylist() == [
        {"a": 1, "b": None, "n": None},
        {"a": None, "b": "x", "n": {"k": 1}},
        {"a": None, "b": None, "n": None},
    ]
    assert d.problems == [] and d.lines is None and d.source == "list of dicts"


def test_list_of_dicts_keeps_python_types():
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    d = decode([{"t": when, "f": 1.5}])
    assert d.table.column("t").to_pylist() == [when]


def test_list_with_non_dicts_reports_their_record_numbers():
    d = decode([{"a": 1}, 5, {"a": 2}, "x", None])
    assert d.table.column("a").to_pylist() == [1, 2]
    assert d.lines.tolist() == [1, 3]
    assert [(p.line, p.reason) for p in d.problems] == [
        (2, "not a JSON object"),
        (4, "not a JSON object"),
        (5, "not a JSON object"),
    ]


def test_list_of_dicts_with_mixed_types_widens():
    d = decode([{"a": 1}, {"a": "x"}, {"a": 2.5}, {"a": {"k": 1}}])
    assert d.table.column("a").to_pylist()[1] == "x"
    assert d.table.num_rows == 4 and d.problems == [] and d.lines is None
    d = decode([{"a": 1}, {"a": 2.5}])
    assert d.table.column("a").to_pylist() == [1.0, 2.5]


def test_mixed_list_with_non_dicts_and_conflicts():
    d = decode([{"a": 1}, [1], {"a": "x"}, {"a": object()}])
    assert d.table.column("a").to_pylist() == ["1", "x"]
    assert d.lines.tolist() == [1, 3]
    assert [p.line for p in d.problems] == [2, 4]
    assert d.problems[1].reason.startswith("cannot encode as JSON")


@pytest.mark.parametrize("empty", [[], (), b"", "", bytearray(), iter([])])
def test_empty_inputs(empty):
    d = decode(empty)
    assert d.table.num_rows == 0 and d.problems == []


def test_bytes_variants_and_text():
    data = b'{"a": 1}\n{"a": 2}\n'
    for value in (data, bytearray(data), memoryview(data), data.decode()):
        d = decode(value)
        assert d.table.column("a").to_pylist() == [1, 2]
        assert d.lines.tolist() == [1, 2]
    assert decode(data).source == "ndjson bytes"
    assert decode(data.decode()).source == "ndjson text"


def test_text_that_looks_like_json_is_not_a_path():
    d = decode('  {"a": 1}')
    assert d.table.column("a").to_pylist() == [1]
    d = decode('[{"a": 1}, {"a": 2}]')
    assert d.table.column("a").to_pylist() == [1, 2]


def test_bytes_json_array_and_ndjson_starting_with_an_array():
    d = decode(b'\n [{"a": 1}, 3]')
    assert d.table.column("a").to_pylist() == [1] and [p.line for p in d.problems] == [2]
    d = decode(b'[1, 2]\n{"a": 1}\n')
    assert d.table.column("a").to_pylist() == [1]
    assert [(p.line, p.reason) for p in d.problems] == [(1, "not a JSON object")]


def test_bytes_with_explicit_formats():
    assert decode(b"a,b\n1,2\n", format="csv").table.to_pylist() == [{"a": 1, "b": 2}]
    assert decode('{"a": 1}\n', format="json").table.column("a").to_pylist() == [1]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, TABLE.schema) as writer:
        writer.write_table(TABLE)
    assert decode(sink.getvalue().to_pybytes(), format="arrow").table.equals(TABLE)
    with pytest.raises(DecodeError, match="Parquet"):
        decode(b"not parquet", format="parquet")


def test_str_and_pathlike_paths(tmp_path: Path):
    path = tmp_path / "x.ndjson"
    path.write_bytes(b'{"a": 1}\n')
    assert decode(str(path)).source == str(path)
    assert decode(path).table.column("a").to_pylist() == [1]


def test_unknown_format_is_refused():
    with pytest.raises(DecodeError, match="unknown format 'xml'"):
        decode(b"<a/>", format="xml")


@pytest.mark.parametrize("value", [42, 1.5, {"a": 1}, object(), None, {1, 2}, np.arange(3)])
def test_unsupported_types_name_the_type(value):
    with pytest.raises(DecodeError) as err:
        decode(value)
    assert type(value).__name__ in str(err.value)


def test_dataframe_libraries_are_not_imported_by_decoding(tmp_path: Path):
    # pyarrow itself imports pandas in pa.array(list); decoding bytes and files must not.
    path = tmp_path / "x.csv"
    path.write_bytes(b"a\n1\n")
    code = (
        "import sys, tidal.ingest as i; i.decode(b'{}\\nbad\\n'); "
        f"i.decode({str(path)!r}); print('pandas' in sys.modules, 'polars' in sys.modules); "
        "i.decode([{'a': 1}]); print('polars' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_generator_of_dicts():
    d = decode({"i": i} for i in range(3))
    assert d.table.column("i").to_pylist() == [0, 1, 2] and d.lines is None


def test_arrow_ipc_with_text_that_is_not_utf8_is_refused():
    bad = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.array([0, 2], np.int32)),
                                                 pa.py_buffer(b"\xff\xfe")])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, pa.schema([("message", pa.string())])) as writer:
        writer.write_table(pa.table({"message": bad}))
    with pytest.raises(DecodeError, match="Arrow IPC.*UTF8|Arrow IPC.*utf"):
        decode(sink.getvalue().to_pybytes(), format="arrow")
