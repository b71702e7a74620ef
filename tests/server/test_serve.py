"""``tidal serve`` as a real process: it prints its URL, answers, and on SIGTERM drains
and exits 0; whatever it acknowledged (2xx) is in the store when it is reopened, also
after ``kill -9`` at a random moment, each event exactly once."""

from __future__ import annotations

import json
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO

import httpx
import pytest

import tidal

BIN = Path(sys.executable).parent / "tidal"
TIDAL = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "tidal.cli"]
NDJSON = {"content-type": "application/x-ndjson"}


class Serving:
    """``tidal serve ARGS`` in a child process, its URL read from its first line."""

    def __init__(self, *args: str | Path) -> None:
        self.proc = subprocess.Popen([*TIDAL, "serve", "--port", "0", *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err.append),
                             daemon=True)]
        for reader in self._readers:
            reader.start()
        try:
            first = self.lines.get(timeout=60)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f"tidal serve printed nothing: {self.err}") from None
        assert first.startswith("serving "), first
        self.url = first.split(" on ", 1)[1].split(";", 1)[0]

    @staticmethod
    def _read(stream: IO[str], put: object) -> None:
        for line in stream:
            put(line.rstrip("\n"))  # type: ignore[operator]

    def stop(self, sig: signal.Signals, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._close()
        return code

    def _close(self) -> None:
        for reader in self._readers:  # (they end at the pipes' end, with the process)
            reader.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Serving:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close()


def batch(ids: range) -> bytes:
    return b"".join(json.dumps({"timestamp": 1_767_225_600_000_000_000 + i, "uid": i,
                                "entity": f"pod-{i % 7}"}).encode() + b"\n" for i in ids)


def stored_uids(path: Path) -> Counter[int]:
    with tidal.open(path) as store:
        if store.max_seq() < 0:
            return Counter()
        return Counter(store.read_from(0).column("uid").to_pylist())


class Clients:
    """Threads posting batches of unique ``uid`` until the server goes away; ``acked``
    holds the uids of every batch answered 2xx."""

    def __init__(self, url: str, threads: int = 4, size: int = 200) -> None:
        self.url, self.size = url, size
        self.acked: set[int] = set()
        self.answered = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._post, args=(n,), daemon=True)
                         for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def _post(self, n: int) -> None:
        with httpx.Client(timeout=30) as client:
            for b in range(10_000):
                ids = range(n * 10_000_000 + b * self.size, n * 10_000_000 + (b + 1) * self.size)
                try:
                    got = client.post(f"{self.url}/v1/events", content=batch(ids),
                                      headers=NDJSON)
                except httpx.TransportError:
                    return
                if got.is_success:
                    assert got.json()["count"] == self.size
                    with self._lock:
                        self.acked.update(ids)
                    self.answered.set()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=60)
            assert not thread.is_alive()


def test_serve_prints_its_url_answers_and_exits_0_on_sigterm(tmp_path):
    store = tmp_path / "new" / "store"  # created on start
    with Serving("--store", store) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert len(server.err) <= 1
        receipts = [httpx.post(f"{server.url}/v1/events", content=batch(range(i, i + 50)),
                               headers=NDJSON).json() for i in range(0, 250, 50)]
        assert [r["last_seq"] for r in receipts] == [49, 99, 149, 199, 249]
        assert server.stop(signal.SIGTERM) == 0
        assert any("loopback only" in line for line in server.err), server.err
    assert stored_uids(store) == Counter(range(250))


def test_sigterm_drains_requests_in_flight(tmp_path):
    store = tmp_path / "store"
    with Serving("--store", store) as server:
        clients = Clients(server.url)
        assert clients.answered.wait(30)
        time.sleep(0.3)
        assert server.stop(signal.SIGTERM) == 0, server.err
        clients.join()
    stored = stored_uids(store)
    assert clients.acked
    assert clients.acked <= stored.keys()
    assert max(stored.values()) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_loses_nothing_acknowledged(tmp_path, seed):
    store = tmp_path / "store"
    with Serving("--store", store) as server:
        clients = Clients(server.url)
        assert clients.answered.wait(30)
        time.sleep(random.Random(seed).uniform(0.0, 0.6))
        server.proc.kill()
        server.proc.wait()
        clients.join()
    acked = set(clients.acked)
    stored = stored_uids(store)
    assert acked <= stored.keys(), f"{len(acked - stored.keys())} acknowledged events lost"
    assert max(stored.values()) == 1  # none twice
    assert all(n % 10_000_000 < 10_000 * 200 for n in stored)  # nothing that was not sent


def test_serve_reads_its_tokens_from_the_config_and_stops_on_ctrl_c(tmp_path):
    config = tmp_path / "tidal.toml"
    config.write_text(f'store = "{tmp_path / "s"}"\nmax_body_bytes = 2000\n'
                      '[[auth.tokens]]\ntoken = "t0k"\nscopes = ["ingest"]\n')
    with Serving("--config", config) as server:
        url = f"{server.url}/v1/events"
        assert httpx.post(url, content=batch(range(3)), headers=NDJSON).status_code == 401
        got = httpx.post(url, content=batch(range(3)),
                         headers={**NDJSON, "authorization": "Bearer t0k"})
        assert got.json()["count"] == 3
        too_big = httpx.post(url, content=batch(range(100)),
                             headers={**NDJSON, "authorization": "Bearer t0k"})
        assert too_big.status_code == 413
        assert server.stop(signal.SIGINT) == 130
        assert server.err == []  # tokens: no loopback notice
    assert stored_uids(tmp_path / "s") == Counter(range(3))


def test_a_port_in_use_is_one_clean_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*TIDAL, "serve", "--store", str(tmp_path / "s"), "--port",
                               str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"tidal: error: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_the_listening_socket_is_tcp_so_answers_are_not_held_back():
    """asyncio turns Nagle off (TCP_NODELAY) only on connections of an IPPROTO_TCP
    socket; without it every small answer waited ~40 ms for a delayed ACK."""
    import socket

    from tidal.server.serve import _listen

    sock = _listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_the_app_starts_without_the_query_engines_it_loads_on_first_use():
    """Cold start and idle memory: building the app loads neither DuckDB, numba,
    pandas nor the LogQL engine (the first query that needs one loads it)."""
    code = ("import sys, tidal\n"
            "from tidal.server import ServerConfig\n"
            "from tidal.server.app import create_app\n"
            "with tidal.open() as store:\n"
            "    create_app(store, ServerConfig())\n"
            "print(*[any(m == n or m.startswith(n + '.') for m in sys.modules)\n"
            "        for n in ('duckdb', 'numba', 'pandas', 'tidal.correlate.logql')])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False", "False", "False"]
