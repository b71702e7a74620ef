"""The parsed form of a CorQL query: selectors joined by links, and a post-filter.

A query reads left to right::

    events({service="frontend"})[5m]                       ← Query.first
      and on(request_id) within(30s) events({service="backend"})[5m]   ← Query.links[0]
      {status=~"5.."}                                      ← Query.post_filter

Every node that can be blamed for an error keeps ``pos``, its offset in the
query text. ``pos`` takes no part in equality, so two nodes that say the same
thing compare equal wherever they stand. ``str()`` of a node writes it back as
canonical CorQL, which parses to an equal node.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["KeyPair", "Link", "Matcher", "Query", "Selector", "format_duration", "format_path"]

MatchOp = Literal["=", "!=", "=~", "!~"]
LinkOp = Literal["and", "or", "unless"]
GroupSide = Literal["left", "right"]

_UNITS_NS = (("d", 86_400 * 10**9), ("h", 3_600 * 10**9), ("m", 60 * 10**9),
             ("s", 10**9), ("ms", 10**6))
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_duration(duration_ns: int) -> str:
    """``duration_ns`` as CorQL writes it, largest unit first.

    A remainder under a millisecond cannot be written and is dropped.

    >>> format_duration(5_400 * 10**9), format_duration(250 * 10**6)
    ('1h30m', '250ms')
    """
    parts = []
    for unit, size in _UNITS_NS:
        count, duration_ns = divmod(duration_ns, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def format_path(path: str) -> str:
    """``path`` as CorQL writes it: dotted names, backquoted where a segment needs it.

    >>> format_path("kubernetes.pod.name"), format_path("http.my-header")
    ('kubernetes.pod.name', 'http.`my-header`')
    """
    return ".".join(s if _IDENT.fullmatch(s) else "`" + s.replace("`", "``") + "`"
                    for s in path.split("."))


@dataclass(frozen=True)
class Matcher:
    """A label matcher on an event field: ``path op "value"``.

    ``op`` is ``=`` / ``!=`` (string equality) or ``=~`` / ``!~`` (a fully
    anchored RE2 regex), and an absent field reads as ``""``, as in Prometheus.
    """

    path: str
    op: MatchOp
    value: str
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{format_path(self.path)}{self.op}{json.dumps(self.value, ensure_ascii=False)}"


@dataclass(frozen=True)
class Selector:
    """``source({matchers})[range]``: the events of one source that pass every
    matcher; ``range_ns`` is the look-back (``[5m]``), None when absent."""

    source: str
    matchers: tuple[Matcher, ...]
    range_ns: int | None
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        matchers = "{" + ", ".join(map(str, self.matchers)) + "}" if self.matchers else ""
        look_back = f"[{format_duration(self.range_ns)}]" if self.range_ns is not None else ""
        return f"{self.source}({matchers}){look_back}"


@dataclass(frozen=True)
class KeyPair:
    """One join key: ``left`` on the events so far, ``right`` on the selector's.

    ``on(a)`` is ``KeyPair("a", "a")`` and ``on(a=b)`` is ``KeyPair("a", "b")``.
    """

    left: str
    right: str

    def __str__(self) -> str:
        if self.left == self.right:
            return format_path(self.left)
        return f"{format_path(self.left)}={format_path(self.right)}"


@dataclass(frozen=True)
class Link:
    """One binary operator, its modifiers, and the selector to its right.

    Attributes:
        op: ``and`` (join), ``or`` (union) or ``unless`` (anti-join).
        on: the join keys of ``on(...)``; None without ``on``, ``()`` for ``on()``.
        ignoring: the fields of ``ignoring(...)``, None without it.
        within_ns: the ``within(...)`` window, None without it.
        group: ``left`` or ``right`` for ``group_left`` / ``group_right``, else None.
        group_fields: the fields named in ``group_left(...)`` / ``group_right(...)``.
        right: the selector to the right of the operator.
        pos: the offset of the operator.
    """

    op: LinkOp
    on: tuple[KeyPair, ...] | None
    ignoring: tuple[str, ...] | None
    within_ns: int | None
    group: GroupSide | None
    group_fields: tuple[str, ...]
    right: Selector
    pos: int = field(default=0, compare=False)

    def __str__(self) -> str:
        words: list[str] = [self.op]
        if self.on is not None:
            words.append("on(" + ", ".join(map(str, self.on)) + ")")
        if self.ignoring is not None:
            words.append("ignoring(" + ", ".join(map(format_path, self.ignoring)) + ")")
        if self.within_ns is not None:
            words.append(f"within({format_duration(self.within_ns)})")
        if self.group is not None:
            fields = ", ".join(map(format_path, self.group_fields))
            words.append(f"group_{self.group}" + (f"({fields})" if fields else ""))
        words.append(str(self.right))
        return " ".join(words)


@dataclass(frozen=True)
class Query:
    """A whole CorQL query: the first selector, the links that follow it, the
    trailing ``{...}`` post-filter (``()`` when absent) and the query text."""

    first: Selector
    links: tuple[Link, ...]
    post_filter: tuple[Matcher, ...]
    text: str

    @property
    def selectors(self) -> tuple[Selector, ...]:
        """Every selector, left to right."""
        return (self.first, *(link.right for link in self.links))

    def __str__(self) -> str:
        parts = [str(self.first), *map(str, self.links)]
        if self.post_filter:
            parts.append("{" + ", ".join(map(str, self.post_filter)) + "}")
        return " ".join(parts)
