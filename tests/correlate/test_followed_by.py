"""``Store.followed_by``: events of one condition followed by another for the same key.

The cases are small tables of ``(t_ns, key, kind)`` events, appended in several
batches (some flushed to a segment, some left in the memtable): ``kind`` ``a``
matches the first condition, ``b`` the second, ``ab`` both and ``c`` neither.
Expected pairs name events by their position in the table.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate.followed import FollowedBy, Pair, followed_by, within_ns

from .support import T0, OneRowBatches

S = 10**9
A = 'act in ("a", "ab")'
B = 'act in ("b", "ab")'


def write(path: Path, rows: list[tuple[int, str | None, str]], parts: int = 3) -> tidal.Store:
    """A store at ``path`` holding ``rows``, appended in ``parts`` batches (the first
    flushed to a segment)."""
    store = tidal.open(path)
    events = [{"id": i, "timestamp": T0 + t, "user": key, "act": kind,
               "host": None if key is None else f"h-{key}", "proc": {"user": {"name": key}},
               "event": {"category": "process"}}
              for i, (t, key, kind) in enumerate(rows)]
    for n, part in enumerate(np.array_split(np.arange(len(events)), parts)):
        if len(part):
            store.append([events[i] for i in part])
        if n == 0:
            store.flush()
    return store


def ids_by_seq(store: tidal.Store) -> dict[int, int]:
    return {row["_seq"]: row["id"] for row in store.scan(["id"]).read_all().to_pylist()}


@dataclass(frozen=True)
class Case:
    name: str
    rows: list[tuple[int, str | None, str]]
    within: object
    total: int
    pairs: list[tuple[int, int]] = field(default_factory=list)
    """(a, b) by position in ``rows``, in the order of a's time."""


