"""CorQL text → AST: every construct, canonical text that parses back, and a clear
error (line, column, caret) for bad text."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidal.correlate.corql as corql
from tidal.correlate.corql import KeyPair, Link, Matcher, Query, Selector, check_sources, parse
from tidal.correlate.corql.ast import format_duration
from tidal.errors import QueryError

S, MS, M, H, D = 10**9, 10**6, 60 * 10**9, 3_600 * 10**9, 86_400 * 10**9
M_ = Matcher


def sel(*matchers: Matcher, source: str = "events", range_ns: int | None = None) -> Selector:
    return Selector(source, matchers, range_ns)


def link(op: str, right: Selector, *, on=None, ignoring=None, within_ns=None, group=None,
         group_fields=()) -> Link:
    return Link(op, on, ignoring, within_ns, group, group_fields, right)  # type: ignore[arg-type]


E = sel()
WEB = sel(M_("service", "=", "web"))
DB = sel(M_("service", "=", "db"))


@pytest.mark.parametrize("text, first, links, post", [
    # selectors, matchers, the four operators on them
    ("events()", E, (), ()),
    ("events({})", E, (), ()),
    ('events({service="web"})', WEB, (), ()),
    ('events({a="1", b!="2", c=~"3.*", d!~"4|5",})',
     sel(M_("a", "=", "1"), M_("b", "!=", "2"), M_("c", "=~", "3.*"), M_("d", "!~", "4|5")),
     (), ()),
    ('loki({job="x"})[1m]', sel(M_("job", "=", "x"), source="loki", range_ns=M), (), ()),
    # the three string forms, with Go escapes and raw text
    (r'events({a="t\tq\"\\\u00e9\x41\101\U0001F600"})',
     sel(M_("a", "=", 't\tq"\\\u00e9AA\U0001F600')), (), ()),
    (r"""events({a='it\'s "x"'})""", sel(M_("a", "=", 'it\'s "x"')), (), ()),
    (r"events({a=~`C:\dir\d+`})", sel(M_("a", "=~", r"C:\dir\d+")), (), ()),
    ("events({a=``})", sel(M_("a", "=", "")), (), ()),
    # dotted and backquoted paths; keywords may name fields
    ('events({kubernetes.pod.name="p"})', sel(M_("kubernetes.pod.name", "=", "p")), (), ()),
    ('events({`my-field`="1", http.`x``y`.z="2", on="3"})',
     sel(M_("my-field", "=", "1"), M_("http.x`y.z", "=", "2"), M_("on", "=", "3")), (), ()),
    # durations
    ("events()[250ms]", sel(range_ns=250 * MS), (), ()),
    ("events()[30s]", sel(range_ns=30 * S), (), ()),
    ("events()[5m]", sel(range_ns=5 * M), (), ()),
    ("events()[2h]", sel(range_ns=2 * H), (), ()),
    ("events()[7d]", sel(range_ns=7 * D), (), ()),
    ("events()[1h30m]", sel(range_ns=90 * M), (), ()),
    ("events()[1d2h3m4s5ms]", sel(range_ns=D + 2 * H + 3 * M + 4 * S + 5 * MS), (), ()),
    # operators and modifiers
    ("events() and events()", E, (link("and", E),), ()),
    ("events() or events()", E, (link("or", E),), ()),
    ("events() unless events()", E, (link("unless", E),), ()),
    ("events() and on(request_id) events()", E,
     (link("and", E, on=(KeyPair("request_id", "request_id"),)),), ()),
    ("events() and on(a, b=c, x.y=`z-z`,) events()", E,
     (link("and", E, on=(KeyPair("a", "a"), KeyPair("b", "c"), KeyPair("x.y", "z-z"))),), ()),
    ("events() and on() events()", E, (link("and", E, on=()),), ()),
    ("events() or ignoring(host, k8s.pod) events()", E,
     (link("or", E, ignoring=("host", "k8s.pod")),), ()),
    ("events() unless ignoring() events()", E, (link("unless", E, ignoring=()),), ()),
    ("events() and within(30s) events()", E, (link("and", E, within_ns=30 * S),), ()),
    ("events() and group_left events()", E, (link("and", E, group="left"),), ()),
    ("events() and group_right() events()", E, (link("and", E, group="right"),), ()),
    ("events() and on(id) group_left(user, k8s.ns) events()", E,
     (link("and", E, on=(KeyPair("id", "id"),), group="left", group_fields=("user", "k8s.ns")),),
     ()),
    ("events() or group_right(x) events()", E, (link("or", E, group="right",
                                                     group_fields=("x",)),), ()),
    # modifiers in any order, keywords in any case
    ("events() AND Group_Left(u) WITHIN(1m) On(id) events()", E,
     (link("and", E, on=(KeyPair("id", "id"),), within_ns=M, group="left",
           group_fields=("u",)),), ()),
    ("events() UNLESS within(5s) IGNORING(a) events()", E,
     (link("unless", E, ignoring=("a",), within_ns=5 * S),), ()),
    # chains of three and four selectors, a post-filter
    ('events({service="web"}) and on(id) events({service="db"}) or events()', WEB,
     (link("and", DB, on=(KeyPair("id", "id"),)), link("or", E)), ()),
    ('events() and events() unless on(x) events() or within(1s) events({service="db"})', E,
     (link("and", E), link("unless", E, on=(KeyPair("x", "x"),)),
      link("or", DB, within_ns=S)), ()),
    ('events() and events() {status=~"5..", user!=""}', E, (link("and", E),),
     (M_("status", "=~", "5.."), M_("user", "!=", ""))),
    ('events() {a="b",}', E, (), (M_("a", "=", "b"),)),
    # comments and newlines anywhere between tokens
    ('# the front end\nevents(\n  {service="web"}  # who\n)[5m]\n  and\n  on(id) # key\n'
     "  events()\n", sel(M_("service", "=", "web"), range_ns=5 * M),
     (link("and", E, on=(KeyPair("id", "id"),)),), ()),
    ('events({ a\n= "x" })', sel(M_("a", "=", "x")), (), ()),
])
def test_parses(text, first, links, post):
    q = parse(text)
    assert (q.first, q.links, q.post_filter, q.text) == (first, links, post, text)
    again = parse(str(q))
    assert (again.first, again.links, again.post_filter) == (first, links, post)


def test_the_example_from_the_brief_with_positions():
    text = ('events({service="frontend", path=~"/api/.*"})[5m] and on(request_id) within(30s) '
            'events({service="backend"})[5m] {status=~"5.."}')
    q = parse(text)
    assert q.first == sel(M_("service", "=", "frontend"), M_("path", "=~", "/api/.*"),
                          range_ns=5 * M)
    assert q.links == (link("and", sel(M_("service", "=", "backend"), range_ns=5 * M),
                            on=(KeyPair("request_id", "request_id"),), within_ns=30 * S),)
    assert q.post_filter == (M_("status", "=~", "5.."),)
    positions = [q.first.pos, q.first.matchers[0].pos, q.first.matchers[1].pos, q.links[0].pos,
                 q.links[0].right.pos, q.post_filter[0].pos]
    assert positions == [text.index("events"), text.index("service"), text.index("path"),
                         text.index("and"), text.rindex("events"), text.index("status")]
    assert q.selectors == (q.first, q.links[0].right)


@dataclass(frozen=True)
class Bad:
    text: str
    line: int
    column: int
    says: str


@pytest.mark.parametrize("case", [
    # empty queries, unknown tokens, trailing garbage
    Bad("", 1, 1, "empty query"),
    Bad("  # only a comment\n", 2, 1, "empty query"),
    Bad("events() @", 1, 10, 'unexpected character "@"'),
    Bad('events({a~"x"})', 1, 10, 'unexpected character "~"; a regex matcher is =~ or !~'),
    Bad("events() foo()", 1, 10, 'expected the end of the query after a selector, found "foo"'),
    Bad("events()) ", 1, 9, 'found ")"'),
    Bad('events() {a="b"} and events()', 1, 18,
        'expected the end of the query after the post-filter, found "and"'),
    Bad("events() {}", 1, 11, 'expected a label matcher like service="web" in the post-filter'),
    # selectors
    Bad("and()", 1, 1, 'expected a selector like events({service="web"}), found "and"'),
    Bad("events() and", 1, 13, "expected a selector like events({service=\"web\"}), found the "
        "end of the query"),
    Bad('events{a="x"}', 1, 7, 'expected "(" after "events", found "{"'),
    Bad('events({a="x"}', 1, 15, 'expected ")" to close events(, found the end of the query'),
    Bad('events({a="x" b="y"})', 1, 15, 'expected "," or "}" in the selector\'s label matchers'),
    Bad("events() and onn(a) events()", 1, 18,
        'expected "{" (label matchers) or ")" after "onn(", found "a"'),
    Bad("events()[5m", 1, 12, 'expected "]" after "[5m"'),
    # strings
    Bad('events({a="x})', 1, 11, "unterminated string"),
    Bad("events({a='x})\n", 1, 11, "unterminated string"),
    Bad("events({a=`x})", 1, 11, "unterminated backquoted name or raw string"),
    Bad(r'events({a="\q"})', 1, 12, r"unknown escape \q"),
    Bad(r'events({a="\u12"})', 1, 12, r"\u takes exactly 4 hex digits"),
    Bad(r'events({a="\ud800"})', 1, 12, r"\u takes exactly 4 hex digits"),
    # matchers without a value
    Bad("events({service})", 1, 16, 'the label matcher on "service" has no value'),
    Bad("events({service=})", 1, 17, 'expected a quoted string after "service=", found "}"'),
    Bad("events({service=web})", 1, 17, 'expected a quoted string after "service=", found "web"'),
    Bad('events({="x"})', 1, 9, 'expected a label matcher like service="web" in the selector'),
    Bad('events({a.="x"})', 1, 11, "expected a field name in a label matcher"),
    Bad('events({``="x"})', 1, 9, "empty field name"),
    # durations
    Bad("events()[]", 1, 10, 'expected a duration like 30s after "[", found "]"'),
    Bad("events()[5]", 1, 10, 'missing unit after 5 in "5"'),
    Bad("events()[5w]", 1, 10, 'unknown unit "w" in "5w": use ms, s, m, h or d'),
    Bad("events()[0s]", 1, 10, 'duration "0s" must be greater than zero'),
    Bad("events()[0h0m]", 1, 10, "must be greater than zero"),
    Bad("events()[1.5h]", 1, 10, '"1.5h" is not a duration: write whole numbers'),
    Bad("events()[30m1h]", 1, 10, "must go from largest to smallest"),
    Bad("events()[1m1m]", 1, 10, "must go from largest to smallest"),
    Bad("events()[999999999999d]", 1, 10, "too long"),
    Bad("events()[5 m]", 1, 10, 'missing unit after 5 in "5"'),
    Bad("events() and within(x) events()", 1, 21,
        'expected a duration like 30s after "within(", found "x"'),
    Bad("events() and within(30s events()", 1, 25, 'expected ")" after "within(30s"'),
    Bad("events() and within(0ms) events()", 1, 21, "must be greater than zero"),
    # modifiers
    Bad("events() and on(a) ignoring(b) events()", 1, 20,
        "ignoring(...) cannot join on(...): name the keys with one of on or ignoring"),
    Bad("events() and ignoring(b) ON(a) events()", 1, 26, "on(...) cannot join ignoring(...)"),
    Bad("events() and on(a) on(b) events()", 1, 20, "on repeats a modifier already given"),
    Bad("events() and within(1s) within(2s) events()", 1, 25, "within repeats a modifier"),
    Bad("events() and group_left group_right events()", 1, 25,
        "group_right repeats a modifier already given to this and (as group_left)"),
    Bad("events() unless group_left events()", 1, 17,
        "group_left cannot modify unless: an anti-join keeps only the left side"),
    Bad("events() UNLESS on(a) group_right(x) events()", 1, 23, "group_right cannot modify"),
    Bad("events() and on(a b) events()", 1, 19, 'expected "," or ")" in on(...), found "b"'),
    Bad('events() and on(a="b") events()', 1, 19,
        'expected a field name in on(...) after "a=", found the string "b"'),
    Bad("events() and on events()", 1, 17, 'expected "(" after "on", found "events"'),
    Bad("events() and ignoring(,) events()", 1, 23, "expected a field name in ignoring(...)"),
    # regexes, pointed at the string
    Bad('events({a=~"("})', 1, 12, 'invalid regex "(": missing )'),
    Bad('events({a!~"a)|(b"})', 1, 12, 'invalid regex "a)|(b"'),
    Bad('events({a=~"(?=x)y"})', 1, 12, "RE2 syntax, as in Prometheus"),
    Bad('events({a="ok"}) {b=~"[z-a]"}', 1, 22, "invalid regex"),
    # an error on a later line
    Bad('events({service="web"})\n  and on(id) within(5q) events()', 2, 21,
        'unknown unit "q" in "5q"'),
    Bad('events()\nand\n  events({a=~"*"})', 3, 14, "invalid regex"),
])
def test_errors_name_line_and_column_and_show_a_caret(case):
    with pytest.raises(QueryError) as info:
        parse(case.text)
    err = info.value
    assert case.says in str(err)
    assert (err.line, err.column) == (case.line, case.column), str(err)
    assert str(err).startswith(f"line {case.line}, column {case.column}: ")
    assert err.query == case.text
    text_line, caret = str(err).splitlines()[-2:]
    assert caret.index("^") - 2 == case.column - 1  # under the place, past the indent
    lines = case.text.split("\n")
    assert text_line[2:] == lines[case.line - 1]


@pytest.mark.parametrize("text, known, line, column, says", [
    ("events() and events()", ("events",), None, None, None),
    ("events() and loki()", ("events", "loki"), None, None, None),
    ("events() and\n loki({job=\"x\"})", ("events",), 2, 2,
     'no such source "loki": only events(...) reads Tidal\'s store; the loki and graylog '
     "adapters are not built yet"),
    ("graylog()", ("events",), 1, 1, "graylog adapters are not built yet"),
    ("events() or prom()", ("events",), 1, 13,
     'no such source "prom": only events(...) reads Tidal\'s store\n'),
    ("events()", ("loki",), 1, 1, 'no such source "events": only loki(...) reads'),
])
def test_check_sources(text, known, line, column, says):
    q = parse(text)
    if says is None:
        check_sources(q, known)
        return
    with pytest.raises(QueryError) as info:
        check_sources(q, known)
    assert (info.value.line, info.value.column) == (line, column)
    assert says in str(info.value)


def test_the_package_exports():
    assert sorted(corql.__all__) == [
        "KeyPair", "Link", "Matcher", "MatcherPredicate", "Query", "Selector", "check_sources",
        "compile_matchers", "parse", "prune"]
    assert all(hasattr(corql, name) for name in corql.__all__)


# -- properties ---------------------------------------------------------------------------

_SEGMENTS = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,5}", fullmatch=True),
                      st.sampled_from(["on", "AND", "my-field", "x`y", "a b", "é"]))
_PATHS = st.lists(_SEGMENTS, min_size=1, max_size=3).map(".".join)
_REGEXES = st.sampled_from(["", ".*", ".+", "5..", "a|b", r"\d+", "(?i)web-[0-9]+", r"[\pL]+"])
_MATCHERS = st.one_of(
    st.builds(Matcher, _PATHS, st.sampled_from(["=", "!="]), st.text(max_size=8)),
    st.builds(Matcher, _PATHS, st.sampled_from(["=~", "!~"]), _REGEXES),
)
_DURATIONS = st.integers(1, 10**7).map(lambda n: n * MS)
_SELECTORS = st.builds(Selector, st.sampled_from(["events", "loki", "src_2"]),
                       st.lists(_MATCHERS, max_size=3).map(tuple), st.none() | _DURATIONS)
_KEYS = st.builds(KeyPair, _PATHS, _PATHS) | _PATHS.map(lambda p: KeyPair(p, p))


@st.composite
def _links(draw) -> Link:
    op = draw(st.sampled_from(["and", "or", "unless"]))
    on = draw(st.none() | st.lists(_KEYS, max_size=2).map(tuple))
    ignoring = draw(st.none() | st.lists(_PATHS, max_size=2).map(tuple)) if on is None else None
    group = None if op == "unless" else draw(st.sampled_from([None, "left", "right"]))
    fields = draw(st.lists(_PATHS, max_size=2).map(tuple)) if group else ()
    return Link(op, on, ignoring, draw(st.none() | _DURATIONS), group, fields,
                draw(_SELECTORS))


@settings(max_examples=300, deadline=None)
@given(_SELECTORS, st.lists(_links(), max_size=3), st.lists(_MATCHERS, max_size=2))
def test_canonical_text_parses_back_to_the_same_query(first, links, post):
    q = Query(first, tuple(links), tuple(post), "")
    again = parse(str(q))
    assert (again.first, again.links, again.post_filter) == (q.first, q.links, q.post_filter)


def test_format_duration_writes_what_parse_reads():
    assert [format_duration(n) for n in (250 * MS, 90 * M, D + S, 0)] == [
        "250ms", "1h30m", "1d1s", "0s"]


_TOKENS = st.sampled_from([
    "events", "(", ")", "{", "}", "[", "]", ",", ".", "=", "!=", "=~", "!~", '"x"', "'y'",
    "`z`", "5m", "1h30m", "0s", "and", "or", "unless", "on", "ignoring", "within",
    "group_left", "group_right", "a", "b.c", "#", "\n", "~", "@", '"(', "loki",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKENS, max_size=25))
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
    except QueryError as err:
        assert err.line is not None and err.column is not None
