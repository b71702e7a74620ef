"""The parsed form of a LogQL query.

A log query is a stream selector and a pipeline::

    {app="api", level=~"err.*"} |= "timeout" | json | status >= 500 | line_format "{{.path}}"
    └──── LogQuery.selector ───┘└──────────────── LogQuery.stages ─────────────────────────┘

A metric query wraps one in a range aggregation (``count_over_time(... [5m])``,
``avg_over_time(... | unwrap latency [5m])``), vector aggregations (``sum by
(level) (...)``, ``topk(3, ...)``) wrap those, and binary operations combine
metrics and numbers (``sum(rate(...)) / 60``, ``a > bool on (app) b``). Nodes keep
``pos``, their offset in the text, outside equality; ``str()`` writes a node
back as LogQL that parses to an equal node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from tidal.correlate.corql.ast import Matcher, format_duration

__all__ = [
    "BinaryOp", "Decolorize", "DropKeep", "Grouping", "LabelAnd", "LabelCompare", "LabelExpr",
    "LabelFilter", "LabelFormat", "LabelMatch", "LabelOr", "LineFilter", "LineFormat", "LogQuery",
    "Matcher", "MetricExpr", "NumberLiteral", "Parser", "ParserKind", "Query", "RangeAggregation",
    "Stage", "Unwrap", "VectorAggregation", "VectorLiteral", "VectorMatching", "format_duration",
]

LineOp = Literal["|=", "!=", "|~", "!~"]
CompareOp = Literal["==", "!=", ">", ">=", "<", "<="]
LogRangeFunc = Literal["count_over_time", "rate", "bytes_over_time", "bytes_rate",
                       "absent_over_time"]
UnwrapFunc = Literal["rate", "sum_over_time", "avg_over_time",
                     "max_over_time", "min_over_time", "first_over_time", "last_over_time",
                     "stdvar_over_time", "stddev_over_time", "quantile_over_time"]
RangeFunc = Literal["count_over_time", "rate", "bytes_over_time", "bytes_rate",
                    "absent_over_time", "sum_over_time", "avg_over_time",
                    "max_over_time", "min_over_time", "first_over_time", "last_over_time",
                    "stdvar_over_time", "stddev_over_time", "quantile_over_time"]
VectorOp = Literal["sum", "count", "max", "min", "avg", "stddev", "stdvar", "topk", "bottomk",
                   "sort", "sort_desc"]
BinaryOperator = Literal["+", "-", "*", "/", "%", "^", "==", "!=", ">", ">=", "<", "<=",
                         "and", "or", "unless"]
Conversion = Literal["", "duration", "duration_seconds", "bytes"]
LOG_RANGE_FUNCS: tuple[LogRangeFunc, ...] = ("count_over_time", "rate", "bytes_over_time",
                                             "bytes_rate", "absent_over_time")
UNWRAP_FUNCS: tuple[UnwrapFunc, ...] = (
    "rate", "sum_over_time", "avg_over_time", "max_over_time", "min_over_time",
    "first_over_time", "last_over_time", "stdvar_over_time", "stddev_over_time",
    "quantile_over_time")
RANGE_FUNCS: tuple[RangeFunc, ...] = (*LOG_RANGE_FUNCS, *UNWRAP_FUNCS[1:])
VECTOR_OPS: tuple[VectorOp, ...] = ("sum", "count", "max", "min", "avg", "stddev", "stdvar",
                                    "topk", "bottomk", "sort", "sort_desc")
COMPARISONS: tuple[str, ...] = ("==", "!=", ">", ">=", "<", "<=")


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


ParserKind = Literal["json", "logfmt", "pattern", "regexp"]


@dataclass(frozen=True)
class Parser:
    """``| json``, ``| logfmt``: the line's keys become labels; ``| pattern
    "<ip> - <_> <status>"``, ``| regexp "(?P<status>[0-9]+)"``: the named
    captures do. ``json`` and ``logfmt`` may name what to extract instead
    (``| json status="response.code"``, ``| logfmt code=status``): ``params``
    holds ``(label, expression)`` pairs."""

    kind: ParserKind
    expression: str = ""
    params: tuple[tuple[str, str], ...] = ()
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if self.kind in ("pattern", "regexp"):
            return f"| {self.kind} {_q(self.expression)}"
        if self.params:
            return f"| {self.kind} " + ", ".join(f"{k}={_q(v)}" for k, v in self.params)
        return f"| {self.kind}"


@dataclass(frozen=True)
class DropKeep:
    """``| drop a, b="x"`` removes labels (a ``name=value`` item only where it
    matches); ``| keep a, b`` removes every other label."""

    kind: Literal["drop", "keep"]
    names: tuple[str, ...]
    matchers: tuple[Matcher, ...] = ()
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        items = [*self.names, *(f"{m.path}{m.op}{_q(m.value)}" for m in self.matchers)]
        return f"| {self.kind} " + ", ".join(items)


@dataclass(frozen=True)
class Decolorize:
    """``| decolorize``: ANSI colour codes are removed from the line."""

    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return "| decolorize"


@dataclass(frozen=True)
class Unwrap:
    """``| unwrap latency`` (or ``| unwrap duration(latency)``, ``bytes(size)``):
    the label's value, read as a number, is the sample a range function takes.
    Only inside an unwrapped range aggregation, and only label filters may
    follow it."""

    label: str
    conversion: Conversion = ""
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        inner = f"{self.conversion}({self.label})" if self.conversion else self.label
        return f"| unwrap {inner}"


@dataclass(frozen=True)
class LabelMatch:
    """A string comparison of a label, as a selector's matcher (``==`` reads as ``=``)."""

    matcher: Matcher

    def __str__(self) -> str:
        return f"{self.matcher.path}{self.matcher.op}{_q(self.matcher.value)}"


