"""A NATS JetStream stream into a store, exactly once.

Each subject of the stream is a source, ``nats:<STREAM>:<SUBJECT>``, whose
position is the stream sequence of its last stored message. On start the
consumer reads those positions from the store and (re)creates an ephemeral
pull consumer at the lowest position + 1 (at the stream's start when a subject
is new); messages at or below their subject's position are acknowledged and
skipped. Each fetched batch is appended one subject at a time, several
messages per append, and every message is acknowledged only after the append
holding it is durable. A crash between the append and the acknowledgement
makes JetStream deliver the message again, and the store answers it as a
duplicate: so every message is stored once, in stream order per subject.

A message body is NDJSON, a JSON array, or an Arrow IPC stream, by its
``Content-Type`` header (NDJSON when absent). Bad lines go to the store's
dead-letter file (``on_error="skip"``): one poison message must not stop a
partition. The server's temporary-unavailable answers (no responders, a
cluster electing a leader, a lost consumer) are retried with growing pauses,
re-creating the consumer from the store's positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tidal.errors import ConfigError, DecodeError, Problem, SourceError
from tidal.ingest.deadletter import write_dead_letter
from tidal.ingest.decode import decode
from tidal.ingest.ndjson import raw_text
from tidal.model.schema import concat_tables

if TYPE_CHECKING:
    from tidal.api import Store

ARROW_TYPES = ("application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.file")
JSON_TYPES = ("application/json",)
FETCH_TIMEOUT_S = 1.0
FIRST_BATCH = 16  # then grown (or shrunk) to about FETCH_BYTES a fetch
FETCH_BYTES = 16 << 20  # a fetch brings about this much; the append of it must beat ACK_WAIT_S
ACK_WAIT_S = 300.0
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014


def source_of(stream: str, subject: str) -> str:
    """The store source of one subject of ``stream``."""
    return f"nats:{stream}:{subject}"


@dataclass
class ConsumeResult:
    """What a run of :func:`consume` did."""

    messages: int = 0  # newly stored
    events: int = 0
    appends: int = 0
    duplicates: int = 0  # messages already stored (re-deliveries after a crash)
    rejected: int = 0  # bad lines sent to the dead-letter file
    retries: int = 0  # temporary errors from the server, retried
    busy_s: float = 0.0  # from the start to the last message stored
    notes: list[str] = field(default_factory=list)


def _kind(message: Any) -> str:
    headers = message.headers or {}
    content_type = str(headers.get("Content-Type", "")).split(";")[0].strip().lower()
    if content_type in ARROW_TYPES:
        return "arrow"
    if content_type in JSON_TYPES:
        return "json"
    return "ndjson"


@dataclass
class _Append:
    """What one append of a run of a subject's messages stores, and what it could not."""

    data: object
    format: str | None
    last_seq: int
    problems: list[Problem] = field(default_factory=list)


def _bodies(messages: Sequence[Any]) -> list[_Append]:
    """Appends for a run of one subject's messages, in order.

    Consecutive NDJSON messages become one append; JSON arrays and Arrow
    streams are decoded and put together. A body that cannot be decoded, and
    an array item that is not an object, become problems (named by stream
    sequence) for the dead-letter file; the position still moves past them.
    """
    out: list[_Append] = []
    run: list[Any] = []

    def close_run() -> None:
        if not run:
            return
        kind, last = _kind(run[0]), run[-1].metadata.sequence.stream
        if kind == "ndjson":
            out.append(_Append(b"".join(m.data if m.data.endswith(b"\n") else m.data + b"\n"
                                        for m in run), "ndjson", last))
        else:
            tables, problems = [], []
            for m in run:
                sequence = m.metadata.sequence.stream
                try:
                    decoded = decode(m.data, format="arrow" if kind == "arrow" else "json")
                except DecodeError as exc:
                    problems.append(Problem(sequence, f"message not decodable: {exc}",
                                            raw=raw_text(m.data)))
                    continue
                tables.append(decoded.table)
                problems += [replace(p, line=sequence, reason=f"item {p.line}: {p.reason}")
                             for p in decoded.problems]
            out.append(_Append(concat_tables(tables) if tables else pa.table({}), None, last,
                               problems))
        run.clear()

    for message in messages:
        if run and _kind(message) != _kind(run[0]):
            close_run()
        run.append(message)
    close_run()
    return out


