"""The part of Elasticsearch's Query DSL an EQL search's ``filter`` may use, as an EQL
condition and time bounds (for ``Store.eql(where=, start=, end=)``).

Supported: ``match_all``, ``term`` (``{"f": v}`` or ``{"f": {"value": v}}``),
``terms``, ``exists``, ``range`` (``gt gte lt lte``; on the timestamp field it
becomes the time bounds, dates as RFC 3339 text or epoch milliseconds, as
Elasticsearch reads a number for a date), and ``bool`` of those (``must`` and
``filter`` and-ed, ``must_not`` negated, ``should``: at least
``minimum_should_match`` of them, by default one when there is no ``must`` or
``filter``, else none). A list of queries is and-ed. Anything else is a
:class:`DslError` naming the clause, which the route answers as Elasticsearch
does (``parsing_exception``, 400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tidal.errors import TidalError
from tidal.model.time import parse_instant

__all__ = ["DslError", "Filter", "translate"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NS_PER_MS = 1_000_000


class DslError(ValueError):
    """A filter Tidal cannot read (the message names the clause)."""


@dataclass(frozen=True)
class Filter:
    """A filter as EQL: ``condition`` (None: every event) and ``[start_ns, end_ns)``."""

    condition: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None


def translate(query: Any, timestamp_field: str, *aliases: str) -> Filter:
    """The EQL condition and time bounds of the Query DSL ``query`` (a ``range`` on
    ``timestamp_field``, or on one of its ``aliases``, bounds the time).

    >>> translate({"bool": {"filter": [{"term": {"host.name": "a"}},
    ...     {"range": {"@timestamp": {"gte": 0, "lt": 1000}}}]}}, "@timestamp")
    Filter(condition='host.name == "a"', start_ns=0, end_ns=1000000000)
    """
    bounds: dict[str, int] = {}
    condition = _clause(query, (timestamp_field, *aliases), bounds, top=True)
    return Filter(condition, bounds.get("start"), bounds.get("end"))


def _clause(query: Any, ts_field: tuple[str, ...], bounds: dict[str, int], *, top: bool
            ) -> str | None:
    if isinstance(query, list):
        return _all([_clause(q, ts_field, bounds, top=top) for q in query], "and")
    if not isinstance(query, dict) or len(query) != 1:
        raise DslError(f"a query must be an object with one clause, not {_shown(query)}")
    (kind, body), = query.items()
    if kind == "match_all":
        return None
    if kind == "bool":
        return _bool(body, ts_field, bounds, top=top)
    if kind in ("term", "terms", "range", "exists"):
        field, spec = _one_field(kind, body)
        if kind == "exists":
            return f"{_field(spec)} != null"
        if kind == "term":
            if isinstance(spec, dict) and set(spec) - {"value", "boost"}:
                raise DslError(f"[term] on [{field}] takes a string, number, boolean or null, "
                               f'or {{"value": ...}}')
            value = spec.get("value") if isinstance(spec, dict) else spec
            return f"{_field(field)} == {_literal(value, kind)}"
        if kind == "terms":
            if not isinstance(spec, list) or not spec:
                raise DslError(f"[terms] on [{field}] needs a non-empty list of values")
            return f"{_field(field)} in ({', '.join(_literal(v, kind) for v in spec)})"
        return _range(field, spec, ts_field, bounds, top=top)
    raise DslError(f"unknown query [{kind}]: a filter may use match_all, term, terms, "
                   "exists, range and bool")


def _bool(body: Any, ts_field: tuple[str, ...], bounds: dict[str, int], *, top: bool
          ) -> str | None:
    if not isinstance(body, dict):
        raise DslError("[bool] must be an object")
    unknown = set(body) - {"must", "filter", "must_not", "should", "minimum_should_match"}
    if unknown:
        raise DslError(f"[bool] does not support [{sorted(unknown)[0]}]")

    def items(name: str) -> list[Any]:
        value = body.get(name, [])
        return value if isinstance(value, list) else [value]

    required = [_clause(q, ts_field, bounds, top=top) for q in items("must") + items("filter")]
    negated = [_clause(q, ts_field, {}, top=False) for q in items("must_not")]
    should = [_clause(q, ts_field, {}, top=False) for q in items("should")]
    minimum = body.get("minimum_should_match", 0 if required or negated else 1)
    if not isinstance(minimum, int) or isinstance(minimum, bool):
        raise DslError("[bool] minimum_should_match must be a whole number here")
    parts = list(required)
    parts += [f"not ({c})" if c else "false" for c in negated]
    if should and minimum > 0:
        if minimum > 1:
            raise DslError("[bool] minimum_should_match above 1 is not supported")
        parts.append(_all(should, "or") if all(should) else None)
    return _all(parts, "and")


def _range(field: str, spec: Any, ts_field: tuple[str, ...], bounds: dict[str, int], *, top: bool
           ) -> str | None:
    if not isinstance(spec, dict):
        raise DslError(f"[range] on [{field}] must be an object of gt, gte, lt, lte")
    ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
    unknown = set(spec) - set(ops) - {"format", "time_zone"}
    if unknown:
        raise DslError(f"[range] does not support [{sorted(unknown)[0]}]")
    if field in ts_field and top:  # (time bounds prune segments; only where they and-in)
        for op in ("gt", "gte", "lt", "lte"):
            if op in spec:
                ns = _instant(spec[op], field) + (1 if op in ("gt", "lte") else 0)
                key = "start" if op.startswith("g") else "end"
                keep = max if key == "start" else min
                bounds[key] = keep(bounds.get(key, ns), ns)
        return None
    parts: list[str | None] = [f"{_field(field)} {ops[op]} {_literal(spec[op], 'range')}"
                               for op in ops if op in spec]
    return _all(parts, "and")


def _instant(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise DslError(f"[range] on [{field}]: not a date: {value!r}")
    if isinstance(value, int | float):
        return int(value * _NS_PER_MS)  # (a number is epoch milliseconds, as in Elasticsearch)
    try:
        ns = parse_instant(value, name=field)
    except (ValueError, TidalError) as exc:
        raise DslError(f"[range] on [{field}]: {exc}") from exc
    if ns is None:
        raise DslError(f"[range] on [{field}]: not a date: {value!r}")
    return ns


def _one_field(kind: str, body: Any) -> tuple[str, Any]:
    if kind == "exists":
        if not isinstance(body, dict) or not isinstance(body.get("field"), str):
            raise DslError('[exists] needs {"field": NAME}')
        return body["field"], body["field"]
    fields = {k: v for k, v in body.items() if k != "boost"} if isinstance(body, dict) else {}
    if len(fields) != 1:
        raise DslError(f"[{kind}] must name exactly one field")
    (field, spec), = fields.items()
    return field, spec


def _field(path: str) -> str:
    """A field path as EQL: dotted parts, each backquoted unless a plain name."""
    return ".".join(part if _NAME.fullmatch(part) else "`" + part.replace("`", "``") + "`"
                    for part in path.split("."))


def _literal(value: Any, kind: str) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_ESCAPED.get(c) or (f"\\u{{{ord(c):X}}}" if ord(c) < 32 else c)
                             for c in value) + '"'
    raise DslError(f"[{kind}] takes a string, number, boolean or null, not {_shown(value)}")


_ESCAPED = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _all(parts: list[str | None], op: str) -> str | None:
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else f" {op} ".join(f"({p})" for p in kept)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
