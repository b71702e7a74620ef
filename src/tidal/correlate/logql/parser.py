"""LogQL text → :class:`~tidal.correlate.logql.ast.Query`, by recursive descent.

The grammar (a subset of Grafana Loki's)::

    query      := log_query END | metric END
    metric     := metric BINOP ['bool'] [matching] metric      (Prometheus' precedence)
                | ('-' | '+') metric | NUMBER | 'vector' '(' NUMBER ')' | '(' metric ')'
                | VOP [grouping] '(' [NUMBER ','] metric ')' [grouping]
                | RFUNC '(' [NUMBER ','] selector [range] pipeline [range] ['offset' duration]
                  ')' [grouping]                                (exactly one range)
    matching   := ('on' | 'ignoring') labels [('group_left' | 'group_right') [labels]]
    log_query  := selector pipeline
    selector   := '{' matcher (',' matcher)* [','] '}'
    matcher    := path ('=' | '!=' | '=~' | '!~') STRING        (path: name ('.' name)*)
    pipeline   := ( ('|=' | '!=' | '|~' | '!~') STRING
                  | '|' ('json' | 'logfmt') [NAME ['=' (STRING | NAME)] (',' ...)*]
                  | '|' ('pattern' | 'regexp') STRING
                  | '|' 'line_format' STRING | '|' 'decolorize'
                  | '|' 'label_format' NAME '=' (NAME | STRING) (',' ...)*
                  | '|' ('drop' | 'keep') NAME [op STRING] (',' ...)*
                  | '|' 'unwrap' (NAME | ('duration' | 'duration_seconds' | 'bytes') '(' NAME ')')
                  | '|' label_or )*
    label_or   := label_and ('or' label_and)*
    label_and  := label_atom (('and' | ',') label_atom)*
    label_atom := '(' label_or ')' | NAME ('=' | '==' | '!=' | '=~' | '!~') STRING
                | NAME ('=' | '==' | '!=' | '>' | '>=' | '<' | '<=') ['-'] (NUMBER | DURATION
                  | BYTES)
    grouping   := ('by' | 'without') labels
    labels     := '(' [NAME (',' NAME)* [',']] ')'
    range      := '[' duration ']'                              (duration: 5m, 1h30m, 250ms)

``BINOP`` is ``^``, ``* / %``, ``+ -``, ``== != > >= < <=``, ``and unless``,
``or`` (tightest first); ``VOP`` is ``sum count max min avg stddev stdvar topk
bottomk sort sort_desc``; ``RFUNC`` is ``count_over_time rate bytes_over_time
bytes_rate absent_over_time`` and, over unwrapped values, ``sum_over_time
avg_over_time max_over_time min_over_time first_over_time last_over_time
stdvar_over_time stddev_over_time quantile_over_time rate``. Every
error is a :class:`~tidal.errors.QueryError` naming line and column, with a caret.
"""

from __future__ import annotations

import re
from typing import Literal, cast

import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.corql.ast import MatchOp
from tidal.correlate.corql.parser import check_regex, parse_duration
from tidal.correlate.logql.ast import (
    COMPARISONS,
    LOG_RANGE_FUNCS,
    RANGE_FUNCS,
    UNWRAP_FUNCS,
    VECTOR_OPS,
    BinaryOp,
    BinaryOperator,
    CompareOp,
    Conversion,
    Decolorize,
    DropKeep,
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
    NumberLiteral,
    Parser,
    ParserKind,
    Query,
    RangeAggregation,
    RangeFunc,
    Stage,
    Unwrap,
    VectorAggregation,
    VectorLiteral,
    VectorMatching,
    VectorOp,
)
from tidal.correlate.logql.lexer import Token, quote, tokenize
from tidal.correlate.logql.patterns import json_path_error, pattern_error, regexp_error
from tidal.correlate.logql.units import byte_size, go_duration
from tidal.correlate.syntax import Cursor

__all__ = ["TEMPLATE_FIELD", "is_scalar", "parse"]

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


