"""EQL text → :class:`~tidal.correlate.eql.ast.Query`, by recursive descent.

Precedence, loosest first: ``or``, ``and``, ``not``, comparisons and the
predicates (``== != < <= > >= = in in~ : like like~ regex regex~``, one per
operand: ``a < b < c`` is refused), ``+ -``, ``* / %``, unary ``-``, then
literals, fields, calls and parentheses. The Endgame dialect's ``=`` means
``==`` and its single-quoted strings are strings. Words that are keywords
(``and``, ``by``, ``where``...) are field names only when backquoted.

Every error is a :class:`~tidal.errors.QueryError` that names the line and
column and shows the query line with a caret.
"""

from __future__ import annotations

from tidal.correlate.eql.ast import (
    Arith,
    BoolOp,
    Call,
    Compare,
    EventQuery,
    Expr,
    Field,
    InList,
    Join,
    Literal,
    Match,
    Neg,
    Not,
    Pipe,
    Query,
    Sample,
    Sequence,
    Stage,
)
from tidal.correlate.eql.lexer import Token, syntax_error, tokenize
from tidal.correlate.syntax import Cursor

__all__ = ["KEYWORDS", "parse"]

KEYWORDS = frozenset({
    "and", "or", "not", "in", "where", "by", "with", "until", "sequence", "sample", "join",
    "like", "regex", "true", "false", "null", "any",
})
UNITS_NS = {"nanos": 1, "ns": 1, "micros": 1_000, "us": 1_000, "ms": 1_000_000,
            "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86_400 * 10**9}
PIPES = frozenset({"head", "tail", "count", "unique", "unique_count", "sort", "filter"})
MAX_STAGES = {"sample": 5}
_COMPARE = {"==": "==", "=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def parse(query: str) -> Query:
    """Parse one EQL query.

    Raises:
        QueryError: the query is not EQL; the message names line and column.

    Example:
        >>> q = parse('process where process.name == "cmd.exe" | head 5')
        >>> q.body.category, q.body.condition.left.path, q.pipes[0].name
        ('process', ('process', 'name'), 'head')
    """
    if not query.strip():
        raise syntax_error(query, 0, "empty query")
    return _Parser(query).query()


class _Parser(Cursor):
    def __init__(self, text: str) -> None:
        super().__init__(text, tokenize(text))

    def found(self, tok: Token | None = None) -> str:
        tok = tok or self.tok
        if tok.kind == "end":
            return "the end of the query"
        if tok.kind == "string":
            return f"string {tok.value!r}"
        return repr(tok.value)

    def expect_op(self, op: str, what: str | None = None) -> Token:
        if not self.tok.is_op(op):
            raise self.error(f"expected {what or repr(op)}, found {self.found()}")
        return self.advance()

    def expect_word(self, word: str) -> Token:
        if not self.tok.is_word(word):
            raise self.error(f"expected {word!r}, found {self.found()}")
        return self.advance()

    # -- queries -----------------------------------------------------------------------
    def query(self) -> Query:
        tok = self.tok
        body: EventQuery | Sequence | Sample | Join
        if tok.is_word("sequence"):
            body = self.sequence()
        elif tok.is_word("sample"):
            body = self.sample()
        elif tok.is_word("join"):
            body = self.join()
        else:
            body = self.event_query()
        pipes = []
        while self.tok.is_op("|"):
            pipes.append(self.pipe())
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.found()} after the query"
                             + ("; did you mean 'and' or 'or'?" if self.tok.kind != "op" else ""))
        return Query(body, tuple(pipes), self.text)

    def event_query(self) -> EventQuery:
        tok = self.tok
        if tok.kind == "string":
            category: str | None = tok.value
        elif tok.kind == "name" and not tok.is_word(*(KEYWORDS - {"any"})):
            category = None if tok.is_word("any") else tok.value
        else:
            raise self.error(f"expected an event category (or 'any'), found {self.found()}")
        self.advance()
        if not self.tok.is_word("where"):
            raise self.error(f"expected 'where' after the event category, found {self.found()}")
        self.advance()
        return EventQuery(category, self.expr(), tok.pos)

    def stage(self, kind: str, *, allow_missing: bool = False, allow_runs: bool = False
              ) -> Stage:
        start = self.tok
        missing = False
        if self.tok.is_op("!"):
            if not allow_missing:
                raise self.error("a missing-event stage '![...]' is only allowed in a sequence"
                                 if kind == "sequence" or kind == "until"
                                 else f"'![...]' is not allowed in a {kind}")
            missing = True
            self.advance()
        self.expect_op("[", f"'[' to open a {kind} stage")
        query = self.event_query()
        self.expect_op("]", "']' to close the stage")
        by = self.by_keys() if self.tok.is_word("by") else ()
        runs = 1
        if self.tok.is_word("with"):
            with_tok = self.advance()
            name = self.tok
            if not name.is_word("runs"):
                raise self.error(f"expected 'runs' after 'with' on a stage, found {self.found()}")
            if not allow_runs or missing:
                raise self.error(f"'with runs' is not allowed here ({kind} stage"
                                 f"{', missing' if missing else ''})", with_tok)
            self.advance()
            self.expect_op("=", "'=' after 'runs'")
            runs = self.integer("runs", minimum=1, maximum=100)
        return Stage(query, by, runs, missing, start.pos)

    def by_keys(self) -> tuple[Expr, ...]:
        self.expect_word("by")
        keys = [self.additive()]
        while self.tok.is_op(","):
            self.advance()
            keys.append(self.additive())
        return tuple(keys)

    def sequence(self) -> Sequence:
        start = self.advance()
        by: tuple[Expr, ...] = ()
        maxspan_ns = None
        if self.tok.is_word("by"):
            by = self.by_keys()
        if self.tok.is_word("with"):
            self.advance()
            if not self.tok.is_word("maxspan"):
                raise self.error(f"expected 'maxspan' after 'with', found {self.found()}")
            self.advance()
            self.expect_op("=", "'=' after 'maxspan'")
            maxspan_ns = self.duration()
            if self.tok.is_word("by"):
                raise self.error("put 'by' before 'with maxspan', not after")
        stages = self.stages("sequence", allow_missing=True, allow_runs=True)
        until = None
        if self.tok.is_word("until"):
            self.advance()
            until = self.stage("until")
        if all(s.missing for s in stages):
            raise self.error("a sequence needs at least one stage that is not missing", start)
        self.check_keys("sequence", by, [*stages, *([until] if until else [])], start)
        return Sequence(stages, by, maxspan_ns, until, start.pos)

    def sample(self) -> Sample:
        start = self.advance()
        by = self.by_keys() if self.tok.is_word("by") else ()
        stages = self.stages("sample")
        self.check_keys("sample", by, list(stages), start)
        return Sample(stages, by, start.pos)

    def join(self) -> Join:
        start = self.advance()
        by = self.by_keys() if self.tok.is_word("by") else ()
        stages = self.stages("join")
        until = None
        if self.tok.is_word("until"):
            self.advance()
            until = self.stage("until")
        self.check_keys("join", by, [*stages, *([until] if until else [])], start)
        return Join(stages, by, until, start.pos)

    def stages(self, kind: str, **options: bool) -> tuple[Stage, ...]:
        stages = []
        while self.tok.is_op("[", "!"):
            stages.append(self.stage(kind, **options))
        if len(stages) < 2:
            raise self.error(f"a {kind} needs at least 2 stages ('[...]'), found "
                             f"{len(stages)}; next is {self.found()}")
        if len(stages) > MAX_STAGES.get(kind, 1 << 30):
            raise syntax_error(self.text, stages[MAX_STAGES[kind]].pos,
                               f"a {kind} takes at most {MAX_STAGES[kind]} stages")
        return tuple(stages)

    def check_keys(self, kind: str, by: tuple[Expr, ...], stages: list[Stage],
                   start: Token) -> None:
        counts = {len(s.by) for s in stages}
        if len(counts) > 1:
            raise self.error(f"every stage of a {kind} needs the same number of 'by' keys, "
                             f"found {sorted(counts)}", start)

    def duration(self) -> int:
        tok = self.tok
        if tok.kind != "number":
            raise self.error(f"expected a duration such as 30s or 5m, found {self.found()}")
        self.advance()
        unit = self.tok
        if unit.kind != "name" or unit.value.lower() not in UNITS_NS:
            raise self.error(f"expected a time unit ({', '.join(UNITS_NS)}) after {tok.value}, "
                             f"found {self.found()}")
        self.advance()
        value = float(tok.value)
        if value < 0:
            raise self.error("a duration cannot be negative", tok)
        return int(round(value * UNITS_NS[unit.value.lower()]))

    def integer(self, what: str, *, minimum: int, maximum: int | None = None) -> int:
        tok = self.tok
        if tok.kind != "number" or not tok.value.isdigit():
            raise self.error(f"expected a whole number for {what}, found {self.found()}")
        value = int(tok.value)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise self.error(f"{what} must be {bound}, not {value}")
        self.advance()
        return value

    def pipe(self) -> Pipe:
        self.advance()  # |
        tok = self.tok
        name = tok.value.lower() if tok.kind == "name" else ""
        if name not in PIPES:
            raise self.error(f"unknown pipe {self.found()}; expected one of "
                             f"{', '.join(sorted(PIPES))}")
        self.advance()
        if name in ("head", "tail"):
            if self.tok.kind == "number":
                return Pipe(name, (Literal(self.integer(name, minimum=0), tok.pos),), tok.pos)
            return Pipe(name, (Literal(10, tok.pos),), tok.pos)
        if name == "filter":
            return Pipe(name, (self.expr(),), tok.pos)
        args: list[Expr] = []
        if not (self.tok.is_op("|") or self.tok.kind == "end"):
            args.append(self.additive())
            while self.tok.is_op(","):
                self.advance()
                args.append(self.additive())
        if name in ("unique", "unique_count", "sort") and not args:
            raise self.error(f"'{name}' needs at least one field", tok)
        return Pipe(name, tuple(args), tok.pos)

    # -- expressions -------------------------------------------------------------------
    def expr(self) -> Expr:
        return self.disjunction()

    def disjunction(self) -> Expr:
        start = self.tok
        items = [self.conjunction()]
        while self.tok.is_word("or"):
            self.advance()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items), start.pos)

    def conjunction(self) -> Expr:
        start = self.tok
        items = [self.negation()]
        while self.tok.is_word("and"):
            self.advance()
            items.append(self.negation())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items), start.pos)

    def negation(self) -> Expr:
        if self.tok.is_word("not"):
            tok = self.advance()
            return Not(self.negation(), tok.pos)
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.additive()
        tok = self.tok
        if tok.kind == "op" and tok.value in _COMPARE:
            self.advance()
            right = self.additive()
            if self.tok.kind == "op" and self.tok.value in _COMPARE:
                raise self.error("comparisons cannot be chained; join them with 'and'")
            return Compare(_COMPARE[tok.value], left, right, tok.pos)
        negated = False
        if tok.is_word("not") and self.peek().is_word("in"):
            negated = True
            self.advance()
            tok = self.tok
        if tok.is_word("in"):
            self.advance()
            insensitive = self.tilde()
            return InList(left, self.value_list("in"), negated, insensitive, tok.pos)
        if negated:
            raise self.error(f"expected 'in' after 'not', found {self.found()}")
        if tok.is_op(":"):
            self.advance()
            return Match("wildcard", left, self.patterns(":"), True, tok.pos)
        if tok.is_word("like", "regex"):
            self.advance()
            insensitive = self.tilde()
            kind = tok.value.lower()
            return Match(kind, left, self.patterns(kind), insensitive, tok.pos)
        return left

    def tilde(self) -> bool:
        if self.tok.is_op("~") and self.tok.pos == self.tokens[self.i - 1].pos + len(
                self.tokens[self.i - 1].value):
            self.advance()
            return True
        return False

    def value_list(self, what: str) -> tuple[Expr, ...]:
        self.expect_op("(", f"'(' and a list of values after '{what}'")
        if self.tok.is_op(")"):
            raise self.error(f"'{what}' needs at least one value")
        values = [self.additive()]
        while self.tok.is_op(","):
            self.advance()
            values.append(self.additive())
        self.expect_op(")", "',' or ')'")
        return tuple(values)

    def patterns(self, what: str) -> tuple[str, ...]:
        """One string, or a parenthesised list of strings."""
        if self.tok.is_op("("):
            self.advance()
            found = [self.pattern(what)]
            while self.tok.is_op(","):
                self.advance()
                found.append(self.pattern(what))
            self.expect_op(")", "',' or ')'")
            return tuple(found)
        return (self.pattern(what),)

    def pattern(self, what: str) -> str:
        tok = self.tok
        if tok.kind != "string":
            raise self.error(f"'{what}' takes a string pattern (or a list of them), "
                             f"found {self.found()}")
        self.advance()
        return tok.value

    def additive(self) -> Expr:
        left = self.multiplicative()
        while self.tok.is_op("+", "-"):
            tok = self.advance()
            left = Arith(tok.value, left, self.multiplicative(), tok.pos)
        return left

    def multiplicative(self) -> Expr:
        left = self.unary()
        while self.tok.is_op("*", "/", "%"):
            tok = self.advance()
            left = Arith(tok.value, left, self.unary(), tok.pos)
        return left

    def unary(self) -> Expr:
        if self.tok.is_op("-"):
            tok = self.advance()
            operand = self.unary()
            if isinstance(operand, Literal) and isinstance(operand.value, int | float) and (
                    not isinstance(operand.value, bool)):
                return Literal(-operand.value, tok.pos)
            return Neg(operand, tok.pos)
        if self.tok.is_op("+"):
            self.advance()
            return self.unary()
        return self.primary()

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind == "string":
            self.advance()
            return Literal(tok.value, tok.pos)
        if tok.kind == "number":
            self.advance()
            text = tok.value
            value: int | float = float(text) if any(c in text for c in ".eE") else int(text)
            return Literal(value, tok.pos)
        if tok.is_op("("):
            self.advance()
            inner = self.expr()
            self.expect_op(")", "')' to close '('")
            return inner
        if tok.is_op("?"):
            self.advance()
            if self.tok.kind not in ("name", "quoted"):
                raise self.error(f"expected a field name after '?', found {self.found()}")
            found = self.field()
            return Field(found.path, tok.pos, optional=True)
        if tok.kind == "name":
            word = tok.value.lower()
            if word in ("true", "false"):
                self.advance()
                return Literal(word == "true", tok.pos)
            if word == "null":
                self.advance()
                return Literal(None, tok.pos)
            if word in KEYWORDS:
                raise self.error(f"expected a value, found keyword {tok.value!r} (backquote a "
                                 f"field of that name: `{tok.value}`)")
            nxt = self.peek()
            if nxt.is_op("(") or (nxt.is_op("~") and self.peek(2).is_op("(")):
                return self.call()
            return self.field()
        if tok.kind == "quoted":
            return self.field()
        raise self.error(f"expected a value, found {self.found()}")

    def field(self) -> Field:
        start = self.tok
        path = [self.advance().value]
        if path == ["events"] and self.adjacent_op("["):  # a match's N-th event (pipes)
            self.advance()
            index = self.tok
            if index.kind != "number" or not str(index.value).isdigit():
                raise self.error("expected an event number in 'events[N]' (0 for the first)")
            self.advance()
            self.expect_op("]", "']' after the event number")
            path = [f"events[{int(index.value)}]"]
            if not self.adjacent_op("."):
                raise self.error("expected '.field' after 'events[N]'")
        while self.tok.is_op(".") and self.peek().kind in ("name", "quoted") and (
                self.peek().pos == self.tok.pos + 1):
            self.advance()
            path.append(self.advance().value)
        if self.tok.is_op("[") and self.tok.pos == self.tokens[self.i - 1].pos + len(
                self.tokens[self.i - 1].value):
            raise self.error("array indexes ('field[0]') are not supported; a field that "
                             "holds an array matches when any element matches")
        return Field(tuple(path), start.pos)

    def adjacent_op(self, op: str) -> bool:
        """Whether the next token is ``op`` right after the previous one (no space)."""
        before = self.tokens[self.i - 1]
        return self.tok.is_op(op) and self.tok.pos == before.pos + len(str(before.value)) \
            if before.kind == "name" else self.tok.is_op(op)

    def call(self) -> Call:
        name = self.advance()
        insensitive = self.tilde()
        self.expect_op("(")
        args: list[Expr] = []
        if not self.tok.is_op(")"):
            args.append(self.expr())
            while self.tok.is_op(","):
                self.advance()
                args.append(self.expr())
        self.expect_op(")", "',' or ')' in the argument list")
        return Call(name.value.lower(), tuple(args), insensitive, name.pos)
