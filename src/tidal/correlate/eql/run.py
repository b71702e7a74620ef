"""Running an EQL query over a store snapshot: parse, plan, execute.

The text is parsed (:mod:`~tidal.correlate.eql.parser`), checked against the
snapshot's schema and compiled to the logical plan
(:mod:`~tidal.correlate.eql.planner`), which the language-independent
executor (:mod:`tidal.correlate.execute`) runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyarrow as pa

from tidal.correlate.eql.ast import EventQuery, Join, Sample, restricted
from tidal.correlate.eql.evaluate import Options
from tidal.correlate.eql.parser import parse
from tidal.correlate.eql.planner import plan_query
from tidal.correlate.execute import execute
from tidal.correlate.plan import Plan
from tidal.correlate.result import Result
from tidal.correlate.syntax import syntax_error
from tidal.errors import ConfigError
from tidal.model.time import parse_instant
from tidal.store.readers import Snapshot

__all__ = ["live_planner", "run_eql"]

FIELD_TYPES = ("date", "version")


def run_eql(snapshot: Snapshot, text: str, *, start: object = None, end: object = None,
            size: int | None = None, case_insensitive: bool = False,
            category_field: str = "event.category",
            field_types: Mapping[str, str] | None = None,
            max_samples_per_key: int = 1, where: str | None = None) -> Result:
    """Parse ``text``, check it against the snapshot's schema and run it (over the
    events the EQL condition ``where`` holds for, if given)."""
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ConfigError("size must be a whole number >= 0 or None", field="size")
    if not isinstance(max_samples_per_key, int) or max_samples_per_key < 1:
        raise ConfigError("max_samples_per_key must be a whole number >= 1",
                          field="max_samples_per_key")
    for name, kind in (field_types or {}).items():
        if kind not in FIELD_TYPES:
            raise ConfigError(f"field_types[{name!r}] must be one of {FIELD_TYPES}, not "
                              f"{kind!r}", field="field_types")
    query = parse(text)
    if where is not None:
        condition = parse(f"any where {where}").body
        assert isinstance(condition, EventQuery)
        query = restricted(query, condition.condition)
    options = Options(case_insensitive, category_field, dict(field_types or {}))
    plan = plan_query(query, snapshot.schema, options, ts_field=snapshot.ts_field,
                      start=parse_instant(start, name="start"),
                      end=parse_instant(end, name="end"), size=size,
                      max_samples_per_key=max_samples_per_key)
    return execute(snapshot, plan)


def live_planner(text: str, *, ts_field: str, category_field: str = "event.category"
                 ) -> Callable[[pa.Schema], Plan]:
    """EQL ``text`` parsed and checked for running live (no pipes, no ``join`` or
    ``sample``: they need the whole history); what plans it for a schema."""
    query = parse(text)
    if query.pipes:
        raise syntax_error(text, query.pipes[0].pos, "a live query cannot have pipes: they "
                           "need the whole result (run it over history with eql())")
    if isinstance(query.body, Join | Sample):
        raise syntax_error(text, query.body.pos, "live queries run event queries and "
                           "sequences; join and sample run over history only")
    options = Options(False, category_field, {})

    def plan(schema: pa.Schema) -> Plan:
        return plan_query(query, schema, options, ts_field=ts_field, start=None, end=None,
                          size=None, max_samples_per_key=1)

    return plan
