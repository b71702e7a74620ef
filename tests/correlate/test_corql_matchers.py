"""Label matchers → row masks: each operator on each kind of column, Prometheus's
absent-is-empty rule, anchored regexes, and row-group pruning that never drops a kept row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tidal.correlate.corql import Matcher, compile_matchers, prune
from tidal.errors import QueryError

M = Matcher
_STRINGS = ["500", "1500", None, "", "abc"]
# One column of each kind, five rows; row 2 is null (or under a null parent) everywhere.
TABLE = pa.table({
    "s": pa.array(_STRINGS),
    "ls": pa.array(_STRINGS, pa.large_string()),
    "i": pa.array([500, 1500, None, 0, -7]),
    "f": pa.array([500.0, 1.5, None, 0.0, -2.25]),
    "b": pa.array([True, False, None, True, False]),
    "d": pa.array(_STRINGS).dictionary_encode(),
    "di": pa.array([500, 1500, None, 0, 500]).dictionary_encode(),
    "k8s": pa.array([{"pod": "web-1", "ns": {"name": "prod"}},
                     {"pod": None, "ns": {"name": "dev"}},
                     None,
                     {"pod": "db", "ns": None},
                     {"pod": "web-2", "ns": {"name": "prod"}}]),
    "dotted.name": pa.array(["x", "y", None, "x", "y"]),
    "nothing": pa.nulls(5),
    "obj": pa.array([{"a": 1}] * 5),
    "arr": pa.array([[1], [2], None, [], [3]]),
})


def rows(*kept: int) -> list[bool]:
    return [i in kept for i in range(TABLE.num_rows)]


@pytest.mark.parametrize("matchers, expected", [
    # strings: equality, inequality, absent/null read as ""
    ([M("s", "=", "500")], rows(0)),
    ([M("s", "!=", "500")], rows(1, 2, 3, 4)),
    ([M("s", "=", "")], rows(2, 3)),
    ([M("s", "!=", "")], rows(0, 1, 4)),
    ([M("ls", "=", "abc")], rows(4)),
    ([M("ls", "!=", "abc")], rows(0, 1, 2, 3)),
    # regexes are anchored at both ends
    ([M("s", "=~", "5..")], rows(0)),
    ([M("s", "=~", "50")], rows()),
    ([M("s", "=~", ".*5.*")], rows(0, 1)),
    ([M("s", "!~", "5..")], rows(1, 2, 3, 4)),
    ([M("s", "=~", ".*")], rows(0, 1, 2, 3, 4)),
    ([M("s", "=~", ".+")], rows(0, 1, 4)),
    ([M("s", "!~", ".+")], rows(2, 3)),
    ([M("s", "=~", "500|abc")], rows(0, 4)),
    ([M("s", "=~", "(?i)ABC")], rows(4)),
    ([M("ls", "=~", "1.*")], rows(1)),
    # numbers and booleans by their string form
    ([M("i", "=", "500")], rows(0)),
    ([M("i", "=", "500.0")], rows()),
    ([M("i", "!=", "500")], rows(1, 2, 3, 4)),
    ([M("i", "=~", "5..")], rows(0)),
    ([M("i", "=~", "-?[0-9]")], rows(3, 4)),
    ([M("i", "=", "")], rows(2)),
    ([M("f", "=", "1.5")], rows(1)),
    ([M("f", "=", "500")], rows(0)),
    ([M("f", "=~", "-.*")], rows(4)),
    ([M("f", "!~", ".+")], rows(2)),
    ([M("b", "=", "true")], rows(0, 3)),
    ([M("b", "!=", "false")], rows(0, 2, 3)),
    ([M("b", "=~", "t.*|")], rows(0, 2, 3)),
    # dictionary-encoded columns, of strings and of numbers
    ([M("d", "=", "500")], rows(0)),
    ([M("d", "=", "")], rows(2, 3)),
    ([M("d", "!=", "abc")], rows(0, 1, 2, 3)),
    ([M("d", "=~", ".*5.*")], rows(0, 1)),
    ([M("d", "!~", ".+")], rows(2, 3)),
    ([M("di", "=", "500")], rows(0, 4)),
    ([M("di", "=~", "1.*")], rows(1)),
    # nested struct leaves; a null parent reads as an absent leaf
    ([M("k8s.pod", "=", "db")], rows(3)),
    ([M("k8s.pod", "=~", "web-.*")], rows(0, 4)),
    ([M("k8s.pod", "=", "")], rows(1, 2)),
    ([M("k8s.pod", "!~", "web-.*")], rows(1, 2, 3)),
    ([M("k8s.ns.name", "=", "prod")], rows(0, 4)),
    ([M("k8s.ns.name", "!=", "prod")], rows(1, 2, 3)),
    ([M("dotted.name", "=", "x")], rows(0, 3)),
    # absent fields and all-null columns read as ""
    ([M("missing", "=", "")], rows(0, 1, 2, 3, 4)),
    ([M("missing", "=", "v")], rows()),
    ([M("missing", "!=", "v")], rows(0, 1, 2, 3, 4)),
    ([M("missing", "=~", ".*")], rows(0, 1, 2, 3, 4)),
    ([M("missing", "=~", ".+")], rows()),
    ([M("missing", "!~", ".+")], rows(0, 1, 2, 3, 4)),
    ([M("k8s.nope", "=", "")], rows(0, 1, 2, 3, 4)),
    ([M("nothing", "=", "")], rows(0, 1, 2, 3, 4)),
    ([M("nothing", "=~", "x")], rows()),
    # a conjunction; none at all keeps everything
    ([], rows(0, 1, 2, 3, 4)),
    ([M("s", "=~", ".+"), M("i", "!=", "500")], rows(1, 4)),
    ([M("k8s.ns.name", "=", "prod"), M("b", "=", "false"), M("d", "=", "abc")], rows(4)),
    ([M("s", "=", "500"), M("s", "!=", "500")], rows()),
])
def test_mask(matchers, expected):
    mask = compile_matchers(matchers).mask(TABLE)
    assert mask.dtype == np.bool_ and mask.shape == (TABLE.num_rows,)
    assert mask.tolist() == expected


@pytest.mark.parametrize("matchers, expected", [
    ([M("s", "=", "500")], rows(0)),
    ([M("d", "=~", "5.*|abc")], rows(0, 4)),
    ([M("k8s.pod", "=", "")], rows(1, 2)),
    ([M("i", "!=", "0")], rows(0, 1, 2, 4)),
])
def test_mask_over_many_chunks_and_dictionaries(matchers, expected):
    pieces = [TABLE.slice(0, 2), TABLE.slice(2, 0), TABLE.slice(2, 3)]
    # each piece re-encoded, so the chunks of "d" carry different dictionaries
    pieces = [p.set_column(p.schema.get_field_index("d"), "d",
                           pc.dictionary_encode(pc.cast(p.column("s"), pa.string())))
              for p in pieces]
    table = pa.concat_tables(pieces)
    dictionaries = [c.dictionary.to_pylist() for c in table.column("d").chunks]
    assert dictionaries == [["500", "1500"], ["", "abc"]]  # the empty piece left no chunk
    assert compile_matchers(matchers).mask(table).tolist() == expected


@pytest.mark.parametrize("empty", [TABLE.slice(0, 0), pa.Table.from_batches([], TABLE.schema)])
def test_mask_of_an_empty_table(empty):
    for matchers in ([], [M("s", "=", "x")], [M("d", "=~", ".*")], [M("i", "!=", "1")],
                     [M("missing", "=", "")]):
        assert compile_matchers(matchers).mask(empty).tolist() == []


def test_other_scalar_types_compare_by_their_cast():
    table = pa.table({"t": pa.array([0, None], pa.timestamp("s", "UTC")),
                      "day": pa.array([0, 1], pa.date32()),
                      "n": pa.array([1, 2], pa.uint8())})
    mask = compile_matchers([M("t", "=~", "1970-01-01 00:00:00.*|"), M("day", "!=", "1970-01-02"),
                             M("n", "=", "1")]).mask(table)
    assert mask.tolist() == [True, False]


def test_columns_lists_each_path_once_in_order():
    pred = compile_matchers([M("b", "=", "1"), M("a.x", "=~", "2"), M("b", "!=", "3")])
    assert pred.columns == ("b", "a.x")
    assert compile_matchers([]).columns == ()


@pytest.mark.parametrize("path", ["obj", "arr", "k8s", "k8s.ns"])
def test_objects_and_arrays_are_refused(path):
    with pytest.raises(QueryError, match=f"field '{path}' holds objects/arrays; "
                                         "a label matcher compares scalar values"):
        compile_matchers([M(path, "=", "x")]).mask(TABLE)


@pytest.mark.parametrize("pattern, says", [("(", "invalid regex"), ("(?<=a)b", "RE2 syntax"),
                                           ("a)|(b", "invalid regex")])
def test_bad_regexes_are_refused_when_compiled(pattern, says):
    with pytest.raises(QueryError, match=says):
        compile_matchers([M("s", "=~", pattern, pos=3)])


@pytest.mark.parametrize("matchers, expected", [
    ([], None),
    ([M("s", "=", "500")], pc.field("s") == "500"),
    ([M("s", "=", "500"), M("ls", "=", "abc")],
     (pc.field("s") == "500") & (pc.field("ls") == "abc")),
    ([M("d", "=", "abc")], pc.field("d") == "abc"),
    ([M("k8s.pod", "=", "db")], pc.field("k8s", "pod") == "db"),
    ([M("k8s.ns.name", "=", "prod")], pc.field("k8s", "ns", "name") == "prod"),
    ([M("dotted.name", "=", "x")], pc.field("dotted.name") == "x"),
    # never: "" (it keeps nulls), other operators, non-string or absent fields
    ([M("s", "=", "")], None),
    ([M("s", "!=", "x"), M("s", "=~", "x"), M("s", "!~", "x")], None),
    ([M("i", "=", "500"), M("b", "=", "true"), M("di", "=", "500")], None),
    ([M("missing", "=", "x"), M("k8s", "=", "x")], None),
    ([M("i", "=", "500"), M("k8s.pod", "=", "db")], pc.field("k8s", "pod") == "db"),
])
def test_prune(matchers, expected):
    got = prune(matchers, TABLE.schema)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got.equals(expected)


def test_prune_through_a_struct_child_with_a_dot_in_its_name_is_left_to_the_mask():
    schema = pa.schema([("a", pa.struct([("b.c", pa.string())]))])
    assert prune([M("a.b.c", "=", "x")], schema) is None


@pytest.mark.parametrize("matchers", [
    [M("s", "=", "500")], [M("d", "=", "abc"), M("s", "=~", ".*")],
    [M("k8s.pod", "=", "db")], [M("k8s.ns.name", "=", "prod"), M("ls", "!=", "x")],
    [M("dotted.name", "=", "x"), M("s", "=", "")],
])
def test_prune_never_drops_a_row_the_mask_keeps(matchers):
    expr = prune(matchers, TABLE.schema)
    assert expr is not None
    table = TABLE.append_column("row", pa.array(range(TABLE.num_rows)))
    kept_by_filter = set(table.filter(expr).column("row").to_pylist())
    kept_by_mask = set(np.flatnonzero(compile_matchers(matchers).mask(TABLE)).tolist())
    assert kept_by_mask <= kept_by_filter
