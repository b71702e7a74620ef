"""Queries drawn from the whole language over data with every kind of field: each one
answers or raises a QueryError that names the problem, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal

from .support import T0

FIELDS = ["user", "n", "tags", "obj", "obj.a", "?opt", "p", "timestamp", "user", "n"]
CONDITIONS = st.one_of(
    st.sampled_from(["true", "false", 'p == "w"', "n > 1", 'user : "a*"', 'tags == "x"',
                     "obj.a == 1", "nope == 1", "?opt == 1", "n in (1, 2)", 'p in~ ("W")',
                     'length(user) > 0', 'arraySearch(tags, t, t == "x")', "obj == null",
                     'startsWith(user, "a")', "n + 1 > 2", "tags : \"y*\"", "user == n"]),
    st.builds(lambda a, b: f"{a} and {b}", st.sampled_from(['p == "w"', "n > 0"]),
              st.sampled_from(["true", 'user != "b"'])))
PIPES = st.lists(st.sampled_from([
    "| head 2", "| tail 1", "| count", "| count user", "| unique user", "| unique_count n",
    "| sort n", "| filter n > 1", "| filter events[1].n > 0", "| sort events[0].user",
    "| unique tags", "| head 0", "| filter events[9].n > 0"]), max_size=2)


@st.composite
def stages(draw: st.DrawFn, low: int) -> str:
    """Bracketed stages, each with its own ``by`` field or none of them with one."""
    own_by = draw(st.booleans())
    out = []
    for _ in range(draw(st.integers(low, 3))):
        category = draw(st.sampled_from(["process", "any", "network"]))
        stage = f"[{category} where {draw(CONDITIONS)}]"
        out.append(f"{stage} by {draw(st.sampled_from(FIELDS))}" if own_by else stage)
    return " ".join(out)


BY = st.one_of(st.none(), st.sampled_from(FIELDS)).map(lambda f: f" by {f}" if f else "")
BODY = st.one_of(
    st.builds(lambda cat, cond: f"{cat} where {cond}", st.sampled_from(["process", "any"]),
              CONDITIONS),
    st.builds(lambda by, span, body, until: (
        f"sequence{by}{f' with maxspan={span}' if span else ''} {body}"
        + (' until [any where p == "h"]' if until else "")),
        BY, st.sampled_from([None, "2s", "1h"]), stages(2), st.booleans()),
    st.builds(lambda by, body: f"sample{by} {body}", BY, stages(2)),
    st.builds(lambda by, body: f"join{by} {body}", BY, stages(2)),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = tidal.open(tmp_path_factory.mktemp("fuzz") / "s", entity_field="user")
    rows = [{"timestamp": T0 + i * 10**9, "user": u, "n": i % 4, "p": "wh"[i % 2],
             "tags": [["x"], ["x", "y"], [], None][i % 4], "obj": {"a": i % 3},
             "event": {"category": ["process", "network"][i % 3 % 2]}}
            for i, u in enumerate(["a", "b", "a", "c", "b", "a", "a", "b"] * 3)]
    s.append(rows[:12])
    s.flush()
    s.append(rows[12:])
    yield s
    s.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODY, PIPES, st.booleans())
def test_every_query_answers_or_says_why(store, body, pipes, insensitive):
    query = " ".join([body, *pipes])
    try:
        result = store.eql(query, case_insensitive=insensitive, max_samples_per_key=2)
    except tidal.QueryError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert result.events.num_rows >= len(result.correlations)
