"""Running a CorQL query: parse, check the sources, plan; over history or live."""

from __future__ import annotations

import time
from collections.abc import Callable

import pyarrow as pa

from tidal.correlate.corql.parser import check_sources, parse
from tidal.correlate.corql.planner import plan_corql
from tidal.correlate.execute import execute
from tidal.correlate.plan import Plan
from tidal.correlate.result import Result
from tidal.model.time import parse_instant
from tidal.store.readers import Snapshot

__all__ = ["live_planner", "plan_text", "run_corql"]


def plan_text(text: str, snapshot: Snapshot, *, start: int | None = None,
              end: int | None = None, live: bool = False) -> Plan:
    """The plan of CorQL ``text`` over ``snapshot``'s schema (``live``: fields that
    no event has yet are allowed)."""
    query = parse(text)
    check_sources(query)
    return plan_corql(query, snapshot.schema, ts_field=snapshot.ts_field, start=start, end=end,
                      check_fields=not live)


def run_corql(snapshot: Snapshot, text: str, *, start: object = None, end: object = None
              ) -> Result:
    """Every correlation of ``text`` over the snapshot; ``end`` (default: now) is
    where the selectors' ``[range]`` looks back from, and the watermark at which
    pending ``or``/``unless`` anchors are settled."""
    end_ns = parse_instant(end, name="end")
    return execute(snapshot, plan_text(text, snapshot, start=parse_instant(start, name="start"),
                                       end=time.time_ns() if end_ns is None else end_ns))


def live_planner(text: str, *, ts_field: str) -> Callable[[pa.Schema], Plan]:
    """CorQL ``text`` parsed and its sources checked; what plans it for a schema
    (its fields are not checked: live, they may come later)."""
    query = parse(text)
    check_sources(query)
    plan_corql(query, pa.schema([]), ts_field=ts_field, check_fields=False)  # (its errors now)

    def plan(schema: pa.Schema) -> Plan:
        return plan_corql(query, schema, ts_field=ts_field, check_fields=False)

    return plan
