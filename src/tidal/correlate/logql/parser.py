"""LogQL text → :class:`~tidal.correlate.logql.ast.Query`, by recursive descent.

The grammar (a subset of Grafana Loki's)::

    query      := log_query END | metric END
    metric     := VOP [grouping] '(' metric ')' [grouping]
                | RFUNC '(' selector [range] pipeline [range] ')'   (exactly one range)
                | '(' metric ')'
    log_query  := selector pipeline
    selector   := '{' matcher (',' matcher)* [','] '}'
    matcher    := path ('=' | '!=' | '=~' | '!~') STRING        (path: name ('.' name)*)
    pipeline   := ( ('|=' | '!=' | '|~' | '!~') STRING
                  | '|' ('json' | 'logfmt')
                  | '|' 'line_format' STRING
                  | '|' 'label_format' NAME '=' (NAME | STRING) (',' ...)*
                  | '|' label_or )*
    label_or   := label_and ('or' label_and)*
    label_and  := label_atom (('and' | ',') label_atom)*
    label_atom := '(' label_or ')' | NAME ('=' | '==' | '!=' | '=~' | '!~') STRING
                | NAME ('=' | '==' | '!=' | '>' | '>=' | '<' | '<=') ['-'] NUMBER
    grouping   := ('by' | 'without') '(' [NAME (',' NAME)* [',']] ')'
    range      := '[' duration ']'                              (duration: 5m, 1h30m, 250ms)

``VOP`` is ``sum count max min avg``; ``RFUNC`` is ``count_over_time rate
bytes_over_time bytes_rate``. Every error is a :class:`~tidal.errors.QueryError`
naming line and column, with a caret.
"""

from __future__ import annotations

import re
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.corql.ast import MatchOp
from tidal.correlate.corql.parser import check_regex, parse_duration
from tidal.correlate.logql.ast import (
    RANGE_FUNCS,
    VECTOR_OPS,
    CompareOp,
    Grouping,
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
    MetricExpr,
    Parser,
    Query,
    RangeAggregation,
    RangeFunc,
    Stage,
    VectorAggregation,
    VectorOp,
)
from tidal.correlate.logql.lexer import Token, quote, tokenize
from tidal.correlate.syntax import Cursor

__all__ = ["TEMPLATE_FIELD", "parse"]

TEMPLATE_FIELD = re.compile(r"\{\{-?\s*(?:\.([A-Za-z_][A-Za-z0-9_]*)|(__line__))\s*-?\}\}")
_ANY_ACTION = re.compile(r"\{\{.*?\}\}", re.S)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_LINE_OPS = ("|=", "!=", "|~", "!~")
_EMPTY_HINT = ("queries require at least one matcher that does not match the empty "
               'string: app=~".*" does not, app=~".+" does')


def parse(text: str) -> Query:
    """Parse one LogQL query.

    Raises:
        QueryError: the text is not LogQL (of the supported subset); the message
            names line and column.

    Example:
        >>> q = parse('sum by (level) (count_over_time({app="api"} |= "err" [5m]))')
        >>> q.op, q.grouping.labels, q.inner.range_ns
        ('sum', ('level',), 300000000000)
    """
    return _Parser(text).query()


def _matches_empty(m: Matcher) -> bool:
    if m.op in ("=", "!="):
        return (m.value == "") == (m.op == "=")
    hit = bool(pc.match_substring_regex(pa.array([""]), f"^(?:{m.value})$")[0].as_py())
    return hit == (m.op == "=~")


