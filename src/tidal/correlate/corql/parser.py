"""CorQL text → :class:`~tidal.correlate.corql.ast.Query`, by recursive descent.

The grammar::

    query       := selector ( link )* [ post_filter ] END
    selector    := NAME '(' [ '{' [ matcher (',' matcher)* [','] ] '}' ] ')' [ '[' duration ']' ]
    link        := ('and' | 'or' | 'unless') modifier* selector
    modifier    := 'on' '(' [ keypair (',' keypair)* ] ')'
                 | 'ignoring' '(' [ path (',' path)* ] ')'
                 | 'within' '(' duration ')'
                 | ('group_left' | 'group_right') [ '(' [ path (',' path)* ] ')' ]
    keypair     := path [ '=' path ]
    matcher     := path ('=' | '!=' | '=~' | '!~') STRING
    post_filter := '{' matcher (',' matcher)* [','] '}'
    path        := IDENT ('.' IDENT)*         (a segment may be `backquoted`)
    duration    := (INT UNIT)+                (UNIT: ms s m h d, largest first; > 0)

Keywords are case-insensitive and may still name fields; they may not name a
source. Lists in parentheses also take a trailing comma. Every error is a
:class:`~tidal.errors.QueryError` naming line and column, with a caret.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import TypeVar, cast

import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.corql.ast import (
    GroupSide,
    KeyPair,
    Link,
    LinkOp,
    Matcher,
    MatchOp,
    Query,
    Selector,
)
from tidal.correlate.corql.lexer import Token, quote, tokenize
from tidal.correlate.syntax import Cursor, syntax_error

__all__ = ["KEYWORDS", "UNITS_NS", "check_regex", "check_sources", "parse", "parse_duration"]

OPERATORS = ("and", "or", "unless")
MODIFIERS = ("on", "ignoring", "within", "group_left", "group_right")
KEYWORDS = frozenset(OPERATORS + MODIFIERS)
UNITS_NS = {"d": 86_400 * 10**9, "h": 3_600 * 10**9, "m": 60 * 10**9, "s": 10**9,
            "ms": 10**6}
_UNIT_ORDER = tuple(UNITS_NS)
_DURATION_PART = re.compile(r"([0-9]+)([A-Za-z_]*)")
_INT64_MAX = 2**63 - 1
_ADAPTERS = ("loki", "graylog")
_T = TypeVar("_T")


def parse(text: str) -> Query:
    """Parse one CorQL query.

    Raises:
        QueryError: the text is not CorQL; the message names line and column.

    Example:
        >>> q = parse('events({service="web"})[5m] and on(request_id) within(30s) events()')
        >>> q.first.matchers[0].value, q.links[0].on[0].left, q.links[0].within_ns
        ('web', 'request_id', 30000000000)
    """
    return _Parser(text).query()


def check_sources(query: Query, known: tuple[str, ...] = ("events",)) -> None:
    """Refuse a query that reads a source Tidal cannot read.

    Raises:
        QueryError: at the first selector whose source is not in ``known``.

    Example:
        >>> check_sources(parse("events() and loki()"))
        Traceback (most recent call last):
        ...
        tidal.errors.QueryError: line 1, column 14: no such source "loki": ...
    """
    for selector in query.selectors:
        if selector.source in known:
            continue
        readers = " and ".join(f"{name}(...)" for name in known)
        message = (f"no such source {quote(selector.source)}: only {readers} "
                   f"read{'s' if len(known) == 1 else ''} Tidal's store")
        if selector.source in _ADAPTERS:
            message += "; the loki and graylog adapters are not built yet"
        raise syntax_error(query.text, selector.pos, message)


def parse_duration(text: str) -> int | str:
    """The nanoseconds of a duration like ``1h30m``, or why it is not one.

    >>> parse_duration("1h30m"), parse_duration("250ms"), parse_duration("5w")
    (5400000000000, 250000000, 'unknown unit "w" in "5w": use ms, s, m, h or d')
    """
    if not re.fullmatch(r"[0-9][0-9A-Za-z_]*", text):
        return f"{quote(text)} is not a duration: write whole numbers, like 90s or 1h30m"
    total, last, pos = 0, -1, 0
    while pos < len(text):
        part = _DURATION_PART.match(text, pos)
        if part is None:  # a unit can only be followed by digits
            return f"{quote(text)} is not a duration: write whole numbers, like 90s or 1h30m"
        count, unit = part.groups()
        if not unit:
            return f"missing unit after {count} in {quote(text)}: use ms, s, m, h or d"
        if unit not in UNITS_NS:
            return f"unknown unit {quote(unit)} in {quote(text)}: use ms, s, m, h or d"
        if _UNIT_ORDER.index(unit) <= last:
            return (f"units in {quote(text)} must go from largest to smallest, each once "
                    "(d, h, m, s, ms)")
        last = _UNIT_ORDER.index(unit)
        total += int(count) * UNITS_NS[unit]
        pos = part.end()
    if total <= 0:
        return f"duration {quote(text)} must be greater than zero"
    if total > _INT64_MAX:
        return f"duration {quote(text)} is too long (at most about 292 years)"
    return total


def check_regex(pattern: str) -> str | None:
    """Why ``pattern`` is not a regex a matcher can use, or None when it is.

    A matcher's regex is fully anchored, ``^(?:pattern)$``, and RE2 runs it, so
    RE2 has the last word; Python's ``re`` gives the clearer message when it
    refuses the pattern too. The pattern must be a regex on its own: ``a)|(b``
    would otherwise break out of the anchoring group.

    >>> check_regex("5.."), check_regex("(")
    (None, 'invalid regex "(": missing ), unterminated subpattern at position 0')
    """
    try:
        pc.match_substring_regex(pa.array([""]), pattern)
    except pa.ArrowInvalid as exc:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                re.compile(pattern)
        except re.error as py_exc:
            return f"invalid regex {quote(pattern)}: {py_exc}"
        reason = str(exc).removeprefix("Invalid regular expression: ")
        return f"invalid regex {quote(pattern)} (RE2 syntax, as in Prometheus): {reason}"
    return None


class _Parser(Cursor):
    def __init__(self, text: str) -> None:
        super().__init__(text, tokenize(text))

    def found(self) -> str:
        tok = self.tok
        if tok.kind == "end":
            return "the end of the query"
        if tok.kind == "string":
            return f"the string {quote(tok.value)}"
        if tok.kind == "quoted":
            return quote("`" + tok.value.replace("`", "``") + "`")
        return quote(tok.value)

    def expect(self, op: str, after: str) -> Token:
        if not self.tok.is_op(op):
            raise self.error(f'expected "{op}" after "{after}", found {self.found()}')
        return self.advance()

    # -- the query ---------------------------------------------------------------------
    def query(self) -> Query:
        if self.tok.kind == "end":
            raise self.error('empty query: expected a selector like events({service="web"})')
        first = self.selector()
        links = []
        while self.tok.is_word(*OPERATORS):
            links.append(self.link())
        post_filter: tuple[Matcher, ...] = ()
        if self.tok.is_op("{"):
            post_filter = self.matchers("post-filter", allow_empty=False)
        if self.tok.kind != "end":
            what = "the post-filter" if post_filter else "a selector"
            hint = "" if post_filter else "; join selectors with and, or, unless"
            raise self.error(f"expected the end of the query after {what}, "
                             f"found {self.found()}{hint}")
        return Query(first, tuple(links), post_filter, self.text)

    def selector(self) -> Selector:
        tok = self.tok
        if tok.kind != "name" or tok.is_word(*KEYWORDS):
            raise self.error(f'expected a selector like events({{service="web"}}), '
                             f"found {self.found()}")
        self.advance()
        self.expect("(", tok.value)
        matchers: tuple[Matcher, ...] = ()
        if self.tok.is_op("{"):
            matchers = self.matchers("selector", allow_empty=True)
        elif not self.tok.is_op(")"):
            raise self.error(f'expected "{{" (label matchers) or ")" after "{tok.value}(", '
                             f"found {self.found()}")
        if not self.tok.is_op(")"):
            raise self.error(f'expected ")" to close {tok.value}(, found {self.found()}')
        self.advance()
        range_ns = None
        if self.tok.is_op("["):
            self.advance()
            range_ns = self.duration('[')
            self.expect("]", f"[{self.tokens[self.i - 1].value}")
        return Selector(tok.value, matchers, range_ns, tok.pos)

    def matchers(self, where: str, *, allow_empty: bool) -> tuple[Matcher, ...]:
        """``{ matcher, ... }``, from its opening brace."""
        self.advance()
        out: list[Matcher] = []
        while not self.tok.is_op("}") or (not out and not allow_empty):
            out.append(self.matcher(where))
            if not self.tok.is_op(","):
                break
            self.advance()
        if not self.tok.is_op("}"):
            raise self.error(f'expected "," or "}}" in the {where}\'s label matchers, '
                             f"found {self.found()}")
        self.advance()
        return tuple(out)

    def matcher(self, where: str) -> Matcher:
        start = self.tok
        if start.kind not in ("name", "quoted"):
            raise self.error(f'expected a label matcher like service="web" in the {where}, '
                             f"found {self.found()}")
        path = self.path("a label matcher")
        if not self.tok.is_op("=", "!=", "=~", "!~"):
            raise self.error(f"the label matcher on {quote(path)} has no value: expected "
                             f'=, !=, =~ or !~ and a quoted string, found {self.found()}')
        op = cast(MatchOp, self.advance().value)
        value = self.tok
        if value.kind not in ("string", "quoted"):
            raise self.error(f'expected a quoted string after "{path}{op}", '
                             f"found {self.found()}")
        self.advance()
        if op in ("=~", "!~") and (reason := check_regex(value.value)):
            raise self.error(reason, value)
        return Matcher(path, op, value.value, start.pos)

    def path(self, what: str) -> str:
        """``name ('.' name)*``; a segment may be backquoted, or a keyword."""
        segments = []
        while True:
            tok = self.tok
            if tok.kind not in ("name", "quoted"):
                raise self.error(f"expected a field name in {what}, found {self.found()}")
            if tok.kind == "quoted" and not tok.value:
                raise self.error("empty field name ``")
            segments.append(self.advance().value)
            if not self.tok.is_op("."):
                return ".".join(segments)
            self.advance()

    def duration(self, after: str) -> int:
        tok = self.tok
        if tok.kind != "number":
            raise self.error(f'expected a duration like 30s after "{after}", found {self.found()}')
        value = parse_duration(tok.value)
        if isinstance(value, str):
            raise self.error(value)
        self.advance()
        return value

    # -- links -------------------------------------------------------------------------
    def link(self) -> Link:
        op_tok = self.advance()
        op = cast(LinkOp, op_tok.value.lower())
        seen: dict[str, Token] = {}
        on: tuple[KeyPair, ...] | None = None
        ignoring: tuple[str, ...] | None = None
        within_ns: int | None = None
        group: GroupSide | None = None
        group_fields: tuple[str, ...] = ()
        while self.tok.is_word(*MODIFIERS):
            tok = self.tok
            word = tok.value.lower()
            kind = "group" if word.startswith("group_") else word
            if kind in seen:
                raise self.error(f"{word} repeats a modifier already given to this {op} "
                                 f"(as {seen[kind].value}); each may be given once")
            if {kind, *seen} >= {"on", "ignoring"}:
                other = seen.get("on") or seen["ignoring"]
                raise self.error(f"{word}(...) cannot join {other.value}(...): "
                                 "name the keys with one of on or ignoring")
            if kind == "group" and op == "unless":
                raise self.error(f"{word} cannot modify unless: an anti-join keeps only the "
                                 "left side, so there is no right side to carry")
            seen[kind] = self.advance()
            if word == "on":
                self.expect("(", tok.value)
                on = tuple(self.path_list(")", tok.value, self.keypair))
            elif word == "ignoring":
                self.expect("(", tok.value)
                ignoring = tuple(self.path_list(")", tok.value, self.field))
            elif word == "within":
                self.expect("(", tok.value)
                within_ns = self.duration(f"{tok.value}(")
                self.expect(")", f"{tok.value}({self.tokens[self.i - 1].value}")
            else:
                group = "left" if word == "group_left" else "right"
                if self.tok.is_op("("):
                    self.advance()
                    group_fields = tuple(self.path_list(")", tok.value, self.field))
        right = self.selector()
        return Link(op, on, ignoring, within_ns, group, group_fields, right, op_tok.pos)

    def path_list(self, close: str, owner: str, item: Callable[[str], _T]) -> list[_T]:
        """``item (',' item)* [',']`` up to and including ``close``."""
        out: list[_T] = []
        while not self.tok.is_op(close):
            out.append(item(owner))
            if not self.tok.is_op(","):
                break
            self.advance()
        if not self.tok.is_op(close):
            raise self.error(f'expected "," or "{close}" in {owner}(...), found {self.found()}')
        self.advance()
        return out

    def field(self, owner: str) -> str:
        return self.path(f"{owner}(...)")

    def keypair(self, owner: str) -> KeyPair:
        left = self.path(f"{owner}(...)")
        if not self.tok.is_op("="):
            return KeyPair(left, left)
        self.advance()
        return KeyPair(left, self.path(f'{owner}(...) after "{left}="'))
