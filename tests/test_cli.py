"""The ``tidal`` command line against real stores in tmp_path.

End-to-end paths run the installed console script as a subprocess; output variants
run :func:`tidal.cli.main` in this process, which is the same code and much cheaper.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tidal
from tidal.cli import main

BIN = Path(sys.executable).parent / "tidal"
TIDAL = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "tidal.cli"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
T0_NS = int(T0.timestamp()) * 10**9


def tidal_cli(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([*TIDAL, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def ok(*args: str | Path) -> str:
    done = tidal_cli(*args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def failed(*args: str | Path, status: int = 1) -> str:
    """Run a command that must fail cleanly; returns its stderr."""
    done = tidal_cli(*args)
    assert done.returncode == status, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("tidal: error: "), done.stderr
    return done.stderr


def run_main(capfd: pytest.CaptureFixture[str], *args: str | Path) -> str:
    """Run ``tidal.cli.main`` in this process (cheaper than a subprocess); returns stdout."""
    capfd.readouterr()
    status = main([str(a) for a in args])
    out, err = capfd.readouterr()
    assert status == 0, err
    return out


def count(store: Path) -> int:
    with tidal.open(store) as opened:
        return int(opened.sql("SELECT count(*) AS n FROM events").column("n")[0].as_py())


def event(i: int, pod: str, **extra: object) -> dict[str, object]:
    ts = T0_NS + i * 1_000_000_000 + 123  # 123 ns: timestamps must keep nanoseconds
    return {"timestamp": ts, "pod": pod, "n": i, "msg": f"event {i}", **extra}


def ndjson(events: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def rfc3339(ns: int) -> str:
    seconds, frac = divmod(ns, 10**9)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{frac:09d}Z"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 6 events (pods a, b), ingested from one NDJSON and one gzipped file."""
    root = tmp_path_factory.mktemp("cli")
    plain, packed = root / "one.ndjson", root / "two.ndjson.gz"
    plain.write_bytes(ndjson([event(0, "a"), event(1, "b"), event(2, "a")]))
    packed.write_bytes(gzip.compress(ndjson([event(3, "b"), event(4, "a"), event(5, "a")])))
    out = ok("ingest", plain, packed, "--store", root / "s", "--entity-field", "pod")
    assert out.startswith("ingested 6 events from 2 files in "), out
    assert "events/s" in out
    return root / "s"


def test_version_is_the_package_version() -> None:
    assert ok("--version").strip() == f"tidal {tidal.__version__}"