class _Consumer:
    """One run of :func:`consume` (on its own event loop)."""

    def __init__(self, store: Store, servers: list[str], stream: str, subjects: str | None,
                 batch: int, until_idle_s: float | None, stop: threading.Event,
                 report: Callable[[str], None]) -> None:
        self.store = store
        self.servers = servers
        self.stream = stream
        self.subjects = subjects
        self.batch = batch
        self.until_idle_s = until_idle_s
        self.stop = stop
        self.report = report
        self.result = ConsumeResult()
        self._prefix = source_of(stream, "")
        self._started = time.perf_counter()

    def positions(self) -> dict[str, int]:
        """Stored position of every subject of the stream."""
        return {source[len(self._prefix):]: position
                for source, position in self.store.positions().items()
                if source.startswith(self._prefix)}

    async def run(self) -> ConsumeResult:
        import nats

        nc = await nats.connect(servers=self.servers, max_reconnect_attempts=-1,
                                reconnect_time_wait=0.5, connect_timeout=5)
        try:
            js = nc.jetstream()
            pause = RETRY_FIRST_S
            while not self.stop.is_set():
                try:
                    if await self._drain(js):
                        break  # drained and idle
                    pause = RETRY_FIRST_S  # stopped, or re-reading: a new consumer
                except Exception as exc:  # noqa: BLE001 - the server's temporary answers
                    if not _temporary(exc):
                        raise
                    self.result.retries += 1
                    self.report(f"NATS: {type(exc).__name__}: {exc}; retrying in {pause:.1f} s")
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RETRY_MAX_S)
        finally:
            await nc.close()
        return self.result

    async def _subscribe(self, js: Any) -> Any:
        """An ephemeral pull consumer at the lowest stored position + 1."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        pattern = self.subjects or ">"
        present, first_seq, last_seq = await self._stream_subjects(js, pattern)
        known = self.positions()
        ahead = {s: p for s, p in known.items() if p > last_seq}
        if ahead:
            subject, position = next(iter(ahead.items()))
            raise SourceError(
                f"the store holds {self.stream}:{subject} up to sequence {position}, but the "
                f"stream ends at {last_seq}: was it deleted and made again? (its old "
                f"positions would skip its new messages; consume it into a new store, or "
                f"under another stream name)")
        if present and all(s in known for s in present):
            start = min(known[s] for s in present) + 1
        else:  # a subject never stored (or an empty stream): from the stream's start
            start = first_seq
        start = max(start, first_seq, 1)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                opt_start_seq=start, ack_policy=AckPolicy.EXPLICIT,
                                ack_wait=ACK_WAIT_S, filter_subject=self.subjects,
                                inactive_threshold=60.0, max_ack_pending=max(10 * self.batch,
                                                                             1000))
        return await js.pull_subscribe(pattern, stream=self.stream, config=config)

    async def _stream_subjects(self, js: Any, pattern: str) -> tuple[dict[str, int], int, int]:
        """Every subject of the stream matching ``pattern`` (the server pages them), and
        the stream's first and last sequence."""
        import json

        import nats.js.errors

        subjects: dict[str, int] = {}
        while True:
            request = json.dumps({"subjects_filter": pattern, "offset": len(subjects)})
            reply = await js._nc.request(f"{js._prefix}.STREAM.INFO.{self.stream}",
                                         request.encode(), timeout=5)
            info = json.loads(reply.data)
            if "error" in info:
                error = info["error"]
                if error.get("err_code") == STREAM_NOT_FOUND:
                    raise SourceError(f"no stream {self.stream!r} on the NATS server")
                raise nats.js.errors.APIError.from_error(error)
            page = info["state"].get("subjects") or {}
            subjects.update(page)
            if not page or len(subjects) >= info.get("total", len(subjects)):
                return subjects, info["state"]["first_seq"], info["state"]["last_seq"]

    async def _drain(self, js: Any) -> bool:
        """Fetch and store until stopped (False) or drained and idle (True).

        A subject's position may only pass a message once every earlier message
        of the subject is stored. JetStream delivers a consumer's messages in
        stream order, but a message delivered and lost on the way (a broken
        connection) comes back only later, after newer ones. So every delivery
        must be the consumer's next (its delivery sequence one more than the
        last, delivered for the first time); at the first that is not, the
        consumer is dropped and made again from the stored positions.
        """
        import nats.errors

        subscription = await self._subscribe(js)
        quiet_since = time.monotonic()
        expected, batch = 1, min(self.batch, FIRST_BATCH)
        storing: asyncio.Task[None] | None = None  # the previous batch, stored meanwhile
        try:
            while not self.stop.is_set():
                try:
                    messages = await subscription.fetch(batch, timeout=FETCH_TIMEOUT_S)
                except (nats.errors.TimeoutError, TimeoutError):  # nothing new for a while
                    messages = []
                in_order = []
                for message in messages:
                    metadata = message.metadata
                    if metadata.sequence.consumer != expected or metadata.num_delivered != 1:
                        break
                    in_order.append(message)
                    expected += 1
                if storing is not None:  # batches are stored in order, one at a time
                    await storing
                    storing = None
                if in_order:
                    storing = asyncio.create_task(self._store(in_order))
                    quiet_since = time.monotonic()
                if len(in_order) < len(messages):
                    self.result.retries += 1
                    self.report("NATS: a message came back out of order; re-reading from "
                                "the stored positions")
                    return False
                batch = _next_batch(batch, messages, self.batch)
                if messages:
                    continue
                if self.until_idle_s is not None and (
                        time.monotonic() - quiet_since >= self.until_idle_s):
                    info = await subscription.consumer_info()
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        return True
            return False
        finally:
            if storing is not None:
                await storing
            with contextlib.suppress(Exception):  # it expires on the server by itself
                await subscription.unsubscribe()

    async def _store(self, messages: list[Any]) -> None:
        """Append one batch, then acknowledge it.

        Subjects are appended side by side (their appends share fsyncs in the
        store's group commit); the runs of one subject go in order.
        """
        known = self.positions()
        by_subject: dict[str, list[Any]] = {}
        for message in messages:
            sequence = message.metadata.sequence.stream
            if sequence <= known.get(message.subject, 0):
                self.result.duplicates += 1  # stored before: acknowledge it again
                continue
            by_subject.setdefault(message.subject, []).append(message)
        await asyncio.gather(*(self._store_subject(subject, mine)
                               for subject, mine in by_subject.items()))
        self.result.busy_s = time.perf_counter() - self._started
        for message in messages:  # only now: every one of them is stored (or was before)
            await message.ack()

    async def _store_subject(self, subject: str, messages: list[Any]) -> None:
        source = source_of(self.stream, subject)
        for part in _bodies(messages):
            if part.problems:  # kept before the position passes them
                await asyncio.to_thread(write_dead_letter, self.store.dead_letter_path,
                                        part.problems, source=f"{source} (line = sequence)")
                self.result.rejected += len(part.problems)
            receipt = await asyncio.to_thread(
                self.store.append, part.data, format=part.format, on_error="skip",
                source=source, position=part.last_seq)
            self.result.appends += 1
            self.result.events += receipt.count
            self.result.rejected += receipt.rejected
        self.result.messages += len(messages)


