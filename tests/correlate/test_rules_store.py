"""Rules kept in the store: added, listed, removed, persisted across open, run live
from open on; their correlations stored and read back (``correlations()`` and the
SQL view ``correlations``)."""

from __future__ import annotations

import json
import time

import pyarrow.compute as pc
import pytest

import tidal
from tidal.errors import ConfigError, QueryError

from .support import T0

S = 10**9
JOIN = 'events({svc="fe"}) and on(rid) within(10s) events({svc="be"})'
SEQUENCE = 'sequence by rid [any where svc == "fe"] [any where svc == "be"]'


def pair(second: int, rid: str) -> list[dict]:
    return [{"timestamp": T0 + second * S, "svc": "fe", "rid": rid},
            {"timestamp": T0 + (second + 1) * S, "svc": "be", "rid": rid}]


def settled(store: tidal.Store, rows: int, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while (found := store.correlations()).num_rows < rows:
        assert time.monotonic() < deadline, found.num_rows
        time.sleep(0.02)
    time.sleep(0.1)
    return store.correlations()


def test_rules_persist_and_run_from_open_on(tmp_path):
    with tidal.open(tmp_path) as store:
        store.append(pair(0, "old"))  # before the rule: not its business
        store.add_rule("fe_be", JOIN, language="corql")
        store.add_rule("fe_then_be", SEQUENCE)
        store.append(pair(10, "a"))
        found = settled(store, 2)
        assert sorted(found.column("rule").to_pylist()) == ["fe_be", "fe_then_be"]
        assert [json.loads(k) for k in found.column("key").to_pylist()] == [{"rid": "a"}] * 2
    assert json.loads((tmp_path / "rules.json").read_text())["rules"][0]["name"] == "fe_be"
    with tidal.open(tmp_path) as store:
        assert [r.name for r in store.rules()] == ["fe_be", "fe_then_be"]
        store.append(pair(20, "b"))
        found = settled(store, 4)
        assert found.num_rows == 4  # (the replay at open stored nothing twice)
        by_rule = store.correlations(rule="fe_be")
        assert by_rule.column("id").to_pylist() == [0, 1]
        assert store.correlations(start=T0 + 15 * S).num_rows == 2
        assert store.sql("SELECT rule, count(*) AS n FROM correlations GROUP BY rule "
                         "ORDER BY rule").to_pylist() == [
            {"rule": "fe_be", "n": 2}, {"rule": "fe_then_be", "n": 2}]
        store.remove_rule("fe_then_be")
        assert [r.name for r in store.rules()] == ["fe_be"]
        store.append(pair(30, "c"))
        found = settled(store, 5)
        assert found.filter(pc.equal(found.column("rule"), "fe_then_be")).num_rows == 2
        # (a removed rule's stored correlations stay)


def test_sql_view_exists_without_rules(tmp_path):
    with tidal.open(tmp_path) as store:
        assert store.sql("SELECT count(*) FROM correlations").column(0)[0].as_py() == 0


def test_a_bad_rule_is_refused_and_not_kept(tmp_path):
    with tidal.open(tmp_path) as store:
        store.append(pair(0, "a"))
        with pytest.raises(QueryError):
            store.add_rule("broken", "sequence by [", language="eql")
        with pytest.raises(QueryError):
            store.add_rule("history_only", SEQUENCE + " | head 1")
        store.add_rule("ok", SEQUENCE)
        with pytest.raises(ConfigError, match="already"):
            store.add_rule("ok", SEQUENCE)
        with pytest.raises(ConfigError, match="no rule"):
            store.remove_rule("missing")
        assert [r.name for r in store.rules()] == ["ok"]


def test_a_read_only_store_lists_rules_without_running_them(tmp_path):
    with tidal.open(tmp_path) as store:
        store.add_rule("fe_be", JOIN, language="corql")
        store.append(pair(0, "a"))
        settled(store, 1)
        with tidal.open(tmp_path, read_only=True) as reader:
            (info,) = reader.rules()
            assert info.stats is None
            assert reader.correlations().num_rows == 1


def test_a_torn_correlation_record_is_cut_at_open(tmp_path):
    with tidal.open(tmp_path) as store:
        store.add_rule("fe_be", JOIN, language="corql")
        store.append(pair(0, "a"))
        settled(store, 1)
    with open(tmp_path / "correlations.log", "ab") as log:
        log.write(b"\x40\x00\x00\x00\x01\x02")  # a header and part of a body
    with tidal.open(tmp_path) as store:
        assert store.correlations().num_rows == 1
        store.append(pair(20, "b"))
        assert settled(store, 2).column("id").to_pylist() == [0, 1]
