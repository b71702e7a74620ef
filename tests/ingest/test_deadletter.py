"""Dead-letter files: one JSON line per problem, appended and fsynced."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tidal.errors import Problem, StorageError
from tidal.ingest import MAX_RAW_BYTES, decode, write_dead_letter


def read(path: Path) -> list[dict]:
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


def test_writes_one_line_per_problem_creating_dirs(tmp_path: Path):
    path = tmp_path / "a" / "b" / "dead.ndjson"
    problems = [Problem(2, "not a JSON object", raw="[1]"), Problem(5, "bad", field="ts")]
    assert write_dead_letter(path, problems, source="in.ndjson") == 2
    assert read(path) == [
        {
            "line": 2,
            "reason": "not a JSON object",
            "field": None,
            "source": "in.ndjson",
            "raw": "[1]",
        },
        {"line": 5, "reason": "bad", "field": "ts", "source": "in.ndjson", "raw": None},
    ]


def test_appends(tmp_path: Path):
    path = tmp_path / "dead.ndjson"
    write_dead_letter(str(path), [Problem(1, "x")], source=None)
    write_dead_letter(path, [Problem(2, "y"), Problem(3, "z")], source="s")
    assert [(r["line"], r["source"]) for r in read(path)] == [(1, None), (2, "s"), (3, "s")]


def test_nothing_to_write(tmp_path: Path):
    path = tmp_path / "dead.ndjson"
    assert write_dead_letter(path, [], source="s") == 0
    assert not path.exists()


def test_raw_is_cut_and_text_survives(tmp_path: Path):
    path = tmp_path / "dead.ndjson"
    raw = 'é\n"quoted"' + "z" * (MAX_RAW_BYTES * 2)
    write_dead_letter(path, [Problem(1, "long", raw=raw)], source="s")
    (row,) = read(path)
    assert row["raw"].startswith('é\n"quoted"')
    assert len(row["raw"].encode()) <= MAX_RAW_BYTES


def test_round_trip_from_decode(tmp_path: Path):
    d = decode(b'{"a": 1}\nnope\n{"a": 2}\n[3]\n')
    path = tmp_path / "dead.ndjson"
    assert write_dead_letter(path, d.problems, source=d.source) == 2
    rows = read(path)
    assert [(r["line"], r["raw"]) for r in rows] == [(2, "nope"), (4, "[3]")]
    assert rows[0]["reason"].startswith("invalid JSON")


def test_unwritable_path_is_a_storage_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        write_dead_letter(blocker / "dead.ndjson", [Problem(1, "x")], source=None)
