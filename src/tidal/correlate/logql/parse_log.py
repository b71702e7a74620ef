"""The log half of LogQL's parser: stream selectors and pipelines.

:class:`LogParser` reads a selector (``{app="api", level=~"err.*"}``) and the
stages after it (line filters, parsers, label filters, formats, ``drop``,
``keep``, ``unwrap``); :mod:`tidal.correlate.logql.parser` builds the metric
grammar on it. Every error is a :class:`~tidal.errors.QueryError` naming line
and column, with a caret.
"""

from __future__ import annotations

import re
from typing import Literal, cast

import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.corql.ast import MatchOp
from tidal.correlate.corql.parser import check_regex
from tidal.correlate.logql.ast import (
    CompareOp,
    Conversion,
    Decolorize,
    DropKeep,
    LabelAnd,
    LabelCompare,
    LabelExpr,
    LabelFilter,
    LabelFormat,
    LabelMatch,
    LabelOr,
    LineFilter,
    LineFormat,
    LineOp,
    LogQuery,
    Matcher,
    Parser,
    ParserKind,
    Stage,
    Unwrap,
)
from tidal.correlate.logql.lexer import Token, quote, tokenize
from tidal.correlate.logql.patterns import json_path_error, pattern_error, regexp_error
from tidal.correlate.logql.units import byte_size, go_duration
from tidal.correlate.syntax import Cursor

__all__ = ["TEMPLATE_FIELD", "LogParser"]

TEMPLATE_FIELD = re.compile(r"\{\{-?\s*(?:\.([A-Za-z_][A-Za-z0-9_]*)|(__line__))\s*-?\}\}")
_ANY_ACTION = re.compile(r"\{\{.*?\}\}", re.S)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_LINE_OPS = ("|=", "!=", "|~", "!~")
_EMPTY_HINT = ("queries require at least one matcher that does not match the empty "
               'string: app=~".*" does not, app=~".+" does')


def _matches_empty(m: Matcher) -> bool:
    if m.op in ("=", "!="):
        return (m.value == "") == (m.op == "=")
    hit = bool(pc.match_substring_regex(pa.array([""]), f"^(?:{m.value})$")[0].as_py())
    return hit == (m.op == "=~")


