"""CorQL joins against a brute-force oracle.

:func:`oracle` restates the window-join rules of
:mod:`tidal.correlate._kernels_window` over plain lists of dicts, one rule a
line, with no numpy and no shared code: events in (timestamp, ``_seq``) order;
before each event, every waiting anchor whose deadline lies before its time is
resolved; an anchor is dropped by an ``unless`` event before it, or completes
when every ``and``/``or`` stream has a partner (the earliest unused event of
that stream within the window, never the anchor itself), at once when there is
no ``unless``; an ``and``/``or`` event wakes the waiting anchors of its key
within its window, earliest first; an ``unless`` event drops them. Over
history the read ends before the query's ``end``, and the watermark ends at the
last instant it holds (``end`` - 1 ns), as a live query's would.

Hypothesis draws small streams (a few keys, null and absent ones, repeated
times, selectors that overlap) and queries of two to four selectors; the store
answers through :meth:`tidal.Store.correlate`, the events appended in several
batches, and both must give the same correlations in the same order.
"""

from __future__ import annotations

import re
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate import matching, window
from tidal.correlate.corql.run import run_corql

from .support import T0, OneRowBatches

S = 10**9

Matcher = tuple[str, str, str]
"""``(field, op, value)``."""


@dataclass(frozen=True)
class Sel:
    """``events({matchers})[range]``."""

    matchers: tuple[Matcher, ...]
    range_s: int | None = None

    def __str__(self) -> str:
        inner = ", ".join(f'{f}{op}"{v}"' for f, op, v in self.matchers)
        return (f"events({{{inner}}})" if inner else "events()") + (
            f"[{self.range_s}s]" if self.range_s else "")


@dataclass(frozen=True)
class Link:
    """``op on(left=right, ..) within(..) group_..`` and its selector."""

    op: str
    on: tuple[tuple[str, str], ...]
    within_s: int | None
    group: str | None
    sel: Sel
    carry: tuple[str, ...] = ()

    def __str__(self) -> str:
        keys = ", ".join(a if a == b else f"{a}={b}" for a, b in self.on)
        words = [self.op, f"on({keys})"]
        if self.within_s is not None:
            words.append(f"within({self.within_s}s)")
        if self.group:
            words.append(f"group_{self.group}({', '.join(self.carry)})")
        return " ".join([*words, str(self.sel)])


@dataclass(frozen=True)
class Query:
    first: Sel
    links: tuple[Link, ...]
    post: tuple[Matcher, ...] = ()

    def __str__(self) -> str:
        post = " {" + ", ".join(f'{f}{op}"{v}"' for f, op, v in self.post) + "}" \
            if self.post else ""
        return " ".join([str(self.first), *map(str, self.links)]) + post


# -- the oracle --------------------------------------------------------------------------

def matches(event: dict, matchers: tuple[Matcher, ...]) -> bool:
    """Prometheus matchers: an absent or null field reads as ``""``; regexes anchored."""
    for field, op, value in matchers:
        text = event.get(field)
        text = "" if text is None else str(text)
        hit = text == value if op in ("=", "!=") else re.fullmatch(value, text) is not None
        if hit == (op in ("!=", "!~")):
            return False
    return True


@dataclass
class Entry:
    t: int
    seq: int
    alive: bool = True
    hit: bool = False


Found = tuple[tuple[int | None, ...], object, tuple, tuple]
"""A correlation: its rows' ``_seq`` (None: a missing ``or`` partner), its completeness,
its key and its labels (as ``(name, value)`` pairs)."""


