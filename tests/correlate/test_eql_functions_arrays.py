"""arraySearch and arrayCount (Endgame EQL): a condition over each element of an array
field, with a name bound to the element. Cases as a table, errors, and a differential
check against the ``eql`` package's PythonEngine."""

from __future__ import annotations

from dataclasses import dataclass

import eql
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate.eql.evaluate import Options, compile_condition
from tidal.correlate.eql.parser import parse

EVENTS = [
    {"id": 0, "timestamp": "2026-01-01T00:00:00Z", "event": {"category": "process"},
     "host": "x", "args": ["/c", "-ENC", "x"], "nums": [1, 5, 9],
     "files": [{"name": "x", "size": 1, "tags": ["a", "b"]},
               {"name": "Y.dll", "size": 5, "tags": []}],
     "seen": ["2025-06-01T00:00:00Z", "2026-06-01T00:00:00Z"]},
    {"id": 1, "timestamp": "2026-01-01T00:00:01Z", "event": {"category": "process"},
     "host": "h", "args": ["-k"], "nums": [], "files": []},
    {"id": 2, "timestamp": "2026-01-01T00:00:02Z", "event": {"category": "network"},
     "host": "h", "args": None, "nums": [2, None],
     "files": [{"name": "h", "size": 9, "tags": ["b"]}, {"name": None, "size": 2}]},
    {"id": 3, "timestamp": "2026-01-01T00:00:03Z", "event": {"category": "file"},
     "host": "y.dll", "files": [{"name": "y.dll", "size": 3, "tags": ["c", "b", "b"]}]},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = tidal.open(tmp_path_factory.mktemp("arrays") / "s")
    s.append(EVENTS[:2])
    s.flush()  # some events in a segment, the rest in the memtable
    s.append(EVENTS[2:])
    yield s
    s.close()


@dataclass
class Case:
    query: str
    ids: list[int]
    case_insensitive: bool = False


CASES = [
    # a list of text: the name stands for each element
    Case('any where arraySearch(args, a, a == "-k")', [1]),
    Case('any where arraySearch(args, a, a == "-enc")', []),
    Case('any where arraySearch(args, a, a == "-enc")', [0], case_insensitive=True),
    Case('any where arraySearch(args, a, a : "*-enc*")', [0]),  # ':' ignores case
    Case('any where arraySearch(args, a, a in ("/c", "-k"))', [0, 1]),
    Case('any where arraySearch(args, a, startsWith(a, "/"))', [0]),
    Case('any where arraySearch(args, a, length(a) > 2)', [0]),
    # null, empty and missing arrays: false and 0 (not null: `not` keeps them)
    Case("any where not arraySearch(args, a, true)", [2, 3]),
    Case("any where arrayCount(args, a, true) == 0", [2, 3]),
    Case("any where arrayCount(nums, n, true) == 0", [1, 3]),
    Case("any where arrayCount(files, f, true) == 0", [1]),
    # numbers, and a null element
    Case("any where arrayCount(nums, n, n > 1) == 2", [0]),
    Case("any where arraySearch(nums, n, n == null)", [2]),
    Case("any where arrayCount(nums, n, n != null) == 1", [2]),
    Case("any where arrayCount(nums, n, n % 2 == 1) + 1 == 4", [0]),
    # a list of structs: x.field reads the element's field
    Case('any where arraySearch(files, f, f.name == "x")', [0]),
    Case('any where arraySearch(files, f, f.name == "y.dll")', [3]),
    Case('any where arraySearch(files, f, f.name == "y.dll")', [0, 3], case_insensitive=True),
    Case('any where arraySearch(files, f, f.name : "*.DLL" and f.size < 5)', [3]),
    Case("any where arrayCount(files, f, f.size >= 2) == 2", [2]),
    Case("any where arraySearch(files, f, f.name == null)", [2]),
    # an array inside an element matches if any of its elements does; or nest
    Case('any where arraySearch(files, f, f.tags == "b")', [0, 2, 3]),
    Case('any where arraySearch(files, f, arrayCount(f.tags, t, t == "b") == 2)', [3]),
    Case('any where arrayCount(files, f, arraySearch(f.tags, t, t in ("a", "c"))) == 1',
         [0, 3]),
    # the condition reads the event's fields too; the name hides a field of its own name
    Case("any where arraySearch(files, f, f.name == host)", [0, 2, 3]),
    Case('any where arraySearch(args, host, host == "x")', [0]),
    Case('any where arraySearch(files, f, arraySearch(args, a, a == f.name))', [0]),
    Case('process where arraySearch(files, f, f.size > 4) and host == "x"', [0]),
    Case("any where ?missing == null and not arraySearch(?missing, m, m == 1)",
         [0, 1, 2, 3]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.query} ci={c.case_insensitive}")
def test_array_functions(store, case):
    got = store.eql(case.query, case_insensitive=case.case_insensitive).events
    assert got.column("id").to_pylist() == case.ids


def test_in_a_pipe_and_in_a_sequence(store):
    got = store.eql("any where true | filter arrayCount(files, f, f.size > 0) >= 1").events
    assert got.column("id").to_pylist() == [0, 2, 3]
    found = store.eql('sequence [any where arraySearch(args, a, a == "-k")] '
                      "[any where arraySearch(files, f, f.name == host)]").correlations
    assert [c.events.column("id").to_pylist() for c in found] == [[1, 2]]


def test_declared_types_of_the_array_apply_to_its_elements(store):
    query = "any where arraySearch(seen, s, s > 1767225600000000000)"  # 2026-01-01, in ns
    with pytest.raises(tidal.QueryError, match="cannot compare field 's'"):
        store.eql(query)  # text
    for types in ({"seen": "date"}, {"seen": "date", "s": "version"}):  # (s: the element)
        got = store.eql(query, field_types=types).events
        assert got.column("id").to_pylist() == [0]


@pytest.mark.parametrize("query, says", [
    ("any where arraySearch(args, a)", "arraysearch() takes 3 arguments, got 2"),
    ("any where arrayCount(args, a, a == 1, 2) == 0", "arraycount() takes 3 arguments, got 4"),
    ('any where arraySearch("x", a, a == "x")', "argument 1 of arraysearch() must be a field"),
    ('any where arraySearch(string(args), a, a == "x")', "must be a field that holds an array"),
    ('any where arraySearch(host, a, a == "x")', "'host' holds string"),
    ('any where arraySearch(args, "a", a == "x")', "argument 2 of arraysearch() must be a name"),
    ('any where arraySearch(args, a.b, a == "x")', "must be a name for the element"),
    ('any where arraySearch(args, a, a)', "argument 3 of arraysearch() must be a condition"),
    ('any where arraySearch(args, a, b == "x")', "unknown field 'b'"),
    ('any where arraySearch(files, f, f.nope == 1)', "unknown field 'f.nope'"),
    ('any where arraySearch(files, f, f.size == "x")', "cannot compare field 'f.size'"),
    ('any where arraySearch~(args, a, a == "x")', "no case-insensitive '~' form"),
    ("any where arrayCount(args, a, true)", "a condition must be true or false"),
    ("any where arrayNope(args, a, true)", "unknown function 'arraynope'"),
])
def test_mistakes_say_what_and_where(store, query, says):
    with pytest.raises(tidal.QueryError) as info:
        store.eql(query)
    assert says in str(info.value)
    assert info.value.line == 1 and info.value.column is not None


def test_a_batch_with_null_lists_over_stale_values():
    # A null list's slot may still span values in the child array; they are not elements.
    args = pa.ListArray.from_arrays(pa.array([0, 2, 4, 5], pa.int32()),
                                    pa.array(["a", "b", "x", "x", "c"]),
                                    mask=pa.array([False, True, False]))
    batch = pa.table({"args": args, "host": ["x", "x", "c"]})
    for text, want in [('arraySearch(args, a, a == "x")', [False, False, False]),
                       ('arrayCount(args, a, a != host) == 1', [False, False, False]),
                       ('arraySearch(args, a, a == host)', [False, False, True]),
                       ('args == "x"', [False, False, False])]:
        condition = compile_condition(parse(f"any where {text}").body.condition,
                                      batch.schema, Options(), text)
        assert condition.mask(batch).tolist() == want, text


# -- differential: the eql package's PythonEngine -----------------------------------------
# Its comparisons of null are true or false where Elastic's are null, so elements are
# never null here; arrays may be missing, null or empty.
WORDS = ["a", "B", "cmd.exe", "-enc", "x"]
element = st.fixed_dictionaries({"name": st.sampled_from(WORDS), "size": st.integers(0, 3)})
event = st.fixed_dictionaries(
    {"event_type": st.just("process"), "host": st.sampled_from(WORDS)},
    optional={"args": st.one_of(st.none(), st.lists(st.sampled_from(WORDS), max_size=4)),
              "files": st.one_of(st.none(), st.lists(element, max_size=3))},
)


def text(value: str) -> str:
    return f'"{value}"'


args_test = st.one_of(
    st.builds(lambda op, w: f"a {op} {text(w)}", st.sampled_from(["==", "!="]),
              st.sampled_from(WORDS)),
    st.builds(lambda ws: f"a in ({', '.join(map(text, ws))})",
              st.lists(st.sampled_from(WORDS), min_size=1, max_size=2)),
    st.builds(lambda w: f"startsWith(a, {text(w[:1])})", st.sampled_from(WORDS)),
    st.just("a == host"),
)
files_test = st.one_of(
    st.builds(lambda op, k: f"f.size {op} {k}", st.sampled_from(["==", "<", ">="]),
              st.integers(0, 3)),
    st.builds(lambda w: f"f.name == {text(w)}", st.sampled_from(WORDS)),
    st.just("f.name == host"),
    st.builds(lambda t: f"arraySearch(args, a, {t} and a == f.name)", args_test),
)


def combine(tests: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(tests, st.builds(lambda a, b: f"({a} and {b})", tests, tests),
                     st.builds(lambda a, b: f"({a} or not {b})", tests, tests))


call = st.one_of(
    st.builds(lambda t: f"arraySearch(args, a, {t})", combine(args_test)),
    st.builds(lambda t: f"arraySearch(files, f, {t})", combine(files_test)),
    st.builds(lambda t, k: f"arrayCount(args, a, {t}) == {k}", combine(args_test),
              st.integers(0, 2)),
    st.builds(lambda t, k: f"arrayCount(files, f, {t}) >= {k}", combine(files_test),
              st.integers(0, 2)),
)
query = st.builds(lambda neg, c: f"any where {'not ' if neg else ''}{c}", st.booleans(), call)


def oracle(events: list[dict], text_query: str) -> list[int]:
    found: list[int] = []
    engine = eql.PythonEngine()
    with eql.parser.ignore_missing_functions, eql.parser.skip_optimizations:
        engine.add_query(eql.parse_query(text_query))
    engine.add_output_hook(lambda result: found.extend(e.data["id"] for e in result.events))
    engine.stream_events([eql.Event.from_data(e) for e in events])
    return found


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(event, min_size=1, max_size=8), query)
def test_array_functions_match_the_reference_engine(events, text_query):
    every_field = {"event_type": "process", "host": "x", "args": ["x"],
                   "files": [{"name": "x", "size": 1}]}
    rows = [{**e, "id": i, "timestamp": 1_767_225_600_000_000_000 + i * 10**9}
            for i, e in enumerate([every_field, *events])]  # (no field is unknown)
    with tidal.open(None, category_field="event_type") as store:
        store.append(rows)
        got = store.eql(text_query, case_insensitive=True)
    assert got.events.column("id").to_pylist() == oracle(rows, text_query), text_query
