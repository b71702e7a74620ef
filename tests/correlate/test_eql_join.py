"""EQL joins (Endgame's EQL) over a real store: the rules as small tables of cases, and
the same matches as the ``eql`` package's PythonEngine (AGPL: an oracle only).

Events are written as ``id:user:what@second`` (``id:user/host:what@second`` to
give a host; ``-`` is null); each case lists the joins (by event ids, in stage
order) that must come back, in order.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import eql
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate._kernels_join import advance
from tidal.correlate.eql.run import run_eql

from .support import T0, OneRowBatches, events


@pytest.fixture(params=["as stored, keep all", "one-row batches, drop often"])
def run(request, monkeypatch):
    """Run as the store reads, or one event a batch with unneeded rows dropped each time."""
    small = request.param != "as stored, keep all"
    if small:
        monkeypatch.setattr(importlib.import_module("tidal.correlate.matching"), "KEEP_ROWS", 1)

    def run(store, query, **options):
        with store.snapshot() as snap:
            return run_eql(OneRowBatches(snap) if small else snap, query, **options)
    return run


@dataclass
class Case:
    name: str
    query: str
    data: str
    found: list[list[int]]


W, H, X = '[process where p == "w"]', '[process where p == "h"]', '[process where p == "x"]'
ANY = "[process where true]"

CASES = [
    Case("one event of each stage per key, in any order, as completed",
         f"join by user {W} {H}", "1:a:h@1 2:b:w@2 3:a:w@3 4:b:h@4", [[3, 1], [2, 4]]),
    Case("a filled slot keeps its first event", f"join by user {W} {H}",
         "1:a:w@1 2:a:w@2 3:a:h@3", [[1, 3]]),
    Case("after a join the key starts over", f"join by user {W} {H}",
         "1:a:w@1 2:a:h@2 3:a:w@3 4:a:h@4 5:a:h@5", [[1, 2], [3, 4]]),
    Case("until empties the key's slots", f"join by user {W} {H} until {X}",
         "1:a:w@1 2:a:x@2 3:a:h@3 4:a:w@4", [[4, 3]]),
    Case("until of another key changes nothing", f"join by user {W} {H} until {X}",
         "1:a:w@1 2:b:x@2 3:a:h@3", [[1, 3]]),
    Case("until comes before the stages of the same event", f"join by user {W} {H} until {W}",
         "1:a:h@1 2:a:w@2 3:a:h@3", [[2, 3]]),
    Case("one event can fill two slots", f"join by user {ANY} {ANY}",
         "1:a:w@1 2:b:h@2", [[1, 1], [2, 2]]),
    Case("a null key never joins", f"join by user {W} {H}", "1:-:w@1 2:-:h@2 3:a:h@3", []),
    Case("without by, all events share one key", f"join {W} {H}",
         "1:a:w@1 2:b:h@2 3:-:h@3", [[1, 2]]),
    Case("stage keys join across fields", f"join {W} by user {H} by host",
         "1:a/x:w@1 2:b/b:h@2 3:c/a:h@3", [[1, 3]]),
    Case("join keys come before the stage keys", f"join by host {W} by user {H} by user",
         "1:a/x:w@1 2:a/y:h@2 3:a/x:h@3", [[1, 3]]),
    Case("ties on timestamp keep _seq order", f"join by user {W} {H}",
         "1:a:h@1 2:a:w@1 3:a:w@1 4:a:h@1", [[2, 1], [3, 4]]),
    Case("three stages", f"join by user {W} {H} {X}",
         "1:a:x@1 2:b:w@2 3:a:h@3 4:a:w@4 5:b:x@5 6:b:h@6", [[4, 3, 1], [2, 6, 5]]),
    Case("no matches", f"join by user {W} {H}", "1:a:x@1 2:b:w@2", []),
    Case("head and tail count joins", f"join by user {W} {H} | tail 1",
         "1:a:w@1 2:a:h@2 3:b:w@3 4:b:h@4", [[3, 4]]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_joins(case, run):
    with tidal.open(None) as store:
        store.append(events(case.data))
        result = run(store, case.query)
    assert [c.events.column("id").to_pylist() for c in result.correlations] == case.found
    assert result.events.column("_sequence").to_pylist() == [
        i for i, c in enumerate(case.found) for _ in c]
    assert result.events.column("_stage").to_pylist() == [
        s for c in case.found for s in range(1, len(c) + 1)]


def test_correlations_carry_key_and_span(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        store.append(events("1:a:h@5 2:b:w@6"))
        store.flush()  # across a segment and the memtable
        store.append(events("3:a:w@9"))
        result = store.eql(f"join by user {W} {H}")
    (only,) = result.correlations
    assert only.key == {"user": "a"} and only.id == 0
    assert (only.start - T0, only.end - T0) == (5 * 10**9, 9 * 10**9)


def test_an_empty_store_finds_nothing():
    with tidal.open(None) as store:
        result = store.eql("join [any where true] [any where true]")
    assert result.correlations == [] and result.events.column_names[:2] == ["_sequence", "_stage"]


@pytest.mark.parametrize(("query", "says"), [
    (f"join by user {W} ![process where true]", "not allowed in a join"),
    (f"join by user {W} {H} by user", "same number of 'by' keys"),
])
def test_malformed_joins_say_why(query, says):
    with tidal.open(None) as store:
        store.append([{"user": "a", "p": "w", "tags": ["x"], "timestamp": T0,
                       "event": {"category": "process"}}])
        with pytest.raises(tidal.QueryError, match=says) as info:
            store.eql(query)
    assert info.value.line == 1 and info.value.column is not None


def test_the_kernel_alone():
    keys = np.array([[0, -1, 0, 0], [-1, 0, -1, -1]], dtype=np.int64)
    filled = np.zeros((1, 2), bool)
    refs = np.zeros((1, 2), np.int64)
    done, taken = advance(keys, np.array([-1, -1, -1, 0], np.int64),
                          np.arange(10, 14, dtype=np.int64), filled, refs)
    assert done.tolist() == [[10, 11]] and taken.tolist() == [True, True, True, True]
    assert filled.tolist() == [[True, False]] and refs[0, 0] == 13  # (until, then stage)


def test_rows_no_join_refers_to_are_dropped(monkeypatch):
    matching = importlib.import_module("tidal.correlate.matching")
    monkeypatch.setattr(matching, "KEEP_ROWS", 2)
    kept = matching.Kept()
    for i in range(100):
        kept.add(pa.table({"x": [i]}), np.array([i]), lambda: np.array([0, 50]))
        assert kept.rows <= 5  # (dropped past twice what was needed: 2 rows)
    table, ids = kept.all(pa.schema([("x", pa.int64())]))
    assert {0, 50} <= set(ids.tolist()) and table.column("x").to_pylist() == ids.tolist()


join_event = st.fixed_dictionaries({
    "user": st.sampled_from(["a", "b"]), "host": st.sampled_from(["a", "b"]),
    "kind": st.sampled_from(["w", "h", "i", "x"]), "gap": st.integers(0, 3)})
STAGE = {k: f'[process where kind == "{k}"]' for k in "whix"} | {"t": "[process where true]"}
join_query = st.builds(
    lambda by, stages, until: (
        f"join{' by user' if by == 'shared' else ''} "
        + " ".join(STAGE[k] + (f" by {'host' if i % 2 else 'user'}" if by == 'stage' else '')
                   for i, k in enumerate(stages))
        + (f" until {STAGE['x']}" + (" by user" if by == "stage" else "") if until else "")),
    st.sampled_from(["none", "shared", "stage"]),
    st.lists(st.sampled_from("whit"), min_size=2, max_size=3), st.booleans())


@settings(max_examples=120, deadline=None)
@given(st.lists(join_event, min_size=1, max_size=14), join_query)
def test_joins_match_the_reference_engine(drawn, text_query):
    rows, at = [], 0
    for i, e in enumerate(drawn):
        at += e["gap"]  # seconds; ties (gap 0) are broken by arrival, as _seq breaks them
        rows.append({"event_type": "process", "user": e["user"], "host": e["host"],
                     "kind": e["kind"], "id": i, "timestamp": T0 + at * 10**9})
    with tidal.open(None, category_field="event_type") as store:
        store.append(rows)
        got = store.eql(text_query, case_insensitive=True)
    mine = [c.events.column("id").to_pylist() for c in got.correlations]
    theirs: list[list[int]] = []
    engine = eql.PythonEngine({"time_unit": 10**9})  # our timestamps are ns
    with eql.parser.skip_optimizations:
        engine.add_query(eql.parse_query(text_query))
    engine.add_output_hook(lambda result: theirs.append([e.data["id"] for e in result.events]))
    engine.stream_events([eql.Event.from_data(r) for r in rows])
    assert mine == theirs, text_query
