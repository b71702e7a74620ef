"""Schema evolution: widening, unify, conform and concat never lose a value."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tidal.model
from tidal.errors import SchemaError
from tidal.model.schema import concat_tables, conform, unify, widen

I64, F64, STR, LSTR = pa.int64(), pa.float64(), pa.string(), pa.large_string()
DICT = pa.dictionary(pa.int32(), pa.string())


def struct(**fields: pa.DataType) -> pa.DataType:
    return pa.struct([pa.field(k, v) for k, v in fields.items()])


WIDEN_CASES: list[tuple[pa.DataType, pa.DataType, pa.DataType]] = [
    (pa.null(), I64, I64),
    (STR, pa.null(), STR),
    (pa.null(), pa.null(), pa.null()),
    (I64, I64, I64),
    (pa.uint64(), pa.uint64(), pa.uint64()),
    (pa.int8(), pa.int16(), I64),
    (pa.int32(), pa.uint32(), I64),
    (pa.uint8(), pa.uint16(), I64),
    (pa.uint64(), pa.int64(), I64),
    (pa.int8(), pa.int8(), pa.int8()),
    (pa.bool_(), I64, I64),
    (pa.bool_(), pa.uint8(), I64),
    (pa.bool_(), pa.bool_(), pa.bool_()),
    (I64, F64, F64),
    (pa.int8(), pa.float32(), F64),
    (pa.bool_(), F64, F64),
    (pa.float32(), F64, F64),
    (pa.float16(), pa.float32(), F64),
    (pa.float32(), pa.float32(), pa.float32()),
    (STR, LSTR, LSTR),
    (STR, DICT, STR),
    (LSTR, DICT, LSTR),
    (DICT, DICT, DICT),
    (DICT, pa.dictionary(pa.int8(), pa.string()), STR),
    (pa.string_view(), STR, STR),
    (I64, STR, STR),
    (F64, STR, STR),
    (pa.bool_(), STR, STR),
    (I64, LSTR, LSTR),
    (struct(a=I64), I64, STR),
    (struct(a=I64), STR, STR),
    (pa.list_(I64), struct(a=I64), STR),
    (pa.list_(I64), I64, STR),
    (pa.timestamp("ns", "UTC"), I64, STR),
    (pa.date32(), pa.timestamp("ns"), STR),
    (pa.binary(), STR, STR),
    (pa.list_(I64), pa.list_(F64), pa.list_(F64)),
    (pa.list_(I64), pa.list_(STR), pa.list_(STR)),
    (pa.list_(I64), pa.large_list(I64), pa.large_list(I64)),
    (pa.list_(pa.null()), pa.list_(STR), pa.list_(STR)),
    (pa.list_(struct(a=I64)), pa.list_(struct(b=STR)), pa.list_(struct(a=I64, b=STR))),
    (struct(a=I64), struct(b=STR), struct(a=I64, b=STR)),
    (struct(a=I64, b=STR), struct(b=STR, a=F64), struct(a=F64, b=STR)),
    (struct(a=struct(x=I64)), struct(a=struct(x=F64, y=STR)), struct(a=struct(x=F64, y=STR))),
    (struct(a=struct(x=I64)), struct(a=I64), struct(a=STR)),
    (struct(a=pa.null()), struct(a=pa.list_(I64)), struct(a=pa.list_(I64))),
]


@pytest.mark.parametrize(("a", "b", "expected"), WIDEN_CASES, ids=lambda t: str(t))
def test_widen(a: pa.DataType, b: pa.DataType, expected: pa.DataType) -> None:
    assert widen(a, b) == expected
    # symmetric, except that struct fields come in order of first appearance
    assert sorted_fields(widen(b, a)) == sorted_fields(expected)


def sorted_fields(t: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(t):
        fields = sorted((t.field(i) for i in range(t.num_fields)), key=lambda f: f.name)
        return pa.struct([pa.field(f.name, sorted_fields(f.type)) for f in fields])
    if pa.types.is_list(t):
        return pa.list_(sorted_fields(t.value_type))
    return t


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (pa.timestamp("s"), pa.timestamp("ms"), pa.timestamp("ns")),
        (pa.timestamp("us", "UTC"), pa.timestamp("ns", "UTC"), pa.timestamp("ns", "UTC")),
        (
            pa.timestamp("s", "Asia/Tokyo"),
            pa.timestamp("ns", "UTC"),
            pa.timestamp("ns", "Asia/Tokyo"),
        ),
        (pa.timestamp("ns", "UTC"), pa.timestamp("s", "Asia/Tokyo"), pa.timestamp("ns", "UTC")),
        (pa.timestamp("ms"), pa.timestamp("ms", "Europe/Paris"), pa.timestamp("ns", "UTC")),
        (
            pa.timestamp("ms", "Europe/Paris"),
            pa.timestamp("ms"),
            pa.timestamp("ns", "Europe/Paris"),
        ),
    ],
)
def test_widen_timestamps(a: pa.DataType, b: pa.DataType, expected: pa.DataType) -> None:
    assert widen(a, b) == expected


def test_unify_orders_widens_and_drops_metadata() -> None:
    s1 = pa.schema(
        [
            pa.field("a", pa.int8(), nullable=False, metadata={"k": "v"}),
            pa.field("s", struct(x=I64)),
        ]
    )
    s2 = pa.schema([pa.field("b", STR), pa.field("a", F64), pa.field("s", struct(y=STR, x=F64))])
    s3 = pa.schema([pa.field("c", pa.struct([pa.field("z", I64, nullable=False)]))])
    got = unify([s1, s2, s3])
    assert got.names == ["a", "s", "b", "c"]
    assert got.field("a").type == F64
    assert got.field("s").type == struct(x=F64, y=STR)
    assert all(f.nullable and not f.metadata for f in got)
    assert got.field("c").type == struct(z=I64)  # nested fields nullable too
    assert got.field("c").type.field(0).nullable


def test_unify_empty_and_single() -> None:
    assert unify([]) == pa.schema([])
    assert unify([pa.schema([("a", I64)])]) == pa.schema([("a", I64)])


# --------------------------------------------------------------------------- conform


def test_conform_fast_path_returns_same_table() -> None:
    t = pa.table({"a": [1, 2]})
    assert conform(t, t.schema) is t


@pytest.mark.parametrize(
    ("values", "src", "target", "expected"),
    [
        ([1, None, 3], I64, F64, [1.0, None, 3.0]),
        ([2**53 + 1], I64, F64, [float(2**53 + 1)]),
        ([True, False], pa.bool_(), I64, [1, 0]),
        ([True, None], pa.bool_(), F64, [1.0, None]),
        ([1, -2], pa.int8(), I64, [1, -2]),
        ([7], pa.uint64(), I64, [7]),
        ([1, 2], I64, STR, ["1", "2"]),
        ([1.5, None], F64, STR, ["1.5", None]),
        ([True, False], pa.bool_(), STR, ["true", "false"]),
        (["a", None, "a"], DICT, STR, ["a", None, "a"]),
        (["a", "b"], STR, LSTR, ["a", "b"]),
        (
            [{"x": 1, "y": [1, 2]}, None],
            struct(x=I64, y=pa.list_(I64)),
            STR,
            ['{"x":1,"y":[1,2]}', None],
        ),
        ([[1, 2], [], None], pa.list_(I64), STR, ["[1,2]", "[]", None]),
        ([[1, None], None], pa.list_(I64), pa.list_(F64), [[1.0, None], None]),
        ([[1], [2, 3]], pa.list_(I64), pa.large_list(STR), [["1"], ["2", "3"]]),
        ([None, None], pa.null(), struct(a=I64), [None, None]),
        ([None], pa.null(), STR, [None]),
        ([b"ab", None], pa.binary(), STR, ["ab", None]),
        ([b"\xff"], pa.binary(), STR, ["/w=="]),
        ([dt.date(2020, 1, 2)], pa.date32(), STR, ["2020-01-02"]),
        (
            [{"t": 1}],
            struct(t=pa.timestamp("ns", "UTC")),
            STR,
            ['{"t":"1970-01-01 00:00:00.000000001Z"}'],
        ),
    ],
)
def test_conform_converts(
    values: list[Any], src: pa.DataType, target: pa.DataType, expected: list[Any]
) -> None:
    t = pa.table({"c": pa.array(values, src)})
    out = conform(t, pa.schema([("c", target)]))
    assert out.schema == pa.schema([("c", target)])
    assert out.column("c").to_pylist() == expected


def test_conform_timestamps() -> None:
    t = pa.table({"t": pa.array([1, None], pa.timestamp("s"))})
    out = conform(t, pa.schema([("t", pa.timestamp("ns", "UTC"))]))
    assert out.column("t").cast(I64).to_pylist() == [1_000_000_000, None]


def test_conform_reorders_and_adds_missing_columns() -> None:
    t = pa.table({"b": ["x", "y"], "a": [1, 2]})
    schema = pa.schema([("a", F64), ("z", struct(q=I64)), ("b", STR)])
    out = conform(t, schema)
    assert out.column_names == ["a", "z", "b"]
    assert out.to_pylist() == [{"a": 1.0, "z": None, "b": "x"}, {"a": 2.0, "z": None, "b": "y"}]


def test_conform_nested_struct_with_widened_child() -> None:
    rows = [{"k": {"n": 1, "in": {"v": 2}}}, {"k": None}, {"k": {"n": None, "in": None}}]
    t = pa.Table.from_pylist(rows)
    target = struct(n=F64, extra=STR, **{"in": struct(v=STR, w=I64)})
    out = conform(t, pa.schema([("k", target)]))
    assert out.column("k").type == target
    assert out.column("k").to_pylist() == [
        {"n": 1.0, "extra": None, "in": {"v": "2", "w": None}},
        None,
        {"n": None, "extra": None, "in": None},
    ]


def test_conform_struct_child_to_json_text() -> None:
    t = pa.Table.from_pylist([{"k": {"a": {"x": 1}}}, {"k": {"a": None}}])
    out = conform(t, pa.schema([("k", struct(a=STR))]))
    assert out.column("k").to_pylist() == [{"a": '{"x":1}'}, {"a": None}]


def test_conform_sliced_and_chunked_inputs() -> None:
    full = pa.Table.from_pylist(
        [{"l": [1, 2], "s": {"a": 1}}, {"l": None, "s": None}, {"l": [3], "s": {"a": 3}}]
    )
    t = pa.concat_tables([full.slice(0, 1), full.slice(1)])
    schema = pa.schema([("l", pa.list_(F64)), ("s", struct(a=STR))])
    out = conform(t, schema)
    assert out.column("l").to_pylist() == [[1.0, 2.0], None, [3.0]]
    assert out.column("s").to_pylist() == [{"a": "1"}, None, {"a": "3"}]
    out = conform(full.slice(1), schema)
    assert out.column("l").to_pylist() == [None, [3.0]]


@pytest.mark.parametrize(
    ("values", "src", "target", "field"),
    [
        ([2**64 - 1], pa.uint64(), I64, "c"),
        ([1.5], F64, I64, "c"),
        (["x"], STR, I64, "c"),
        ([1], I64, struct(a=I64), "c"),
        ([{"a": "x"}], struct(a=STR), struct(a=I64), "c.a"),
        ([{"gone": 1}], struct(gone=I64), struct(a=I64), "c.gone"),
    ],
)
def test_conform_refuses_lossy_conversions(
    values: list[Any], src: pa.DataType, target: pa.DataType, field: str
) -> None:
    t = pa.table({"c": pa.array(values, src)})
    with pytest.raises(SchemaError) as info:
        conform(t, pa.schema([("c", target)]))
    assert info.value.field == field


def test_conform_refuses_to_drop_a_column_with_values() -> None:
    t = pa.table({"a": [1], "extra": ["v"]})
    with pytest.raises(SchemaError) as info:
        conform(t, pa.schema([("a", I64)]))
    assert info.value.field == "extra"
    empty_extra = pa.table({"a": [1], "extra": pa.array([None], STR)})
    assert conform(empty_extra, pa.schema([("a", I64)])).column_names == ["a"]


# --------------------------------------------------------------------------- concat


def test_concat_zero_tables() -> None:
    out = concat_tables([])
    assert out.num_rows == 0 and out.schema == pa.schema([])


def test_concat_same_schema_fast_path() -> None:
    a, b = pa.table({"x": [1]}), pa.table({"x": [2]})
    out = concat_tables([a, b])
    assert out.column("x").to_pylist() == [1, 2]
    assert out.column("x").num_chunks == 2  # not rebuilt


def test_concat_int_vs_string_and_missing_columns() -> None:
    a = pa.table({"x": [1, 2], "y": [0.5, None]})
    b = pa.table({"x": ["three"], "z": [{"k": [1]}]})
    c = pa.table({"x": pa.array([None], pa.null()), "y": [4]})
    out = concat_tables([a, b, c])
    assert out.schema == pa.schema([("x", STR), ("y", F64), ("z", struct(k=pa.list_(I64)))])
    assert out.to_pylist() == [
        {"x": "1", "y": 0.5, "z": None},
        {"x": "2", "y": None, "z": None},
        {"x": "three", "y": None, "z": {"k": [1]}},
        {"x": None, "y": 4.0, "z": None},
    ]


def test_concat_big_uint64_becomes_float() -> None:
    a = pa.table({"n": pa.array([1, -1], I64)})
    small = pa.table({"n": pa.array([7], pa.uint64())})
    big = pa.table({"n": pa.array([2**64 - 1], pa.uint64())})
    out = concat_tables([a, small])
    assert out.schema.field("n").type == I64
    assert out.column("n").to_pylist() == [1, -1, 7]
    out = concat_tables([a, small, big])
    assert out.schema.field("n").type == F64
    assert out.column("n").to_pylist() == [1.0, -1.0, 7.0, float(2**64 - 1)]


def test_concat_with_empty_tables() -> None:
    a = pa.table({"x": pa.array([], I64)})
    b = pa.table({"x": [1.5]})
    out = concat_tables([a, b, pa.table({})])
    assert out.schema == pa.schema([("x", F64)])
    assert out.column("x").to_pylist() == [1.5]


def test_concat_dictionary_strings() -> None:
    a = pa.table({"s": pa.array(["a", "b"]).dictionary_encode()})
    b = pa.table({"s": pa.array(["c"], LSTR)})
    out = concat_tables([a, b])
    assert out.schema.field("s").type == LSTR
    assert out.column("s").to_pylist() == ["a", "b", "c"]


def test_public_exports() -> None:
    assert sorted(tidal.model.__all__) == sorted(
        [
            "TIMESTAMP_TYPE",
            "concat_tables",
            "conform",
            "get_path",
            "has_path",
            "now_ns",
            "parse_instant",
            "restored",
            "set_path",
            "storable",
            "to_ns",
            "to_timestamp_array",
            "type_at",
            "unify",
            "widen",
        ]
    )
    for name in tidal.model.__all__:
        assert getattr(tidal.model, name) is not None


# --------------------------------------------------------------------------- property

SCALARS = {
    "int": (st.integers(-(2**62), 2**62), I64),
    "float": (st.floats(allow_nan=False, allow_infinity=False, width=64), F64),
    "str": (st.text(max_size=5), STR),
    "bool": (st.booleans(), pa.bool_()),
    "obj": (st.fixed_dictionaries({"a": st.integers(-100, 100)}), struct(a=I64)),
    "list": (st.lists(st.integers(-100, 100), max_size=3), pa.list_(I64)),
}


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3))
    n = draw(st.integers(0, 4))
    columns = {}
    for name in names:
        values, arrow_type = SCALARS[draw(st.sampled_from(sorted(SCALARS)))]
        column = draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))
        columns[name] = pa.array(column, arrow_type)
    return pa.table(columns) if columns else pa.table({"a": pa.nulls(n)})


def same(original: Any, stored: Any) -> bool:
    """Is ``stored`` (after widening) the same value as ``original``?"""
    if original is None or stored is None:
        return original is stored
    if isinstance(stored, str) and not isinstance(original, str):
        if isinstance(original, bool):
            return stored == ("true" if original else "false")
        if isinstance(original, float):
            return math.isclose(float(stored), original, rel_tol=1e-15)
        return bool(json.loads(stored) == original)
    if isinstance(stored, float) and not isinstance(original, float):
        return stored == float(original)
    if isinstance(stored, dict):
        return all(same(original.get(k), v) for k, v in stored.items())
    if isinstance(stored, list):
        return len(stored) == len(original) and all(
            same(o, s) for o, s in zip(original, stored, strict=True)
        )
    return bool(stored == original)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tables(), min_size=1, max_size=4))
def test_concat_keeps_every_value(inputs: list[pa.Table]) -> None:
    out = concat_tables(inputs)
    assert out.num_rows == sum(t.num_rows for t in inputs)
    assert out.schema == unify([t.schema for t in inputs])
    rows = out.to_pylist()
    offset = 0
    for t in inputs:
        for i, row in enumerate(t.to_pylist()):
            stored = rows[offset + i]
            for name, value in row.items():
                assert same(value, stored[name]), (name, value, stored[name])
            for name in set(stored) - set(row):
                assert stored[name] is None
        offset += t.num_rows


def test_an_empty_object_widened_to_text_keeps_its_row():
    """(A struct with no fields rebuilt from its children had no rows.)"""
    a = pa.table({"a": pa.array([[]], pa.list_(pa.int64()))})
    b = pa.table({"a": pa.array([{}], pa.struct([]))})
    assert concat_tables([a, b]).column("a").to_pylist() == ["[]", "{}"]