def oracle(events: list[dict], query: Query, start_ns: int | None, end_ns: int
           ) -> list[Found]:
    """The correlations of ``query`` over the ``events`` from ``start_ns`` to
    ``end_ns``, in the order they complete."""
    sels = [query.first, *(link.sel for link in query.links)]
    ops = ["anchor", *(link.op for link in query.links)]
    fields = [tuple(a for a, _ in query.links[0].on),
              *(tuple(b for _, b in link.on) for link in query.links)]
    wins: list[int | None] = [0]
    for link in query.links:
        w = link.within_s if link.within_s is not None else (
            link.sel.range_s if link.op != "and" else None)
        wins.append(None if w is None else w * S)
    group, carry = query.links[0].group, query.links[0].carry
    waits = [w for w, op in zip(wins, ops, strict=True) if op in ("or", "unless")]
    deadline = max(waits) if waits else None  # (or/unless always have a window)
    shown = [s for s, op in enumerate(ops) if op != "unless"]
    lists: dict[tuple[int, tuple], list[Entry]] = {}
    fifo: list[Entry] = []
    keys: dict[int, tuple] = {}
    by_seq = {e["_seq"]: e for e in events}
    out: list[Found] = []

    def within(s: int, t: int, t_a: int) -> bool:
        return wins[s] is None or abs(t - t_a) <= wins[s]

    def partner(s: int, key: tuple, t_a: int, seq_a: int) -> Entry | None:
        for e in lists.get((s, key), []):  # (in time order: the earliest first)
            if e.alive and e.seq != seq_a and within(s, e.t, t_a):
                return e
        return None

    def complete(a: Entry, final: bool) -> bool:
        found: dict[int, Entry | None] = {}
        for s in range(1, len(sels)):
            if ops[s] == "unless":
                if not final:
                    return False
                continue
            found[s] = partner(s, keys[a.seq], a.t, a.seq)
            if found[s] is None and (ops[s] == "and" or not final):
                return False
        rows = tuple(a.seq if s == 0 else (found[s].seq if found[s] else None)
                     for s in shown)
        missing = tuple(str(sels[s]) for s in found if found[s] is None)
        other = rows[0] if group == "right" else rows[-1]  # (the side that carries labels)
        labels = tuple((f, None if other is None else by_seq[other].get(f)) for f in carry)
        if not query.post or any(matches(by_seq[r], query.post) for r in rows
                                 if r is not None):
            out.append((rows, missing or "complete",
                        tuple(zip(fields[0], keys[a.seq], strict=True)), labels))
        for e in found.values():
            if e is not None and group != "left":
                e.alive = False
        a.hit = True
        if group != "right" or final:
            a.alive = False
        return True

    def resolve(before: int) -> None:
        while fifo and fifo[0].t + deadline < before:
            a = fifo.pop(0)
            if a.alive and not a.hit:
                complete(a, True)
            a.alive = False

    for event in sorted(events, key=lambda e: (e["timestamp"], e["_seq"])):
        t, seq = event["timestamp"], event["_seq"]
        if t >= end_ns:  # (the end is exclusive)
            break
        if start_ns is not None and t < start_ns:
            continue
        if deadline is not None:
            resolve(t)
        for s, sel in enumerate(sels):
            if not matches(event, sel.matchers):
                continue
            if sel.range_s is not None and t < end_ns - sel.range_s * S:
                continue
            key = tuple(event.get(f) for f in fields[s])
            if any(v is None for v in key):
                continue
            if s == 0:
                if any(ops[u] == "unless" and partner(u, key, t, seq)
                       for u in range(1, len(sels))):
                    continue
                a = Entry(t, seq)
                keys[seq] = key
                lists.setdefault((0, key), []).append(a)
                while a.alive and complete(a, False):
                    pass
                if deadline is not None and a.alive:
                    fifo.append(a)
                continue
            lists.setdefault((s, key), []).append(Entry(t, seq))
            for a in lists.get((0, key), []):
                if a.alive and within(s, t, a.t):
                    if ops[s] == "unless":
                        if a.seq != seq:  # (an event never partners itself)
                            a.alive = False
                    else:
                        complete(a, False)
    if deadline is not None:
        resolve(end_ns - 1)  # (the watermark: the last instant the read holds)
    return out


# -- drawing streams and queries ---------------------------------------------------------

SVCS = ["fe", "be", "db", None]
SELECTORS = [(("svc", "=", "fe"),), (("svc", "=", "be"),), (("svc", "=", "db"),),
             (("svc", "=~", "fe|be"),), (("svc", "!=", "fe"),), (("svc", "=~", "be|db"),),
             (("svc", "!~", "db"),), (("svc", "=", "fe"), ("tier", "=", "1"))]
ABSENT = "<absent>"
KEY_VALUES = ["x", "x", "x", "y", "y", None, ABSENT]


