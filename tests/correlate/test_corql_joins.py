"""CorQL joins over history (``Store.correlate``): small tables of events and the
correlations they must give.

Each case writes its events, ``(t_s, svc, rid, extra)`` (``rid`` :data:`ABSENT`:
the event has no ``rid``), to a store on disk in three batches (the first flushed
to a segment, the last left in the memtable), runs the query up to ``end_s`` and
expects its correlations in the order they complete: each as the rows' events
by position in the table (None: the row of nulls of a missing ``or`` partner),
then its completeness. The same query over a snapshot read one event a batch
must give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tidal
from tidal.correlate.corql.run import run_corql

from .support import T0, OneRowBatches

S = 10**9
NS = 1e-9
"""One nanosecond, in the seconds of an event's time."""
ABSENT = "<absent>"

FE = 'events({svc="fe"})'
BE = 'events({svc="be"})'
DB = 'events({svc="db"})'
AUDIT = 'events({svc="audit"})'
AND = f"{FE} and on(rid) within(10s) {BE}"
OR = f"{FE} or on(rid) within(5s) {BE}"
UNLESS = f"{FE} unless on(rid) within(5s) {BE}"

Event = tuple[float, str, Any, dict[str, Any]]
Want = tuple[tuple[int | None, ...], str | tuple[str, ...]]


def ev(t_s: float, svc: str, rid: Any = "r1", **extra: Any) -> Event:
    return (t_s, svc, rid, extra)


@dataclass(frozen=True)
class Case:
    name: str
    query: str
    events: list[Event]
    want: list[Want]
    end_s: float = 1000
    keys: list[dict[str, Any]] | None = None
    """Each correlation's ``key``, when checked."""
    labels: list[dict[str, Any]] | None = None
    """Each correlation's ``labels``, when checked."""
    batches: int = 3


def rows_of(events: list[Event]) -> list[dict[str, Any]]:
    out = []
    for i, (t_s, svc, rid, extra) in enumerate(events):
        row = {"id": i, "timestamp": T0 + round(t_s * S), "svc": svc, **extra}
        if rid is not ABSENT:
            row["rid"] = rid
        out.append(row)
    return out


def write(path: Path, events: list[Event], parts: int = 3) -> tidal.Store:
    store = tidal.open(path)
    rows = rows_of(events)
    for n, part in enumerate(np.array_split(np.arange(len(rows)), parts)):
        if len(part):
            store.append([rows[i] for i in part])
        if n == 0:
            store.flush()
    return store


def shown(correlations: list[tidal.Correlation]) -> list[Want]:
    return [(tuple(c.events.column("id").to_pylist()), c.completeness) for c in correlations]


