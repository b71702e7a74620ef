"""``POST /v1/events`` (scope ``ingest``): a request body of events into the store.

The body's format comes from its ``Content-Type``: NDJSON
(``application/x-ndjson``, ``application/jsonl``, ``text/plain``), a JSON array
or a single JSON object (``application/json``; NDJSON sent as such is taken too),
or Arrow IPC (``application/vnd.apache.arrow.stream``, or ``.file``); anything
else is 415.
``Content-Encoding: gzip`` or ``zstd`` bodies are decompressed in chunks (any
other encoding is 415; a body that does not decompress is 400). A body, as sent
and as decompressed, may hold at most ``max_body_bytes``: past that the answer
is 413 and nothing is stored. Bodies with a ``Content-Length`` and chunked ones
are read alike, with a running count.

The answer comes only once the events are durable (``Store.append`` has
returned, after the WAL fsync): 200 and the receipt ``{"count", "first_seq",
"last_seq", "duplicates"}``. A request is stored whole or not at all: one bad
line rejects it with 400, naming every bad line and why. An empty body stores
nothing and is answered 200 with ``count`` 0 (shippers flush empty batches).
A full store answers 429 with ``Retry-After`` after ``backpressure_wait_s``.

Exactly once from clients that retry: ``Tidal-Source: NAME`` and
``Tidal-Position: N`` (both or neither; N a decimal integer, 0 to 2**63-1)
append with ``Store.append(source=, position=)``: the events and the source's
position commit together, and a request at or below the committed position
stores nothing and is answered 200 with ``"duplicate": true``. The receipt then
holds ``source`` and its committed ``position``; ``GET /v1/positions`` lists
every source's (scope ``ingest``), so that a restarted shipper resumes after it.

``X-Scope-OrgID: TENANT`` (as Loki and Mimir clients send it) sets the
top-level field ``org_id`` of every event of the request to ``TENANT``,
replacing any ``org_id`` the events carry. Tenant names follow Loki's rules:
1 to 150 of ``A-Z a-z 0-9 ! - _ . * ' ( )``, and not ``.`` or ``..``.

Other ingest routes (Loki, OTLP) can reuse :func:`read_body`,
:func:`decompress`, :func:`tenant` and :func:`with_tenant`.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import msgspec
import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tidal.ingest.pipeline import prepare
from tidal.model.time import now_ns
from tidal.server import openapi
from tidal.server.auth import require
from tidal.server.config import ServerConfig

if TYPE_CHECKING:
    from tidal.api import Receipt, Store

__all__ = ["ENDPOINT", "MEDIA_TYPES", "REFUSALS", "TENANT_FIELD", "TENANT_HEADER",
           "TENANT_PARAMETER", "decompress", "read_body", "routes", "tenant", "with_tenant"]

ENDPOINT = "/v1/events"
TENANT_HEADER = "X-Scope-OrgID"
TENANT_FIELD = "org_id"
"""The top-level field ``X-Scope-OrgID`` sets on every event of a request."""
SOURCE_HEADER = "Tidal-Source"
POSITION_HEADER = "Tidal-Position"
TENANT_PARAMETER = openapi.header(TENANT_HEADER,
                                  f"A tenant, set as {TENANT_FIELD!r} on every event")
"""The tenant header, as every ingest route documents it."""
REFUSALS = {413: "The body is larger than max_body_bytes (sent or decompressed)",
            415: "An unsupported Content-Type or Content-Encoding",
            429: "The store is full: retry after Retry-After seconds"}
"""The answers every ingest route may give besides its own (OpenAPI responses)."""
MEDIA_TYPES = {
    "application/x-ndjson": "ndjson", "application/jsonl": "ndjson", "text/plain": "ndjson",
    "application/json": "json",
    "application/vnd.apache.arrow.stream": "arrow", "application/vnd.apache.arrow.file": "arrow",
}
"""Accepted ``Content-Type`` media types, and the store format each is decoded as."""
CODECS = {"gzip": "gzip", "x-gzip": "gzip", "zstd": "zstd"}
"""Accepted ``Content-Encoding`` values (besides ``identity``), and their codec."""
CHUNK_BYTES = 1 << 20
DRAIN_BYTES = 1 << 20
"""How much of an oversized body is still read (and dropped), so that a client
still sending it reads the 413 rather than a reset connection."""
_TENANT = re.compile(r"[A-Za-z0-9!\-_.*'()]{1,150}")
_BOM = b"\xef\xbb\xbf"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read as it streams in; 413 once it passes ``limit`` bytes.

    Raises:
        HTTPException: 413 (too large: by its ``Content-Length`` before any of it is
            read, else once the running count passes ``limit``), or 400 (the client
            went away before the body ended).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(f"the body is {int(declared):,} bytes", limit)
    parts: list[bytes] = []
    size = 0
    stream = request.stream()
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > limit + DRAIN_BYTES:
                break
            if size <= limit:
                parts.append(chunk)
    except ClientDisconnect:
        raise HTTPException(400, "the client closed the connection before the body "
                                 "ended") from None
    finally:
        await stream.aclose()
    if size > limit:
        raise _too_large("the body is larger", limit)
    return b"".join(parts)


def decompress(body: bytes, codec: str, limit: int) -> bytes:
    """``body`` decompressed with ``codec`` (``gzip`` or ``zstd``), chunk by chunk, so that
    a body that inflates past ``limit`` bytes is refused without inflating it whole.
    (pyarrow's streaming codecs: cramjam's gzip and zstd decompressors give nothing
    before the whole frame is in, so a 2 KB zstd body could inflate to gigabytes first.)

    Raises:
        HTTPException: 413 past ``limit``; 400 for a body that does not decompress.
    """
    stream = pa.CompressedInputStream(pa.BufferReader(body), codec)
    parts: list[bytes] = []
    size = 0
    try:
        while chunk := stream.read(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise _too_large("the body decompresses to more", limit)
            parts.append(chunk)
    except (OSError, pa.ArrowException) as exc:
        raise HTTPException(400, f"the body does not decompress as {codec}: {exc}") from exc
    return b"".join(parts)


def tenant(request: Request) -> str | None:
    """The request's ``X-Scope-OrgID``, checked (400 for a malformed one); None if absent."""
    value = request.headers.get(TENANT_HEADER)
    if value is None:
        return None
    if not _TENANT.fullmatch(value) or value in (".", ".."):
        raise HTTPException(400, f"{TENANT_HEADER} must be 1 to 150 of A-Z a-z 0-9 "
                                 "! - _ . * ' ( ), and not '.' or '..'")
    return value


