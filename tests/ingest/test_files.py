"""Files: extensions, compression, detection, CSV, Parquet, Arrow IPC, JSON arrays."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from tidal.errors import DecodeError
from tidal.ingest import decode, decode_path, detect_format

NDJSON = b'{"a": 1, "s": "x"}\nnot json\n{"a": 2, "s": "y"}\n'
TABLE = pa.table({"a": [1, 2, 3], "s": ["x", "y", "z"], "n": [{"k": 1}, {"k": 2}, None]})


def write(path: Path, data: bytes, compression: str | None = None) -> Path:
    with pa.output_stream(str(path), compression=compression) as out:
        out.write(data)
    return path


def check_ndjson(d, source: str) -> None:
    assert d.table.to_pylist() == [{"a": 1, "s": "x"}, {"a": 2, "s": "y"}]
    assert d.lines.tolist() == [1, 3]
    assert [p.line for p in d.problems] == [2]
    assert d.source == source


@pytest.mark.parametrize(
    "name", ["e.ndjson", "e.jsonl", "e.json", "e.log", "e.ndjson.gz", "e.jsonl.zst", "e.json.gz"]
)
def test_ndjson_files(tmp_path: Path, name: str):
    compression = {"gz": "gzip", "zst": "zstd"}.get(name.rsplit(".", 1)[1])
    path = write(tmp_path / name, NDJSON, compression)
    check_ndjson(decode(str(path)), str(path))
    check_ndjson(decode(path), str(path))


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_compression_is_sniffed_without_extension(tmp_path: Path, codec: str):
    path = write(tmp_path / "events.bin", NDJSON, codec)
    check_ndjson(decode(path), str(path))


def test_gzip_written_by_python(tmp_path: Path):
    path = tmp_path / "py.ndjson.gz"
    path.write_bytes(gzip.compress(NDJSON))
    check_ndjson(decode(path), str(path))


def test_json_array_file(tmp_path: Path):
    text = b'\xef\xbb\xbf [\n  {"a": 1, "t": {"x": 1}},\n  7,\n  {"a": "two"},\n  [1]\n]\n'
    path = write(tmp_path / "arr.json", text)
    d = decode(path)
    assert d.table.to_pylist() == [{"a": "1", "t": {"x": 1}}, {"a": "two", "t": None}]
    assert d.lines.tolist() == [1, 3]
    assert [(p.line, p.reason) for p in d.problems] == [
        (2, "not a JSON object"),
        (4, "not a JSON object"),
    ]


def test_clean_json_array_has_no_line_map(tmp_path: Path):
    path = write(tmp_path / "arr.json.zst", b'[{"a": 1}, {"a": 2.5}]', "zstd")
    d = decode(path)
    assert d.table.column("a").to_pylist() == [1.0, 2.5]
    assert d.problems == [] and d.lines is None


@pytest.mark.parametrize("text", [b"[]", b"  [ ]\n"])
def test_empty_json_array(tmp_path: Path, text: bytes):
    d = decode(write(tmp_path / "e.json", text))
    assert d.table.num_rows == 0 and d.problems == []


def test_broken_json_array_file_is_a_decode_error(tmp_path: Path):
    path = write(tmp_path / "broken.json", b'[{"a": 1}, {"a": 2}')
    with pytest.raises(DecodeError) as err:
        decode(path)
    assert str(path) in str(err.value)
    assert err.value.problems and "invalid JSON array" in err.value.problems[0].reason


def test_csv_with_a_bad_row(tmp_path: Path):
    text = b'a,b,c\n1,x,2.5\n2,y\n\n3,"multi\nline",4\n4,z,5,extra\n5,w,6\n'
    d = decode(write(tmp_path / "t.csv", text))
    assert d.table.column("a").to_pylist() == [1, 3, 5]
    assert d.table.column("b").to_pylist() == ["x", "multi\nline", "w"]
    assert d.lines.tolist() == [2, 5, 8]
    assert [(p.line, p.raw) for p in d.problems] == [(3, "2,y"), (7, "4,z,5,extra")]
    assert d.problems[0].reason == "expected 3 columns, got 2"


def test_csv_gz_crlf_bom(tmp_path: Path):
    path = write(tmp_path / "t.csv.gz", b"\xef\xbb\xbfa,b\r\n1,2\r\n3,4\r\n", "gzip")
    d = decode(path)
    assert d.table.column_names == ["a", "b"]
    assert d.table.to_pylist() == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert d.lines.tolist() == [2, 3] and d.problems == []


def test_csv_header_only_and_empty(tmp_path: Path):
    d = decode(write(tmp_path / "h.csv", b"a,b\n"))
    assert d.table.column_names == ["a", "b"] and d.table.num_rows == 0
    d = decode(write(tmp_path / "e.csv", b""))
    assert d.table.num_rows == 0 and d.problems == []


def test_parquet_files(tmp_path: Path):
    pq.write_table(TABLE, tmp_path / "t.parquet")
    d = decode(tmp_path / "t.parquet")
    assert d.table.equals(TABLE) and d.lines is None and d.problems == []
    raw = (tmp_path / "t.parquet").read_bytes()
    assert decode(write(tmp_path / "t.parquet.zst", raw, "zstd")).table.equals(TABLE)
    assert decode(write(tmp_path / "mystery", raw)).table.equals(TABLE)


@pytest.mark.parametrize("kind", ["file", "stream", "feather"])
def test_arrow_ipc_files(tmp_path: Path, kind: str):
    path = tmp_path / ("t.feather" if kind == "feather" else f"t.{kind}.arrow")
    if kind == "feather":
        feather.write_feather(TABLE, str(path))
    else:
        opener = pa.ipc.new_file if kind == "file" else pa.ipc.new_stream
        with opener(str(path), TABLE.schema) as writer:
            writer.write_table(TABLE)
    d = decode(path)
    assert d.table.equals(TABLE) and d.lines is None
    gz = write(tmp_path / "t.ipc.gz", path.read_bytes(), "gzip")
    assert decode(gz).table.equals(TABLE)
    assert decode(path.read_bytes()).table.equals(TABLE)


@pytest.mark.parametrize("name", ["bad.parquet", "bad.arrow", "bad.csv.gz"])
def test_corrupt_files_are_decode_errors_naming_the_path(tmp_path: Path, name: str):
    path = write(tmp_path / name, b"PAR1 this is not what it claims \x00\x01")
    with pytest.raises(DecodeError) as err:
        decode(path)
    assert str(path) in str(err.value) and err.value.source == str(path)


@pytest.mark.parametrize("name", ["missing.ndjson", "missing.parquet", "missing.csv.gz", "nope"])
def test_missing_file(tmp_path: Path, name: str):
    path = tmp_path / name
    with pytest.raises(DecodeError) as err:
        decode(str(path))
    assert str(path) in str(err.value)


def test_directory_is_not_a_file(tmp_path: Path):
    with pytest.raises(DecodeError, match="cannot read"):
        decode(tmp_path)


def test_empty_file(tmp_path: Path):
    for name in ("e.ndjson", "e.json", "unknown", "e.ndjson.gz"):
        path = tmp_path / name
        write(path, b"", "gzip" if name.endswith(".gz") else None)
        d = decode(path)
        assert d.table.num_rows == 0 and d.problems == [], name


def test_explicit_format_overrides_extension(tmp_path: Path):
    path = write(tmp_path / "data.txt", b"a,b\n1,2\n")
    assert decode(path, format="csv").table.to_pylist() == [{"a": 1, "b": 2}]
    d = decode(path, format="ndjson")
    assert d.table.num_rows == 0 and [p.line for p in d.problems] == [1, 2]


def test_unknown_content_is_a_decode_error(tmp_path: Path):
    with pytest.raises(DecodeError, match="cannot detect"):
        decode(write(tmp_path / "what.bin", b"\x00\x01\x02 binary"))


def test_detect_format():
    assert detect_format(b"PAR1xxxx") == "parquet"
    assert detect_format(b"ARROW1\x00\x00") == "arrow"
    assert detect_format(b"\xff\xff\xff\xff\x10") == "arrow"
    assert detect_format(b'\n  {"a": 1}') == "ndjson"
    assert detect_format(b"\xef\xbb\xbf[{}]") == "json"
    assert detect_format(b"a,b\n1,2") == "csv"
    assert detect_format(b"") == "ndjson"
    assert detect_format(b"hello world") is None


def test_decode_path_directly(tmp_path: Path):
    path = write(tmp_path / "x.ndjson", NDJSON)
    check_ndjson(decode_path(path), str(path))