CASES = [
    # -- and ---------------------------------------------------------------------------
    Case("and: the earliest unused partner, each used once", AND,
         [ev(0, "fe"), ev(1, "be"), ev(2, "be"), ev(3, "fe"), ev(4, "fe")],
         [((0, 1), "complete"), ((3, 2), "complete")], keys=[{"rid": "r1"}] * 2),
    Case("and: other keys never join", AND, [ev(0, "fe", "r1"), ev(1, "be", "r2")], []),
    Case("and: the partner before the anchor", AND, [ev(0, "be"), ev(5, "fe")],
         [((1, 0), "complete")]),
    Case("and: the earliest partner in the window, not the nearest", AND,
         [ev(0, "be"), ev(8, "be"), ev(9, "fe")], [((2, 0), "complete")]),
    Case("and: exactly d apart joins", AND,
         [ev(0, "fe", "r1"), ev(10, "be", "r1"), ev(20, "be", "r2"), ev(30, "fe", "r2")],
         [((0, 1), "complete"), ((3, 2), "complete")]),
    Case("and: d + 1 ns apart does not", AND,
         [ev(0, "fe", "r1"), ev(10 + NS, "be", "r1"), ev(20, "be", "r2"),
          ev(30 + NS, "fe", "r2")], []),
    Case("and: ties in time go by _seq", AND,
         [ev(5, "be"), ev(5, "fe"), ev(5, "fe"), ev(5, "be")],
         [((1, 0), "complete"), ((2, 3), "complete")]),
    Case("and: anchors wait; one partner serves the earliest",
         AND, [ev(0, "fe"), ev(1, "fe"), ev(2, "be")], [((0, 2), "complete")]),
    Case("and: without within, any distance", f"{FE} and on(rid) {BE}",
         [ev(0, "fe"), ev(3600, "be")], [((0, 1), "complete")], end_s=4000),
    Case("null and absent keys never join; an empty one does", AND,
         [ev(0, "fe", None), ev(1, "be", None), ev(2, "fe", ABSENT), ev(3, "be", ABSENT),
          ev(4, "fe", ""), ev(5, "be", "")],
         [((4, 5), "complete")], keys=[{"rid": ""}]),
    Case("on(a=b): the anchor's rid, the other's ref",
         f"{FE} and on(rid=ref) within(10s) {BE}",
         [ev(0, "fe", "r1"), ev(1, "be", "r1"), ev(2, "be", ABSENT, ref="r1")],
         [((0, 2), "complete")], keys=[{"rid": "r1"}]),
    Case("on(a, b): every field, none null", f"{FE} and on(rid, zone) within(10s) {BE}",
         [ev(0, "fe", zone="z1"), ev(1, "be", zone="z2"), ev(2, "be", zone="z1"),
          ev(3, "fe", zone=None), ev(4, "be", zone=None)],
         [((0, 2), "complete")], keys=[{"rid": "r1", "zone": "z1"}]),
    Case("on(): one key for every event", f"{FE} and on() within(10s) {BE}",
         [ev(0, "fe", "r1"), ev(1, "be", None), ev(2, "fe", ABSENT), ev(3, "be", "r2")],
         [((0, 1), "complete"), ((2, 3), "complete")], keys=[{}, {}]),
    Case("ignoring(svc): the other named fields (zone)",
         'events({svc="fe", zone="z1"}) and ignoring(svc) within(10s) events({svc="be"})',
         [ev(0, "fe", "r1", zone="z1"), ev(1, "be", "r2", zone="z1")],
         [((0, 1), "complete")], keys=[{"zone": "z1"}]),
    Case("ignoring(zone): the key is svc, which differs",
         'events({svc="fe", zone="z1"}) and ignoring(zone) within(10s) events({svc="be"})',
         [ev(0, "fe", zone="z1"), ev(1, "be", zone="z1")], []),
    Case("overlapping selectors: an event is anchor, then partner, never its own",
         f'events({{svc=~"fe|be"}}) and on(rid) within(10s) {BE}',
         [ev(0, "fe"), ev(1, "be"), ev(2, "be")],
         [((0, 1), "complete"), ((1, 2), "complete")]),
    # -- group_left / group_right ------------------------------------------------------
    Case("group_left: partners serve every anchor, labels from the partner",
         'events({svc="be"}) and on(rid) within(10s) group_left(version) '
         'events({svc="cfg"})',
         [ev(0, "cfg", version="v1"), ev(1, "be"), ev(2, "be"), ev(3, "cfg", version="v2"),
          ev(4, "be"), ev(12, "be"), ev(20, "be", "r2"), ev(21, "be", "r2"),
          ev(22, "cfg", "r2", version="v9")],
         [((1, 0), "complete"), ((2, 0), "complete"), ((4, 0), "complete"),
          ((5, 3), "complete"), ((6, 8), "complete"), ((7, 8), "complete")],
         labels=[{"version": v} for v in ["v1", "v1", "v1", "v2", "v9", "v9"]]),
    Case("group_right: the anchor serves every partner, labels from the anchor",
         'events({svc="cfg"}) and on(rid) within(10s) group_right(version) '
         'events({svc="be"})',
         [ev(0, "cfg", version="v1"), ev(1, "be"), ev(2, "be"), ev(20, "be", "r2"),
          ev(21, "be", "r2"), ev(22, "cfg", "r2", version="v2"), ev(40, "be", "r2")],
         [((0, 1), "complete"), ((0, 2), "complete"), ((5, 3), "complete"),
          ((5, 4), "complete")],
         labels=[{"version": v} for v in ["v1", "v1", "v2", "v2"]]),
    Case("group_right or: no partial for an anchor that matched",
         'events({svc="cfg"}) or on(rid) within(5s) group_right events({svc="be"})',
         [ev(0, "cfg"), ev(1, "be"), ev(3, "be"), ev(10, "cfg", "r2")],
         [((0, 1), "complete"), ((0, 2), "complete"), ((3, None), (BE,))]),
    # -- or ----------------------------------------------------------------------------
    Case("or: partial once the deadline passes, in completion order", OR,
         [ev(0, "fe", "r1"), ev(1, "fe", "r2"), ev(2, "be", "r2"), ev(6, "fe", "r3"),
          ev(7, "be", "r3")],
         [((1, 2), "complete"), ((0, None), (BE,)), ((3, 4), "complete")]),
    Case("or: a partner exactly d after still joins; d + 1 ns is too late", OR,
         [ev(0, "fe", "r1"), ev(5, "be", "r1"), ev(10, "fe", "r2"), ev(15 + NS, "be", "r2")],
         [((0, 1), "complete"), ((2, None), (BE,))]),
    # -- unless ------------------------------------------------------------------------
    Case("unless: dropped by a partner either side within d, else kept at the deadline",
         UNLESS,
         [ev(0, "fe", "r1"), ev(3, "be", "r1"), ev(10, "fe", "r2"), ev(20, "be", "r3"),
          ev(25, "fe", "r3"), ev(30, "be", "r4"), ev(35 + NS, "fe", "r4"), ev(40, "fe", "r5"),
          ev(45, "be", "r5"), ev(50, "fe", "r6"), ev(55 + NS, "be", "r6")],
         [((2,), "complete"), ((6,), "complete"), ((9,), "complete")]),
    Case("unless: an event of both selectors never drops itself",
         f'{FE} unless on(rid) within(5s) events({{svc=~"fe|be"}})',
         [ev(0, "fe", "r1"), ev(10, "fe", "r2"), ev(12, "fe", "r2")], [((0,), "complete")]),
    # -- end ---------------------------------------------------------------------------
    # (the read ends before `end`: the watermark is the last instant it holds, end - 1 ns,
    # and an anchor is settled when its deadline lies before the watermark, as live)
    Case("end: an or anchor whose deadline is the watermark waits", OR, [ev(0, "fe")], [],
         end_s=5 + NS),
    Case("end: 1 ns before the watermark it is settled", OR, [ev(0, "fe")],
         [((0, None), (BE,))], end_s=5 + 2 * NS),
    Case("end: an unless anchor whose deadline is the watermark waits", UNLESS,
         [ev(0, "fe")], [], end_s=5 + NS),
    Case("end: 1 ns before the watermark it is kept", UNLESS, [ev(0, "fe")],
         [((0,), "complete")], end_s=5 + 2 * NS),
    Case("end: an event at the end is not read", AND, [ev(0, "fe"), ev(10, "be")], [],
         end_s=10),
    Case("end: 1 ns before it is", AND, [ev(0, "fe"), ev(10, "be")],
         [((0, 1), "complete")], end_s=10 + NS),
    # -- [range] -----------------------------------------------------------------------
    Case("[range]: the selector sees end - range onwards",
         f"{FE}[10s] and on(rid) {BE}",
         [ev(85, "fe"), ev(90, "fe"), ev(95, "be"), ev(96, "be")],
         [((1, 2), "complete")], end_s=100),
    Case("[range]: end - range - 1 ns is unseen", f"{FE}[10s] and on(rid) {BE}",
         [ev(90 - NS, "fe"), ev(95, "be")], [], end_s=100),
    Case("[range]: the same with a range on every selector",
         f"{FE}[10s] and on(rid) {BE}[10s]", [ev(90 - NS, "fe"), ev(95, "be")], [],
         end_s=100),
    Case("[range]: an or without within waits range; older partners unseen",
         f"{FE} or on(rid) {BE}[5s]",
         [ev(80, "fe", "r1"), ev(81, "be", "r1"), ev(94, "fe", "r2"),
          ev(94.5, "be", "r2"), ev(96, "fe", "r3"), ev(97, "be", "r3")],
         [((0, None), (f"{BE}[5s]",)), ((4, 5), "complete"), ((2, None), (f"{BE}[5s]",))],
         end_s=100),
    # -- chains ------------------------------------------------------------------------
    Case("and + and: emitted when the last partner comes",
         f"{AND} and on(rid) within(10s) {DB}",
         [ev(0, "fe", "r1"), ev(1, "db", "r1"), ev(2, "be", "r1"), ev(20, "fe", "r2"),
          ev(21, "be", "r2")],
         [((0, 2, 1), "complete")]),
    Case("and + or: at once with every partner, else at the deadline if the and has one",
         f"{AND} or on(rid) within(5s) {DB}",
         [ev(0, "fe", "r1"), ev(1, "be", "r1"), ev(10, "fe", "r2"), ev(11, "db", "r2"),
          ev(12, "be", "r2"), ev(20, "fe", "r3"), ev(21, "db", "r3"), ev(30, "fe", "r4"),
          ev(38, "be", "r4")],
         [((0, 1, None), (DB,)), ((2, 4, 3), "complete")]),
    Case("and + unless: kept at the deadline with its and partner",
         f"{AND} unless on(rid) within(5s) {AUDIT}",
         [ev(0, "fe", "r1"), ev(1, "be", "r1"), ev(10, "fe", "r2"), ev(11, "be", "r2"),
          ev(13, "audit", "r2"), ev(20, "fe", "r3")],
         [((0, 1), "complete")]),
    Case("a chain of 4: and, or (on rid=ref), unless",
         f"{AND} or on(rid=ref) within(5s) {DB} unless on(rid) within(5s) {AUDIT}",
         [ev(0, "fe", "r1"), ev(1, "be", "r1"), ev(2, "db", ABSENT, ref="r1"),
          ev(10, "fe", "r2"), ev(11, "be", "r2"), ev(12, "db", "r2"),
          ev(20, "fe", "r3"), ev(21, "be", "r3"), ev(22, "db", ABSENT, ref="r3"),
          ev(24, "audit", "r3")],
         [((0, 1, 2), "complete"), ((3, 4, None), (DB,))]),
    # -- the post filter ---------------------------------------------------------------
    Case("post filter: one present event must match; renumbered",
         f'{OR} {{status=~"5.."}}',
         [ev(0, "fe", "r1", status="200"), ev(1, "be", "r1", status="500"),
          ev(10, "fe", "r2", status="200"), ev(11, "be", "r2", status="200"),
          ev(20, "fe", "r3", status="503"), ev(30, "fe", "r4", status="200")],
         [((0, 1), "complete"), ((4, None), (BE,))]),
    Case("post filter: a missing partner's nulls match nothing",
         f'{OR} {{status=""}}',
         [ev(0, "fe", "r1", status="200"), ev(10, "fe", "r2"), ev(20, "fe", "r3", status="1"),
          ev(21, "be", "r3")],
         [((1, None), (BE,)), ((2, 3), "complete")]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cases(tmp_path, case):
    end = T0 + round(case.end_s * S)
    with write(tmp_path / "s", case.events, case.batches) as store:
        found = list(store.correlate(case.query, end=end))
        with store.snapshot() as snap:
            one_by_one = run_corql(OneRowBatches(snap), case.query, end=end).correlations
    assert shown(found) == case.want
    assert shown(one_by_one) == case.want
    assert [c.id for c in found] == list(range(len(found)))
    for c in found:
        times = [t.value for t in c.events.column("timestamp").to_pylist() if t is not None]
        assert (c.start, c.end) == (min(times), max(times))
        assert c.query == case.query
    if case.keys is not None:
        assert [c.key for c in found] == case.keys
    if case.labels is not None:
        assert [c.labels for c in found] == case.labels


def test_start_bounds_the_scan(tmp_path):
    with write(tmp_path / "s", [ev(0, "fe"), ev(1, "be"), ev(5, "fe"), ev(6, "be")]) as store:
        found = list(store.correlate(AND, start=T0 + S, end=T0 + 100 * S))
    assert shown(found) == [((2, 1), "complete")]


# -- errors --------------------------------------------------------------------------------

ERRORS = [
    ('loki({app="x"}) and on(rid) events()', 1, 1, 'no such source "loki"'),
    ('events({svc="fe"}) and on(rid) within(1s) graylog()', 1, 43, 'no such source'),
    ('events({svc="fe"}) and events({svc="be"})', 1, 20, "needs on(..) or ignoring(..)"),
    ('events({svc="fe"})\n  or on(rid) events({svc="be"})', 2, 3, "`or` needs within(..)"),
    ('events({svc="fe"}) unless on(rid) events({svc="be"})', 1, 20,
     "`unless` needs within(..)"),
    ("events() and on(rid) events() and on(zone) events()", 1, 31,
     "on the same fields: on(rid) before, on(zone) here"),
    ("events() and on(rid) group_left events() and on(rid) events()", 1, 10,
     "group_left joins two selectors, not a chain"),
    ('events({svc="fe"}) and on(nope) within(1s) events({svc="be"})', 1, 20,
     "unknown key field 'nope'"),
    ('events({svc="fe"}) and on(rid=nope) within(1s) events({svc="be"})', 1, 20,
     "unknown key field 'nope'"),
    ('events({svc="fe"})', 1, 19, "a correlation joins two or more selectors"),
    ('events() unless on(rid) within(1s) group_left events()', 1, 36,
     "group_left cannot modify unless"),
]


@pytest.mark.parametrize(("query", "line", "column", "message"), ERRORS,
                         ids=[e[3] for e in ERRORS])
def test_errors_name_the_place(tmp_path, query, line, column, message):
    with write(tmp_path / "s", [ev(0, "fe", zone="z"), ev(1, "be")]) as store:
        with pytest.raises(tidal.QueryError) as info:
            list(store.correlate(query, end=T0 + 100 * S))
    assert (info.value.line, info.value.column) == (line, column)
    assert message in str(info.value)
    assert str(info.value).startswith(f"line {line}, column {column}: ")
