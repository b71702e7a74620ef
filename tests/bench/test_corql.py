"""The CorQL and live benchmarks' helpers: the feed they replay, the commit times they
read, and the SQL pair count they compare CorQL's join with (the cases themselves run
at a tiny size in ``test_harness``)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import tidal
from tidal.bench import corql, workloads


@pytest.fixture(scope="module")
def pool() -> pa.Table:
    return workloads.services(2_000, seed=3)


def test_copies_replay_the_pool_later_with_fresh_request_ids(pool):
    parts = list(corql._copies(pool, 5_500, 1_000))
    assert [p.num_rows for p in parts] == [1_000, 1_000, 1_000, 1_000, 1_000, 500]
    fed = pa.concat_tables(parts)
    ts = fed.column("timestamp").cast(pa.int64()).to_numpy()
    first, second = ts[:2_000], ts[2_000:4_000]
    assert second.min() > first.max() and ts[4_000:].min() > second.max()
    ids = fed.column("request_id").to_pylist()
    assert ids[:2_000] == pool.column("request_id").to_pylist()
    assert ids[2_000:4_000] == [f"{r}-1" for r in ids[:2_000]]
    assert set(ids[:2_000]).isdisjoint(ids[2_000:4_000])


def _pairs_by_hand(table: pa.Table) -> int:
    """(frontend, checkout) events of one request within 5 s, counted in Python."""
    times: dict[tuple[str, str], list[int]] = defaultdict(list)
    ts = table.column("timestamp").cast(pa.int64()).to_pylist()
    for row, t in zip(table.select(["service", "request_id"]).to_pylist(), ts, strict=True):
        times[(row["service"], row["request_id"])].append(t)
    return sum(1 for (service, rid), front in times.items() if service == "frontend"
               for a in front for b in times.get(("checkout", rid), [])
               if abs(a - b) <= corql.WITHIN_NS)


def test_sql_counts_the_pairs_corql_finds(pool):
    with tidal.open(None, entity_field="pod") as store:
        store.append(pool)
        assert not any(v.as_py() for v in store.sql(corql.UNIQUE_SQL).column(0))
        columns = store.sql("SELECT * FROM events LIMIT 0").column_names
        rows = store.sql(corql._pairs_sql(columns, corql.DUCK_PAIRS))
        count = store.sql(f"SELECT count(*) {corql.DUCK_PAIRS}").column(0)[0].as_py()
        found = list(store.correlate(corql.JOIN_CORQL, end=corql._end_ns(store)))
    assert len(found) == count == rows.num_rows == _pairs_by_hand(pool) > 0
    assert pc.all(pc.equal(rows.column("a_request_id"), rows.column("b_request_id"))).as_py()


def test_commits_records_each_commit_by_its_last_seq(pool):
    with tidal.open(None, entity_field="pod") as store:
        commits = corql._Commits(store)
        receipts = [store.append(pool.slice(i, 500)) for i in range(0, 1_500, 500)]
        assert commits.seqs == [r.last_seq for r in receipts] == [499, 999, 1499]
        assert commits.at == sorted(commits.at)
        held = commits.of(np.array([0, 499, 500, 1_200]))
        assert held.tolist() == [commits.at[0], commits.at[0], commits.at[1], commits.at[2]]
        commits.follower.close()
