"""EQL event queries over a real store: each operator and edge, as a table of cases."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

import tidal
from tidal.cli import main

EVENTS = [
    {"id": 0, "timestamp": "2026-01-01T00:00:00Z", "event": {"category": "process"},
     "host": "h1", "user": "Alice", "process": {"name": "cmd.exe", "pid": 4,
                                                "args": ["/c", "-ENC", "x"]},
     "size": 10, "ratio": 0.5, "tags": ["a", "b"]},
    {"id": 1, "timestamp": "2026-01-01T00:00:01Z", "event": {"category": "process"},
     "host": "h2", "user": "bob", "process": {"name": "svchost.exe", "pid": 8, "args": ["-k"]},
     "size": 20, "ratio": 1.5, "tags": ["c"]},
    {"id": 2, "timestamp": "2026-01-01T00:00:02Z", "event": {"category": "network"},
     "host": "h1", "user": "ALICE", "destination": {"ip": "10.1.2.3", "port": 443},
     "size": 30, "ratio": 2.5, "tags": []},
    {"id": 3, "timestamp": "2026-01-01T00:00:03Z", "event": {"category": "network"},
     "host": "h3", "destination": {"ip": "192.168.0.7", "port": 53}, "size": 40,
     "ratio": None, "note": 'say "hi" *star* 50%'},
    {"id": 4, "timestamp": "2026-01-01T00:00:03Z", "event": {"category": "file"},
     "host": "h2", "user": "carol", "file": {"path": "C:\\Windows\\x.dll"}, "size": 7,
     "ratio": 3.0},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = tidal.open(tmp_path_factory.mktemp("eql") / "s", entity_field="host")
    s.append(EVENTS[:3])
    s.flush()  # some events in a segment, the rest in the memtable
    s.append(EVENTS[3:])
    yield s
    s.close()


@dataclass
class Case:
    query: str
    ids: list[int]
    case_insensitive: bool = False


CASES = [
    Case("any where true", [0, 1, 2, 3, 4]),
    Case("process where true", [0, 1]),
    Case('"network" where true', [2, 3]),
    Case('process where process.name == "cmd.exe"', [0]),
    Case('process where process.name == "CMD.EXE"', []),
    Case('process where process.name == "CMD.EXE"', [0], case_insensitive=True),
    Case("process where process.name = 'cmd.exe'", [0]),
    Case('any where user != "bob"', [0, 2, 4]),  # a missing user is null: not a match
    Case("any where user == null", [3]),
    Case("any where user != null", [0, 1, 2, 4]),
    Case('any where not user == "bob"', [0, 2, 4]),
    Case("any where size > 10 and size <= 30", [1, 2]),
    Case("any where size >= 40 or ratio < 1", [0, 3]),
    Case("any where ratio == null", [3]),
    Case('any where user in ("Alice", "bob")', [0, 1]),
    Case('any where user not in ("Alice", "bob")', [2, 4]),
    Case('any where user in~ ("alice")', [0, 2]),
    Case('any where user : "ali*"', [0, 2]),
    Case('any where user : ("b?b", "car*")', [1, 4]),
    Case('any where user like "A*"', [0, 2]),
    Case('any where user like~ "a*"', [0, 2]),
    Case('any where user regex "[A-Z].*"', [0, 2]),
    Case('any where user regex~ "a.*e"', [0, 2]),
    Case('any where process.args : "*-enc*"', [0]),  # an array matches if any element does
    Case('any where process.args == "-k"', [1]),
    Case('any where tags in ("b", "c")', [0, 1]),
    Case('any where note == "say \\"hi\\" *star* 50%"', [3]),
    Case('any where note like "*\\"hi\\"*50%"', [3]),
    Case('any where file.path == """C:\\Windows\\x.dll"""', [4]),
    Case('any where file.path : "c:\\\\windows\\\\*"', [4]),
    Case("any where size + 5 == 15", [0]),
    Case("any where size * 2 - 1 == 59", [2]),
    Case("any where size / 4 == 2", [0]),  # integer division: 10 / 4
    Case("any where size % 7 == 0", [4]),
    Case("any where -size < -35", [3]),
    Case("any where ?missing == 1", []),
    Case("any where ?missing == null", [0, 1, 2, 3, 4]),
    Case('any where timestamp >= "2026-01-01T00:00:03Z"', [3, 4]),
    Case('any where startsWith(process.name, "svc")', [1]),
    Case('any where startsWith~(process.name, "SVC")', [1]),
    Case('any where endsWith(process.name, ".exe") and not stringContains(user, "o")', [0]),
    Case('any where length(user) == 5', [0, 2, 4]),
    Case("any where length(process.args) == 3", [0]),
    Case('any where concat(host, "-", user) == "h2-bob"', [1]),
    Case('any where substring(user, 0, 2) == "Al"', [0]),
    Case('any where substring(user, -2) == "ob"', [1]),
    Case('any where indexOf(user, "o") == 1', [1]),
    Case('any where indexOf~(user, "L") == 1', [0, 2]),
    Case('any where between(note, "say ", " *") == "\\"hi\\""', [3]),
    Case('any where number(string(size)) == 20', [1]),
    Case('any where string(size) == "7"', [4]),
    Case("any where add(size, 1) == 11 or subtract(size, 1) == 19", [0, 1]),
    Case("any where multiply(size, 2) == 80 or divide(size, 3) == 10", [2, 3]),
    Case("any where modulo(size, 4) == 3", [4]),
    Case('any where cidrMatch(destination.ip, "10.0.0.0/8", "192.168.0.0/30")', [2]),
    Case('any where cidrMatch(destination.ip, "192.168.0.0/24")', [3]),
    Case('any where wildcard(user, "a*", "c*")', [4]),
    Case('any where wildcard~(user, "a*")', [0, 2]),
    Case('any where arrayContains(tags, "a", "z")', [0]),
    Case('any where arrayContains~(process.args, "-enc")', [0]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.query)
def test_event_queries(store, case):
    result = store.eql(case.query, case_insensitive=case.case_insensitive)
    assert result.events.column("id").to_pylist() == case.ids
    assert result.correlations == []


def test_events_come_in_time_order_with_seq_breaking_ties(store):
    got = store.eql("any where true").events
    assert got.column("id").to_pylist() == [0, 1, 2, 3, 4]
    assert got.column("_seq").to_pylist() == [0, 1, 2, 3, 4]


def test_pipes(store):
    def ids(query: str) -> list[int]:
        return store.eql(query).events.column("id").to_pylist()

    assert ids("any where true | head 2") == [0, 1]
    assert ids("any where true | tail 2") == [3, 4]
    assert ids("any where true | head 4 | tail 1") == [3]
    assert ids("any where true | filter size > 15") == [1, 2, 3]
    assert ids("any where true | sort host, size") == [0, 2, 4, 1, 3]
    assert ids("any where true | unique host") == [0, 1, 3]
    count = store.eql("any where true | count").events
    assert count.to_pylist() == [{"count": 5}]
    by_host = store.eql("any where true | count host").events.to_pylist()
    assert [(r["host"], r["count"]) for r in by_host] == [("h3", 1), ("h1", 2), ("h2", 2)]
    assert by_host[1]["percent"] == pytest.approx(0.4)
    unique = store.eql("process where true | unique_count host").events
    assert unique.select(["id", "count"]).to_pylist() == [{"id": 0, "count": 1},
                                                          {"id": 1, "count": 1}]


def test_size_start_and_end(store):
    assert store.eql("any where true", size=2).events.column("id").to_pylist() == [0, 1]
    got = store.eql("any where true", start="2026-01-01T00:00:01Z",
                    end="2026-01-01T00:00:03Z").events
    assert got.column("id").to_pylist() == [1, 2]


def test_category_field_can_be_named(store):
    got = store.eql('h2 where true', category_field="host").events
    assert got.column("id").to_pylist() == [1, 4]


@pytest.mark.parametrize("query, says", [
    ("any where nothere == 1", "unknown field 'nothere'"),
    ('any where user == 5', "cannot compare field 'user' (text) with 5 (number)"),
    ('any where size : "1*"', "matches text, not a number"),
    ("any where foo(user)", "unknown function 'foo'"),
    ("any where length(user, 2) == 1", "length() takes 1 arguments, got 2"),
    ('any where startsWith(user, host)', "must be a string literal"),
    ('any where length~(user) == 1', "no case-insensitive '~' form"),
    ('any where user regex "("', "bad regular expression"),
    ("any where size", "a condition must be true or false, not a number"),
    ('any where cidrMatch(destination.ip, "nope")', "is not a network"),
    ('any where timestamp > "yesterday"', "not a date"),
    ("sample [process where true] [network where true]", "a sample needs join keys"),
])
def test_queries_that_do_not_fit_the_data_say_why(store, query, says):
    with pytest.raises(tidal.QueryError) as info:
        store.eql(query)
    assert says in str(info.value)
    assert info.value.line == 1 and info.value.column is not None


def test_a_store_without_the_category_field_says_how_to_name_it(tmp_path):
    with tidal.open(tmp_path / "s") as s:
        s.append([{"timestamp": "2026-01-01T00:00:00Z", "kind": "x"}])
        with pytest.raises(tidal.QueryError, match="category_field="):
            s.eql("process where true")
        assert s.eql("any where kind == 'x'").events.num_rows == 1
        assert s.eql("x where true", category_field="kind").events.num_rows == 1


def test_the_command_line_prints_matches(store, tmp_path, capsys):
    path = tmp_path / "cli"
    with tidal.open(path, entity_field="host") as s:
        s.append(EVENTS)
    assert main(["eql", 'process where user : "b*"', "--store", str(path),
                 "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == [1]
    assert main(["eql", "process where", "--store", str(path)]) != 0
    assert "line 1, column 14" in capsys.readouterr().err


def test_a_field_declared_a_date_compares_as_one(tmp_path):
    with tidal.open(tmp_path / "s") as s:
        s.append([{"timestamp": "2026-01-01T00:00:00Z", "seen": when, "id": i}
                  for i, when in enumerate(["2025-06-01T00:00:00Z", "2026-02-01T12:00:00Z",
                                            "not a date"])])
        query = 'any where seen > "2026-01-01T00:00:00Z"'
        with pytest.raises(tidal.QueryError, match="cannot compare|not a date"):
            s.eql("any where seen > 5")
        got = s.eql(query, field_types={"seen": "date"}).events
        assert got.column("id").to_pylist() == [1]  # text that is no date is null
        with pytest.raises(tidal.ConfigError, match="field_types"):
            s.eql(query, field_types={"seen": "ipv6"})


def test_event_queries_do_not_load_numba():
    """numba (and its compile time) is for sequences, samples and joins only."""
    import subprocess
    import sys

    code = ("import sys, tidal\n"
            "s = tidal.open(None)\n"
            "s.append([{'x': 1, 'event': {'category': 'process'}}])\n"
            "assert s.eql('process where x == 1 | count').events.num_rows == 1\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"
