"""Fields declared ``field_types={"f": "version"}`` compare as software versions.

The key kernel is checked against a plain-Python statement of the rule (semantic
versioning's precedence, as Elastic's ``version`` field has it), then queries over a
store: literals, two fields, arrays, case, and the mistakes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate.eql.values import version_key

RULE = re.compile(r"(?P<main>[0-9]+(\.[0-9]+)*)(-(?P<pre>[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*))?"
                  r"(\+[0-9A-Za-z.-]+)?")


def rule(v: str) -> tuple:
    """The order, said plainly: versions first (numbers part by part, a prefix lower; a
    pre-release lower than its release; its identifiers numerically when digits, else
    as text, numbers lower), then anything else as text; ties broken by the text."""
    m = RULE.fullmatch(v)
    main = m["main"].split(".") if m else []
    ids = m["pre"].split(".") if m and m["pre"] else []
    if m is None or any(len(p.lstrip("0")) > 127 for p in main + ids if p.isdigit()):
        return (1, (), (), v)  # (a number of more than 127 digits: no version either)
    if not ids:
        return (0, tuple(map(int, main)), (1, ()), v)
    pre = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in ids)
    return (0, tuple(map(int, main)), (0, pre), v)


def order(versions: list[str | None]) -> list[str | None]:
    keys = version_key(pa.array(versions, pa.string()))
    return [versions[i] for i in pc.array_sort_indices(keys).to_pylist()]


@pytest.mark.parametrize("chain", [
    ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
     "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"],  # semver.org's own example
    ["0", "1", "1.2-rc", "1.2", "1.2.0-rc", "1.2.0", "1.9", "1.10", "1.10.2", "2", "10"],
    ["2.1.0", "2.4.1", "2.11.2"],  # Elastic's example
    ["1.0.0-1", "1.0.0-2", "1.0.0-10", "1.0.0-a", "1.0.0-a-b", "1.0.0-ab", "1.0.0-b"],
    ["1.0.0", "1.0.0+a", "1.0.0+b", "1.0.1"],  # +build only breaks ties (as text)
    ["1.01", "1.1", "1.2"],  # leading zeros do not count; the text breaks the tie
    ["99999999999999999999998", "99999999999999999999999", "100000000000000000000000"],
    ["3", "", "1..2", "1.2.x", "v1", None],  # no version: after them all, as text; null last
])
def test_versions_in_order(chain):
    assert order(list(reversed(chain))) == chain
    assert order(chain) == chain


def test_equal_keys_only_for_equal_text():
    keys = version_key(pa.array(["1.0", "1.0", "1.00", "1.0+b"])).to_pylist()
    assert keys[0] == keys[1] and len(set(keys)) == 3


number = st.one_of(st.integers(0, 12).map(str), st.sampled_from(["00", "007", "10", "0" * 3]),
                   st.integers(10**18, 10**30).map(str))
identifier = st.one_of(number, st.sampled_from(["alpha", "beta", "rc", "RC", "a-b", "x1", "-"]))
version = st.builds(
    lambda main, pre, build: ".".join(main) + (f"-{'.'.join(pre)}" if pre else "") + build,
    st.lists(number, min_size=1, max_size=4), st.lists(identifier, max_size=3),
    st.sampled_from(["", "+b1", "+a.2"]))
noise = st.sampled_from(["", "v1.2", "1.2.x", "1..2", "1.2-", "abc", "1" * 130, "1.2-" + "9" * 128])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(version, noise), min_size=1, max_size=12))
def test_the_kernel_follows_the_rule(versions):
    assert order(versions) == sorted(versions, key=rule)


EVENTS = [
    {"id": 0, "v": "1.10.2", "w": "1.9", "pkgs": [{"name": "a", "version": "1.10"}]},
    {"id": 1, "v": "1.9", "w": "1.9.0", "pkgs": [{"name": "a", "version": "1.9.9"}]},
    {"id": 2, "v": "1.0.0-alpha", "w": "1.0.0", "vs": ["0.9", "2.0.0-RC.1"]},
    {"id": 3, "v": "1.0.0", "w": None, "vs": []},
    {"id": 4, "v": "2.0.0-RC.1", "w": "2.0.0-rc.1", "vs": ["1.10", "3"]},
    {"id": 5, "w": "1"},  # no v
    {"id": 6, "v": "junk", "w": "1"},  # not a version: after every version
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = tidal.open(tmp_path_factory.mktemp("versions") / "s")
    s.append([{**e, "timestamp": 1_767_225_600_000_000_000 + i * 10**9,
               "event": {"category": "package"}} for i, e in enumerate(EVENTS)])
    s.flush()
    yield s
    s.close()


@dataclass
class Case:
    query: str
    ids: list[int]
    case_insensitive: bool = False
    types: tuple[tuple[str, str], ...] = (("v", "version"),)


CASES = [
    Case('any where v > "1.9"', [0, 4, 6]),
    Case('any where v > "1.9"', [4, 6], types=()),  # as text, "1.10.2" < "1.9"
    Case('any where v >= "1.9" and v < "2"', [0, 1]),
    Case('any where v < "1.0.0"', [2]),  # a pre-release is lower than its release
    Case('any where "1.0.0" <= v', [0, 1, 3, 4, 6]),
    Case('any where v <= "1.0.0-beta"', [2]),
    Case('any where v >= "2.0.0-rc.1"', [6]),  # case counts: "RC" < "rc"
    Case('any where v >= "2.0.0-rc.1"', [4, 6], case_insensitive=True),
    Case('any where v == "1.9"', [1]),  # == != in compare the text
    Case('any where v != "1.9"', [0, 2, 3, 4, 6]),
    Case('any where v in ("1.9", "1.0.0")', [1, 3]),
    Case('any where v in~ ("2.0.0-rc.1")', [4]),
    Case("any where v == null", [5]),
    Case("any where v > w", [0, 6]),  # the other side is read as a version too
    Case("any where w < v", [0, 6]),
    Case("any where v > w", [0, 6], types=(("v", "version"), ("w", "version"))),
    Case("any where v >= w", [0, 6]),
    Case("any where v >= w", [0, 4, 6], case_insensitive=True),
    Case('any where v : "1.*"', [0, 1, 2, 3]),
    Case('any where vs >= "3"', [4], types=(("vs", "version"),)),  # any element
    Case('any where arraySearch(vs, x, x > "1.9")', [2, 4], types=(("vs", "version"),)),
    Case('any where arraySearch(pkgs, p, p.version >= "1.10")', [0],
         types=(("pkgs.version", "version"),)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.query} {c.types} {c.case_insensitive}")
def test_version_queries(store, case):
    got = store.eql(case.query, case_insensitive=case.case_insensitive,
                    field_types=dict(case.types)).events
    assert got.column("id").to_pylist() == case.ids


def test_in_a_sequence(store):
    found = store.eql('sequence [any where v < "1.0.0"] [any where v > "1.10"]',
                      field_types={"v": "version"}).correlations
    assert [c.events.column("id").to_pylist() for c in found] == [[2, 4]]


@pytest.mark.parametrize("query, says", [
    ('any where v > "1.x"', "not a version: '1.x'"),
    ('any where "" < v', "not a version: ''"),
    ("any where v > 1", "cannot compare field 'v' (text) with 1 (number)"),
])
def test_mistakes_say_what_and_where(store, query, says):
    with pytest.raises(tidal.QueryError) as info:
        store.eql(query, field_types={"v": "version"})
    assert says in str(info.value)
    assert info.value.line == 1 and info.value.column is not None


def test_an_unknown_field_type_is_named(store):
    with pytest.raises(tidal.ConfigError, match="field_types\\['v'\\] .*not 'semver'"):
        store.eql('any where v > "1"', field_types={"v": "semver"})
