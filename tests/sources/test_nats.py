"""``tidal consume``: a real NATS JetStream stream into a store, exactly once.

Every test starts real ``nats-server`` processes on loopback (JetStream synced
on every write); consumers are killed with SIGKILL, and so is a cluster node.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import tidal
from tidal.bench.natsserver import NatsServer, cluster
from tidal.sources.nats import consume

BIN = Path(sys.executable).parent / "tidal"
TIDAL = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "tidal.cli"]
T0 = 1_767_225_600_000_000_000
STREAM = "EVENTS"
ARROW = "application/vnd.apache.arrow.stream"

Message = tuple[str, bytes, dict[str, str] | None, list[tuple[int, int]]]


def message(subject: str, k: int) -> Message:
    """Message ``k`` of ``subject``: 1-3 events; NDJSON, a JSON array or Arrow IPC."""
    events = [{"timestamp": T0 + k * 10 + j, "sub": subject, "k": k, "j": j}
              for j in range(k % 3 + 1)]
    keys = [(k, j) for j in range(len(events))]
    if k % 7 == 3:
        return subject, json.dumps(events).encode(), {"Content-Type": "application/json"}, keys
    if k % 7 == 5:
        sink = pa.BufferOutputStream()
        table = pa.Table.from_pylist(events)
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return subject, sink.getvalue().to_pybytes(), {"Content-Type": ARROW}, keys
    return subject, b"".join(json.dumps(e).encode() + b"\n" for e in events), None, keys


def messages(subjects: int, per: int, start: int = 0) -> list[Message]:
    out = [message(f"ev.p{s}", k) for k in range(start, start + per) for s in range(subjects)]
    random.Random(start).shuffle(out)  # partitions interleave in the stream
    return out


async def _publish(urls: list[str], batch: list[Message], *, create: bool,
                   replicas: int) -> None:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    if create:
        for _ in range(100):  # a fresh cluster may still be electing its meta leader
            try:
                await js.add_stream(StreamConfig(name=STREAM, subjects=["ev.>"],
                                                 num_replicas=replicas))
                break
            except Exception:  # noqa: BLE001
                await asyncio.sleep(0.2)
    for subject, body, headers, keys in batch:
        # A retried publish whose first try was stored is dropped by the id
        msg_id = f"{subject}/{keys[0][0] if keys else body[:16]!r}"
        for _ in range(200):  # retried while a node restarts
            try:
                await js.publish(subject, body, headers={**(headers or {}), "Nats-Msg-Id": msg_id},
                                 timeout=2)
                break
            except Exception:  # noqa: BLE001
                await asyncio.sleep(0.1)
        else:
            raise RuntimeError("publish kept failing")
    await nc.close()


def publish(urls: list[str] | str, batch: list[Message], *, create: bool = False,
            replicas: int = 1) -> None:
    asyncio.run(_publish([urls] if isinstance(urls, str) else urls, batch, create=create,
                         replicas=replicas))


def check(store: tidal.Store, sent: list[Message]) -> None:
    """Every event of every message once, in publication order per subject."""
    table = store.read_from(0)
    got: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for sub, k, j in zip(*(table.column(c).to_pylist() for c in ("sub", "k", "j")),
                         strict=True):
        got[sub].append((k, j))
    want: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for subject, _, _, keys in sent:
        want[subject] += keys
    for subject in sorted(set(got) | set(want)):
        a, b = got.get(subject, []), want.get(subject, [])
        if a != b:
            extra = sorted(set(x for x in a if a.count(x) > b.count(x)))
            missing = sorted(set(x for x in b if b.count(x) > a.count(x)))
            first = next(i for i, (x, y) in enumerate(zip(a + [None], b + [None], strict=False))
                         if x != y)
            raise AssertionError(f"{subject}: {len(a)} events stored, {len(b)} sent; "
                                 f"extra {extra[:6]}, missing {missing[:6]}, "
                                 f"first difference at {first}: {a[first:first + 3]} vs "
                                 f"{b[first:first + 3]}")


@pytest.fixture
def server(tmp_path) -> Iterator[NatsServer]:
    node = NatsServer(tmp_path / "nats").start()
    yield node
    node.stop()


def test_each_message_is_stored_once_and_a_rerun_resumes(tmp_path, server):
    sent = messages(8, 30)
    publish(server.url, sent, create=True)
    with tidal.open(tmp_path / "s", entity_field="sub") as store:
        result = consume(store, server.url, STREAM, batch=37, until_idle_s=0.3)
        assert result.messages == len(sent) and result.duplicates == 0
        check(store, sent)
        positions = store.positions()
        assert sorted(positions) == [f"nats:{STREAM}:ev.p{s}" for s in range(8)]
        assert max(positions.values()) == len(sent)  # the stream sequence of the last one
        more = messages(8, 5, start=30)
        publish(server.url, more)
        again = consume(store, server.url, STREAM, until_idle_s=0.3)
        assert again.messages == len(more)
        check(store, sent + more)
        assert consume(store, server.url, STREAM, until_idle_s=0.3).messages == 0


def test_only_the_subjects_asked_for(tmp_path, server):
    sent = messages(4, 10)
    publish(server.url, sent, create=True)
    with tidal.open(tmp_path / "s", entity_field="sub") as store:
        consume(store, server.url, STREAM, subjects="ev.p1", until_idle_s=0.3)
        check(store, [m for m in sent if m[0] == "ev.p1"])


def test_a_bad_message_goes_to_the_dead_letter_file_and_the_partition_goes_on(tmp_path,
                                                                               server):
    good = messages(1, 4)
    publish(server.url, good[:2] + [("ev.p0", b"{not json\n", None, [])] + good[2:],
            create=True)
    with tidal.open(tmp_path / "s", entity_field="sub") as store:
        result = consume(store, server.url, STREAM, batch=1, until_idle_s=0.3)
        assert result.rejected == 1
        check(store, good)
    assert "not json" in (tmp_path / "s" / "dead-letter.ndjson").read_text()


def run_consumer(url: str, store: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*TIDAL, "consume", url, "--stream", STREAM, "--store", str(store),
                             "--entity-field", "sub", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout_s: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, err
    return out


def test_kill_9_of_the_consumer_in_20_rounds(tmp_path, server):
    """The consumer is killed at random points while the stream grows; every message is
    stored once and in order per partition."""
    rng = random.Random(15)
    sent = messages(8, 250)
    publish(server.url, sent, create=True)
    store = tmp_path / "s"
    for round_no in range(20):
        proc = run_consumer(server.url, store, "--batch", "25")
        time.sleep(rng.uniform(0.6, 1.6))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        more = messages(8, 3, start=1000 + 3 * round_no)
        publish(server.url, more)
        sent += more
    out = finish(run_consumer(server.url, store, "--until-idle", "1"))
    assert "consumed" in out
    with tidal.open(store) as opened:
        check(opened, sent)


def test_sigterm_stops_cleanly(tmp_path, server):
    publish(server.url, messages(2, 20), create=True)
    proc = run_consumer(server.url, tmp_path / "s")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (tmp_path / "s" / "MANIFEST.json").exists():
            with tidal.open(tmp_path / "s", read_only=True) as store:
                if store.max_seq() >= 0:
                    break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert "consumed" in finish(proc)


def test_a_cluster_node_killed_and_restarted_mid_stream(tmp_path):
    nodes = cluster(tmp_path / "cluster")
    for node in nodes:
        node.start()
    urls = [n.url for n in nodes]
    try:
        sent = messages(8, 150)
        publish(urls, sent, create=True, replicas=3)
        store = tmp_path / "s"
        # Given only the node killed below, the consumer learns the others from it.
        proc = run_consumer(urls[0], store, "--batch", "20")
        time.sleep(1.0)
        nodes[0].kill()  # mid-stream: the consumer's own server
        more = messages(8, 20, start=500)
        publish(urls[1:], more)
        sent += more
        nodes[0].start()
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        assert "consumed" in finish(proc, timeout_s=180)
        finish(run_consumer(",".join(urls), store, "--until-idle", "2"), timeout_s=180)
        with tidal.open(store) as opened:
            check(opened, sent)
    finally:
        for node in nodes:
            node.stop()





def test_undecodable_bodies_and_bad_items_go_to_the_dead_letter_file(tmp_path, server):
    good = messages(1, 2)
    bad = [("ev.p0", b'[{"timestamp": 1, "sub": "ev.p0"', {"Content-Type": "application/json"},
            []),
           ("ev.p0", b"not arrow at all", {"Content-Type": ARROW}, []),
           ("ev.p0", b'[5, {"timestamp": 2, "sub": "ev.p0", "k": 99, "j": 0}]',
            {"Content-Type": "application/json"}, [(99, 0)])]
    publish(server.url, good[:1] + bad + good[1:], create=True)
    with tidal.open(tmp_path / "s", entity_field="sub") as store:
        result = consume(store, server.url, STREAM, until_idle_s=0.3)
        assert result.rejected == 3
        check(store, good[:1] + bad + good[1:])
    dead = (tmp_path / "s" / "dead-letter.ndjson").read_text()
    assert "not decodable" in dead and "not a JSON object" in dead and "nats:EVENTS:ev.p0" in dead


def test_a_missing_or_remade_stream_is_a_clear_error(tmp_path, server):
    publish(server.url, messages(1, 5), create=True)
    with tidal.open(tmp_path / "s", entity_field="sub") as store:
        with pytest.raises(tidal.SourceError, match="no stream 'NOPE'"):
            consume(store, server.url, "NOPE", until_idle_s=0.3)
        consume(store, server.url, STREAM, until_idle_s=0.3)

        async def remake() -> None:
            import nats

            nc = await nats.connect(server.url)
            await nc.jetstream().delete_stream(STREAM)
            await nc.close()

        asyncio.run(remake())
        publish(server.url, messages(1, 2), create=True)
        with pytest.raises(tidal.SourceError, match="deleted and made again"):
            consume(store, server.url, STREAM, until_idle_s=0.3)


def test_consume_needs_durable_appends(tmp_path, server):
    with tidal.open(tmp_path / "s", durability="none") as store, \
            pytest.raises(tidal.ConfigError, match="durability='group'"):
        consume(store, server.url, STREAM, until_idle_s=0.3)
