"""Rules survive ``kill -9``: after each crash, reopening replays the stored events
through the rules, so every correlation of an acknowledged event is stored, and
none twice."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc

import tidal

CHILD = Path(__file__).with_name("_rules_child.py")
RULES = {
    "fe_be": ('events({svc="fe"}) and on(rid) within(15s) events({svc="be"})', "corql"),
    "fe_db_missing": ('events({svc="fe"}) unless on(rid) within(10s) events({svc="db"})',
                      "corql"),
    "fe_then_db": ('sequence by rid with maxspan=30s [any where svc == "fe"] '
                   '[any where svc == "db"]', "eql"),
}
ROUNDS = 5


def _caught_up(store: tidal.Store, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    want = store.max_seq() + 1
    while True:
        infos = store.rules()
        if all(i.stats is not None and i.stats.events >= want - i.from_seq for i in infos):
            time.sleep(0.2)  # (the last batch's callbacks)
            return
        assert time.monotonic() < deadline, [i.stats for i in infos]
        time.sleep(0.05)


def test_no_stored_correlation_is_lost_or_doubled_across_kill_9(tmp_path):
    path = tmp_path / "s"
    with tidal.open(path) as store:
        store.append([{"timestamp": "2026-01-01T00:00:00Z", "svc": "seed", "rid": "x"}])
        for name, (query, language) in RULES.items():
            store.add_rule(name, query, language=language)
    rng = random.Random(7)
    for round_no in range(ROUNDS):
        child = subprocess.Popen([sys.executable, str(CHILD), str(path), str(round_no)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().startswith("ready")
        child.stdout.readline()  # its first acknowledged append
        time.sleep(rng.uniform(0.0, 0.6))
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL
    with tidal.open(path) as store:
        _caught_up(store)
        stored = store.correlations()
        assert store.sql("SELECT count(*) FROM correlations").column(0)[0].as_py() \
            == stored.num_rows
        for info in store.rules():
            assert info.stats is not None and info.stats.late == 0
            mark = info.stats.watermark_ns
            assert mark is not None
            rows = stored.filter(pc.equal(stored.column("rule"), info.name))
            got = [tuple(s) for s in rows.column("seqs").to_pylist()]
            assert len(got) == len(set(got)), f"{info.name}: a correlation stored twice"
            assert rows.column("id").to_pylist() == list(range(rows.num_rows))
            if info.language == "corql":
                found = store.correlate(info.query, end=mark + 1)
            else:
                found = store.eql(info.query, end=mark + 1).correlations
            expected = [tuple(c.events.column("_seq").to_pylist()) for c in found]
            assert sorted(got) == sorted(expected), info.name
            assert expected, f"{info.name} found nothing: the test would prove little"