CASES = [
    Case("at the window's edge", [(0, "u", "a"), (5 * S, "u", "b")], "5s", 1, [(0, 1)]),
    Case("1 ns past it", [(0, "u", "a"), (5 * S + 1, "u", "b")], "5s", 1),
    Case("same time, b written after", [(S, "u", "a"), (S, "u", "b")], "1s", 1, [(0, 1)]),
    Case("same time, b written before", [(S, "u", "b"), (S, "u", "a")], "1s", 1),
    Case("b before a", [(0, "u", "b"), (S, "u", "a")], "1h", 1),
    Case("other key", [(0, "u", "a"), (S, "v", "b")], "1h", 1),
    Case("null keys never pair", [(0, None, "a"), (S, None, "b"), (2 * S, "u", "a"),
                                  (3 * S, None, "b")], "1h", 1),
    Case("one event matching both", [(0, "u", "ab")], "1h", 1),
    Case("two matching both", [(0, "u", "ab"), (S, "u", "ab")], "1h", 2, [(0, 1)]),
    Case("a's share one b", [(0, "u", "a"), (S, "u", "a"), (2 * S, "u", "b")], "2s", 2,
         [(0, 2), (1, 2)]),
    Case("the first b is the gap", [(0, "u", "a"), (S, "u", "b"), (2 * S, "u", "b")], "1h", 1,
         [(0, 1)]),
    Case("first b too late", [(0, "u", "a"), (S, "v", "b"), (3 * S, "u", "b")], "2s", 1),
    Case("neither kind between", [(0, "u", "a"), (S, "u", "c"), (2 * S, "u", "b")], "2s", 1,
         [(0, 2)]),
    Case("no a events", [(0, "u", "b"), (S, "u", "c")], "1h", 0),
    Case("zero window", [(S, "u", "a"), (S, "u", "b"), (S + 1, "u", "b")], 0, 1, [(0, 1)]),
    Case("written out of time order", [(3 * S, "u", "b"), (2 * S, "v", "b"), (0, "u", "a"),
                                       (S, "v", "a"), (9 * S, "v", "b")], "1h", 2,
         [(2, 0), (3, 1)]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cases(tmp_path, case):
    with write(tmp_path / "s", case.rows) as store:
        seen = store.followed_by(A, B, within=case.within, by="user", examples=10)
        ids = ids_by_seq(store)
    gaps = [case.rows[b][0] - case.rows[a][0] for a, b in case.pairs]
    assert (seen.total, seen.followed) == (case.total, len(case.pairs))
    assert seen.ratio == (len(case.pairs) / case.total if case.total else 0.0)
    assert [(ids[p.a_seq], ids[p.b_seq]) for p in seen.examples] == case.pairs
    assert [p.gap_ns for p in seen.examples] == gaps
    assert all(p.key == {"user": case.rows[ids[p.a_seq]][1]} for p in seen.examples)
    if gaps:
        assert seen.gap_mean_ns == round(float(np.mean(gaps)))
        assert seen.gap_p50_ns == round(float(np.percentile(gaps, 50)))
    else:
        assert seen.gap_mean_ns is seen.gap_p50_ns is seen.gap_p99_ns is None


def test_statistics_and_examples(tmp_path):
    rows = [(i * 10 * S, f"k{i % 4}", "a") for i in range(20)]
    rows += [(i * 10 * S + (i + 1) * 1000, f"k{i % 4}", "b") for i in range(20)]
    with write(tmp_path / "s", rows) as store:
        seen = store.followed_by(A, B, within="1ms", by="user", examples=3)
        ids = ids_by_seq(store)
        assert store.followed_by(A, B, within=1000, by="user").followed == 1
        assert store.followed_by(A, B, within="2us", by="user").followed == 2
        assert store.followed_by(A, B, within=dt.timedelta(0), by="user").followed == 0
        assert store.followed_by(A, B, within="1h", by="user", examples=0).examples == ()
    gaps = [(i + 1) * 1000 for i in range(20)]
    assert (seen.total, seen.followed, seen.ratio) == (20, 20, 1.0)
    assert seen.gap_mean_ns == 10_500
    assert seen.gap_p50_ns == round(float(np.percentile(gaps, 50)))
    assert seen.gap_p99_ns == round(float(np.percentile(gaps, 99))) == 19_810
    assert [(ids[p.a_seq], ids[p.b_seq]) for p in seen.examples] == [(0, 20), (1, 21), (2, 22)]
    assert seen.examples[1] == Pair(seen.examples[1].a_seq, seen.examples[1].b_seq,
                                    {"user": "k1"}, 2000)
    assert (seen.within_ns, seen.by) == (10**6, ("user",))
    assert isinstance(seen, tidal.FollowedBy) and tidal.FollowedBy is FollowedBy


def test_start_and_end_bound_both_sides(tmp_path):
    rows = [(0, "u", "a"), (S, "u", "b"), (5 * S, "u", "a"), (6 * S, "u", "b"),
            (10 * S, "u", "a"), (11 * S, "u", "b")]
    with write(tmp_path / "s", rows) as store:
        seen = store.followed_by(A, B, within="1h", by="user", start=T0 + S, end=T0 + 11 * S)
        ids = ids_by_seq(store)
        iso = store.followed_by(A, B, within="1h", by="user", start="2026-01-01T00:00:05Z")
    # the a at 0 and the b at 11 s are out: a at 5 s pairs, a at 10 s has no b left
    assert (seen.total, seen.followed) == (2, 1)
    assert [(ids[p.a_seq], ids[p.b_seq]) for p in seen.examples] == [(2, 3)]
    assert (iso.total, iso.followed) == (2, 2)


def test_keys_of_several_and_nested_fields(tmp_path):
    rows = [(0, "u", "a"), (S, "u", "b"), (2 * S, None, "a"), (3 * S, "v", "b")]
    with write(tmp_path / "s", rows) as store:
        store.append([{"id": 9, "timestamp": T0 + 2 * S + 1, "user": "u", "host": "other",
                       "act": "b", "event": {"category": "process"}}])
        both = store.followed_by(A, B, within="1h", by=["user", "host"])
        nested = store.followed_by(A, B, within="1h", by="proc.user.name")
    assert (both.total, both.followed) == (1, 1)  # (not to the b on another host)
    assert both.examples[0].key == {"user": "u", "host": "h-u"}
    assert both.by == ("user", "host")
    assert (nested.total, nested.followed) == (1, 1)
    assert nested.examples[0].key == {"proc.user.name": "u"}


def test_condition_forms(tmp_path):
    rows = [(0, "u", "a"), (S, "u", "b")]
    with write(tmp_path / "s", rows) as store:
        forms = [('act == "a"', 'act == "b"'), ('process where act == "a"', 'any where act : "B"'),
                 ('"process" where act == "a"', '/* c */ act == "b" and true')]
        for a, b in forms:
            assert store.followed_by(a, b, within="1s", by="user").followed == 1
        assert store.followed_by('network where act == "a"', B, within="1s", by="user"
                                 ).total == 0


@pytest.mark.parametrize(("a", "column", "words"), [
    ('act == ', 8, "expected"),
    ('act == "a" act', 12, "after the condition"),
    ('act == "a" | head 1', 12, "after the condition"),
    ('process where act == "a" | head 1', 28, "no pipes"),
    ('sequence [any where true] [any where true]', 1, "not a sequence"),
    ('nope == 1', 1, "unknown field"),
    ('   ', 1, "empty"),
    ('act == "a" $', 12, "unexpected character"),
])
def test_condition_errors_point_into_the_text(tmp_path, a, column, words):
    with write(tmp_path / "s", [(0, "u", "a")]) as store:
        with pytest.raises(tidal.QueryError) as info:
            store.followed_by(a, B, within="1s", by="user")
    assert info.value.column == column and info.value.query == a
    assert words in str(info.value)


@pytest.mark.parametrize(("options", "name"), [
    ({"within": "5 parsecs"}, "within"), ({"within": -1}, "within"),
    ({"within": dt.timedelta(seconds=-1)}, "within"), ({"within": 1.5}, "within"),
    ({"within": True}, "within"), ({"by": []}, "by"), ({"by": "nope"}, "by"),
    ({"by": "proc.user"}, "by"), ({"by": 3}, "by"), ({"examples": -1}, "examples"),
])
def test_bad_options(tmp_path, options, name):
    with write(tmp_path / "s", [(0, "u", "a")]) as store:
        with pytest.raises(tidal.ConfigError) as info:
            store.followed_by(A, B, **{"within": "1s", "by": "user", **options})
    assert info.value.field == name


def test_durations():
    assert within_ns("250ms") == 250 * 10**6
    assert within_ns(" 2d ") == 2 * 86_400 * S
    assert within_ns("1H") == 3600 * S
    assert within_ns(np.int64(7)) == 7
    assert within_ns(dt.timedelta(days=1, microseconds=3)) == 86_400 * S + 3000


def brute_force(rows, seqs, within, examples):
    """The oracle: every a event against every b event, in plain Python."""
    events = sorted(zip(seqs, rows, strict=True), key=lambda e: (e[1][0], e[0]))
    found, total = [], 0
    for seq_a, (t_a, key, kind) in events:
        if "a" not in kind or key is None:
            continue
        total += 1
        later = [(t, seq) for seq, (t, k, what) in events
                 if "b" in what and k == key and (t, seq) > (t_a, seq_a)]
        if later and min(later)[0] - t_a <= within:
            found.append((seq_a, min(later)[1], key, min(later)[0] - t_a))
    gaps = [g for *_, g in found]
    return (total, len(found), round(float(np.mean(gaps))) if gaps else None,
            round(float(np.percentile(gaps, 50))) if gaps else None,
            round(float(np.percentile(gaps, 99))) if gaps else None,
            [Pair(a, b, {"user": k}, g) for a, b, k, g in found[:examples]])


ROWS = st.lists(st.tuples(st.integers(0, 12).map(lambda t: t * S // 4),
                          st.sampled_from(["x", "y", None]),
                          st.sampled_from(["a", "b", "ab", "c"])), max_size=24)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ROWS, st.sampled_from([0, S // 4, S, 2 * S]), st.integers(1, 4), st.booleans())
def test_against_brute_force(rows, within, parts, one_row_batches):
    with tempfile.TemporaryDirectory() as tmp:
        with write(Path(tmp) / "s", rows, parts) as store:
            if not rows:  # (a store with no events has no fields to name)
                return
            seq_of = {i: s for s, i in ids_by_seq(store).items()}
            with store.snapshot() as snap:
                seen = followed_by(OneRowBatches(snap) if one_row_batches else snap, A, B,
                                   within=within, by="user", examples=4)
    expected = brute_force(rows, [seq_of[i] for i in range(len(rows))], within, 4)
    assert (seen.total, seen.followed, seen.gap_mean_ns, seen.gap_p50_ns, seen.gap_p99_ns,
            list(seen.examples)) == expected
    assert seen.ratio == (expected[1] / expected[0] if expected[0] else 0.0)
