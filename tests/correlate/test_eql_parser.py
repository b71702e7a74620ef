"""EQL text → AST: every construct, and a clear error (line, column, caret) for bad text."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidal.correlate.eql import parse
from tidal.correlate.eql.ast import (
    Arith,
    BoolOp,
    Call,
    Compare,
    EventQuery,
    Field,
    InList,
    Join,
    Literal,
    Match,
    Neg,
    Not,
    Sample,
    Sequence,
)
from tidal.errors import QueryError

F = Field
L = Literal


def cond(text: str):
    body = parse(f"any where {text}").body
    assert isinstance(body, EventQuery)
    return body.condition


@pytest.mark.parametrize("text, expected", [
    ('a == "x"', Compare("==", F(("a",)), L("x"))),
    ("a = 'x'", Compare("==", F(("a",)), L("x"))),  # the Endgame dialect
    ("a.b.c != null", Compare("!=", F(("a", "b", "c")), L(None))),
    ("`my-field`.`x y` >= 1.5e3", Compare(">=", F(("my-field", "x y")), L(1500.0))),
    ("?maybe < -3", Compare("<", F(("maybe",), optional=True), L(-3))),
    ('a == """C:\\raw\\"""', Compare("==", F(("a",)), L("C:\\raw\\"))),
    ('a == "tab\\there \\"q\\" \\u{1F600}"',
     Compare("==", F(("a",)), L('tab\there "q" \U0001F600'))),
    ("a in (1, 2)", InList(F(("a",)), (L(1), L(2)))),
    ('a not in ("x")', InList(F(("a",)), (L("x"),), negated=True)),
    ('a in~ ("X")', InList(F(("a",)), (L("X"),), insensitive=True)),
    ('a : "x*"', Match("wildcard", F(("a",)), ("x*",), True)),
    ('a : ("x*", "?y")', Match("wildcard", F(("a",)), ("x*", "?y"), True)),
    ('a like "x*"', Match("like", F(("a",)), ("x*",), False)),
    ('a like~ ("x*", "y")', Match("like", F(("a",)), ("x*", "y"), True)),
    ('a regex~ "x.+"', Match("regex", F(("a",)), ("x.+",), True)),
    ("not a == 1 and b == 2",
     BoolOp("and", (Not(Compare("==", F(("a",)), L(1))), Compare("==", F(("b",)), L(2))))),
    ("a == 1 or b == 2 and c == 3", BoolOp("or", (Compare("==", F(("a",)), L(1)), BoolOp(
        "and", (Compare("==", F(("b",)), L(2)), Compare("==", F(("c",)), L(3))))))),
    ("a + 2 * b % 3 > -c", Compare(">", Arith("+", F(("a",)), Arith(
        "%", Arith("*", L(2), F(("b",))), L(3))), Neg(F(("c",))))),
    ("STARTSWITH~(x, 'a') and length(y) == 0", BoolOp("and", (
        Call("startswith", (F(("x",)), L("a")), insensitive=True),
        Compare("==", Call("length", (F(("y",)),)), L(0))))),
    ("true and not false", BoolOp("and", (L(True), Not(L(False))))),
    ("a == 1 // a comment\n and /* another */ b", BoolOp("and", (
        Compare("==", F(("a",)), L(1)), F(("b",))))),
])
def test_conditions(text, expected):
    assert cond(text) == expected


def test_categories():
    assert parse("process where true").body.category == "process"
    assert parse("any where true").body.category is None
    assert parse('"my-cat" where true').body.category == "my-cat"
    assert parse('"""6cat""" where true').body.category == "6cat"


def test_sequence_with_everything():
    q = parse("sequence by host.name, user with maxspan=1.5m "
              "[process where a == 1] by pid with runs=3 "
              "![file where true] by ppid "
              "[network where true] by pid "
              "until [process where stop] by pid | head 5 | tail 2")
    seq = q.body
    assert isinstance(seq, Sequence)
    assert seq.by == (F(("host", "name")), F(("user",)))
    assert seq.maxspan_ns == 90 * 10**9
    assert [(s.query.category, s.runs, s.missing, s.by) for s in seq.stages] == [
        ("process", 3, False, (F(("pid",)),)), ("file", 1, True, (F(("ppid",)),)),
        ("network", 1, False, (F(("pid",)),))]
    assert seq.until is not None and seq.until.query.category == "process"
    assert [(p.name, p.args) for p in q.pipes] == [("head", (L(5),)), ("tail", (L(2),))]


@pytest.mark.parametrize("unit, ns", [("ms", 10**6), ("s", 10**9), ("m", 6 * 10**10),
                                      ("h", 36 * 10**11), ("d", 864 * 10**11)])
def test_maxspan_units(unit, ns):
    seq = parse(f"sequence with maxspan=2{unit} [a where true] [b where true]").body
    assert seq.maxspan_ns == 2 * ns


def test_sample_join_and_pipes():
    sample = parse("sample by host [a where true] [b where true]").body
    assert isinstance(sample, Sample) and sample.by == (F(("host",)),)
    join = parse("join by pid [a where true] [b where true] until [c where true]").body
    assert isinstance(join, Join) and join.until is not None
    q = parse("a where true | count | count x, y | unique x | unique_count x | sort x, y "
              "| filter x > 1 | head")
    assert [p.name for p in q.pipes] == ["count", "count", "unique", "unique_count", "sort",
                                         "filter", "head"]
    assert q.pipes[0].args == () and q.pipes[-1].args == (L(10),)


@dataclass
class Bad:
    text: str
    line: int
    column: int
    says: str


@pytest.mark.parametrize("case", [
    Bad("", 1, 1, "empty query"),
    Bad("process where", 1, 14, "expected a value"),
    Bad("process", 1, 8, "expected 'where'"),
    Bad("process where a ==", 1, 19, "found the end of the query"),
    Bad("process where a < b < c", 1, 21, "cannot be chained"),
    Bad("process where x in ()", 1, 21, "at least one value"),
    Bad('process where a == "open', 1, 20, "unterminated string"),
    Bad('process where a == "\\q"', 1, 21, "unknown escape"),
    Bad("process where a == 1 /* open", 1, 22, "unterminated comment"),
    Bad("process where a == 1 | bogus", 1, 24, "unknown pipe 'bogus'"),
    Bad("process where a == 1 | unique", 1, 24, "needs at least one field"),
    Bad("process where (a == 1", 1, 22, "')' to close '('"),
    Bad("process where a[0] == 1", 1, 16, "array indexes"),
    Bad("process where and == 1", 1, 15, "keyword 'and'"),
    Bad("process where a == 1 b == 2", 1, 22, "did you mean 'and' or 'or'"),
    Bad("process where a : 5", 1, 19, "string pattern"),
    Bad("process where a == #", 1, 20, "unexpected character '#'"),
    Bad("sequence [a where true]", 1, 24, "at least 2 stages"),
    Bad("sequence with maxspan=5 [a where true] [b where true]", 1, 25, "time unit"),
    Bad("sequence with maxspan=1h by x [a where true] [b where true]", 1, 26,
        "before 'with maxspan'"),
    Bad("sequence by a [x where true] by b [y where true]", 1, 1, "same number of 'by' keys"),
    Bad("sequence ![a where true] ![b where true]", 1, 1, "not missing"),
    Bad("sequence [a where true] with runs=0 [b where true]", 1, 35, "runs must be 1..100"),
    Bad("sample [a where true] ![b where true]", 1, 23, "not allowed in a sample"),
    Bad("sample [a where 1] [b where 1] [c where 1] [d where 1] [e where 1] [f where 1]",
        1, 68, "at most 5 stages"),
    Bad("process where x = 1\n  and y == ", 2, 12, "expected a value"),
])
def test_errors_name_line_and_column_and_show_a_caret(case):
    with pytest.raises(QueryError) as info:
        parse(case.text)
    err = info.value
    assert case.says in str(err)
    assert (err.line, err.column) == (case.line, case.column), str(err)
    assert str(err).startswith(f"line {case.line}, column {case.column}: ")
    text_line, caret = str(err).splitlines()[-2:]
    assert caret.index("^") - 2 == case.column - 1  # under the place, past the indent
    assert text_line[2:] == case.text.splitlines()[case.line - 1] if case.text else True


TOKENS = st.sampled_from([
    "process", "any", "where", "sequence", "sample", "join", "by", "with", "maxspan", "=",
    "runs", "5m", "3", "[", "]", "!", "(", ")", ",", "|", "head", "count", "and", "or", "not",
    "in", "in~", ":", "like~", "regex", "==", "<", "+", "-", "*", '"x*"', "'y'", "a.b", "`q`",
    "?c", "length", "true", "null", "until", ".", "\n", '"""r"""', "~", "filter",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(TOKENS, max_size=25))
def test_any_token_soup_parses_or_fails_cleanly(tokens):
    text = " ".join(tokens)
    try:
        parse(text)
    except QueryError as err:
        assert err.line is not None and err.column is not None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_fails_cleanly(text):
    try:
        parse(text)
    except QueryError:
        pass
