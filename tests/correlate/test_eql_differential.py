"""Differential tests: Tidal's EQL against the ``eql`` package's PythonEngine.

Hypothesis draws events and event queries from the part of EQL both implement;
both engines run each query and must match the same events. The ``eql``
package compares strings case-insensitively, so Tidal runs with
``case_insensitive=True``. (The package is AGPL: used here as an oracle only.)
"""

from __future__ import annotations

import eql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal

NAMES = ["cmd.exe", "CMD.EXE", "svchost.exe", "bash", "Bash", "a*b", ""]
CATEGORIES = ["process", "network", "file"]

event = st.fixed_dictionaries(
    {"event_type": st.sampled_from(CATEGORIES)},
    optional={"name": st.sampled_from(NAMES), "n": st.integers(-3, 3),
              "user": st.sampled_from(["alice", "Bob", "carol"])},
)


def text(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


name_cond = st.one_of(
    st.builds(lambda op, v: f"name {op} {text(v)}", st.sampled_from(["==", "!="]),
              st.sampled_from(NAMES)),
    st.builds(lambda vs: f"name in ({', '.join(map(text, vs))})",
              st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)),
    st.builds(lambda vs: f"name not in ({', '.join(map(text, vs))})",
              st.lists(st.sampled_from(NAMES), min_size=1, max_size=2)),
)
# Functions of a missing field: Elastic's return null (so `not f(...)` is null too), the
# eql package's return false; they are drawn only where null and false both mean "no".
function_cond = st.one_of(
    st.builds(lambda f, v: f"{f}(name, {text(v)})",
              st.sampled_from(["startsWith", "endsWith", "stringContains"]),
              st.sampled_from(["cmd", "EXE", "b", "sh"])),
    st.builds(lambda p: f"wildcard(name, {text(p)})", st.sampled_from(["*.exe", "b*h", "c*"])),
    st.builds(lambda op, k: f"length(name) {op} {k}", st.sampled_from(["==", ">", "<="]),
              st.integers(0, 8)),
)
number_cond = st.builds(lambda op, k: f"n {op} {k}",
                        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), st.integers(-2, 2))
user_cond = st.builds(lambda op, v: f"user {op} {v}", st.sampled_from(["==", "!="]),
                      st.sampled_from(['"alice"', '"BOB"', "null"]))
atom = st.one_of(name_cond, number_cond, user_cond)
condition = st.recursive(
    atom,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a} and {b})", inner, inner),
        st.builds(lambda a, b: f"({a} or {b})", inner, inner),
        st.builds(lambda a: f"not ({a})", inner)),
    max_leaves=4)
query = st.builds(lambda c, cond, f: f"{c} where {cond}" + (f" and {f}" if f else ""),
                  st.sampled_from([*CATEGORIES, "any"]), condition,
                  st.one_of(st.none(), function_cond))


def oracle(events: list[dict], text_query: str) -> list[int]:
    found: list[int] = []
    engine = eql.PythonEngine()
    # (its optimizer rewrites `(a == 0 or a == 0) or not a == 0` to `a == 0`: skip it)
    with eql.parser.ignore_missing_functions, eql.parser.skip_optimizations:
        engine.add_query(eql.parse_query(text_query))
    engine.add_output_hook(lambda result: found.extend(e.data["id"] for e in result.events))
    engine.stream_events([eql.Event.from_data(e) for e in events])
    return found


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("diff")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(event, min_size=1, max_size=12), query)
def test_event_queries_match_the_reference_engine(events, text_query):
    every_field = {"event_type": "file", "name": "bash", "n": 0, "user": "carol"}
    rows = [{**e, "id": i, "timestamp": 1_767_225_600_000_000_000 + i * 10**9}
            for i, e in enumerate([every_field, *events])]  # (no field is unknown)
    with tidal.open(None, category_field="event_type") as store:
        store.append(rows)
        got = store.eql(text_query, case_insensitive=True)
    assert got.events.column("id").to_pylist() == oracle(rows, text_query), text_query


seq_event = st.fixed_dictionaries({
    "event_type": st.just("process"),
    "user": st.sampled_from(["a", "b"]),
    "kind": st.sampled_from(["w", "h", "i", "x"]),
    "gap": st.integers(0, 4),
})
STAGE = {k: f'[process where kind == "{k}"]' for k in "whix"}
seq_query = st.builds(
    lambda by, span, stages, until: (
        f"sequence{' by user' if by else ''}{f' with maxspan={span}s' if span else ''} "
        + " ".join(STAGE[k] for k in stages)
        + (f" until {STAGE['x']}" if until else "")),
    st.booleans(), st.sampled_from([None, 2, 5]),
    st.lists(st.sampled_from("whi"), min_size=2, max_size=3), st.booleans())


@settings(max_examples=150, deadline=None)
@given(st.lists(seq_event, min_size=1, max_size=14), seq_query)
def test_sequences_match_the_reference_engine(events, text_query):
    rows, at = [], 0
    for i, e in enumerate(events):
        at += e["gap"]  # seconds; ties (gap 0) are broken by arrival, as _seq breaks them
        rows.append({"event_type": "process", "user": e["user"], "kind": e["kind"], "id": i,
                     "timestamp": 1_767_225_600_000_000_000 + at * 10**9})
    with tidal.open(None, category_field="event_type") as store:
        store.append(rows)
        got = store.eql(text_query, case_insensitive=True)
    mine = [c.events.column("id").to_pylist() for c in got.correlations]
    theirs: list[list[int]] = []
    engine = eql.PythonEngine({"time_unit": 10**9})  # our timestamps are ns
    with eql.parser.skip_optimizations:
        engine.add_query(eql.parse_query(text_query))
    engine.add_output_hook(lambda result: theirs.append([e.data["id"] for e in result.events]))
    engine.stream_events([eql.Event.from_data({**r, "timestamp": r["timestamp"]})
                          for r in rows])
    assert mine == theirs, text_query


correlation_pipe = st.sampled_from([
    "| head 2", "| tail 1", "| unique user", "| unique events[1].kind",
    "| sort events[1].id", "| filter events[1].id > 3", "| filter events[0].kind == \"w\"",
    "| unique user | tail 1"])


@settings(max_examples=100, deadline=None)
@given(st.lists(seq_event, min_size=1, max_size=14), seq_query, correlation_pipe)
def test_pipes_on_sequences_match_the_reference_engine(events, text_query, pipe):
    rows, at = [], 0
    for i, e in enumerate(events):
        at += e["gap"]
        rows.append({"event_type": "process", "user": e["user"], "kind": e["kind"], "id": i,
                     "timestamp": 1_767_225_600_000_000_000 + at * 10**9})
    text_query = f"{text_query} {pipe}"
    with tidal.open(None, category_field="event_type") as store:
        store.append(rows)
        got = store.eql(text_query, case_insensitive=True)
    mine = [c.events.column("id").to_pylist() for c in got.correlations]
    theirs: list[list[int]] = []
    engine = eql.PythonEngine({"time_unit": 10**9})
    with eql.parser.skip_optimizations:
        engine.add_query(eql.parse_query(text_query))
    engine.add_output_hook(lambda result: theirs.append([e.data["id"] for e in result.events]))
    engine.stream_events([eql.Event.from_data(r) for r in rows])
    assert mine == theirs, text_query
