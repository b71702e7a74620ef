"""Dotted field paths over Arrow tables."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tidal.errors import SchemaError
from tidal.model.paths import get_path, has_path, set_path, type_at

ROWS = [
    {"k8s": {"pod": {"name": "a", "uid": 1}, "ns": "x"}, "level": "info"},
    {"k8s": None, "level": "warn"},
    {"k8s": {"pod": None, "ns": "y"}, "level": None},
    {"k8s": {"pod": {"name": "d", "uid": 4}, "ns": None}, "level": "error"},
]


def chunked_table() -> pa.Table:
    """ROWS in two record batches, so columns have two chunks."""
    full = pa.Table.from_pylist(ROWS)
    return pa.concat_tables([full.slice(0, 1), full.slice(1)])


@pytest.fixture(params=["one chunk", "two chunks"])
def table(request: pytest.FixtureRequest) -> pa.Table:
    if request.param == "one chunk":
        return pa.Table.from_pylist(ROWS)
    t = chunked_table()
    assert t.column("k8s").num_chunks == 2
    return t


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("level", ["info", "warn", None, "error"]),
        ("k8s.ns", ["x", None, "y", None]),
        ("k8s.pod.name", ["a", None, None, "d"]),
        ("k8s.pod.uid", [1, None, None, 4]),
        ("k8s.pod", [{"name": "a", "uid": 1}, None, None, {"name": "d", "uid": 4}]),
    ],
)
def test_get_path(table: pa.Table, path: str, expected: list[object]) -> None:
    got = get_path(table, path)
    assert got is not None
    assert got.to_pylist() == expected


@pytest.mark.parametrize("path", ["nope", "k8s.nope", "level.x", "k8s.pod.name.x", "k8s.", ""])
def test_get_missing_path_is_none(table: pa.Table, path: str) -> None:
    assert get_path(table, path) is None
    assert not has_path(table.schema, path)
    assert type_at(table.schema, path) is None


def test_exact_top_level_name_wins() -> None:
    t = pa.table({"a.b": [1, 2], "a": [{"b": 10}, {"b": 20}]})
    assert get_path(t, "a.b").to_pylist() == [1, 2]  # type: ignore[union-attr]


def test_child_name_with_dots_is_found() -> None:
    t = pa.table({"a": [{"b.c": 1}, {"b.c": 2}]})
    assert get_path(t, "a.b.c").to_pylist() == [1, 2]  # type: ignore[union-attr]
    assert type_at(t.schema, "a.b.c") == pa.int64()


def test_get_is_zero_copy(table: pa.Table) -> None:
    top = get_path(table, "level")
    assert top is not None
    assert top.chunk(0).buffers()[2].address == table.column("level").chunk(0).buffers()[2].address
    nested = get_path(table, "k8s.ns")
    assert nested is not None
    child = table.column("k8s").chunk(0).field("ns")
    assert nested.chunk(0).buffers()[2].address == child.buffers()[2].address


def test_type_at_and_has_path(table: pa.Table) -> None:
    assert type_at(table.schema, "k8s.pod.uid") == pa.int64()
    assert type_at(table.schema, "k8s.pod") == pa.struct(
        [pa.field("name", pa.string()), pa.field("uid", pa.int64())]
    )
    assert has_path(table.schema, "k8s.pod.name")
    assert has_path(table.schema, "level")


def test_set_top_level_keeps_position(table: pa.Table) -> None:
    out = set_path(table, "k8s", pa.array([1, 2, 3, 4]))
    assert out.column_names == ["k8s", "level"]
    assert out.column("k8s").to_pylist() == [1, 2, 3, 4]


def test_set_new_top_level_appends(table: pa.Table) -> None:
    out = set_path(table, "host", pa.chunked_array([["h1", "h2"], ["h3", "h4"]]))
    assert out.column_names == ["k8s", "level", "host"]
    assert out.column("host").to_pylist() == ["h1", "h2", "h3", "h4"]


def test_set_nested_replaces_and_preserves_siblings_and_nulls(table: pa.Table) -> None:
    out = set_path(table, "k8s.pod.name", pa.array(["A", "B", "C", "D"]))
    assert out.column_names == ["k8s", "level"]
    assert out.column("k8s").to_pylist() == [
        {"pod": {"name": "A", "uid": 1}, "ns": "x"},
        None,  # null parent stays null
        {"pod": None, "ns": "y"},  # null pod stays null
        {"pod": {"name": "D", "uid": 4}, "ns": None},
    ]
    assert out.column("level").to_pylist() == table.column("level").to_pylist()


def test_set_nested_changes_type_and_keeps_field_order(table: pa.Table) -> None:
    out = set_path(table, "k8s.pod.uid", pa.array(["1", "2", "3", "4"]))
    pod = type_at(out.schema, "k8s.pod")
    assert pod is not None
    assert [pod.field(i).name for i in range(pod.num_fields)] == ["name", "uid"]
    assert type_at(out.schema, "k8s.pod.uid") == pa.string()
    assert get_path(out, "k8s.pod.uid").to_pylist() == ["1", None, None, "4"]  # type: ignore[union-attr]


def test_set_new_nested_field_extends_struct(table: pa.Table) -> None:
    out = set_path(table, "k8s.pod.ip", pa.array(["i1", "i2", "i3", "i4"]))
    assert type_at(out.schema, "k8s.pod.ip") == pa.string()
    assert get_path(out, "k8s.pod.ip").to_pylist() == ["i1", None, None, "i4"]  # type: ignore[union-attr]
    assert get_path(out, "k8s.pod.name").to_pylist() == ["a", None, None, "d"]  # type: ignore[union-attr]


def test_set_new_nested_struct_chain_under_existing(table: pa.Table) -> None:
    out = set_path(table, "k8s.node.zone.name", pa.array([1, 2, 3, 4]))
    assert get_path(out, "k8s.node.zone.name").to_pylist() == [1, None, 3, 4]  # type: ignore[union-attr]
    assert get_path(out, "k8s.ns").to_pylist() == ["x", None, "y", None]  # type: ignore[union-attr]


def test_set_new_nested_top_level_creates_structs(table: pa.Table) -> None:
    out = set_path(table, "host.os.name", pa.array(["l", None, "w", "m"]))
    assert out.column_names == ["k8s", "level", "host"]
    assert out.column("host").to_pylist() == [
        {"os": {"name": "l"}},
        {"os": {"name": None}},
        {"os": {"name": "w"}},
        {"os": {"name": "m"}},
    ]


def test_set_under_non_struct_raises(table: pa.Table) -> None:
    with pytest.raises(SchemaError) as info:
        set_path(table, "level.x", pa.array([1, 2, 3, 4]))
    assert info.value.field == "level.x"


def test_set_wrong_length_raises(table: pa.Table) -> None:
    with pytest.raises(ValueError, match="3 values for 4 rows"):
        set_path(table, "level", pa.array([1, 2, 3]))


def test_set_on_sliced_struct_chunks() -> None:
    t = pa.Table.from_pylist(ROWS).slice(1, 3)
    out = set_path(t, "k8s.ns", pa.array(["p", "q", "r"]))
    assert out.column("k8s").to_pylist() == [
        None,
        {"pod": None, "ns": "q"},
        {"pod": {"name": "d", "uid": 4}, "ns": "r"},
    ]


def test_set_on_empty_table() -> None:
    t = pa.Table.from_pylist(ROWS).slice(0, 0)
    out = set_path(t, "k8s.ns", pa.array([], pa.int32()))
    assert out.num_rows == 0
    assert type_at(out.schema, "k8s.ns") == pa.int32()
    assert type_at(out.schema, "k8s.pod.name") == pa.string()


def test_get_then_set_roundtrip_is_identity(table: pa.Table) -> None:
    values = get_path(table, "k8s.ns")
    assert values is not None
    out = set_path(table, "k8s.ns", values)
    assert out.to_pylist() == table.to_pylist()
