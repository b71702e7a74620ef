"""The most selective stage drives a sequence's scan: same answers, narrower reads."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate import drive
from tidal.correlate.eql.evaluate import Options
from tidal.correlate.eql.parser import parse
from tidal.correlate.eql.planner import plan_query

T0 = 1_767_225_600_000_000_000
S = 10**9
RARE = ('sequence by host with maxspan=5s [process where name == "evil" and kind == "start"]'
        ' [network where kind == "out"]')


def plan_of(snap, text):
    return plan_query(parse(text), snap.schema, Options(), ts_field=snap.ts_field).root


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An hour of events over 20 hosts, flushed into several segments; two rare starts."""
    with tidal.open(tmp_path_factory.mktemp("drive") / "s", entity_field="host") as s:
        for chunk in range(6):
            rows = []
            for i in range(3000):
                t = T0 + (chunk * 3000 + i) * S // 5
                host = f"h{i % 20}"
                kind, category = (("start", "process") if i % 3 == 0 else ("out", "network"))
                name = "evil" if (chunk, i) in ((1, 600), (4, 1203)) else "ok"
                rows.append({"timestamp": t, "host": host, "kind": kind, "name": name,
                             "event": {"category": category}})
            s.append(rows)
            s.flush()
        yield s


def test_the_driver_is_the_stage_with_the_most_simple_conditions(store):
    with store.snapshot() as snap:
        assert plan_of(snap, RARE).driver == 0
        assert plan_of(snap, RARE.replace('name == "evil" and ', "")).driver in (0, 1)
        trailing = ('sequence by host with maxspan=5s [process where name == "evil"] '
                    '![network where kind == "out"]')
        assert plan_of(snap, trailing).driver is None  # (a trailing absence: every event)
        assert plan_of(snap, "sequence [process where true] [network where true]"
                       ).driver is None


def test_a_rare_driver_narrows_the_scan_to_its_keys_and_times(store):
    with store.snapshot() as snap:
        node = plan_of(snap, RARE)
        narrowed = drive.narrowed(snap, node)
        assert narrowed.read.start is not None and narrowed.read.end is not None
        assert narrowed.read.end - narrowed.read.start < 40 * 60 * S  # not the whole hour
        assert str(narrowed.read.prune).count("timestamp >=") == 2  # two windows
        assert "h0" in str(narrowed.read.prune) and "h3" in str(narrowed.read.prune)


def test_narrowing_changes_no_answer(store, monkeypatch):
    driven = store.eql(RARE)
    monkeypatch.setattr(drive, "EVENTS", -1)  # every driver "matches too many"
    plain = store.eql(RARE)
    assert len(driven.correlations) == 2
    assert [c.events.to_pylist() for c in driven.correlations] == [
        c.events.to_pylist() for c in plain.correlations]


def test_a_driver_without_events_reads_nothing(store):
    query = RARE.replace('"evil"', '"absent"')
    with store.snapshot() as snap:
        narrowed = drive.narrowed(snap, plan_of(snap, query))
    assert (narrowed.read.start, narrowed.read.end) == (0, 0)
    assert store.eql(query).correlations == []


def test_too_many_driver_events_leave_the_scan_as_planned(store, monkeypatch):
    monkeypatch.setattr(drive, "EVENTS", 1)
    with store.snapshot() as snap:
        node = plan_of(snap, RARE)
        assert drive.narrowed(snap, node) is node


def test_windows_merge_and_are_capped(monkeypatch):
    import numpy as np

    windows = drive._windows(np.array([0, 5, 100, 300]), 10)
    assert windows == [(-10, 16), (90, 111), (290, 311)]
    monkeypatch.setattr(drive, "WINDOWS", 2)
    assert drive._windows(np.array([0, 5, 100, 300]), 10) == [(-10, 111), (290, 311)]


event = st.fixed_dictionaries({"host": st.sampled_from(["a", "b", "c"]),
                               "kind": st.sampled_from(["start", "out", "end"]),
                               "name": st.sampled_from(["evil", "ok"]),
                               "gap": st.integers(0, 6)})


@settings(max_examples=60, deadline=None)
@given(st.lists(event, min_size=1, max_size=30), st.sampled_from([1, 3, 8]))
def test_driven_and_plain_scans_agree(tmp_path_factory, events, span):
    query = (f'sequence by host with maxspan={span}s [any where name == "evil" and '
             f'kind == "start"] [any where kind == "out"] until [any where kind == "end"]')
    rows, at = [], T0
    for i, e in enumerate(events):
        at += e["gap"] * S
        rows.append({"timestamp": at, "host": e["host"], "kind": e["kind"],
                     "name": e["name"], "id": i})
    with tidal.open(None) as s:
        s.append(rows[: len(rows) // 2])
        s.flush()
        s.append(rows[len(rows) // 2:])
        driven = [c.events.column("id").to_pylist() for c in s.eql(query).correlations]
        module = importlib.import_module("tidal.correlate.drive")
        saved, module.EVENTS = module.EVENTS, -1
        try:
            plain = [c.events.column("id").to_pylist() for c in s.eql(query).correlations]
        finally:
            module.EVENTS = saved
    assert driven == plain


def test_a_key_read_as_a_date_is_not_narrowed_by_its_stored_text(tmp_path):
    """A join key declared a date compares as a time; its stored text differs (offsets,
    precision), so narrowing by the text would lose matches."""
    with tidal.open(tmp_path / "s") as s:
        s.append([{"timestamp": T0, "seen": "2026-01-01T00:00:00+00:00", "name": "evil",
                   "event": {"category": "process"}}])
        s.flush()
        s.append([{"timestamp": T0 + S, "seen": "2026-01-01T00:00:00Z", "name": "ok",
                   "event": {"category": "network"}}])
        query = ('sequence by seen with maxspan=5s [process where name == "evil"] '
                 '[network where name == "ok"]')
        found = s.eql(query, field_types={"seen": "date"}).correlations
    assert len(found) == 1
