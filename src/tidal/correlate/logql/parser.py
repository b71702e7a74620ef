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

from typing import cast

from tidal.correlate.corql.parser import parse_duration
from tidal.correlate.logql.ast import (
    COMPARISONS,
    LOG_RANGE_FUNCS,
    RANGE_FUNCS,
    UNWRAP_FUNCS,
    VECTOR_OPS,
    BinaryOp,
    BinaryOperator,
    Grouping,
    LabelFilter,
    LogQuery,
    MetricExpr,
    NumberLiteral,
    Query,
    RangeAggregation,
    RangeFunc,
    Unwrap,
    VectorAggregation,
    VectorLiteral,
    VectorMatching,
    VectorOp,
)
from tidal.correlate.logql.lexer import Token, quote
from tidal.correlate.logql.parse_log import LogParser

__all__ = ["is_scalar", "parse"]


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


class _Parser(LogParser):
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


_PRECEDENCE: tuple[tuple[str, ...], ...] = (
    ("or",), ("and", "unless"), COMPARISONS, ("+", "-"), ("*", "/", "%"), ("^",))
"""Binary operators, loosest first (Prometheus' order)."""

