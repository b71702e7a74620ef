"""The parsed form of an EQL query: expressions, queries, pipes.

Every node keeps ``pos``, its offset in the query text, so that later errors
(an unknown function, an impossible comparison) can point at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass, replace

__all__ = [
    "Arith", "BoolOp", "Call", "Compare", "EventQuery", "Expr", "Field", "InList", "Join",
    "Literal", "Match", "Neg", "Not", "Pipe", "Query", "Sample", "Sequence", "Stage",
    "field_names", "restricted",
]

Value = str | int | float | bool | None


@dataclass(frozen=True)
class Field:
    """A field path (``process.parent.name`` → ``("process", "parent", "name")``);
    ``optional`` for ``?field``, which may be absent from the data altogether."""

    path: tuple[str, ...]
    pos: int = field(default=0, compare=False)
    optional: bool = False

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Literal:
    """A string, number, boolean or ``null``."""

    value: Value
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Compare:
    """``left op right`` with ``op`` one of ``== != < <= > >=``."""

    op: str
    left: Expr
    right: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class InList:
    """``expr in (v, ...)``, ``not in``, and ``in~`` (case-insensitive)."""

    expr: Expr
    values: tuple[Expr, ...]
    negated: bool = False
    insensitive: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Match:
    """``expr : pattern(s)`` (``kind="wildcard"``, always case-insensitive),
    ``like``/``like~`` (``kind="like"``: wildcards ``*`` and ``?``) and
    ``regex``/``regex~`` (``kind="regex"``); true when any pattern matches."""

    kind: str
    expr: Expr
    patterns: tuple[str, ...]
    insensitive: bool
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    expr: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class BoolOp:
    """``and`` / ``or`` over two or more operands."""

    op: str
    items: tuple[Expr, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Arith:
    """``left op right`` with ``op`` one of ``+ - * / %``."""

    op: str
    left: Expr
    right: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Neg:
    expr: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Call:
    """A function call; ``name`` is the canonical (lower-case) name, ``insensitive``
    for the ``~`` form."""

    name: str
    args: tuple[Expr, ...]
    insensitive: bool = False
    pos: int = field(default=0, compare=False)


Expr = Field | Literal | Compare | InList | Match | Not | BoolOp | Arith | Neg | Call


@dataclass(frozen=True)
class EventQuery:
    """``category where condition``; ``category`` None for ``any``."""

    category: str | None
    condition: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Stage:
    """One bracketed stage of a sequence, sample or join: its event query, its own
    ``by`` keys, ``runs`` (``with runs=N``) and whether it is a missing-event
    stage (``![...]``)."""

    query: EventQuery
    by: tuple[Expr, ...] = ()
    runs: int = 1
    missing: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Sequence:
    """``sequence [by ...] [with maxspan=D] stage stage ... [until stage]``."""

    stages: tuple[Stage, ...]
    by: tuple[Expr, ...] = ()
    maxspan_ns: int | None = None
    until: Stage | None = None
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Sample:
    """``sample [by ...] stage stage ...``: unordered matches per key."""

    stages: tuple[Stage, ...]
    by: tuple[Expr, ...] = ()
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Join:
    """``join [by ...] stage stage ... [until stage]`` (Endgame)."""

    stages: tuple[Stage, ...]
    by: tuple[Expr, ...] = ()
    until: Stage | None = None
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Pipe:
    """``| name args``: ``head N``, ``tail N``, ``count [f, ...]``, ``unique f, ...``,
    ``unique_count f, ...``, ``sort f, ...``, ``filter condition``."""

    name: str
    args: tuple[Expr, ...] = ()
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Query:
    """A whole query: its body and its pipes, with the text it came from."""

    body: EventQuery | Sequence | Sample | Join
    pipes: tuple[Pipe, ...] = ()
    text: str = field(default="", compare=False)


def restricted(query: Query, condition: Expr) -> Query:
    """``query`` run only over the events ``condition`` holds for: ``condition`` is
    and-ed into the condition of every event query, stage, missing stage and
    ``until`` (as Elasticsearch's ``filter`` applies before the EQL query)."""

    def event(q: EventQuery) -> EventQuery:
        return replace(q, condition=BoolOp("and", (q.condition, condition), pos=q.pos))

    def stage(s: Stage) -> Stage:
        return replace(s, query=event(s.query))

    body = query.body
    if isinstance(body, EventQuery):
        return replace(query, body=event(body))
    stages = tuple(stage(s) for s in body.stages)
    if isinstance(body, Sample):
        return replace(query, body=replace(body, stages=stages))
    until = stage(body.until) if body.until is not None else None
    return replace(query, body=replace(body, stages=stages, until=until))


def field_names(*nodes: object) -> list[str]:
    """The names of the fields that ``nodes`` (and everything under them) read, each
    once, in the order first met."""
    return list(dict.fromkeys(f.name for node in nodes for f in _fields_under(node)))


def _fields_under(node: object) -> Iterator[Field]:
    if isinstance(node, Field):
        yield node
    elif isinstance(node, tuple):
        for item in node:
            yield from _fields_under(item)
    elif is_dataclass(node) and not isinstance(node, type):
        for slot in fields(node):
            yield from _fields_under(getattr(node, slot.name))
