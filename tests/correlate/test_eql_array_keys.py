"""Join keys that hold arrays (``sequence by``, a stage's ``by``, ``join by``,
``sample by`` naming a list field): each value joins, as if the event were written
once per value (same fields, same time); a null key never joins.

Events are written as ``id:user/tags/hosts:what@second``: ``user`` a plain text
field, ``tags`` and ``hosts`` arrays of text (``a,b``; ``[]`` empty; ``-`` null;
``a,-`` a null element; left out: null). Each case lists the matches (by event
ids, in stage order) that must come back, in order, and the key each joined on.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import eql
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate._kernels_keys import combinations
from tidal.correlate.eql.run import run_eql

from .support import OneRowBatches

T0 = 1_767_225_600_000_000_000


def _values(text: str) -> list[str | None] | None:
    if text in ("", "-"):
        return None
    if text == "[]":
        return []
    return [None if v == "-" else v for v in text.split(",")]


def events(spec: str) -> list[dict]:
    out = []
    for item in spec.split():
        ident, keys, rest = item.split(":")
        user, tags, hosts = (keys.split("/") + ["", ""])[:3]
        what, second = rest.split("@")
        out.append({"id": int(ident), "user": None if user in ("", "-") else user,
                    "tags": _values(tags), "hosts": _values(hosts), "p": what,
                    "timestamp": T0 + int(second) * 10**9, "event": {"category": "process"}})
    return out


SCHEMA = {"tags": pa.list_(pa.string()), "hosts": pa.list_(pa.string())}


@pytest.fixture(params=["as stored, keep all", "one-row batches, drop often"])
def run(request, monkeypatch):
    small = request.param != "as stored, keep all"
    if small:
        monkeypatch.setattr(importlib.import_module("tidal.correlate.matching"), "KEEP_ROWS", 1)

    def run(data: str, query: str):
        with tidal.open(None) as store:
            rows = events(data)
            store.append(pa.Table.from_pylist(rows, schema=pa.schema(
                [(k, SCHEMA.get(k, pa.array([r[k] for r in rows]).type)) for k in rows[0]])))
            with store.snapshot() as snap:
                return run_eql(OneRowBatches(snap) if small else snap, query)
    return run


@dataclass
class Case:
    name: str
    query: str
    data: str
    found: list[list[int]]
    keys: list[dict] = field(default_factory=list)
    """Each match's ``Correlation.key`` (unchecked when empty)."""


W, H, X = '[process where p == "w"]', '[process where p == "h"]', '[process where p == "x"]'
ANY = "[process where true]"

SEQUENCES = [
    Case("each value of an array joins", f"sequence by tags {W} {H}",
         "1:/a,b:w@1 2:/b:h@2 3:/a:h@3", [[1, 2], [1, 3]], [{"tags": "b"}, {"tags": "a"}]),
    Case("an event matching under two values completes two sequences",
         f"sequence by tags {W} {H}", "1:/a:w@1 2:/b:w@2 3:/a,b:h@3",
         [[1, 3], [2, 3]], [{"tags": "a"}, {"tags": "b"}]),
    Case("the same events under two values: two sequences, in the order of the values",
         f"sequence by tags {W} {H}", "1:/a,b:w@1 2:/b,a:h@2",
         [[1, 2], [1, 2]], [{"tags": "b"}, {"tags": "a"}]),
    Case("an array key on one stage only", f"sequence {W} by user {H} by tags",
         "1:a/x:w@1 2:/b,a:h@2 3:b/x:w@3 4:/a,b:h@4", [[1, 2], [3, 4]],
         [{"user": "a"}, {"user": "b"}]),
    Case("an empty array never joins", f"sequence by tags {W} {H}",
         "1:/[]:w@1 2:/[]:h@2 3:/a:w@3 4:/a:h@4", [[3, 4]]),
    Case("a null array never joins", f"sequence by tags {W} {H}",
         "1:/-:w@1 2:/-:h@2 3:/a:w@3 4:/a:h@4", [[3, 4]]),
    Case("a null element is skipped", f"sequence by tags {W} {H}",
         "1:/-,a:w@1 2:/a,-:h@2 3:/-:h@3", [[1, 2]], [{"tags": "a"}]),
    Case("a value twice counts once (one event does not fill two stages)",
         f"sequence by tags {ANY} {ANY}", "1:/a,a:w@1 2:/a:h@2", [[1, 2]]),
    Case("two array keys: their cross product", f"sequence by tags, hosts {W} {H}",
         "1:/a,b/x:w@1 2:/b/y,x:h@2", [[1, 2]], [{"tags": "b", "hosts": "x"}]),
    Case("two array keys: every combination joins", f"sequence by tags, hosts {W} {H}",
         "1:/a,b/x,y:w@1 2:/a,b/x,y:h@2", [[1, 2]] * 4,
         [{"tags": t, "hosts": h} for t in "ab" for h in "xy"]),
    Case("an array and a plain key", f"sequence by user, tags {W} {H}",
         "1:u/a,b:w@1 2:v/a:h@2 3:u/b:h@3", [[1, 3]], [{"user": "u", "tags": "b"}]),
    Case("until ends the sequences of its values only", f"sequence by tags {W} {H} until {X}",
         "1:/a,b:w@1 2:/a:x@2 3:/a,b:h@3", [[1, 3]], [{"tags": "b"}]),
    Case("until with two values", f"sequence by tags {W} {H} until {X}",
         "1:/a,b,c:w@1 2:/c,a:x@2 3:/a,b,c:h@3", [[1, 3]], [{"tags": "b"}]),
    Case("runs: one event per stage under each value", f"sequence by tags {W} with runs=2 {H}",
         "1:/a:w@1 2:/a,b:w@2 3:/b:w@3 4:/a,b:h@4", [[1, 2, 4], [2, 3, 4]]),
]