def _next_batch(batch: int, messages: Sequence[Any], most: int) -> int:
    """How many messages to fetch next: about ``FETCH_BYTES`` worth, at most ``most``."""
    size = sum(len(m.data) for m in messages)
    if size > FETCH_BYTES:
        return max(1, batch * FETCH_BYTES // size)
    if len(messages) == batch and size < FETCH_BYTES // 2:
        return min(most, batch * 2)
    return batch


def _temporary(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the server's temporary answers, worth a retry."""
    import nats.errors
    import nats.js.errors

    if isinstance(exc, nats.js.errors.NotFoundError):
        return exc.err_code == CONSUMER_NOT_FOUND  # lost with a server; a stream is not
    if isinstance(exc, nats.js.errors.APIError):
        return exc.code in (None, 408, 503) or isinstance(
            exc, nats.js.errors.ServiceUnavailableError)
    return isinstance(exc, nats.errors.TimeoutError | nats.errors.NoRespondersError
                      | nats.errors.ConnectionClosedError | nats.errors.ConnectionReconnectingError
                      | nats.errors.StaleConnectionError | nats.errors.OutboundBufferLimitError
                      | asyncio.TimeoutError | ConnectionError)


def consume(store: Store, url: str, stream: str, *, subjects: str | None = None,
            batch: int = 1000, until_idle_s: float | None = None,
            stop: threading.Event | None = None,
            report: Callable[[str], None] = lambda note: None) -> ConsumeResult:
    """Read JetStream ``stream`` at ``url`` into ``store`` exactly once.

    Args:
        store: an open (writable) store.
        url: ``nats://HOST:PORT``; several servers of a cluster separated by commas.
        stream: the stream's name.
        subjects: only subjects matching this pattern (``orders.>``); default all.
        batch: messages fetched (and stored) at a time.
        until_idle_s: return once the stream is drained and quiet this long; None:
            run until ``stop`` is set.
        stop: set it (e.g. from a signal handler) to stop after the current batch.
        report: called with a line about retried server errors.

    Example (not run here: it needs a NATS server)::

        from tidal.sources.nats import consume
        consume(store, "nats://localhost:4222", "EVENTS", until_idle_s=5)
    """
    if batch < 1:
        raise ConfigError("batch must be positive", field="batch")
    if store.config.durability != "group":
        raise ConfigError("consume acknowledges a message once its append is durable: open "
                          "the store with durability='group' (the default)",
                          field="durability")
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if not servers or not all(u.startswith(("nats://", "tls://")) for u in servers):
        raise ConfigError(f"not a NATS server address: {url!r} (nats://HOST:PORT)", field="url")
    consumer = _Consumer(store, servers, stream, subjects, batch, until_idle_s,
                         stop or threading.Event(), report)
    return asyncio.run(consumer.run())