def test_timeline_json_lines_in_time_order_with_rfc3339_times(store: Path) -> None:
    out = ok("timeline", "a", "--store", store, "--entity-field", "pod", "--format", "json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["n"] for r in rows] == [0, 2, 4, 5]
    assert {r["pod"] for r in rows} == {"a"}
    expected = [rfc3339(T0_NS + i * 10**9 + 123) for i in (0, 2, 4, 5)]
    assert [r["timestamp"] for r in rows] == expected
    assert rows[0]["timestamp"] == "2026-01-01T00:00:00.000000123Z"


def test_timeline_window_limit_and_desc(store: Path, capfd: pytest.CaptureFixture[str]) -> None:
    common = ("--store", store, "--entity-field", "pod", "--format", "json")
    out = run_main(capfd, "timeline", "a", *common, "--desc", "--limit", "3")
    assert [json.loads(line)["n"] for line in out.splitlines()] == [5, 4, 2]
    out = run_main(capfd, "timeline", "a", *common, "--start", "2026-01-01T00:00:01Z",
                   "--end", str(T0_NS + 5 * 10**9))
    assert [json.loads(line)["n"] for line in out.splitlines()] == [2, 4]


def test_timeline_table_shows_the_events(store: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = run_main(capfd, "timeline", "b", "--store", store, "--entity-field", "pod")
    assert "timeline of b" in out
    assert "event 1" in out and "event 3" in out
    assert "event 0" not in out
    assert "2026-01-01T00:00:01.000000123Z" in out


def test_sql_formats(store: Path, capfd: pytest.CaptureFixture[str]) -> None:
    query = "SELECT pod, count(*) AS n FROM events GROUP BY pod ORDER BY pod"
    common = ("--store", store, "--entity-field", "pod")
    out = run_main(capfd, "sql", query, *common, "--format", "json")
    assert [json.loads(line) for line in out.splitlines()] == [{"pod": "a", "n": 4},
                                                               {"pod": "b", "n": 2}]
    text = run_main(capfd, "sql", query, *common, "--format", "csv")
    assert list(csv.reader(io.StringIO(text))) == [["pod", "n"], ["a", "4"], ["b", "2"]]
    table = run_main(capfd, "sql", query, *common)
    assert [line.split() for line in table.splitlines() if " a " in line or " b " in line] == [
        ["│", "a", "│", "4", "│"], ["│", "b", "│", "2", "│"]]


def test_stats_lists_every_stat(store: Path, capfd: pytest.CaptureFixture[str]) -> None:
    out = run_main(capfd, "stats", "--store", store, "--entity-field", "pod")
    with tidal.open(store, entity_field="pod") as opened:
        stats = opened.stats()
    top = [key for key, value in stats.items() if not isinstance(value, dict)]
    assert top and all(key in out for key in top)
    assert str(store) in out


def test_csv_with_format_and_timestamp_field(tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hosts.txt"
    path.write_text("time,host,value\n2026-01-01T00:00:02Z,h1,2\n"
                    "2026-01-01T00:00:01Z,h1,1\n2026-01-01T00:00:03Z,h2,3\n")
    config = ("--store", tmp_path / "s", "--timestamp-field", "time", "--entity-field", "host")
    assert run_main(capfd, "ingest", path, "--format", "csv", *config).startswith("ingested 3 ")
    out = run_main(capfd, "timeline", "h1", *config, "--format", "json")
    assert [(r["time"], r["value"]) for r in map(json.loads, out.splitlines())] == [
        ("2026-01-01T00:00:01.000000000Z", 1), ("2026-01-01T00:00:02.000000000Z", 2)]
    assert run_main(capfd, "timeline", "h3", *config) == "timeline of h3: no events\n"


def test_bad_line_rejects_the_file_and_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(ndjson([event(0, "a"), event(1, "a")]) + b'{"pod": "a", oops\n'
                    + ndjson([event(3, "a")]))
    err = failed("ingest", bad, "--store", tmp_path / "s", "--entity-field", "pod")
    assert "bad.ndjson" in err and "1 bad line" in err and "nothing of it was stored" in err
    assert "line 3" in err
    assert count(tmp_path / "s") == 0
    good = tmp_path / "good.ndjson"
    good.write_bytes(ndjson([event(0, "a")]))
    err = failed("ingest", good, bad, "--store", tmp_path / "s", "--entity-field", "pod")
    assert "nothing of it was stored; the 1 events of the files before it stay stored" in err
    assert count(tmp_path / "s") == 1


def test_on_error_skip_keeps_the_good_lines(tmp_path: Path,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(ndjson([event(0, "a")]) + b"not json\n" + ndjson([event(2, "a")]))
    out = run_main(capfd, "ingest", bad, "--store", tmp_path / "s", "--entity-field", "pod",
             "--on-error", "skip")
    assert out.startswith("ingested 2 events from 1 file")
    assert f"skipped 1 bad lines to {tmp_path / 's' / 'dead-letter.ndjson'}" in out
    assert count(tmp_path / "s") == 2


def test_missing_input_file_and_missing_store(tmp_path: Path) -> None:
    err = failed("ingest", tmp_path / "nope.ndjson", "--store", tmp_path / "s")
    assert "No such file or directory" in err and "nope.ndjson" in err
    assert not (tmp_path / "s").exists()
    err = failed("timeline", "a", "--store", tmp_path / "absent")
    assert "no store at" in err and "absent" in err
    assert not (tmp_path / "absent").exists()


def test_bad_sql_is_one_clean_error(store: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELEC nonsense", "--store", str(store)]) == 1
    out, err = capfd.readouterr()
    assert out == "" and err.startswith("tidal: error: ") and err.count("\n") == 1
    assert "SELEC" in err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    done = tidal_cli("timeline", "a", "--store", tmp_path, "--limit", "0")
    assert done.returncode == 2 and "must be positive" in done.stderr
    assert tidal_cli().returncode == 2


def test_ctrl_c_exits_130_quietly(tmp_path: Path) -> None:
    proc = subprocess.Popen([*TIDAL, "demo", "--store", str(tmp_path / "d"), "--events",
                             "3000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("Tidal demo: 3,000,000 events")
    time.sleep(0.2)  # now generating the events
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == ""


def test_demo(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    err = failed("demo", "--store", root, "--events", "40000")
    assert "refusing to wipe" in err and (root / "keep.txt").exists()

    (root / ".tidal-demo").write_text("")  # as if an earlier demo made it: wiped, not refused
    out = ok("demo", "--store", root, "--events", "40000")
    assert not (root / "keep.txt").exists()
    assert "ingest total:      40,000 events" in out and "events/s" in out
    assert "OOMKilled" in out
    assert "errors per service" in out and "p99_ms" in out and "checkout" in out
    assert "newest frontend timeouts (LogQL)" in out and '{pod="frontend-' in out
    assert "top 3 services (LogQL)" in out
    assert str(root / "k8s") in out
    assert count(root / "services") == 28_000
    assert count(root / "k8s") == 12_000

    assert "live: the 4 rules of k8s.eql subscribed, 20,000 Kubernetes events" in out
    rules = ("crash_loop", "oom_cascade", "config_change_restarts", "node_pressure_evictions")
    fired = [words for line in out.splitlines()  # "  6.2 ms  oom_cascade  POD  00:03:18  ..."
             if len(words := line.split()) > 5 and words[2] in rules]
    assert all(float(words[0]) >= 0 and words[1] == "ms" for words in fired)
    table = {cells[0]: cells[1:] for line in out.splitlines()
             if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 4}
    assert table.keys() >= set(rules)
    for rule in rules:  # found live, planted, late
        found, planted, late = (int(v) for v in table[rule])
        assert found == planted == sum(words[2] == rule for words in fired) > 0, rule
        assert late == 0
    assert count(root / "k8s-live") == 20_000


WATCHED = ('sequence by pod with maxspan=1m [any where reason == "OOMKilled"] '
           '[any where reason == "Started"]')
NO_RESTART = 'events({reason="OOMKilled"}) unless on(pod) within(2s) events({reason="Started"})'


class Watch:
    """``tidal watch`` running as a subprocess; its output read line by line with
    timeouts (a thread per pipe), so a watch that prints nothing fails, not hangs."""

    def __init__(self, store: Path, *args: str) -> None:
        env = {**os.environ, "COLUMNS": "200"}
        env.pop("FORCE_COLOR", None)
        self.proc = subprocess.Popen([*TIDAL, "watch", *args, "--store", str(store)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        for pipe, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(pipe, lines), daemon=True).start()
        started = self.line(self.err)
        assert started.startswith("watching "), started + self.rest(self.err)

    @staticmethod
    def _read(pipe: io.TextIOBase, lines: queue.Queue[str | None]) -> None:
        with pipe:
            for line in pipe:
                lines.put(line)
        lines.put(None)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:  # the test failed with it running
            self.proc.kill()
            self.proc.wait(timeout=60)

    def line(self, lines: queue.Queue[str | None], timeout_s: float = 60) -> str:
        line = lines.get(timeout=timeout_s)
        assert line is not None, f"tidal watch ended: {self.rest(self.err)}"
        return line

    def block(self) -> list[str]:
        """The next correlation printed: its title line and its table."""
        lines = [self.line(self.out)]
        while not lines[-1].startswith("└"):
            lines.append(self.line(self.out))
        return lines

    def rest(self, lines: queue.Queue[str | None]) -> str:
        text = []
        while (line := lines.get(timeout=60)) is not None:
            text.append(line)
        return "".join(text)

    def interrupt(self) -> tuple[str, str]:
        """Ctrl-C: it must stop cleanly with status 0; returns what it printed then."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=60) == 0, self.rest(self.err)
        return self.rest(self.out), self.rest(self.err)


def pod_event(second: float, pod: str, reason: str, t0_ns: int = T0_NS) -> dict[str, object]:
    return {"timestamp": t0_ns + round(second * 10**9), "pod": pod, "reason": reason}


def test_watch_prints_each_correlation_as_it_fires_until_ctrl_c(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with tidal.open(path, entity_field="pod") as store:
        store.append([pod_event(0, "a", "Started")])  # before the watch: not replayed
        with Watch(path, WATCHED) as watch:
            store.append([pod_event(1, "a", "OOMKilled"), pod_event(2, "b", "Started")])
            store.append([pod_event(3, "a", "Started")])
            first = watch.block()
            assert first[0].strip() == (f"#0  pod=a  {rfc3339(T0_NS + 10**9)} .. "
                                        f"{rfc3339(T0_NS + 3 * 10**9)}  complete")
            rows = [line.split("│")[1:-1] for line in first if line.startswith("│")]
            assert [[cell.strip() for cell in row] for row in rows] == [
                ["1", "1", rfc3339(T0_NS + 10**9), "a", "OOMKilled"],
                ["2", "3", rfc3339(T0_NS + 3 * 10**9), "a", "Started"]]
            assert "_stage" in first[2] and "_sequence" not in "".join(first)

            store.append([pod_event(10, "b", "OOMKilled"), pod_event(12, "b", "Started")])
            assert watch.block()[0].startswith("#1  pod=b  ")
            store.append([pod_event(5, "c", "OOMKilled")])  # behind the watermark: late
            store.append([pod_event(20, "d", "OOMKilled"), pod_event(21, "d", "Started")])
            assert watch.block()[0].startswith("#2  pod=d  ")  # (so the late one was seen)
            out, err = watch.interrupt()
    assert out == "stopped: 3 correlations, 1 late events, 0 evicted (of 8 events seen)\n"
    assert err == ""


def test_watch_from_seq_replays_history_and_idle_advance_settles_absence(
        tmp_path: Path) -> None:
    """A CorQL ``unless`` over stored events: history is replayed from ``--from-seq``;
    the lateness holds the last OOM kill back and nothing more comes, so only
    ``--idle-advance`` (by the clock) can settle that no restart followed it."""
    path, now_ns = tmp_path / "s", time.time_ns()
    with tidal.open(path, entity_field="pod") as store:
        store.append([pod_event(-20, "a", "OOMKilled", now_ns),
                      pod_event(-19, "a", "Started", now_ns),
                      pod_event(-10, "b", "OOMKilled", now_ns)])
    with Watch(path, NO_RESTART, "--language", "corql", "--from-seq", "0",
               "--lateness", "5s", "--idle-advance", "1s") as watch:
        block = watch.block()
        assert block[0].startswith("#0  pod=b  ") and "OOMKilled" in block[-2]
        out, err = watch.interrupt()
    assert out == "stopped: 1 correlations, 0 late events, 0 evicted (of 3 events seen)\n"
    assert err == ""


def test_watch_refuses_what_cannot_run_live(store: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGINT)
    query = 'join by pod [any where n == 1] [any where n == 2]'
    assert main(["watch", query, "--store", str(store)]) == 1
    out, err = capfd.readouterr()
    assert out == "" and err.startswith("tidal: error: ") and "history" in err
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C is the caller's again
    assert main(["watch", "any where true", "--store", str(store), "--lateness", "soon"]) == 1
    assert "allowed_lateness" in capfd.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["watch", "any where true", "--store", str(store), "--from-seq", "-1"])
    assert exited.value.code == 2 and "must not be negative" in capfd.readouterr().err


def test_damaged_and_foreign_stores_are_one_clean_error(tmp_path: Path) -> None:
    """The issue: corruption surfaced as raw tracebacks that did not name the file."""
    path = tmp_path / "s"
    with tidal.open(path, entity_field="pod") as opened:
        opened.append([event(i, "a") for i in range(5)])
        opened.flush()
    (segment,) = (path / "segments").glob("*.parquet")
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    for command in (["timeline", "a"], ["sql", "SELECT * FROM events"]):
        err = failed(*command, "--store", path)
        assert "checksum mismatch" in err and segment.name in err and len(err.splitlines()) == 1
    check = tidal_cli("check", "--store", path)
    assert check.returncode == 1 and segment.name in check.stdout
    (path / "MANIFEST.json").write_text("{}")
    assert "manifest" in failed("stats", "--store", path)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")
    assert "not a Tidal store" in failed("stats", "--store", foreign)
    data = tmp_path / "one.ndjson"
    data.write_bytes(ndjson([event(0, "a")]))
    assert "not a Tidal store" in failed("ingest", data, "--store", foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_repair_salvages_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with tidal.open(path, entity_field="pod") as opened:
        opened.append([event(i, "a") for i in range(5)])
        opened.flush()
        opened.append([event(i, "a") for i in range(5, 8)])
    (segment,) = (path / "segments").glob("*.parquet")
    segment.unlink()
    assert "segment file is missing" in failed("timeline", "a", "--store", path)
    out = ok("repair", "--store", path)
    assert "lost:" in out and "5 events" in out and "highest _seq 7" in out
    assert ok("check", "--store", path).strip().endswith(")")
    assert [json.loads(line)["n"] for line in
            ok("timeline", "a", "--store", path, "--format", "json").splitlines()] == [5, 6, 7]