JOINS = [
    Case("each value of an array joins", f"join by tags {W} {H}",
         "1:/a,b:w@1 2:/b:h@2 3:/a:h@3", [[1, 2], [1, 3]], [{"tags": "b"}, {"tags": "a"}]),
    Case("one event fills a slot under each value", f"join by tags {W} {H}",
         "1:/a:h@1 2:/b:h@2 3:/b,a:w@3", [[3, 2], [3, 1]], [{"tags": "b"}, {"tags": "a"}]),
    Case("an array key on one stage only", f"join {W} by user {H} by tags",
         "1:a/x:w@1 2:/b,a:h@2", [[1, 2]], [{"user": "a"}]),
    Case("empty, null and null elements never join", f"join by tags {W} {H}",
         "1:/[]:w@1 2:/-:h@2 3:/-:w@3 4:/[]:h@4 5:/-,a:w@5 6:/a:h@6", [[5, 6]]),
    Case("one event fills both slots under each value, once per value",
         f"join by tags {ANY} {ANY}", "1:/a,b,a:w@1", [[1, 1], [1, 1]],
         [{"tags": "a"}, {"tags": "b"}]),
    Case("two array keys: their cross product", f"join by tags, hosts {W} {H}",
         "1:/a,b/x:w@1 2:/b/y,x:h@2", [[1, 2]], [{"tags": "b", "hosts": "x"}]),
    Case("until empties its values' slots only", f"join by tags {W} {H} until {X}",
         "1:/a,b:w@1 2:/a:x@2 3:/a,b:h@3", [[1, 3]], [{"tags": "b"}]),
]

SAMPLES = [
    Case("each value of an array joins; samples by key", f"sample by tags {W} {H}",
         "1:/b,a:w@1 2:/b:h@2 3:/a:h@3", [[1, 3], [1, 2]], [{"tags": "a"}, {"tags": "b"}]),
    Case("an array key on one stage only", f"sample {W} by user {H} by tags",
         "1:a/x:w@1 2:/b,a:h@2 3:b/x:w@3", [[1, 2], [3, 2]], [{"user": "a"}, {"user": "b"}]),
    Case("one event serves one stage of a sample, under any value",
         f"sample by tags {ANY} {ANY}", "1:/a,b:w@1 2:/b:h@2", [[1, 2]], [{"tags": "b"}]),
    Case("empty, null and null elements never join", f"sample by tags {W} {H}",
         "1:/[]:w@1 2:/-:h@2 3:/-:w@3 4:/[]:h@4 5:/-,a:w@5 6:/a:h@6", [[5, 6]]),
    Case("two array keys: their cross product", f"sample by tags, hosts {W} {H}",
         "1:/a,b/x,y:w@1 2:/b/y:h@2", [[1, 2]], [{"tags": "b", "hosts": "y"}]),
]


def check(result, case: Case) -> None:
    found = [c.events.column("id").to_pylist() for c in result.correlations]
    assert found == case.found
    if case.keys:
        assert [c.key for c in result.correlations] == case.keys
    width = len(case.found[0]) if case.found else 0
    assert result.events.column("_stage").to_pylist() == list(range(1, width + 1)) * len(
        case.found)


@pytest.mark.parametrize("case", SEQUENCES, ids=lambda c: c.name)
def test_sequences(case, run):
    check(run(case.data, case.query), case)


@pytest.mark.parametrize("case", JOINS, ids=lambda c: c.name)
def test_joins(case, run):
    check(run(case.data, case.query), case)


@pytest.mark.parametrize("case", SAMPLES, ids=lambda c: c.name)
def test_samples(case, run):
    check(run(case.data, case.query), case)


@pytest.mark.parametrize("case", [
    Case("maxspan: each value's sequence is timed on its own",
         f"sequence by tags with maxspan=2s {W} {H}", "1:/a:w@1 2:/b:w@3 3:/a,b:h@4",
         [[2, 3]], [{"tags": "b"}]),
    Case("a missing-event stage ends its values' sequences only",
         f"sequence by tags with maxspan=5s {W} ![process where p == \"x\"] {H}",
         "1:/a,b:w@1 2:/b:x@2 3:/a,b:h@3", [[1, -1, 3]], [{"tags": "a"}]),
], ids=lambda c: c.name)
def test_sequences_with_maxspan(case, run):
    result = run(case.data, case.query)
    found = [[-1 if i is None else i for i in c.events.column("id").to_pylist()]
             for c in result.correlations]
    assert found == case.found
    assert [c.key for c in result.correlations] == case.keys