class LogParser(Cursor):
    """A recursive-descent reader of log queries (selectors and pipelines)."""

    def __init__(self, text: str) -> None:
        super().__init__(text, tokenize(text))

    def found(self) -> str:
        tok = self.tok
        if tok.kind == "end":
            return "the end of the query"
        if tok.kind in ("string", "quoted"):
            return f"the string {quote(tok.value)}"
        return quote(tok.value)

    def expect(self, op: str, after: str) -> Token:
        if not self.tok.is_op(op):
            raise self.error(f'expected "{op}" {after}, found {self.found()}')
        return self.advance()

    def string(self, after: str) -> Token:
        if self.tok.kind not in ("string", "quoted"):
            raise self.error(f"expected a quoted string {after}, found {self.found()}")
        return self.advance()

    def name(self, what: str) -> Token:
        if self.tok.kind != "name":
            raise self.error(f"expected {what}, found {self.found()}")
        return self.advance()

    # -- the query ---------------------------------------------------------------------
    # -- log queries -------------------------------------------------------------------
    def log_query(self) -> LogQuery:
        start = self.tok
        selector = self.selector()
        stages = self.pipeline()
        if self.tok.is_op("["):
            raise self.error("a range [...] belongs inside a metric like count_over_time(...)")
        return LogQuery(selector, stages, start.pos)

    def selector(self) -> tuple[Matcher, ...]:
        open_brace = self.expect("{", "to open a stream selector")
        out: list[Matcher] = []
        while not self.tok.is_op("}"):
            out.append(self.matcher())
            if not self.tok.is_op(","):
                break
            self.advance()
        if not self.tok.is_op("}"):
            raise self.error(f'expected "," or "}}" in the stream selector, found {self.found()}')
        self.advance()
        if not out:
            raise self.error('a stream selector needs at least one matcher, like {app="api"}',
                             open_brace)
        if all(_matches_empty(m) for m in out):
            raise self.error(_EMPTY_HINT, open_brace)
        return tuple(out)

    def matcher(self) -> Matcher:
        start = self.name('a label matcher like app="api"')
        path = [start.value]
        while self.tok.is_op("."):
            self.advance()
            path.append(self.name("a label name after \".\"").value)
        name = ".".join(path)
        if not self.tok.is_op("=", "!=", "=~", "!~"):
            raise self.error(f"expected =, !=, =~ or !~ after {quote(name)}, found {self.found()}")
        op = cast(MatchOp, self.advance().value)
        value = self.string(f'after "{name}{op}"')
        if op in ("=~", "!~") and (reason := check_regex(value.value)):
            raise self.error(reason, value)
        return Matcher(name, op, value.value, start.pos)

    def pipeline(self) -> tuple[Stage, ...]:
        stages: list[Stage] = []
        while True:
            tok = self.tok
            if tok.is_op(*_LINE_OPS):
                self.advance()
                value = self.string(f"after {quote(tok.value)}")
                if tok.value in ("|~", "!~") and (reason := check_regex(value.value)):
                    raise self.error(reason, value)
                stages.append(LineFilter(cast(LineOp, tok.value), value.value, tok.pos))
            elif tok.is_op("|"):
                self.advance()
                stages.append(self.stage())
            else:
                return tuple(stages)

    def stage(self) -> Stage:
        tok = self.tok
        word = tok.value.lower() if tok.kind == "name" else ""
        if self.peek().is_op(*_COMPARISONS):
            word = ""  # a label filter on a label called like a stage
        if word in ("json", "logfmt"):
            self.advance()
            return Parser(cast(ParserKind, word), params=self.extract_params(word), pos=tok.pos)
        if word in ("pattern", "regexp") and self.peek().kind in ("string", "quoted"):
            self.advance()
            expression = self.string(f"after {word}")
            reason = pattern_error(expression.value) if word == "pattern" \
                else regexp_error(expression.value)
            if reason:
                raise self.error(reason, expression)
            return Parser(cast(ParserKind, word), expression.value, pos=tok.pos)
        if word in ("drop", "keep") and self.peek().kind == "name":
            self.advance()
            return self.drop_keep(cast(Literal["drop", "keep"], word), tok)
        if word == "decolorize":
            self.advance()
            return Decolorize(tok.pos)
        if word == "unwrap" and self.peek().kind == "name":
            self.advance()
            return self.unwrap(tok)
        if tok.is_word("line_format") and self.peek().kind in ("string", "quoted"):
            self.advance()
            template = self.string("after line_format")
            self.check_template(template)
            return LineFormat(template.value, tok.pos)
        if tok.is_word("label_format") and self.peek().kind == "name":
            self.advance()
            return self.label_format(tok)
        if tok.kind == "name" or tok.is_op("("):
            return LabelFilter(self.label_or())
        raise self.error("expected json, logfmt, pattern, regexp, line_format, label_format, "
                         "drop, keep, unwrap or a label filter like status >= 500 after "
                         f"\"|\", found {self.found()}")

    def extract_params(self, word: str) -> tuple[tuple[str, str], ...]:
        """``| json a="x.y", b`` / ``| logfmt a=b``: what to extract, as (label, expression)."""
        params: list[tuple[str, str]] = []
        while self.tok.kind == "name" and not self.peek().is_op(*_COMPARISONS[1:]):
            name = self.advance().value
            expression = name
            if self.tok.is_op("="):
                self.advance()
                if self.tok.kind in ("string", "quoted"):
                    expression = self.advance().value
                else:
                    expression = self.name(f"an expression after {quote(name)}=").value
            if word == "json" and (reason := json_path_error(expression)):
                raise self.error(reason)
            params.append((name, expression))
            if not self.tok.is_op(","):
                break
            self.advance()
        return tuple(params)

    def drop_keep(self, kind: Literal["drop", "keep"], tok: Token) -> DropKeep:
        names: list[str] = []
        matchers: list[Matcher] = []
        while True:
            name = self.name(f"a label name in {kind}")
            if self.tok.is_op("=", "!=", "=~", "!~"):
                op = cast(MatchOp, self.advance().value)
                value = self.string(f'after "{name.value}{op}"')
                if op in ("=~", "!~") and (reason := check_regex(value.value)):
                    raise self.error(reason, value)
                matchers.append(Matcher(name.value, op, value.value, name.pos))
            else:
                names.append(name.value)
            if not self.tok.is_op(","):
                return DropKeep(kind, tuple(names), tuple(matchers), tok.pos)
            self.advance()

    def unwrap(self, tok: Token) -> Unwrap:
        name = self.name("a label to unwrap")
        word = name.value.lower()
        if word in ("duration", "duration_seconds", "bytes") and self.tok.is_op("("):
            self.advance()
            label = self.name(f"a label in {word}(...)").value
            self.expect(")", f"to close {word}(...)")
            return Unwrap(label, cast(Conversion, word), tok.pos)
        return Unwrap(name.value, "", tok.pos)

    def check_template(self, tok: Token) -> None:
        bare = TEMPLATE_FIELD.sub("", tok.value)
        if action := _ANY_ACTION.search(bare):
            raise self.error(f"unsupported template action {quote(action.group(0))}: only "
                             "{{.label}} and {{__line__}} are supported", tok)

    def label_format(self, tok: Token) -> LabelFormat:
        items: list[tuple[str, str, bool]] = []
        while True:
            name = self.name("a label name in label_format").value
            self.expect("=", f"after {quote(name)} in label_format")
            if self.tok.kind in ("string", "quoted"):
                template = self.advance()
                self.check_template(template)
                items.append((name, template.value, True))
            else:
                items.append((name, self.name("a label name or a template").value, False))
            if not self.tok.is_op(","):
                return LabelFormat(tuple(items), tok.pos)
            self.advance()

    # -- label filters -----------------------------------------------------------------
    def label_or(self) -> LabelExpr:
        out = self.label_and()
        while self.tok.is_word("or"):
            self.advance()
            out = LabelOr(out, self.label_and())
        return out

    def label_and(self) -> LabelExpr:
        out = self.label_atom()
        while self.tok.is_word("and") or self.tok.is_op(","):
            self.advance()
            out = LabelAnd(out, self.label_atom())
        return out

    def label_atom(self) -> LabelExpr:
        if self.tok.is_op("("):
            self.advance()
            inner = self.label_or()
            self.expect(")", "to close the label filter's parenthesis")
            return inner
        name = self.name("a label filter like status >= 500")
        if not self.tok.is_op(*_COMPARISONS):
            raise self.error(f"expected a comparison (= != =~ !~ > >= < <=) after "
                             f"{quote(name.value)}, found {self.found()}")
        op = self.advance()
        if self.tok.kind in ("string", "quoted"):
            if op.value not in ("=", "==", "!=", "=~", "!~"):
                raise self.error(f"{op.value} compares numbers: write a number, like "
                                 f"{name.value} {op.value} 500")
            value = self.advance()
            if op.value in ("=~", "!~") and (reason := check_regex(value.value)):
                raise self.error(reason, value)
            match_op = cast(MatchOp, "=" if op.value == "==" else op.value)
            return LabelMatch(Matcher(name.value, match_op, value.value, name.pos))
        if op.value in ("=~", "!~"):
            raise self.error(f"{op.value} takes a quoted regex, found {self.found()}")
        negative = self.tok.is_op("-")
        text = ("-" + self.peek().value) if negative else self.tok.value
        number, unit = self.number()
        return LabelCompare(name.value, self.compare_op(op.value), number, name.pos, unit, text)

    @staticmethod
    def compare_op(op: str) -> CompareOp:
        return cast(CompareOp, "==" if op == "=" else op)

    def number(self) -> tuple[float, Literal["", "duration", "bytes"]]:
        """A number, a duration (in seconds) or a byte size (in bytes), and which."""
        sign = -1.0 if self.tok.is_op("-") else 1.0
        if sign < 0:
            self.advance()
        tok = self.tok
        if tok.kind == "number" and not _NUMBER.fullmatch(tok.value):
            for unit, read in (("duration", go_duration), ("bytes", byte_size)):
                value = read(tok.value)
                if value is not None:
                    self.advance()
                    return sign * value, cast(Literal["duration", "bytes"], unit)
            raise self.error(f"{quote(tok.value)} is not a number, a duration (250ms, 1m30s) "
                             "or a byte size (10KB, 1.5MiB)")
        return sign * self.plain_number(), ""

    def plain_number(self) -> float:
        tok = self.tok
        if tok.kind != "number" or not _NUMBER.fullmatch(tok.value):
            raise self.error(f"expected a number, found {self.found()}")
        self.advance()
        return float(tok.value)

    def signed_number(self) -> float:
        sign = -1.0 if self.tok.is_op("-") else 1.0
        if sign < 0:
            self.advance()
        return sign * self.plain_number()


_COMPARISONS = ("=", "==", "!=", "=~", "!~", ">", ">=", "<", "<=")