class _Parser(Cursor):
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
    def query(self) -> Query:
        if self.tok.kind == "end":
            raise self.error('empty query: expected a stream selector like {app="api"}')
        out: Query = self.log_query() if self.tok.is_op("{") else self.metric()
        if self.tok.kind != "end":
            raise self.error(f"expected the end of the query, found {self.found()}")
        return out

    def metric(self) -> MetricExpr:
        tok = self.tok
        if tok.is_op("("):
            self.advance()
            inner = self.metric()
            self.expect(")", "to close the parenthesis")
            return inner
        word = tok.value.lower() if tok.kind == "name" else ""
        if word in VECTOR_OPS:
            return self.vector(cast(VectorOp, word))
        if word in RANGE_FUNCS:
            return self.range_aggregation(cast(RangeFunc, word))
        raise self.error('expected a stream selector like {app="api"} or a metric like '
                         f"count_over_time(...) or sum(...), found {self.found()}")

    def vector(self, op: VectorOp) -> VectorAggregation:
        tok = self.advance()
        grouping = self.grouping() if self.tok.is_word("by", "without") else None
        self.expect("(", f"after {quote(op)}")
        inner = self.metric()
        self.expect(")", f"to close {op}(...)")
        if self.tok.is_word("by", "without"):
            if grouping is not None:
                raise self.error(f"{op} has a grouping already; give by/without once")
            grouping = self.grouping()
        return VectorAggregation(op, grouping, inner, tok.pos)

    def grouping(self) -> Grouping:
        word = self.advance().value.lower()
        self.expect("(", f"after {quote(word)}")
        labels: list[str] = []
        while not self.tok.is_op(")"):
            labels.append(self.name(f"a label name in {word}(...)").value)
            if not self.tok.is_op(","):
                break
            self.advance()
        self.expect(")", f"or \",\" in {word}(...)")
        return Grouping(word == "without", tuple(labels))

    def range_aggregation(self, func: RangeFunc) -> RangeAggregation:
        tok = self.advance()
        self.expect("(", f"after {quote(func)}")
        start = self.tok
        if not start.is_op("{"):
            raise self.error(f'{func} takes a log query and a range, like {func}({{app="x"}} '
                             f"[5m]); found {self.found()}")
        selector = self.selector()
        range_ns = self.range() if self.tok.is_op("[") else None
        stages = self.pipeline()
        if self.tok.is_op("["):
            if range_ns is not None:
                raise self.error("the range is given twice")
            range_ns = self.range()
        if range_ns is None:
            raise self.error(f"{func} needs a range like [5m] after its log query, "
                             f"found {self.found()}")
        self.expect(")", f"to close {func}(...)")
        return RangeAggregation(func, LogQuery(selector, stages, start.pos), range_ns, tok.pos)

    def range(self) -> int:
        self.advance()
        tok = self.tok
        if tok.kind != "number":
            raise self.error(f"expected a duration like 5m in [...], found {self.found()}")
        value = parse_duration(tok.value)
        if isinstance(value, str):
            raise self.error(value)
        self.advance()
        self.expect("]", "to close the range")
        return value

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
        if tok.is_word("json", "logfmt") and not self.peek().is_op(*_COMPARISONS):
            self.advance()
            return Parser("json" if tok.value.lower() == "json" else "logfmt", tok.pos)
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
        raise self.error("expected json, logfmt, line_format, label_format or a label filter "
                         f"like status >= 500 after \"|\", found {self.found()}")

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
        return LabelCompare(name.value, self.compare_op(op.value), self.number(), name.pos)

    @staticmethod
    def compare_op(op: str) -> CompareOp:
        return cast(CompareOp, "==" if op == "=" else op)

    def number(self) -> float:
        sign = -1.0 if self.tok.is_op("-") else 1.0
        if sign < 0:
            self.advance()
        tok = self.tok
        if tok.kind != "number" or not _NUMBER.fullmatch(tok.value):
            unit = " (duration and bytes comparisons are not supported)" \
                if tok.kind == "number" else ""
            raise self.error(f"expected a number or a quoted string, found {self.found()}{unit}")
        self.advance()
        return sign * float(tok.value)


_COMPARISONS = ("=", "==", "!=", "=~", "!~", ">", ">=", "<", "<=")
