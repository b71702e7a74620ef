"""Keys the SQL view cannot show as written get one stable name (see tidal.query.names)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tidal
from tidal.query.names import renamed_keys, sql_name

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns


def event(i: int, **fields: Any) -> dict[str, Any]:
    return {"timestamp": T0 + i, "entity": "e", **fields}


def everything(store: tidal.Store) -> tuple[list[str], list[dict[str, Any]]]:
    got = store.sql("SELECT * EXCLUDE (timestamp, entity) FROM events ORDER BY _seq")
    return got.column_names, got.to_pylist()


# (events, query, expected rows): each is checked before and after a flush
CASES = {
    "empty key": (
        [event(0, **{"": 1}), event(1, x=2)],
        'SELECT """""" AS v, x FROM events ORDER BY _seq',
        [{"v": 1, "x": None}, {"v": None, "x": 2}]),
    "NUL beside the plain key": (
        [event(0, **{"k\x00": 2, "k": 3}), event(1, k=4)],
        'SELECT k, """k\\u0000""" AS z FROM events ORDER BY _seq',
        [{"k": 3, "z": 2}, {"k": 4, "z": None}]),
    "tab and DEL": (
        [event(0, **{"a\tb": 1, "c\x7f": 2})],
        'SELECT """a\\tb""" AS t, """c\\u007f""" AS d FROM events',
        [{"t": 1, "d": 2}]),
    "nested empty key": (
        [event(0, a={"": 1, "x": 2}), event(1, a={"x": 3}), event(2, a=None), event(3)],
        'SELECT a, a."""""" AS v FROM events ORDER BY _seq',
        [{"a": {'""': 1, "x": 2}, "v": 1}, {"a": {'""': None, "x": 3}, "v": None},
         {"a": None, "v": None}, {"a": None, "v": None}]),
    "list of objects": (
        [event(0, l=[{"": 1}, {"": 2}]), event(1, l=[{"": 3}]), event(2, l=None)],
        'SELECT l, l[2]."""""" AS v FROM events ORDER BY _seq',
        [{"l": [{'""': 1}, {'""': 2}], "v": 2}, {"l": [{'""': 3}], "v": None},
         {"l": None, "v": None}]),
    "JSON text with odd keys": (
        [event(0, o={"": 1, "k\x00": 2, "k": 3, "A": 4, "a": [{"": 5}]}), event(1, o="s")],
        "SELECT o FROM events ORDER BY _seq",
        [{"o": '{"":1,"k\\u0000":2,"k":3,"A":4,"a":[{"":5}]}'}, {"o": "s"}]),
    "object holding only the empty key": (
        [event(0, a={"b": {"": 1}, "c": [{"": 2}]}), event(1, a={"b": {"": 3}})],
        'SELECT a.b."""""" AS v, a.c[1]."""""" AS w FROM events ORDER BY _seq',
        [{"v": 1, "w": 2}, {"v": 3, "w": None}]),
    "deeply nested": (
        [event(0, a={"b": [{"c": {"": 1, "C": 2, "c": 3}}]})],
        'SELECT a.b[1].c AS c FROM events',
        [{"c": {'""': 1, '"\\u0043"': 2, "c": 3}}]),
    "letter case": (
        [event(0, A=1, a=2), event(1, Ab=3, aB=4)],
        'SELECT a, """\\u0041""" AS big, """\\u0041b""" AS ab, """a\\u0042""" AS a_b '
        "FROM events ORDER BY _seq",
        [{"a": 2, "big": 1, "ab": None, "a_b": None}, {"a": None, "big": None, "ab": 3, "a_b": 4}]),
    "nested letter case": (
        [event(0, n={"B": 1, "b": 2})],
        'SELECT n.b AS low, n."""\\u0042""" AS up FROM events',
        [{"low": 2, "up": 1}]),
    "capitals and NUL": (
        [event(0, **{"K\x00": 1, "k\x00": 2})],
        'SELECT """\\u004b\\u0000""" AS up, """k\\u0000""" AS low FROM events',
        [{"up": 1, "low": 2}]),
    "leading quote": (
        [event(0, **{'"q"': 1, 'a"b': 2})],
        'SELECT """\\""q\\""""" AS q, "a""b" AS ab FROM events',
        [{"q": 1, "ab": 2}]),
    "odd key beside JSON text": (
        [event(0, **{"": 1}, o={"": 2}), event(1, o=5)],
        'SELECT """""" AS e, o FROM events ORDER BY _seq',
        [{"e": 1, "o": '{"":2}'}, {"e": None, "o": "5"}]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_odd_keys_are_named_the_same_before_and_after_a_flush(open_store, case):
    events, query, want = CASES[case]
    store = open_store()
    store.append(events[:1])
    store.append(events[1:])
    before = store.sql(query).to_pylist()
    names_before = everything(store)[0]
    store.flush()
    assert before == want
    assert store.sql(query).to_pylist() == want
    assert everything(store)[0] == names_before


@pytest.mark.parametrize("case", list(CASES))
def test_odd_keys_split_between_segment_and_memtable(open_store, case):
    events, query, want = CASES[case]
    store = open_store()
    store.append(events[:1])
    store.flush()
    store.append(events[1:])
    assert store.sql(query).to_pylist() == want
    store.flush()
    assert store.sql(query).to_pylist() == want


def test_whole_rows_are_identical_before_and_after_flush_and_across_calls(open_store):
    store = open_store()
    store.append([event(0, **{"": 1, "k\x00": 2, "k": 3, "A": 4, "a": 5},
                        n={"": 6, "x": 7, "B": 8, "b": 9}, l=[{"": 10}]),
                  event(1, k=11, n={"x": 12})])
    before = everything(store)
    assert before == everything(store)
    store.flush()
    assert everything(store) == before
    store.append([event(2, k=13)])
    store.flush()
    store.compact()
    names, rows = everything(store)
    assert names == before[0]
    assert rows[:2] == before[1]
    assert names == ["_seq", '""', '"k\\u0000"', "k", '"\\u0041"', "a", "n", "l"]
    assert rows[0]["n"] == {'""': 6, "x": 7, '"\\u0042"': 8, "b": 9}


def test_case_variants_in_different_segments_are_not_merged(open_store):
    store = open_store()
    store.append([event(0, A=1, s={"X": 1})])
    store.flush()
    store.append([event(1, a=2, s={"x": 2})])
    query = 'SELECT a, """\\u0041""" AS big, s FROM events ORDER BY _seq'
    want = [{"a": None, "big": 1, "s": {'"\\u0058"': 1, "x": None}},
            {"a": 2, "big": None, "s": {'"\\u0058"': None, "x": 2}}]
    assert store.sql(query).to_pylist() == want
    store.flush()
    assert store.sql(query).to_pylist() == want


def test_plain_keys_are_shown_as_written(open_store):
    keys = {"Ä": 1, "ä": 2, "a b": 3, "x.y": 4, "CamelCase": 5, 'a"b': 6, "v3": 7, "k_1": 8}
    store = open_store()
    store.append([event(0, **keys, kubernetes={"pod": {"name": "p"}})])
    for _ in range(2):
        got = store.sql("SELECT * EXCLUDE (_seq, timestamp, entity) FROM events")
        assert got.to_pylist() == [{**keys, "kubernetes": {"pod": {"name": "p"}}}]
        assert store.sql("SELECT kubernetes.pod.name AS p FROM events").to_pylist() == [{"p": "p"}]
        store.flush()


def test_no_name_is_made_up_by_duckdb(open_store):
    store = open_store()
    store.append([event(0, **{"": 1, "k\x00": 2, "k": 3, "A": 4, "a": 5})])
    store.flush()
    store.append([event(1, **{"": 6})])
    names = everything(store)[0]
    assert len(names) == len({n.lower() for n in names})
    assert not [n for n in names if re.fullmatch(r"v\d+|C\d+|.*_\d+", n)]


@pytest.mark.parametrize(("keys", "want"), [
    (["", "x"], {"": '""'}),
    (["k\x00", "k"], {"k\x00": '"k\\u0000"'}),
    (["a\nb\t\x1f\x7f"], {"a\nb\t\x1f\x7f": '"a\\nb\\t\\u001f\\u007f"'}),
    (['"x', 'a"b', "a\\b"], {'"x': '"\\"x"'}),
    (["A", "a", "B"], {"A": '"\\u0041"'}),
    (["Ab", "aB"], {"Ab": '"\\u0041b"', "aB": '"a\\u0042"'}),
    (["Ä", "ä", "x.y", "CamelCase"], {}),
])
def test_renamed_keys(keys, want):
    assert renamed_keys(keys) == want


@given(st.lists(st.text(alphabet=st.sampled_from('aAbB"\\\x00\x1f\x7f .é'), max_size=4),
                unique=True, max_size=8))
def test_names_are_unique_ignoring_ascii_case_and_give_the_key_back(keys):
    renamed = renamed_keys(keys)
    shown = [renamed.get(k, k) for k in keys]
    assert len({s.lower() for s in shown}) == len(keys)
    for key, name in renamed.items():
        assert json.loads(name) == key == json.loads(sql_name(key))
    for key in set(keys) - set(renamed):
        assert key and not key.startswith('"') and not re.search("[\x00-\x1f\x7f]", key)