def with_tenant(table: pa.Table, org: str) -> pa.Table:
    """``table`` with the column :data:`TENANT_FIELD` set to ``org`` on every row."""
    column = pa.repeat(pa.scalar(org, pa.string()), table.num_rows)
    if TENANT_FIELD in table.column_names:
        return table.set_column(table.column_names.index(TENANT_FIELD), TENANT_FIELD, column)
    return table.append_column(TENANT_FIELD, column)


def _position(request: Request) -> tuple[str | None, int | None]:
    """The request's ``Tidal-Source`` and ``Tidal-Position``, (None, None) without them.

    Raises:
        HTTPException: 400 for one without the other, or a position that is not a
            decimal integer (the store checks the rest).
    """
    source = request.headers.get(SOURCE_HEADER)
    position = request.headers.get(POSITION_HEADER)
    if source is None and position is None:
        return None, None
    if source is None or position is None:
        missing = SOURCE_HEADER if source is None else POSITION_HEADER
        raise HTTPException(400, f"{SOURCE_HEADER} and {POSITION_HEADER} go together: "
                                 f"{missing} is missing")
    if not (position.isascii() and position.isdigit()):
        raise HTTPException(400, f"{POSITION_HEADER} must be a decimal integer from 0 to "
                                 f"2**63-1, not {position[:40]!r}")
    return source, int(position)


def _too_large(what: str, limit: int) -> HTTPException:
    return HTTPException(413, f"{what} than the limit of {limit:,} bytes (max_body_bytes)")


def _format(content_type: str | None) -> str:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    fmt = MEDIA_TYPES.get(media)
    if fmt is None:
        shown = repr(media) if media else "no Content-Type"
        raise HTTPException(415, f"unsupported {shown}: send one of {', '.join(MEDIA_TYPES)}")
    return fmt


def _codec(content_encoding: str | None) -> str | None:
    names = [n.strip().lower() for n in (content_encoding or "").split(",")]
    names = [n for n in names if n and n != "identity"]
    if not names:
        return None
    if len(names) > 1 or names[0] not in CODECS:
        raise HTTPException(415, f"unsupported Content-Encoding {content_encoding!r}: send "
                                 "gzip, zstd or identity (one of them)")
    return CODECS[names[0]]


def _object_or_lines(body: bytes) -> tuple[bytes, str]:
    """A JSON body that is no array: one object (a batch of one), else NDJSON sent as
    ``application/json`` (its bad lines are reported by line number)."""
    try:
        msgspec.json.decode(body, type=msgspec.Raw)  # (validates; builds no objects)
    except msgspec.DecodeError:
        return body, "ndjson"
    return b"[" + body + b"]", "json"