def is_scalar(node: Query) -> bool:
    """Whether ``node`` is a number (a literal, or arithmetic of numbers only).

    >>> is_scalar(parse("1 + 2 * 3")), is_scalar(parse("vector(1) + 2"))
    (True, False)
    """
    if isinstance(node, NumberLiteral):
        return True
    return isinstance(node, BinaryOp) and is_scalar(node.left) and is_scalar(node.right)


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
        return self.binary(0)

    def binary(self, level: int) -> MetricExpr:
        """Operators of precedence ``level`` and above (``^`` binds right)."""
        if level == len(_PRECEDENCE):
            return self.unary()
        left = self.binary(level + 1)
        while self.is_operator(level):
            tok = self.advance()
            op = cast(BinaryOperator, tok.value.lower())
            bool_modifier = False
            if self.tok.is_word("bool"):
                if op not in COMPARISONS:
                    raise self.error(f"bool modifies comparisons only, not {quote(op)}")
                self.advance()
                bool_modifier = True
            matching = self.matching()
            right = self.binary(level if op == "^" else level + 1)
            left = self.check_binary(BinaryOp(op, left, right, bool_modifier, matching,
                                              tok.pos), tok)
            if op == "^":
                return left
        return left

    def is_operator(self, level: int) -> bool:
        tok = self.tok
        ops = _PRECEDENCE[level]
        return tok.is_op(*ops) or (tok.kind == "name" and tok.value.lower() in ops)

    def matching(self) -> VectorMatching | None:
        if not self.tok.is_word("on", "ignoring"):
            return None
        on = self.tok.value.lower() == "on"
        labels = self.label_list(self.advance().value.lower())
        if not self.tok.is_word("group_left", "group_right"):
            return VectorMatching(on, labels)
        group = self.advance().value.lower()
        include = self.label_list(group) if self.tok.is_op("(") else ()
        return VectorMatching(on, labels, "left" if group == "group_left" else "right", include)

    def check_binary(self, node: BinaryOp, tok: Token) -> BinaryOp:
        scalars = [is_scalar(side) for side in (node.left, node.right)]
        if node.op in ("and", "or", "unless") and any(scalars):
            raise self.error(f"{node.op} works between two vectors, not a number", tok)
        if node.op in COMPARISONS and all(scalars) and not node.bool_modifier:
            raise self.error("comparisons between numbers must use bool, like 1 > bool 0", tok)
        if node.matching is not None and any(scalars):
            raise self.error("on(...) and ignoring(...) match two vectors, not a number", tok)
        if (node.matching is not None and node.matching.group
                and node.op in ("and", "or", "unless")):
            raise self.error(f"no grouping (group_left/group_right) with {node.op}", tok)
        return node

    def unary(self) -> MetricExpr:
        tok = self.tok
        if tok.is_op("-", "+"):
            self.advance()
            inner = self.unary()
            if tok.value == "+":
                return inner
            if isinstance(inner, NumberLiteral):
                return NumberLiteral(-inner.value, tok.pos)
            return BinaryOp("*", NumberLiteral(-1.0, tok.pos), inner, pos=tok.pos)
        return self.primary()

    def primary(self) -> MetricExpr:
        tok = self.tok
        if tok.is_op("("):
            self.advance()
            inner = self.metric()
            self.expect(")", "to close the parenthesis")
            return inner
        if tok.kind == "number":
            return NumberLiteral(self.plain_number(), tok.pos)
        word = tok.value.lower() if tok.kind == "name" else ""
        if word == "vector" and self.peek().is_op("("):
            self.advance()
            self.expect("(", "after vector")
            value = self.signed_number()
            self.expect(")", "to close vector(...)")
            return VectorLiteral(value, tok.pos)
        if word in VECTOR_OPS:
            return self.vector(cast(VectorOp, word))
        if word in RANGE_FUNCS:
            return self.range_aggregation(cast(RangeFunc, word))
        if tok.is_op("{"):
            raise self.error("a log query cannot be part of a metric query: wrap it in a "
                             "range aggregation like count_over_time({...}[5m])")
        raise self.error('expected a stream selector like {app="api"} or a metric like '
                         f"count_over_time(...) or sum(...), found {self.found()}")

    def vector(self, op: VectorOp) -> VectorAggregation:
        tok = self.advance()
        if op in ("sort", "sort_desc") and self.tok.is_word("by", "without"):
            raise self.error(f"{op} takes no grouping")
        grouping = self.grouping() if self.tok.is_word("by", "without") else None
        self.expect("(", f"after {quote(op)}")
        param = None
        if op in ("topk", "bottomk"):
            first = self.tok
            param = self.signed_number()
            if param < 1 or param != int(param):
                raise self.error(f"{op} takes a whole number of series (at least 1) first, "
                                 f"like {op}(5, ...)", first)
            self.expect(",", f"after {op}'s number")
        inner = self.metric()
        if is_scalar(inner):
            raise self.error(f"{op} aggregates a vector, not a number", tok)
        self.expect(")", f"to close {op}(...)")
        if self.tok.is_word("by", "without"):
            if grouping is not None:
                raise self.error(f"{op} has a grouping already; give by/without once")
            if op in ("sort", "sort_desc"):
                raise self.error(f"{op} takes no grouping")
            grouping = self.grouping()
        return VectorAggregation(op, grouping, inner, tok.pos, param)

    def label_list(self, word: str) -> tuple[str, ...]:
        self.expect("(", f"after {quote(word)}")
        labels: list[str] = []
        while not self.tok.is_op(")"):
            labels.append(self.name(f"a label name in {word}(...)").value)
            if not self.tok.is_op(","):
                break
            self.advance()
        self.expect(")", f"or \",\" in {word}(...)")
        return tuple(labels)

    def grouping(self) -> Grouping:
        word = self.advance().value.lower()
        return Grouping(word == "without", self.label_list(word))

    def range_aggregation(self, func: RangeFunc) -> RangeAggregation:
        tok = self.advance()
        self.expect("(", f"after {quote(func)}")
        param = None
        if func == "quantile_over_time":
            param = self.signed_number()
            self.expect(",", "after quantile_over_time's quantile")
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
        offset_ns = 0
        if self.tok.is_word("offset"):
            self.advance()
            offset_ns = self.duration("after offset")
        self.expect(")", f"to close {func}(...)")
        query = LogQuery(selector, stages, start.pos)
        grouping = self.grouping() if self.tok.is_word("by", "without") else None
        node = RangeAggregation(func, query, range_ns, tok.pos, offset_ns, param, grouping)
        self.check_unwrap(node, tok)
        return node

    def check_unwrap(self, node: RangeAggregation, tok: Token) -> None:
        unwraps = [i for i, s in enumerate(node.query.stages) if isinstance(s, Unwrap)]
        func = node.func
        if not unwraps:
            if func not in LOG_RANGE_FUNCS:
                raise self.error(f"{func} takes unwrapped values: add | unwrap <label> "
                                 "before the range", tok)
            if node.grouping is not None:
                raise self.error(f"{func} takes no by/without: group it with sum by (...) "
                                 "around it", tok)
            return
        if func not in UNWRAP_FUNCS:
            raise self.error(f"{func} counts log lines and takes no unwrap; use "
                             "sum_over_time, avg_over_time, ... with unwrap", tok)
        if len(unwraps) > 1:
            raise self.error("unwrap is given twice", tok)
        if not all(isinstance(s, LabelFilter) for s in node.query.stages[unwraps[0] + 1:]):
            raise self.error("only label filters may follow unwrap", tok)
        if node.param is not None and not 0 <= node.param <= 1:
            raise self.error("quantile_over_time's quantile must be between 0 and 1", tok)

    def range(self) -> int:
        self.advance()
        value = self.duration("in [...]")
        self.expect("]", "to close the range")
        return value

    def duration(self, where: str) -> int:
        tok = self.tok
        if tok.kind != "number":
            raise self.error(f"expected a duration like 5m {where}, found {self.found()}")
        value = parse_duration(tok.value)
        if isinstance(value, str):
            raise self.error(value)
        self.advance()
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
_PRECEDENCE: tuple[tuple[str, ...], ...] = (
    ("or",), ("and", "unless"), COMPARISONS, ("+", "-"), ("*", "/", "%"), ("^",))
"""Binary operators, loosest first (Prometheus' order)."""
