"""Timestamps as RFC 3339 text in JSON answers: the kernel writes what Arrow's
``strftime`` writes, for every unit, time zone, null and slice, and years past 9999."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidal.server.encode import plain

SECONDS = (-62135596800, 253402300799)  # years 1 to 9999
SCALE = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def strftime(array: pa.Array) -> list[str | None]:
    """What Arrow writes: ``Z`` for a time zone (values in UTC), the unit's fraction."""
    if array.type.tz is None:
        return pc.strftime(array, format="%Y-%m-%dT%H:%M:%S").to_pylist()
    utc = array.cast(pa.timestamp(array.type.unit, tz="UTC"))
    return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(SCALE)), st.sampled_from([None, "UTC", "Asia/Kolkata"]),
       st.data())
def test_the_text_is_what_strftime_writes(unit, tz, data):
    low, high = SECONDS[0] * SCALE[unit], SECONDS[1] * SCALE[unit] + SCALE[unit] - 1
    if unit == "ns":
        low, high = -(2**63) + 1, 2**63 - 1
    values = data.draw(st.lists(st.one_of(st.none(), st.integers(low, high),
                                          st.integers(-10**10, 10**10)), max_size=40))
    start = data.draw(st.integers(0, len(values)))
    array = pa.array(values, pa.timestamp(unit, tz)).slice(start)
    table = plain(pa.table({"t": array, "nested": pa.StructArray.from_arrays(
        [array], names=["at"])}))
    assert table.column("t").to_pylist() == strftime(array)
    assert [row and row["at"] for row in table.column("nested").to_pylist()] == strftime(array)


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_years_past_9999_fall_back_to_strftime(unit):
    array = pa.array([0, (SECONDS[1] + 86400 * 400) * SCALE[unit]], pa.timestamp(unit, "UTC"))
    got = plain(pa.table({"t": array})).column("t").to_pylist()
    assert got == strftime(array)
    assert got[0] == "1970-01-01T00:00:00" + (".000" if unit == "ms" else "") + "Z"
