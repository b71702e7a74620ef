"""Pipes after sequences, samples and joins: one row per match, ``events[N]`` for its
N-th event (differential checks against the ``eql`` package are in
test_eql_differential.py)."""

from __future__ import annotations

import pytest

import tidal

T0 = 1_767_225_600_000_000_000
S = 10**9
SEQ = 'sequence by user [process where p == "w"] [process where p == "h"]'
DATA = [("a", "w"), ("a", "h"), ("b", "w"), ("b", "h"), ("a", "w"), ("a", "h"), ("c", "w"),
        ("c", "h")]


@pytest.fixture(scope="module")
def store():
    with tidal.open(None) as s:
        s.append([{"timestamp": T0 + i * S, "user": u, "p": p, "n": i,
                   "event": {"category": "process"}} for i, (u, p) in enumerate(DATA)])
        yield s


def ids(result):
    return [c.events.column("n").to_pylist() for c in result.correlations]


@pytest.mark.parametrize(("pipe", "found"), [
    ("", [[0, 1], [2, 3], [4, 5], [6, 7]]),
    ("| head 2", [[0, 1], [2, 3]]),
    ("| tail 1", [[6, 7]]),
    ("| unique user", [[0, 1], [2, 3], [6, 7]]),
    ("| filter events[1].n > 4", [[4, 5], [6, 7]]),
    ('| filter user == "a" and events[1].n == 5', [[4, 5]]),
    ("| sort events[0].user", [[0, 1], [4, 5], [2, 3], [6, 7]]),
    ('| filter user != "b" | unique user | tail 1', [[6, 7]]),
])
def test_pipes_keep_and_order_matches(store, pipe, found):
    result = store.eql(f"{SEQ} {pipe}")
    assert ids(result) == found
    assert [c.id for c in result.correlations] == list(range(len(found)))  # renumbered
    assert result.events.column("_sequence").to_pylist() == [
        i for i in range(len(found)) for _ in range(2)]


def test_count_gives_a_table():
    with tidal.open(None) as s:
        s.append([{"timestamp": T0 + i * S, "user": u, "p": p, "event": {"category": "process"}}
                  for i, (u, p) in enumerate(DATA)])
        total = s.eql(f"{SEQ} | count")
        per_user = s.eql(f"{SEQ} | count user")
        unique = s.eql(f"{SEQ} | unique_count user")
    assert total.correlations == [] and total.events.to_pylist() == [{"count": 4}]
    assert per_user.events.to_pylist() == [
        {"user": "b", "count": 1, "percent": 0.25}, {"user": "c", "count": 1, "percent": 0.25},
        {"user": "a", "count": 2, "percent": 0.5}]
    assert [c.key for c in unique.correlations] == [{"user": "a"}, {"user": "b"}, {"user": "c"}]
    assert unique.events.column("count").to_pylist() == [2, 2, 1, 1, 1, 1]  # (per row)


def test_size_applies_after_the_pipes(store):
    assert ids(store.eql(f"{SEQ} | filter events[1].n > 2", size=1)) == [[2, 3]]


def test_pipes_after_joins_and_samples(store):
    join = store.eql('join by user [process where p == "h"] [process where p == "w"] '
                     "| unique user | count")
    sample = store.eql('sample by user [process where p == "w"] [process where p == "h"] '
                       "| filter events[1].n >= 3")
    assert join.events.to_pylist() == [{"count": 3}]
    assert [c.key for c in sample.correlations] == [{"user": "b"}, {"user": "c"}]  # (a: 0, 1)


@pytest.mark.parametrize(("query", "says"), [
    (f"{SEQ} | filter events[2].n > 1", "events[2]"),
    ("process where events[0].n > 1", "events[0]"),
    (f"{SEQ} | filter events[x].n > 1", "expected an event number"),
    (f"{SEQ} | filter events[0] > 1", "expected '.field' after 'events[N]'"),
])
def test_event_references_that_do_not_fit_say_why(store, query, says):
    with pytest.raises(tidal.QueryError, match=says.replace("[", "\\[").replace("]", "\\]")):
        store.eql(query)


def test_stored_fields_named_like_pipe_columns(tmp_path):
    with tidal.open(None) as s:
        s.append([{"timestamp": T0 + i * S, "user": u, "p": p, "count": 7, "percent": "x",
                   "event": {"category": "process"}} for i, (u, p) in enumerate(DATA)])
        headed = s.eql(f"{SEQ} | head 2")
        counted = s.eql(f"{SEQ} | unique_count user")
    assert headed.events.column_names.count("count") == 1
    assert headed.events.column("count").to_pylist() == [7] * 4  # the stored field
    assert counted.events.column_names.count("count") == 1
    assert counted.events.column("count").to_pylist() == [2, 2, 1, 1, 1, 1]


def test_keys_of_dates_and_objects():
    import datetime

    with tidal.open(None) as s:
        day = datetime.date(2026, 1, 1)
        s.append([{"timestamp": T0 + i * S, "day": day, "obj": {"a": 1}, "p": p,
                   "event": {"category": "process"}} for i, p in enumerate("wh")])
        found = s.eql('sequence by day [process where p == "w"] [process where p == "h"]')
        assert [c.key for c in found.correlations] == [{"day": day}]
        with pytest.raises(tidal.QueryError, match="one value"):
            s.eql('sequence by obj [process where p == "w"] [process where p == "h"]')
