"""``Store.eql(where=...)``: the query runs over the events the condition holds for,
in every stage, missing stage and ``until`` (as Elasticsearch's ``filter``)."""

from __future__ import annotations

import pytest

import tidal

EVENTS = [  # (seconds, category, user, host)
    (0, "process", "ann", "a"), (1, "network", "ann", "b"), (2, "network", "ann", "a"),
    (3, "process", "bob", "a"), (4, "file", "bob", "a"), (5, "network", "bob", "a"),
]


@pytest.fixture
def store():
    with tidal.open() as s:
        s.append([{"timestamp": t * 10**9, "entity": user, "event": {"category": cat},
                   "user": user, "host": host, "t": t} for t, cat, user, host in EVENTS])
        yield s


def seconds(result: tidal.Result) -> list[list[int]]:
    return [[e["t"] for e in c.events.to_pylist() if e["t"] is not None]
            for c in result.correlations]


def test_an_event_query_sees_only_what_the_condition_allows(store):
    got = store.eql("any where t >= 1", where='host == "a"')
    assert got.events.column("t").to_pylist() == [2, 3, 4, 5]


def test_every_stage_of_a_sequence_is_restricted(store):
    query = "sequence by user [process where true] [network where true]"
    assert seconds(store.eql(query)) == [[0, 1], [3, 5]]
    assert seconds(store.eql(query, where='host == "a"')) == [[0, 2], [3, 5]]


def test_until_and_missing_stages_are_restricted_too(store):
    until = "sequence by user [process where true] [network where true] until [file where true]"
    assert seconds(store.eql(until)) == [[0, 1]]  # bob's file event ends his sequence
    assert seconds(store.eql(until, where='event.category != "file"')) == [[0, 1], [3, 5]]
    missing = "sequence by user [process where true] ![file where true] [network where true]"
    assert seconds(store.eql(missing)) == [[0, 1]]
    assert seconds(store.eql(missing, where='event.category != "file"')) == [[0, 1], [3, 5]]


def test_a_bad_condition_is_a_query_error(store):
    with pytest.raises(tidal.QueryError):
        store.eql("any where true", where="nope ==")
