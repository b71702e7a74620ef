"""Cutting NDJSON into blocks of whole lines, and decoding it block by block."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidal.ingest.ndjson import (
    decode_ndjson,
    decode_ndjson_blocks,
    line_blocks,
    read_line_blocks,
)

LINE = st.text(alphabet="ab{}\r ", max_size=40)


def blocks_of_file(tmp_path, data: bytes, block: int) -> list[bytes]:
    path = tmp_path / "in.ndjson"
    path.write_bytes(data)
    return [b.to_pybytes() for b in read_line_blocks(open(path, "rb", buffering=0), block)]


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(LINE, max_size=30), trailing=st.booleans(), block=st.integers(1, 64))
def test_blocks_are_whole_lines_that_join_back_to_the_input(tmp_path_factory, lines, trailing,
                                                            block):
    data = "\n".join(lines).encode() + (b"\n" if trailing and lines else b"")
    from_memory = [b.to_pybytes() for b in line_blocks(pa.py_buffer(data), block)]
    from_file = blocks_of_file(tmp_path_factory.mktemp("f"), data, block)
    for blocks in (from_memory, from_file):
        assert b"".join(blocks) == data
        assert all(b for b in blocks)
        assert all(b.endswith(b"\n") for b in blocks[:-1])  # a line is never cut apart


def test_a_line_longer_than_a_block_grows_its_block(tmp_path):
    data = b'{"a": 1}\n' + b'{"long": "' + b"x" * 5000 + b'"}\n{"a": 2}'
    blocks = blocks_of_file(tmp_path, data, 1024)
    assert blocks[0].startswith(b'{"a": 1}\n') and b"x" * 5000 in blocks[0] + blocks[1]
    assert b"".join(blocks) == data
    assert blocks[-1].endswith(b'{"a": 2}')


def test_a_file_is_read_one_block_at_a_time(tmp_path):
    path = tmp_path / "in.ndjson"
    path.write_bytes(b'{"a": 1}\n' * 100_000)  # 900 KB
    file = open(path, "rb", buffering=0)
    blocks = read_line_blocks(file, 64 << 10)
    first = next(blocks)
    assert len(first) <= 64 << 10 and file.tell() <= 2 * (64 << 10)
    rest = list(blocks)
    assert file.closed and len(first) + sum(len(b) for b in rest) == path.stat().st_size


def test_decoding_in_blocks_numbers_lines_from_the_start():
    text = b'{"a": 1}\n\n{"a": 2}\nbad\n{"a": "x"}\n[1]\n{"a": 3}\n'
    whole = decode_ndjson(text)
    parts = list(decode_ndjson_blocks(line_blocks(pa.py_buffer(text), 4), source="t"))
    assert len(parts) > 2
    assert [p.line for d in parts for p in d.problems] == [p.line for p in whole.problems] == [
        4, 6]
    assert [int(n) for d in parts for n in d.lines] == whole.lines.tolist() == [1, 3, 5, 7]
    values = [str(v) for d in parts for v in d.table.column("a").to_pylist()]
    assert values == ["1", "2", "x", "3"]  # each block typed on its own, values kept


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\n  \n"])
def test_empty_and_blank_inputs_give_no_rows(data):
    parts = list(decode_ndjson_blocks(line_blocks(pa.py_buffer(data), 2), source="t"))
    assert sum(d.table.num_rows for d in parts) == 0 and not any(d.problems for d in parts)