def _store(store: Store, config: ServerConfig, raw: bytes, fmt: str, codec: str | None,
           org: str | None, source: str | None, position: int | None) -> Receipt | None:
    """Decompress and append (in a worker thread); None for an empty body without a
    position (an empty one with a position commits the position)."""
    body = decompress(raw, codec, config.max_body_bytes) if codec else raw
    if not body and source is None:
        return None
    if fmt == "json" and body.removeprefix(_BOM).lstrip()[:1] == b"{":
        body, fmt = _object_or_lines(body.removeprefix(_BOM))
    wait_s = config.backpressure_wait_s
    if org is None or not body:
        return store.append(body, format="ndjson" if not body else fmt, on_error="reject",
                            source=source, position=position, timeout=wait_s)
    # Decode and normalize here (bad lines are reported by their line numbers), add
    # the tenant column, then append: the store finds the table already normalized.
    prepared = prepare(body, config=store.config, now_ns=now_ns(), format=fmt)
    return store.append(with_tenant(prepared.table, org), on_error="reject",
                        source=source, position=position, timeout=wait_s)


RECEIPT = openapi.schema("Receipt", {
    "type": "object", "required": ["count", "first_seq", "last_seq", "duplicates"],
    "properties": {
        "count": {"type": "integer", "description": "events stored"},
        "first_seq": {"type": ["integer", "null"], "description": "_seq of the first"},
        "last_seq": {"type": ["integer", "null"], "description": "_seq of the last"},
        "duplicates": {"type": "integer",
                       "description": "events skipped as duplicates (the store's dedup_key)"},
        "source": {"type": "string", "description": f"the {SOURCE_HEADER} sent, if any"},
        "position": {"type": "integer",
                     "description": "that source's committed position after this request"},
        "duplicate": {"type": "boolean", "description": f"the {POSITION_HEADER} was at or "
                      "below the committed one: nothing was stored"},
    },
})
POSITIONS = openapi.schema("Positions", {
    "type": "object", "additionalProperties": {"type": "integer"},
    "description": "each source's committed position"})
_LINES = {"type": "string", "description": "one JSON object per line"}


@openapi.operation(
    "Ingest events: NDJSON, JSON or Arrow IPC; answered once durable", scope="ingest",
    description="The format follows Content-Type; gzip and zstd bodies are decompressed. "
                "The body is stored whole or not at all: a bad line rejects it (400, every "
                "bad line and why). An empty body stores nothing (200, count 0). "
                f"{TENANT_HEADER} sets the field {TENANT_FIELD!r} of every event.",
    request={"application/x-ndjson": _LINES, "application/jsonl": _LINES,
             "text/plain": _LINES,
             "application/json": {"oneOf": [{"type": "array", "items": {"type": "object"}},
                                            {"type": "object"}]},
             "application/vnd.apache.arrow.stream": {"type": "string", "format": "binary"}},
    parameters=[TENANT_PARAMETER, openapi.header("Content-Encoding", "gzip, zstd or identity"),
                openapi.header(SOURCE_HEADER, "A source name, for exactly-once appends "
                               f"(with {POSITION_HEADER})"),
                openapi.header(POSITION_HEADER, "This body's position in its source: at "
                               "or below the committed one, nothing is stored",
                               schema={"type": "string", "pattern": "^[0-9]{1,19}$"})],
    responses={200: {"description": "Stored durably", "content": {
                   "application/json": {"schema": RECEIPT}}},
               400: "Bad input (every bad line and why), or a body that does not decompress",
               **REFUSALS})
async def post_events(request: Request) -> Response:
    """Store the events of the request body."""
    require(request, "ingest")
    fmt = _format(request.headers.get("content-type"))
    codec = _codec(request.headers.get("content-encoding"))
    org = tenant(request)
    source, position = _position(request)
    config: ServerConfig = request.app.state.config
    raw = await read_body(request, config.max_body_bytes)
    started = time.perf_counter()
    receipt = await run_in_threadpool(_store, request.app.state.store, config, raw, fmt,
                                      codec, org, source, position)
    count = receipt.count if receipt is not None else 0
    request.app.state.metrics.ingested(ENDPOINT, count, len(raw),
                                       time.perf_counter() - started)
    answer: dict[str, Any] = {
        "count": count, "first_seq": receipt.first_seq if receipt else None,
        "last_seq": receipt.last_seq if receipt else None,
        "duplicates": receipt.duplicates if receipt else 0}
    if receipt is not None and receipt.source is not None:
        answer |= {"source": receipt.source, "position": receipt.position,
                   "duplicate": receipt.duplicate}
    return JSONResponse(answer)


@openapi.operation(
    "Each source's committed position (Tidal-Source, Tidal-Position)", scope="ingest",
    responses={200: {"description": "Positions by source", "content": {
        "application/json": {"schema": POSITIONS}}}})
async def get_positions(request: Request) -> Response:
    """The committed position of every source."""
    require(request, "ingest")
    return JSONResponse(request.app.state.store.positions())


def routes() -> list[BaseRoute]:
    """``POST /v1/events``, ``GET /v1/positions``."""
    return [Route(ENDPOINT, post_events, methods=["POST"]),
            Route("/v1/positions", get_positions, methods=["GET"])]
