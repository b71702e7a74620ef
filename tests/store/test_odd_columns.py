"""Columns Parquet cannot hold as they are: flushes must still work, values survive."""

from __future__ import annotations

import pytest

import tidal

ODD = [None, {}, {"a": {}}, [{}], [], [None], [{"a": [{}]}]]


@pytest.mark.parametrize("value", ODD, ids=repr)
def test_a_column_always_null_or_empty_flushes_and_reads_back(open_store, backend, value):
    """The issue: such a field made every flush fail forever, also after reopen."""
    store = open_store()
    store.append([{"timestamp": 1, "entity": "a", "x": value}])
    store.flush()
    store.append([{"timestamp": 2, "entity": "a", "x": value}])
    store.flush()
    store.compact()
    assert store.stats()["segments"] >= 1 and store.stats()["memtable_events"] == 0
    assert store.timeline("a").column("x").to_pylist() == [value, value]
    assert store.sql("SELECT count(*) AS n FROM events").column("n").to_pylist() == [2]
    if backend is not None:
        store.close()
        with tidal.open(backend) as again:
            assert again.timeline("a").column("x").to_pylist() == [value, value]


def test_empty_objects_show_in_sql_as_one_placeholder_field(open_store):
    store = open_store()
    store.append([{"timestamp": 1, "entity": "a", "x": {}}])
    store.flush()
    store.append([{"timestamp": 2, "entity": "a", "x": {}}])  # one in a segment, one in memory
    got = store.sql("SELECT x FROM events ORDER BY _seq").column("x").to_pylist()
    assert got == [{"_empty": None}, {"_empty": None}]
