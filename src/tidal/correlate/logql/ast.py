"""The parsed form of a LogQL query.

A log query is a stream selector and a pipeline::

    {app="api", level=~"err.*"} |= "timeout" | json | status >= 500 | line_format "{{.path}}"
    └──── LogQuery.selector ───┘└──────────────── LogQuery.stages ─────────────────────────┘

A metric query wraps one in a range aggregation (``count_over_time(... [5m])``),
and vector aggregations (``sum by (level) (...)``) wrap those. Nodes keep
``pos``, their offset in the text, outside equality; ``str()`` writes a node
back as LogQL that parses to an equal node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from tidal.correlate.corql.ast import Matcher, format_duration

__all__ = [
    "Grouping", "LabelAnd", "LabelCompare", "LabelExpr", "LabelFilter", "LabelFormat", "LabelMatch",
    "LabelOr",
    "LineFilter", "LineFormat", "LogQuery", "Matcher", "MetricExpr", "Parser", "Query",
    "RangeAggregation", "Stage", "VectorAggregation", "format_duration",
]

LineOp = Literal["|=", "!=", "|~", "!~"]
CompareOp = Literal["==", "!=", ">", ">=", "<", "<="]
RangeFunc = Literal["count_over_time", "rate", "bytes_over_time", "bytes_rate"]
VectorOp = Literal["sum", "count", "max", "min", "avg"]
RANGE_FUNCS: tuple[RangeFunc, ...] = ("count_over_time", "rate", "bytes_over_time",
                                      "bytes_rate")
VECTOR_OPS: tuple[VectorOp, ...] = ("sum", "count", "max", "min", "avg")


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True)
class LineFilter:
    """``|= "text"`` (contains), ``!=`` (does not), ``|~ "re"`` / ``!~`` (an
    unanchored RE2 search); case-sensitive."""

    op: LineOp
    value: str
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.op} {_q(self.value)}"


@dataclass(frozen=True)
class Parser:
    """``| json`` or ``| logfmt``: the line's keys become labels."""

    kind: Literal["json", "logfmt"]
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"| {self.kind}"


@dataclass(frozen=True)
class LabelMatch:
    """A string comparison of a label, as a selector's matcher (``==`` reads as ``=``)."""

    matcher: Matcher

    def __str__(self) -> str:
        return f"{self.matcher.path}{self.matcher.op}{_q(self.matcher.value)}"


@dataclass(frozen=True)
class LabelCompare:
    """``label op number``: the label read as a number; absent or not a number fails."""

    name: str
    op: CompareOp
    value: float
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.value!r}"


@dataclass(frozen=True)
class LabelAnd:
    """Both sides hold (``and``, ``,`` or another ``|``-less clause)."""

    left: LabelExpr
    right: LabelExpr

    def __str__(self) -> str:
        return f"({self.left} and {self.right})"


@dataclass(frozen=True)
class LabelOr:
    """Either side holds."""

    left: LabelExpr
    right: LabelExpr

    def __str__(self) -> str:
        return f"({self.left} or {self.right})"


LabelExpr: TypeAlias = "LabelMatch | LabelCompare | LabelAnd | LabelOr"


@dataclass(frozen=True)
class LabelFilter:
    """``| expr``: keeps the entries whose labels satisfy ``expr``."""

    expr: LabelExpr

    def __str__(self) -> str:
        return f"| {self.expr}"


@dataclass(frozen=True)
class LineFormat:
    """``| line_format "..."``: the line becomes the template with each
    ``{{.label}}`` replaced (``{{__line__}}`` is the old line)."""

    template: str
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"| line_format {_q(self.template)}"


@dataclass(frozen=True)
class LabelFormat:
    """``| label_format new=old, dst="{{.a}}-{{.b}}"``: each item is ``(name,
    source, is_template)``; a rename (``new=old``) drops ``old``."""

    items: tuple[tuple[str, str, bool], ...]
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        parts = [f"{name}={_q(src) if templ else src}" for name, src, templ in self.items]
        return "| label_format " + ", ".join(parts)


Stage: TypeAlias = "LineFilter | Parser | LabelFilter | LineFormat | LabelFormat"


@dataclass(frozen=True)
class LogQuery:
    """A stream selector (at least one matcher) and its pipeline."""

    selector: tuple[Matcher, ...]
    stages: tuple[Stage, ...] = ()
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        head = "{" + ", ".join(f"{m.path}{m.op}{_q(m.value)}" for m in self.selector) + "}"
        return " ".join([head, *map(str, self.stages)])


@dataclass(frozen=True)
class RangeAggregation:
    """``func(log_query [range])``: per stream, a value over each window."""

    func: RangeFunc
    query: LogQuery
    range_ns: int
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.func}({self.query} [{format_duration(self.range_ns)}])"


@dataclass(frozen=True)
class Grouping:
    """``by (labels)`` or ``without (labels)``."""

    without: bool
    labels: tuple[str, ...]

    def __str__(self) -> str:
        return ("without" if self.without else "by") + " (" + ", ".join(self.labels) + ")"


@dataclass(frozen=True)
class VectorAggregation:
    """``op [grouping] (inner)``: series combined per group at each step; no
    grouping puts every series in one group with no labels."""

    op: VectorOp
    grouping: Grouping | None
    inner: MetricExpr
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        grouping = f" {self.grouping}" if self.grouping is not None else ""
        return f"{self.op}{grouping} ({self.inner})"


MetricExpr: TypeAlias = "RangeAggregation | VectorAggregation"
Query: TypeAlias = "LogQuery | RangeAggregation | VectorAggregation"
