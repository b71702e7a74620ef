"""EQL sequences over a real store: the state machine's rules, as small tables of cases.

Events are written as ``id:user:what@second``; each case lists the sequences
(by event ids) that must come back, in order.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate._kernels_sequence import advance

from .support import OneRowBatches


def events(spec: str) -> list[dict]:
    out = []
    for item in spec.split():
        ident, user, rest = item.split(":")
        what, second = rest.split("@")
        out.append({"id": int(ident), "user": None if user == "-" else user, "p": what,
                    "timestamp": f"2026-01-01T00:{int(second) // 60:02d}:"
                                 f"{int(second) % 60:02d}Z",
                    "event": {"category": "process"}})
    return out


@dataclass
class Case:
    name: str
    query: str
    data: str
    found: list[list[int]]


W, H, IF = '[process where p == "w"]', '[process where p == "h"]', '[process where p == "i"]'
BASE = "1:r:w@1 2:r:w@2 3:u:h@3 4:r:h@4 5:r:h@5 6:u:w@6 7:r:i@7 8:u:h@8 9:u:i@9"

CASES = [
    Case("latest first stage wins, next state overridden", f"sequence by user {W} {H} {IF}",
         BASE, [[2, 4, 7], [6, 8, 9]]),
    Case("without by, one pending sequence per stage", f"sequence {W} {H} {IF}", BASE,
         [[2, 3, 7], [6, 8, 9]]),
    Case("maxspan drops what is too old", f"sequence by user with maxspan=4s {W} {H} {IF}",
         BASE, [[6, 8, 9]]),
    Case("maxspan is inclusive", f"sequence by user with maxspan=5s {W} {H} {IF}", BASE,
         [[2, 4, 7], [6, 8, 9]]),
    Case("until drops the key's pending sequences",
         f'sequence by user {W} {H} {IF} until [process where p == "x"]',
         BASE + " 10:r:x@6", [[6, 8, 9]]),
    Case("until of another key changes nothing",
         f'sequence by user {W} {H} {IF} until [process where p == "x"]',
         BASE + " 10:q:x@6", [[2, 4, 7], [6, 8, 9]]),
    Case("runs repeats a stage", f"sequence by user {W} with runs=2 {H}",
         "1:r:w@1 2:r:w@2 3:r:h@3 4:r:w@4 5:r:h@5", [[1, 2, 3], [2, 4, 5]]),
    Case("a null key never joins", f"sequence by user {W} {H}",
         "1:-:w@1 2:-:h@2 3:a:w@3 4:a:h@4", [[3, 4]]),
    Case("per-stage keys", "sequence [process where p == \"w\"] by user "
         "[process where p == \"h\"] by user",
         "1:a:w@1 2:b:h@2 3:a:h@3", [[1, 3]]),
    Case("an event matching two stages extends one sequence and starts another",
         "sequence by user [process where true] [process where true]",
         "1:a:w@1 2:a:w@2 3:a:w@3 4:a:w@4", [[1, 2], [2, 3], [3, 4]]),
    Case("ties on timestamp keep _seq order", f"sequence by user {W} {H}",
         "1:a:w@1 2:a:h@1", [[1, 2]]),
    Case("head and tail count sequences", f"sequence by user {W} {H} | tail 1",
         "1:a:w@1 2:a:h@2 3:b:w@3 4:b:h@4", [[3, 4]]),
]


@pytest.fixture(params=["keep all", "drop often"])
def keep_rows(request, monkeypatch):
    """Candidate rows and keys kept until the end, or dropped whenever unneeded (rows after
    every event, keys with no open sequence after every batch)."""
    if request.param == "drop often":
        monkeypatch.setattr(importlib.import_module("tidal.correlate.matching"),
                            "KEEP_ROWS", 1)
        monkeypatch.setattr(importlib.import_module("tidal.correlate.sequence"),
                            "COMPACT_KEYS", 1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_sequences(tmp_path, case, keep_rows):
    with tidal.open(tmp_path / "s", entity_field="user") as store:
        store.append(events(case.data))
        result = store.eql(case.query)
    assert [c.events.column("id").to_pylist() for c in result.correlations] == case.found
    rows = result.events
    assert rows.column("_sequence").to_pylist() == [i for i, c in enumerate(case.found)
                                                    for _ in c]
    assert rows.column("id").to_pylist() == [i for c in case.found for i in c]


def test_correlations_carry_key_span_and_stage_rows(tmp_path):
    with tidal.open(tmp_path / "s", entity_field="user") as store:
        store.append(events(BASE))
        store.flush()  # across segments and the memtable
        store.append(events("11:z:w@20 12:z:h@21 13:z:i@30"))
        result = store.eql(f"sequence by user {W} {H} {IF}")
    first, *_, last = result.correlations
    assert first.key == {"user": "r"} and first.completeness == "complete"
    assert first.events.column("_stage").to_pylist() == [1, 2, 3]
    assert last.events.column("id").to_pylist() == [11, 12, 13]
    assert last.end - last.start == 10 * 10**9
    assert [c.id for c in result.correlations] == [0, 1, 2]


def test_the_kernel_alone():
    import numpy as np

    hits = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], dtype=bool)
    keys = np.where(hits, np.array([[0, 0, 1, 1]] * 2), -1).astype(np.int64)
    live = np.zeros((2, 2), bool)
    start = np.zeros((2, 2), np.int64)
    refs = np.zeros((2, 2, 2), np.int64)
    none = np.full((2, 4), -1, np.int64)
    done, done_ns, count = advance(keys, hits, none, np.full(4, -1, np.int64),
                                   np.arange(4, dtype=np.int64),
                                   np.arange(10, 14, dtype=np.int64), -1, False, live, start,
                                   refs)
    assert done.tolist() == [[10, 11], [12, 13]] and done_ns.tolist() == [1, 3]


def test_unsupported_parts_say_so(tmp_path):
    with tidal.open(tmp_path / "s", entity_field="user") as store:
        store.append(events(BASE))
        for query, says in [
            (f"sequence by user ![process where true] {H}", "cannot start with a missing"),
            (f"sequence by user {W} ![process where true]", "needs 'with maxspan"),
        ]:
            with pytest.raises(tidal.QueryError, match=says):
                store.eql(query)


MISSING = [
    Case("a missing middle stage: nothing of it between its neighbours",
         f'sequence by user {W} ![process where p == "x"] {H}',
         "1:a:w@1 2:a:x@2 3:a:h@3 4:b:w@4 5:b:h@5 6:a:w@6 7:a:h@7", [[4, None, 5], [6, None, 7]]),
    Case("a missing stage's event of another key changes nothing",
         f'sequence by user {W} ![process where p == "x"] {H}',
         "1:a:w@1 2:b:x@2 3:a:h@3", [[1, None, 3]]),
    Case("a trailing missing stage completes when maxspan has passed",
         f'sequence by user with maxspan=10s {W} ![process where p == "x"]',
         # a: no x within 10 s (seen at 20 s); b: x at 6 s; c: too recent to know
         "1:a:w@1 2:b:w@2 3:b:x@6 4:z:h@20 5:c:w@15", [[1, None]]),
    Case("an event after maxspan does not cancel it",
         f'sequence by user with maxspan=10s {W} ![process where p == "x"]',
         "1:a:w@1 2:a:x@30", [[1, None]]),
    Case("maxspan bounds a trailing missing stage inclusively",
         f'sequence by user with maxspan=10s {W} ![process where p == "x"]',
         "1:a:w@1 2:a:x@11 3:z:h@40", []),
    Case("a new start after the window completes the old one first",
         f'sequence by user with maxspan=10s {W} ![process where p == "x"]',
         "1:a:w@1 2:a:w@20 3:z:h@25", [[1, None]]),
]


@pytest.mark.parametrize("case", MISSING, ids=lambda c: c.name)
def test_missing_event_stages(tmp_path, case, keep_rows):
    with tidal.open(tmp_path / "s", entity_field="user") as store:
        store.append(events(case.data))
        result = store.eql(case.query)
    assert [c.events.column("id").to_pylist() for c in result.correlations] == case.found
    assert all(c.completeness == "complete" for c in result.correlations)


compact_event = st.fixed_dictionaries({"user": st.sampled_from("abcdef"),
                                       "p": st.sampled_from("whx"), "gap": st.integers(0, 3)})


@settings(max_examples=80, deadline=None)
@given(st.lists(compact_event, min_size=1, max_size=40),
       st.sampled_from([f"sequence by user with maxspan=3s {W} {H}",
                        f'sequence by user with maxspan=4s {W} {H} until [process where p == "x"]',
                        f'sequence by user with maxspan=2s {W} ![process where p == "x"]',
                        f"sequence by user {W} {W} {H}"]))
def test_forgetting_keys_without_open_sequences_changes_nothing(events, query):
    import importlib

    from tidal.correlate.eql.run import run_eql

    sequence = importlib.import_module("tidal.correlate.sequence")
    rows, at = [], 1_767_225_600_000_000_000
    for i, e in enumerate(events):
        at += e["gap"] * 10**9
        rows.append({"timestamp": at, "user": e["user"], "p": e["p"], "id": i,
                     "event": {"category": "process"}})
    with tidal.open(None) as store:
        store.append(rows)
        with store.snapshot() as snap:
            whole = run_eql(snap, query)
            saved, sequence.COMPACT_KEYS = sequence.COMPACT_KEYS, 1
            try:
                compacted = run_eql(OneRowBatches(snap), query)
            finally:
                sequence.COMPACT_KEYS = saved
    assert [c.events.column("id").to_pylist() for c in compacted.correlations] == [
        c.events.column("id").to_pylist() for c in whole.correlations]


def test_events_with_no_timestamp_take_their_arrival_time(tmp_path):
    """The store stamps an event without a time with its ingest time (the default
    ``missing_timestamp``): a sequence sees such events in the order they arrived."""
    with tidal.open(tmp_path / "s") as store:
        for p in "wxh":
            store.append([{"user": "a", "p": p, "event": {"category": "process"}}])
        found = store.eql(f"sequence by user {W} {H}").correlations
        stopped = store.eql(f'sequence by user {W} {H} until [process where p == "x"]')
    assert [c.events.column("p").to_pylist() for c in found] == [["w", "h"]]
    assert stopped.correlations == []
    assert found[0].start <= found[0].end


def test_the_command_line_prints_each_sequence_under_its_key(tmp_path, capsys):
    from tidal.cli import main

    path = tmp_path / "cli"
    with tidal.open(path) as store:
        store.append(events(BASE))
    query = f"sequence by user {W} {H}"
    assert main(["eql", query, "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert "#0  user=r  2026-01-01T00:00:02.000000000Z .. 2026-01-01T00:00:04.000000000Z" in out
    assert "#1  user=u" in out and "_stage" in out
    assert main(["eql", query, "--store", str(path), "--format", "json"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 4 and '"_sequence":0' in rows[0]