def test_combinations_are_capped(monkeypatch):
    matching = importlib.import_module("tidal.correlate.matching")
    monkeypatch.setattr(matching, "KEY_COMBINATIONS", 3)
    result = run_plain("1:/a,b/x,y:w@1 2:/a,b/x,y:h@2", f"sequence by tags, hosts {W} {H}")
    assert [c.key for c in result.correlations] == [
        {"tags": "a", "hosts": "x"}, {"tags": "a", "hosts": "y"}, {"tags": "b", "hosts": "x"}]


def test_the_combinations_kernel_alone():
    parents, gathers = combinations([np.array([2, 0, 3]), None, np.array([1, 2, 2])], 3, 4)
    assert parents.tolist() == [0, 0, 2, 2, 2, 2]  # (row 2's first 4 of 6)
    assert [g.tolist() for g in gathers] == [[0, 1, 2, 2, 3, 3], [0, 0, 2, 2, 2, 2],
                                             [0, 0, 3, 4, 3, 4]]


def run_plain(data: str, query: str):
    with tidal.open(None) as store:
        rows = events(data)
        store.append(pa.Table.from_pylist(rows, schema=pa.schema(
            [(k, SCHEMA.get(k, pa.array([r[k] for r in rows]).type)) for k in rows[0]])))
        return store.eql(query)


def test_pipes_still_refuse_arrays():
    with pytest.raises(tidal.QueryError, match="holds an array"):
        run_plain("1:/a:w@1 2:/a:h@2", f"sequence by tags {W} {H} | unique tags")
    with pytest.raises(tidal.QueryError, match="cannot follow 'count'"):
        run_plain("1:/a:w@1 2:/a:h@2", f"sequence by tags {W} {H} | count | unique tags")


# -- as if one event per value: against the split events, in Tidal and in the eql package --

array_event = st.fixed_dictionaries({
    "tags": st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "c", None]), max_size=3)),
    "kind": st.sampled_from(["w", "h", "x"]),
    "gap": st.integers(0, 2)})
STAGE = {"w": W.replace("p ==", "kind =="), "h": H.replace("p ==", "kind =="),
         "t": "[process where true]"}
UNTIL = ' until [process where kind == "x"]'


def _split(drawn: list[dict]) -> tuple[list[dict], list[dict]]:
    """The events with an array key, and one event per distinct value of it."""
    whole, split, at = [], [], 0
    for i, e in enumerate(drawn):
        at += e["gap"]
        base = {"event_type": "process", "kind": e["kind"], "id": i,
                "timestamp": T0 + at * 10**9}
        whole.append({**base, "tags": e["tags"]})
        values = list(dict.fromkeys(v for v in e["tags"] or [] if v is not None))
        split.extend({**base, "tag": v} for v in values or [None])
    return whole, split


def _tidal(rows: list[dict], query: str, list_field: bool) -> list[tuple[list[int], object]]:
    schema = pa.schema([("event_type", pa.string()), ("kind", pa.string()), ("id", pa.int64()),
                        ("timestamp", pa.int64()),
                        ("tags", pa.list_(pa.string())) if list_field else ("tag", pa.string())])
    with tidal.open(None, category_field="event_type") as store:
        store.append(pa.Table.from_pylist(rows, schema=schema))
        got = store.eql(query)
    return [(c.events.column("id").to_pylist(), next(iter(c.key.values())))
            for c in got.correlations]


def _reference(rows: list[dict], query: str) -> list[list[int]]:
    theirs: list[list[int]] = []
    engine = eql.PythonEngine({"time_unit": 10**9})
    with eql.parser.skip_optimizations:
        engine.add_query(eql.parse_query(query))
    engine.add_output_hook(lambda result: theirs.append([e.data["id"] for e in result.events]))
    engine.stream_events([eql.Event.from_data(r) for r in rows])
    return theirs


@settings(max_examples=120, deadline=None)
@given(st.lists(array_event, min_size=1, max_size=12),
       st.sampled_from(["sequence", "sequence with maxspan=2s", "join", "sample"]),
       st.lists(st.sampled_from("wht"), min_size=2, max_size=3), st.booleans())
def test_an_array_key_joins_as_one_event_per_value(drawn, kind, stages, until):
    whole, split = _split(drawn)
    body = " ".join(STAGE[k] for k in stages) + (UNTIL if until and kind != "sample" else "")
    head, _, span = kind.partition(" ")  # (maxspan: the sequence's scan may be driven)
    mine = _tidal(whole, f"{head} by tags {span} {body}", list_field=True)
    assert mine == _tidal(split, f"{head} by tag {span} {body}", list_field=False)
    kind = f"{head} by tag {span}".strip()
    if head != "sample":  # (the eql package has no sample; its array keys compare whole)
        keyed = [r for r in split if r["tag"] is not None]  # (there, a null key joins)
        assert [ids for ids, _ in mine] == _reference(keyed, f"{kind} {body}")
