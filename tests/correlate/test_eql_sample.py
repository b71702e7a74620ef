"""EQL samples over a real store: Elastic's rules, as small tables of cases.

Events are written as ``id:user:what@second`` (``id:user/host:what@second`` to
give a host; ``-`` is null); each case lists the samples (by event ids, in
stage order) that must come back, in order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidal
from tidal.correlate._kernels_sample import collect, pick
from tidal.correlate.eql.run import run_eql

from .support import T0, OneRowBatches, events


@pytest.fixture(params=["as stored", "one-row batches"])
def run(request):
    def run(store, query, **options):
        with store.snapshot() as snap:
            view = snap if request.param == "as stored" else OneRowBatches(snap)
            return run_eql(view, query, **options)
    return run


@dataclass
class Case:
    name: str
    query: str
    data: str
    found: list[list[int]]
    max_samples_per_key: int = 1


W, H = '[process where p == "w"]', '[process where p == "h"]'
ANY = "[process where true]"

CASES = [
    Case("one sample per key, by key; time order does not matter", f"sample by user {W} {H}",
         "1:b:w@1 2:b:h@2 3:a:h@3 4:a:w@4 5:c:w@5", [[4, 3], [1, 2]]),
    Case("a null key never joins", f"sample by user {W} {H}",
         "1:-:w@1 2:-:h@2 3:a:w@3 4:a:h@4", [[3, 4]]),
    Case("each stage takes its first event", f"sample by user {W} {H}",
         "1:a:w@1 2:a:w@2 3:a:h@3 4:a:h@4", [[1, 3]]),
    Case("an event serves one stage of a sample", f"sample by user {ANY} {ANY}",
         "1:a:w@1 2:b:w@2 3:b:h@3", [[2, 3]]),
    Case("more samples vary the last stage first", f"sample by user {W} {H}",
         "1:a:w@1 2:a:w@2 3:a:h@3 4:a:h@4 5:a:h@5", [[1, 3], [1, 4], [1, 5]], 3),
    Case("then an earlier stage", f"sample by user {W} {H}",
         "1:a:w@1 2:a:w@2 3:a:h@3 6:b:w@6 7:b:h@7", [[1, 3], [2, 3], [6, 7]], 2),
    Case("distinct events across three stages", f"sample by user {ANY} {W} {ANY}",
         "1:a:w@1 2:a:h@2 3:a:w@3", [[1, 3, 2], [2, 1, 3], [2, 3, 1]], 3),
    Case("stage keys join across fields", f"sample {W} by user {H} by host",
         "1:a/x:w@1 2:b/a:h@2 3:c/c:h@3", [[1, 2]]),
    Case("sample keys come before the stage keys", f"sample by host {W} by user {H} by user",
         "1:a/x:w@1 2:a/y:h@2 3:a/x:h@3", [[1, 3]]),
    Case("ties on timestamp keep _seq order", f"sample by user {W} {H}",
         "1:a:w@1 2:a:w@1 3:a:h@1", [[1, 3]]),
    Case("no matches", f"sample by user {W} {H}", "1:a:x@1 2:b:w@2", []),
    Case("head and tail count samples", f"sample by user {W} {H} | tail 1",
         "1:a:w@1 2:a:h@2 3:b:w@3 4:b:h@4", [[3, 4]]),
    Case("tail after several samples per key", f"sample by user {W} {H} | head 2 | tail 1",
         "1:a:w@1 2:a:h@2 3:a:h@3 4:b:w@4 5:b:h@5", [[1, 3]], 2),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_samples(case, run):
    with tidal.open(None) as store:
        store.append(events(case.data))
        result = run(store, case.query, max_samples_per_key=case.max_samples_per_key)
    assert [c.events.column("id").to_pylist() for c in result.correlations] == case.found
    assert result.events.column("_sequence").to_pylist() == [
        i for i, c in enumerate(case.found) for _ in c]
    assert result.events.column("_stage").to_pylist() == [
        s for c in case.found for s in range(1, len(c) + 1)]
    assert [c.id for c in result.correlations] == list(range(len(case.found)))


def test_correlations_carry_key_and_span(tmp_path):
    with tidal.open(tmp_path / "s") as store:
        store.append(events("1:b:h@5 2:a:w@7"))
        store.flush()  # across a segment and the memtable
        store.append(events("3:b:w@9 4:a:h@30"))
        result = store.eql(f"sample {W} by user {H} by user", size=1)
    (only,) = result.correlations
    assert only.key == {"user": "a"} and only.completeness == "complete"
    assert (only.start - T0, only.end - T0) == (7 * 10**9, 30 * 10**9)


def test_numeric_keys_sort_as_numbers():
    with tidal.open(None) as store:
        store.append([{"n": n, "p": p, "timestamp": T0 + i, "event": {"category": "process"}}
                      for i, (n, p) in enumerate([(10, "w"), (10, "h"), (9, "w"), (9, "h")])])
        result = store.eql(f"sample by n {W} {H}")
    assert [c.key for c in result.correlations] == [{"n": 9}, {"n": 10}]


def test_elastic_documentation_example():
    """The first example of Elastic's "Sample chronologically unordered events" (its three
    indices in one store). Elastic takes each filter's events as its shards return
    them; Tidal takes them in time order, so for ``doom`` the third filter takes
    event 37 (first in time after 17, which the first filter took) where Elastic's
    illustration shows 16; the keys and the ``farcry`` sample agree."""
    docs = [  # (id, timestamp ms, host, uptime, port, bool)
        (11, 1234567891, "doom", 0, 1234, None), (12, 1234567892, "CS", 5, 1, None),
        (13, 1234567893, "farcry", 1, 1234, False), (14, 1234567894, "GTA", 3, 12, None),
        (15, 1234567895, "sniper 3d", 6, 1234, None), (16, 1234568896, "doom", None, 65123, True),
        (17, 1234567897, "doom", 15, 1234, True), (18, 1234567898, "doom", 16, 512, None),
        (19, 1234567899, "GTA", None, 12, True), (110, 1234567893, "farcry", 1, 1234, True),
        (21, 1234567991, "doom", 0, 1234, None), (22, 1234567992, "CS", 5, 1, None),
        (23, 1234567993, "farcry", 1, 1234, False), (24, 1234567994, "GTA", 3, 12, None),
        (25, 1234567995, "sniper 3d", 6, 1234, None), (26, 1234568996, "doom", None, 65123, True),
        (27, 1234567997, "doom", 15, 1234, True), (28, 1234567998, "doom", 16, 512, None),
        (29, 1234567999, "GTA", None, 12, False), (31, 1334567891, "doom", 0, 12, None),
        (32, 1334567892, "CS", None, None, None), (33, 1334567893, "farcry", None, None, True),
        (34, 1334567894, "GTA", None, None, True), (35, 1234567895, "sniper 3d", None, None, None),
        (36, 1234578896, "doom", None, None, True), (37, 1234567897, "doom", None, None, True),
        (38, 1234577898, "doom", None, None, None), (39, 1234577899, "GTA", None, None, True),
    ]
    rows = [{"id": i, "timestamp": ms * 10**6, "host": host, "uptime": up, "port": port,
             "bool": flag, "event_type": "alert"} for i, ms, host, up, port, flag in docs]
    with tidal.open(None, category_field="event_type") as store:
        store.append(rows)
        result = store.eql("sample by host [any where uptime > 0] [any where port > 100] "
                           "[any where bool == true]")
    assert [(c.key["host"], c.events.column("id").to_pylist())
            for c in result.correlations] == [("doom", [17, 11, 37]),
                                              ("farcry", [13, 110, 33])]


def test_an_empty_store_finds_nothing():
    with tidal.open(None) as store:
        result = store.eql("sample by ?user [any where true] [any where true]")
    assert result.correlations == [] and result.events.column_names[:2] == ["_sequence", "_stage"]


@pytest.mark.parametrize(("query", "says"), [
    (f"sample {W} {H}", "a sample needs join keys"),
    (f"sample by user {W} {H} until {W}", "unexpected 'until'"),
    (f"sample by user {W} with runs=2 {H}", "'with runs' is not allowed"),
])
def test_malformed_samples_say_why(query, says):
    with tidal.open(None) as store:
        store.append([{"user": "a", "p": "w", "tags": ["x"], "timestamp": T0,
                       "event": {"category": "process"}}])
        with pytest.raises(tidal.QueryError, match=says) as info:
            store.eql(query)
    assert info.value.line == 1 and info.value.column is not None


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_max_samples_per_key_is_checked(bad):
    with tidal.open(None) as store:
        store.append(events("1:a:w@1"))
        with pytest.raises(tidal.ConfigError, match="max_samples_per_key"):
            store.eql(f"sample by user {W} {H}", max_samples_per_key=bad)


def test_an_empty_time_range_finds_nothing():
    with tidal.open(None) as store:
        store.append(events("1:a:w@1 2:a:h@2"))
        result = store.eql(f"sample by user {W} {H}", start=T0 + 10**12)
    assert result.correlations == [] and result.events.num_rows == 0
    assert result.events.column_names[:2] == ["_sequence", "_stage"]


def test_the_kernels_alone():
    keys = np.array([[0, -1, 0, 1, 0], [-1, 0, 0, 1, 0]], dtype=np.int64)
    counts = np.zeros((2, 2), np.int64)
    lists = np.zeros((2, 2, 2), np.int64)  # (two candidates per key and stage at most)
    taken = collect(keys, np.arange(10, 15, dtype=np.int64), counts, lists)
    assert taken.tolist() == [True, True, True, True, False]
    assert counts.tolist() == [[2, 2], [1, 1]]
    found, codes = pick(counts, lists, 2, 4)
    assert found.tolist() == [[10, 11], [10, 12], [12, 11]]  # (13 cannot be both stages)
    assert codes.tolist() == [0, 0, 0]


def reference(rows: list[dict], stages: list[str], max_per_key: int) -> list[list[int]]:
    """Elastic's rule, written plainly: per key, each stage's first candidates in time
    order, the picks of distinct events in list order, keys ascending."""
    capacity = len(stages) + max_per_key - 1
    keys = sorted({r["user"] for r in rows if r["user"] is not None})
    out = []
    for key in keys:
        lists = [[r["id"] for r in rows if r["user"] == key and r["kind"] in kinds][:capacity]
                 for kinds in stages]
        picks = [list(p) for p in itertools.product(*lists) if len(set(p)) == len(p)]
        out += picks[:max_per_key]
    return out


STAGES = {"w": ({"w"}, 'kind == "w"'), "h": ({"h"}, 'kind == "h"'),
          "wh": ({"w", "h"}, 'kind in ("w", "h")')}
sample_event = st.fixed_dictionaries({
    "user": st.sampled_from(["a", "b", "c", None]), "kind": st.sampled_from(["w", "h", "x"]),
    "gap": st.integers(0, 2)})


@settings(max_examples=60, deadline=None)
@given(st.lists(sample_event, min_size=1, max_size=12),
       st.lists(st.sampled_from(list(STAGES)), min_size=2, max_size=3), st.integers(1, 3))
def test_samples_match_a_plain_reference(drawn, stages, max_per_key):
    rows, at = [], 0
    for i, e in enumerate(drawn):
        at += e["gap"]
        rows.append({"id": i, "user": e["user"], "kind": e["kind"], "timestamp": T0 + at,
                     "event": {"category": "process"}})
    query = "sample by user " + " ".join(f"[process where {STAGES[s][1]}]" for s in stages)
    with tidal.open(None) as store:
        store.append(rows)
        got = store.eql(query, max_samples_per_key=max_per_key)
    ordered = sorted(rows, key=lambda r: (r["timestamp"], r["id"]))
    expected = reference(ordered, [STAGES[s][0] for s in stages], max_per_key)
    assert [c.events.column("id").to_pylist() for c in got.correlations] == expected, query


def test_the_command_line_takes_max_samples_per_key(tmp_path, capsys):
    import json

    from tidal.cli import main

    path = tmp_path / "cli"
    with tidal.open(path) as s:
        s.append([{"timestamp": T0 + i, "user": "a", "p": p, "event": {"category": "process"}}
                  for i, p in enumerate("wwhh")])
    query = f"sample by user {W} {H}"
    for n, samples in ((1, 1), (2, 2)):
        assert main(["eql", query, "--store", str(path), "--max-samples-per-key", str(n),
                     "--format", "json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len({r["_sequence"] for r in rows}) == samples
