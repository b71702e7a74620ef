"""The shipped rule pack finds exactly the sequences the security workload plants."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest

import tidal
from tidal.bench.workloads import security
from tidal.correlate.eql.rules import load_rules

RULES = Path(__file__).resolve().parents[2] / "rules" / "security.eql"


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    table, planted = security(60_000, seed=11)
    with tidal.open(tmp_path_factory.mktemp("sec") / "s", entity_field="host.name") as store:
        for i in range(0, table.num_rows, 7_000):  # appends as users make them
            store.append(table.slice(i, 7_000))
        store.flush()
        results = {rule.name: store.eql(rule.query) for rule in load_rules(RULES)}
    return table, planted, results


def test_the_pack_holds_the_three_rules():
    assert [r.name for r in load_rules(RULES)] == ["logon_without_logoff",
                                                   "process_then_connect", "start_connect_end"]


def test_logons_without_logoff_are_exactly_the_planted_ones(found):
    table, planted, results = found
    got = results["logon_without_logoff"].correlations
    # planted logons use the reserved users (the last 5 %: user1900.. of 2,000), nothing else
    users = {c.key["user.name"] for c in got}
    assert all(int(u.removeprefix("user")) >= 1900 for u in users)  # precision
    logons = table.filter(pc.equal(pc.struct_field(table.column("event"), "action"), "logon"))
    reserved = [u for u in pc.struct_field(logons.column("user"), "name").to_pylist()
                if int(u.removeprefix("user")) >= 1900]
    assert len(got) == len(reserved) == planted["logon_without_logoff"] > 0  # recall
    assert len({(c.key["user.name"], c.key["host.name"]) for c in got}) == len(got)
    for c in got:
        assert c.events.column("_stage").to_pylist() == [1, 2]
        assert c.events.column("event")[1].as_py() is None  # the placeholder of the absence


def test_process_then_connect_are_exactly_the_planted_ones(found):
    table, planted, results = found
    got = results["process_then_connect"].correlations
    assert len(got) == planted["process_then_connect"] > 0
    assert all(c.key["process.pid"] >= 40_000 for c in got)  # planted pids only
    assert len({(c.key["host.name"], c.key["process.pid"], c.start) for c in got}) == len(got)
    assert all(0 < c.end - c.start <= 5 * 10**9 for c in got)


def test_start_connect_end_are_exactly_the_planted_ones(found):
    _, planted, results = found
    got = results["start_connect_end"].correlations
    assert len(got) == planted["start_connect_end"] > 0
    assert all(c.key["process.pid"] >= 40_000 for c in got)
    assert [c.events.column("_stage").to_pylist() for c in got[:1]] == [[1, 2, 3]]
    assert all(0 < c.end - c.start <= 10 * 10**9 for c in got)
    ends = {(c.key["host.name"], c.key["process.pid"]) for c in got}
    assert ends == {(c.key["host.name"], c.key["process.pid"])
                    for c in results["process_then_connect"].correlations}


def test_a_rule_that_does_not_parse_is_named(tmp_path):
    path = tmp_path / "bad.eql"
    path.write_text("// rule: fine\nany where true\n\n// rule: broken\nany where (\n")
    with pytest.raises(tidal.QueryError, match="rule 'broken' \\(from line 4\\)"):
        load_rules(path)


def test_dropping_rows_no_sequence_needs_changes_nothing(found, tmp_path, monkeypatch):
    import importlib

    table, _, results = found
    matching = importlib.import_module("tidal.correlate.matching")
    monkeypatch.setattr(matching, "KEEP_ROWS", 100)  # drop unneeded rows very often
    sequence = importlib.import_module("tidal.correlate.sequence")
    monkeypatch.setattr(sequence, "COMPACT_KEYS", 50)  # and keys without open sequences
    with tidal.open(tmp_path / "s", entity_field="host.name") as store:
        for i in range(0, table.num_rows, 7_000):
            store.append(table.slice(i, 7_000))
        store.flush()
        for rule in load_rules(RULES):
            again = store.eql(rule.query)
            before = results[rule.name]
            assert again.events.equals(before.events), rule.name
            assert [c.key for c in again.correlations] == [c.key for c in before.correlations]