@dataclass(frozen=True)
class LabelCompare:
    """``label op number``: the label read as a number; absent or not a number
    fails. ``unit`` ``duration`` (``latency > 250ms``: the label read as a Go
    duration, ``value`` in seconds) or ``bytes`` (``size >= 1KB``: the label read
    as a byte size, ``value`` in bytes)."""

    name: str
    op: CompareOp
    value: float
    pos: int = field(default=0, compare=False)
    unit: Literal["", "duration", "bytes"] = ""
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.name} {self.op} {self.text if self.unit else repr(self.value)}"


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


Stage: TypeAlias = ("LineFilter | Parser | LabelFilter | LineFormat | LabelFormat | DropKeep"
                    " | Decolorize | Unwrap")


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
    """``func(log_query [range] [offset d])``: per stream, a value over each
    window (ending ``offset_ns`` before each step). An unwrapped one
    (``query`` ends in :class:`Unwrap`) takes the unwrapped values and may
    group its series (``max_over_time(...) by (host)``); ``param`` is
    ``quantile_over_time``'s φ."""

    func: RangeFunc
    query: LogQuery
    range_ns: int
    pos: int = field(default=0, compare=False)
    offset_ns: int = 0
    param: float | None = None
    grouping: Grouping | None = None

    @property
    def unwrap(self) -> Unwrap | None:
        """The query's unwrap stage, if any."""
        return next((s for s in self.query.stages if isinstance(s, Unwrap)), None)

    def __str__(self) -> str:
        offset = f" offset {format_duration(self.offset_ns)}" if self.offset_ns else ""
        param = f"{self.param!r}, " if self.param is not None else ""
        grouping = f" {self.grouping}" if self.grouping is not None else ""
        return (f"{self.func}({param}{self.query} [{format_duration(self.range_ns)}]{offset})"
                f"{grouping}")


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
    grouping puts every series in one group with no labels. ``topk`` and
    ``bottomk`` take ``param`` (k) and keep whole series; ``sort`` and
    ``sort_desc`` order an instant vector by value."""

    op: VectorOp
    grouping: Grouping | None
    inner: MetricExpr
    pos: int = field(default=0, compare=False)
    param: float | None = None

    def __str__(self) -> str:
        grouping = f" {self.grouping}" if self.grouping is not None else ""
        param = f"{self.param:g}, " if self.param is not None else ""
        return f"{self.op}{grouping} ({param}{self.inner})"


@dataclass(frozen=True)
class NumberLiteral:
    """A number (a scalar: the same value at every step)."""

    value: float
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class VectorLiteral:
    """``vector(1)``: one series with no labels and the value at every step."""

    value: float
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"vector({self.value!r})"


@dataclass(frozen=True)
class VectorMatching:
    """How two vectors' series pair up: on the ``labels`` (``on``) or on all but
    them (``ignoring``); ``group`` ``left``/``right`` lets many series of that
    side match one of the other, copying ``include`` labels from the one."""

    on: bool
    labels: tuple[str, ...]
    group: Literal["", "left", "right"] = ""
    include: tuple[str, ...] = ()

    def __str__(self) -> str:
        out = ("on" if self.on else "ignoring") + " (" + ", ".join(self.labels) + ")"
        if self.group:
            out += f" group_{self.group} (" + ", ".join(self.include) + ")"
        return out


@dataclass(frozen=True)
class BinaryOp:
    """``left op right``: arithmetic (``+ - * / % ^``), comparisons (which keep
    the samples that hold, or give 1/0 with ``bool``) and the set operators
    ``and or unless``, between numbers and vectors."""

    op: BinaryOperator
    left: MetricExpr
    right: MetricExpr
    bool_modifier: bool = False
    matching: VectorMatching | None = None
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        parts = [self.op, "bool" if self.bool_modifier else "",
                 str(self.matching) if self.matching else ""]
        return f"({self.left} {' '.join(p for p in parts if p)} {self.right})"


MetricExpr: TypeAlias = ("RangeAggregation | VectorAggregation | BinaryOp | NumberLiteral"
                         " | VectorLiteral")
Query: TypeAlias = "LogQuery | MetricExpr"