@st.composite
def streams(draw: st.DrawFn) -> list[dict]:
    """Events in append order: repeated times, a few keys (null and absent ones too)."""
    out = []
    for _ in range(draw(st.integers(0, 16))):
        event = {"timestamp": T0 + draw(st.integers(0, 15)) * S
                 + draw(st.sampled_from([0, 0, 0, 1, -1, S // 2]))}
        for name, values in (("svc", SVCS), ("rid", KEY_VALUES), ("ref", KEY_VALUES),
                             ("zone", KEY_VALUES), ("tier", ["1", "2", ABSENT])):
            value = draw(st.sampled_from(values))
            if value is not ABSENT:
                event[name] = value
        out.append(event)
    return out


@st.composite
def queries(draw: st.DrawFn) -> Query:
    count = draw(st.integers(1, 3))
    anchor_fields = draw(st.sampled_from([("rid",), ("rid",), ("rid", "zone"), ("zone",), ()]))
    ranged = draw(st.booleans())
    links = []
    for _ in range(count):
        op = draw(st.sampled_from(["and", "or", "unless"]))
        mapping = draw(st.sampled_from(["same", "ref"]))
        on = tuple((f, "ref" if mapping == "ref" and f == "rid" else f) for f in anchor_fields)
        within_s = draw(st.one_of(st.integers(1, 10), st.none()) if op == "and"
                        or ranged else st.integers(1, 10))
        range_s = draw(st.sampled_from([None, 4, 8])) if ranged else None
        if op != "and" and within_s is None and range_s is None:
            range_s = 8
        links.append(Link(op, on, within_s, None, Sel(draw(st.sampled_from(SELECTORS)),
                                                      range_s)))
    if count == 1 and links[0].op != "unless":
        group = draw(st.sampled_from([None, None, "left", "right"]))
        carry = draw(st.sampled_from([(), ("tier",), ("tier", "svc")])) if group else ()
        links[0] = Link(links[0].op, links[0].on, links[0].within_s, group, links[0].sel,
                        carry)
    first = Sel(draw(st.sampled_from(SELECTORS)),
                draw(st.sampled_from([None, 6])) if ranged else None)
    post = draw(st.sampled_from([(), (), (("tier", "=", "1"),), (("svc", "!=", "db"),)]))
    return Query(first, tuple(links), post)


EVERY_FIELD = {"timestamp": T0 - S, "svc": "none", "rid": None, "ref": "-", "zone": "-",
               "tier": "-"}
"""Appended first, so that no key field is unknown."""


def engine(rows: list[dict], query: Query, start_ns: int | None, end_ns: int,
           batches: list[int], squeeze: bool) -> list[Found]:
    """``query`` over a store holding ``rows`` appended in batches that end at the
    ``batches`` offsets (the first flushed); ``squeeze``: read one event a batch, and
    forget what no join can use any more after each."""
    with ExitStack() as stack:
        if squeeze:
            stack.enter_context(mock.patch.object(window, "_COMPACT_ENTRIES", 1))
            stack.enter_context(mock.patch.object(matching, "KEEP_ROWS", 1))
        store = stack.enter_context(tidal.open(None))
        at = 0
        for n, stop in enumerate([*batches, len(rows)]):
            if stop > at:
                store.append(rows[at:stop])
                at = stop
            if n == 0:
                store.flush()
        if squeeze:
            with store.snapshot() as snap:
                found = run_corql(OneRowBatches(snap), str(query), start=start_ns,
                                  end=end_ns).correlations
        else:
            found = list(store.correlate(str(query), start=start_ns, end=end_ns))
    assert [c.id for c in found] == list(range(len(found)))
    return [(tuple(c.events.column("_seq").to_pylist()), c.completeness,
             tuple(c.key.items()), tuple(c.labels.items())) for c in found]


def with_seqs(events: list[dict]) -> list[dict]:
    """``events`` with their ``_seq``: the store numbers them in append order."""
    return [{**e, "_seq": i} for i, e in enumerate(events)]


FE, BE = Sel((("svc", "=", "fe"),)), Sel((("svc", "=", "be"),))
RID = (("rid", "rid"),)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams(), queries(), st.one_of(st.none(), st.integers(0, 10)),
       st.one_of(st.sampled_from([16, 20]), st.integers(0, 20)),
       st.lists(st.integers(1, 16), max_size=2), st.booleans())
# an event of the anchor's and the unless selector's does not drop itself
@example([{"timestamp": T0, "svc": "fe", "rid": "x"}],
         Query(FE, (Link("unless", RID, 1, None, FE),)), None, 20, [], False)
# [range] sees from end - range on, whether or not every selector has one
@example([{"timestamp": T0 + 10 * S - 1, "svc": "fe", "rid": "x"},
          {"timestamp": T0 + 15 * S, "svc": "be", "rid": "x"}],
         Query(Sel(FE.matchers, 10), (Link("and", RID, None, None, BE),)), None, 20, [], False)
# the watermark at the end is end - 1 ns: a deadline there waits
@example([{"timestamp": T0 + S - 1, "svc": "fe", "rid": "x"}],
         Query(FE, (Link("or", RID, 1, None, BE),)), None, 2, [], False)
def test_joins_match_the_oracle(events, query, start_s, end_s, cuts, squeeze):
    start_ns = None if start_s is None else T0 + start_s * S
    end_ns = T0 + end_s * S
    rows = [EVERY_FIELD, *events]
    got = engine(rows, query, start_ns, end_ns, sorted(cuts), squeeze)
    want = oracle(with_seqs(rows), query, start_ns, end_ns)
    assert Counter(got) == Counter(want), str(query)
    assert got == want, f"same correlations, other order: {query}"
