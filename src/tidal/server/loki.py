"""``POST /loki/api/v1/push``: Loki's push API, so Loki clients and shippers write to Tidal.

Bodies (as Loki takes them):

* ``application/json``: ``{"streams": [{"stream": {"app": "api"}, "values":
  [["<ns>", "<line>"], ["<ns>", "<line>", {"trace_id": "..."}]]}]}``; the legacy
  form ``{"streams": [{"labels": "{app=\\"api\\"}", "entries": [{"ts":
  "<RFC 3339 or ns>", "line": "..."}]}]}`` (``python-logging-loki``
  ``version="0"``) is read too;
* ``application/x-protobuf`` (or no ``Content-Type``): Loki's ``PushRequest``
  (:mod:`tidal.server._loki_proto`), snappy-compressed in the *block* format
  with no ``Content-Encoding`` (what Promtail, Alloy and the Loki clients
  send; ``Content-Encoding: snappy`` means the same);
* ``Content-Encoding: gzip`` or ``deflate`` around either (and ``snappy``
  around JSON).

Each entry becomes one event:

=====================  ==================================================
``timestamp``          the entry's time, ns (the store's ``timestamp_field``)
``message``            the log line
``<label>``            each stream label, as text (``app``, ``level``...)
``<key>``              each structured-metadata pair (a per-line label)
=====================  ==================================================

Labels and metadata keys are flat field names, dots and all. Metadata wins
over a stream label of the same name; a label or key that would overwrite
``message``, the timestamp or ``_seq`` is stored as ``label_<name>``. Entries
are never deduplicated: shippers legitimately repeat (timestamp, labels).

Labels in protobuf arrive as a selector string, ``{app="api", level="info"}``,
read tolerantly (:func:`parse_labels`). ``X-Scope-OrgID`` (Loki's tenant
header) sets ``org_id`` on every event, as on ``/v1/events``. Decoding
gathers columns (a stream's labels once per stream, lines and times as lists)
and the request is one ``Store.append``.

Success is ``204 No Content``, as from Loki. A bad body is a 400 naming what is
wrong and where (``streams[2].values[0][0]: ...``), a body over
``max_body_bytes`` (compressed or not) a 413, an unknown ``Content-Type`` or
``Content-Encoding`` a 415, a full store a 429 with ``Retry-After`` (shippers
retry it); nothing is stored on any 4xx.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import pyarrow as pa
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tidal.api import Store
from tidal.errors import TidalError
from tidal.model.time import TIMESTAMP_TYPE, parse_instant
from tidal.server import auth, ingest, openapi
from tidal.server._push import Columns, content_encoding, decompress, media_type, snappy_block
from tidal.server.config import ServerConfig

__all__ = ["LINE_FIELD", "parse_labels", "routes"]

PUSH_PATH = "/loki/api/v1/push"
LINE_FIELD = "message"
"""The field that holds the log line (what a Loki query API reads back)."""
ENCODINGS = ("gzip", "deflate", "snappy")
_I64 = 1 << 63
_NS = 1_000_000_000
_DIGITS = re.compile(r"-?[0-9]{1,20}")


@openapi.operation(
    "Push log lines (Loki's push API); answered 204 once durable", scope="ingest",
    description="Loki's `PushRequest`: protobuf, snappy block-compressed (no "
                "Content-Encoding needed), or JSON (`{\"streams\": [{\"stream\": {labels}, "
                "\"values\": [[\"<ns>\", \"<line>\", {metadata}?]]}]}`). Each entry is "
                f"an event: `timestamp`, `{LINE_FIELD}` (the line), one field per stream "
                "label and per structured-metadata key. Stored whole or not at all. "
                f"{ingest.TENANT_HEADER} sets the field {ingest.TENANT_FIELD!r} of every event.",
    request={"application/x-protobuf": {"type": "string", "format": "binary"},
             "application/json": {"type": "object", "required": ["streams"]}},
    parameters=[ingest.TENANT_PARAMETER,
                openapi.header("Content-Encoding", "snappy, gzip, deflate or identity")],
    responses={204: {"description": "Stored durably"},
               400: "A body that cannot be read (what is wrong, and where)",
               **ingest.REFUSALS})
async def push(request: Request) -> Response:
    """Store a Loki push body; 204 once it is durable."""
    auth.require(request, "ingest")
    kind = _kind(media_type(request))
    encoding = content_encoding(request, ENCODINGS)
    org = ingest.tenant(request)
    config: ServerConfig = request.app.state.config
    body = await ingest.read_body(request, config.max_body_bytes)
    store: Store = request.app.state.store
    started = time.perf_counter()

    def decode_and_append() -> int:
        if not body:
            return 0  # (an empty push, like an empty batch flushed: nothing to store)
        limit = config.max_body_bytes
        raw = decompress(body, encoding, limit) if encoding != "snappy" or kind == "json" else body
        batch = _Batch(store.config.timestamp_field)
        if kind == "json":
            _read_json(raw, batch)
        else:
            _read_protobuf(snappy_block(raw, limit), batch)
        if not batch.rows:
            return 0
        table = batch.table() if org is None else ingest.with_tenant(batch.table(), org)
        return store.append(table, timeout=config.backpressure_wait_s).count

    count = await run_in_threadpool(decode_and_append)
    request.app.state.metrics.ingested(PUSH_PATH, count, len(body), time.perf_counter() - started)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    """``POST /loki/api/v1/push``."""
    return [Route(PUSH_PATH, push, methods=["POST"])]


def _kind(media: str) -> str:
    if media in ("application/json", "text/json"):
        return "json"
    if media in ("", "application/x-protobuf", "application/protobuf",
                 "application/vnd.google.protobuf", "application/octet-stream"):
        return "protobuf"
    raise HTTPException(415, f"Content-Type {media!r} is not a Loki push body: use "
                             "application/json or application/x-protobuf (snappy)")


# ------------------------------------------------------------------ a batch

class _Batch:
    """Entries gathered as columns: labels once per stream, lines and times as lists."""

    def __init__(self, timestamp_field: str) -> None:
        self.columns = Columns()
        self.times: list[int] = []
        self.lines: list[str] = []
        self.rows = 0
        self._time_path = tuple(timestamp_field.split("."))
        self._reserved = {LINE_FIELD, "_seq", self._time_path[0]}

    def stream(self, labels: dict[str, str], times: list[int], lines: list[str]) -> int:
        """Add a stream's entries; returns the row of its first."""
        start, stop = self.rows, self.rows + len(times)
        for name, value in labels.items():
            self.columns.fill((self._name(name),), start, stop, value)
        self.times += times
        self.lines += lines
        self.rows = stop
        return start

    def metadata(self, row: int, name: str, value: str) -> None:
        self.columns.put((self._name(name),), row, value)

    def table(self) -> pa.Table:
        self.columns.dense((LINE_FIELD,), pa.array(self.lines, pa.string()))
        self.columns.dense(self._time_path, pa.array(self.times, TIMESTAMP_TYPE))
        return self.columns.table(self.rows)

    def _name(self, name: str) -> str:
        return f"label_{name}" if name in self._reserved else name


# -------------------------------------------------------------------- JSON

def _read_json(raw: bytes, batch: _Batch) -> None:
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise _bad(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise _bad("the body is not a Loki push body: nested too deeply") from exc
    if not isinstance(doc, dict):
        raise _bad('the body must be a JSON object: {"streams": [...]}')
    streams = doc.get("streams", [])
    if not isinstance(streams, list):
        raise _bad('"streams" must be a list')
    for i, stream in enumerate(streams):
        where = f"streams[{i}]"
        if not isinstance(stream, dict):
            raise _bad(f"{where} must be an object")
        if "values" in stream or "stream" in stream:
            labels = _string_map(stream.get("stream", {}), f"{where}.stream")
            _json_values(stream.get("values", []), labels, batch, where)
        else:  # the legacy form: a selector string and {"ts", "line"} entries
            text = stream.get("labels", "")
            if not isinstance(text, str):
                raise _bad(f"{where}.labels must be a string like '{{app=\"api\"}}'")
            labels = _labels(text, where)
            _json_entries(stream.get("entries", []), labels, batch, where)


def _json_values(values: object, labels: dict[str, str], batch: _Batch, where: str) -> None:
    if not isinstance(values, list):
        raise _bad(f"{where}.values must be a list of [timestamp, line] pairs")
    times: list[int] = []
    lines: list[str] = []
    metadata: list[tuple[int, dict[str, str]]] = []
    for j, value in enumerate(values):
        if not isinstance(value, list) or not 2 <= len(value) <= 3:
            raise _bad(f"{where}.values[{j}] must be [timestamp, line] or "
                       "[timestamp, line, {structured metadata}]")
        times.append(_ns(value[0], f"{where}.values[{j}][0]"))
        line = value[1]
        if not isinstance(line, str):
            raise _bad(f"{where}.values[{j}][1]: the log line must be a string, "
                       f"not {_kind_of(line)}")
        lines.append(line)
        if len(value) == 3 and value[2] is not None:
            metadata.append((j, _string_map(value[2], f"{where}.values[{j}][2]")))
    start = batch.stream(labels, times, lines)
    for j, pairs in metadata:
        for name, text in pairs.items():
            batch.metadata(start + j, name, text)


def _json_entries(entries: object, labels: dict[str, str], batch: _Batch, where: str) -> None:
    if not isinstance(entries, list):
        raise _bad(f"{where}.entries must be a list of {{\"ts\", \"line\"}} objects")
    times: list[int] = []
    lines: list[str] = []
    for j, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("line"), str):
            raise _bad(f"{where}.entries[{j}] must be an object with a string \"line\"")
        try:
            ns = parse_instant(entry.get("ts"), name=f"{where}.entries[{j}].ts")
        except TidalError as exc:
            raise _bad(str(exc)) from exc
        if ns is None or not -_I64 <= ns < _I64:
            raise _bad(f"{where}.entries[{j}].ts: a time is needed (RFC 3339 or ns)")
        times.append(ns)
        lines.append(entry["line"])
    batch.stream(labels, times, lines)


def _ns(value: object, where: str) -> int:
    """Loki's JSON timestamp: ns since the epoch as a string of digits (or a number)."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        ns = int(value)
    elif type(value) is int:
        ns = value
    else:
        raise _bad(f"{where}: the timestamp must be nanoseconds since the epoch as a "
                   f"string of digits, not {value!r:.60}")
    if not -_I64 <= ns < _I64:
        raise _bad(f"{where}: the timestamp {ns} is out of range (64-bit nanoseconds)")
    return ns


def _string_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object of names to string values")
    for name, text in value.items():
        if not name:
            raise _bad(f"{where}: a label name is empty")
        if not isinstance(text, str):
            raise _bad(f"{where}.{name}: label values are strings, not {_kind_of(text)}")
    return value


def _kind_of(value: object) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


# ---------------------------------------------------------------- protobuf

def _read_protobuf(raw: bytes, batch: _Batch) -> None:
    from google.protobuf.message import DecodeError

    from tidal.server._loki_proto import PushRequest  # (protobuf loads on first use)

    try:
        request = PushRequest.FromString(raw)
    except DecodeError as exc:
        raise _bad(f"the body is not a Loki PushRequest (protobuf): {exc}") from exc
    for i, stream in enumerate(request.streams):
        labels = _labels(stream.labels, f"streams[{i}]")
        entries = stream.entries
        times = [e.timestamp.seconds * _NS + e.timestamp.nanos for e in entries]
        if times and not (-_I64 <= min(times) and max(times) < _I64):
            j = next(j for j, t in enumerate(times) if not -_I64 <= t < _I64)
            raise _bad(f"streams[{i}].entries[{j}]: the timestamp is out of range "
                       "(64-bit nanoseconds)")
        start = batch.stream(labels, times, [e.line for e in entries])
        for j, entry in enumerate(entries):
            for pair in entry.structuredMetadata:
                if not pair.name:
                    raise _bad(f"streams[{i}].entries[{j}]: a structured metadata name "
                               "is empty")
                batch.metadata(start + j, pair.name, pair.value)


def _labels(text: str, where: str) -> dict[str, str]:
    try:
        return parse_labels(text)
    except ValueError as exc:
        raise _bad(f"{where}: cannot read the labels {text!r:.200}: {exc}") from exc


def _bad(message: str) -> HTTPException:
    return HTTPException(400, message)


# ------------------------------------------------------------------ labels

_NAME = r"[A-Za-z_][A-Za-z0-9_.:]*"
_WELL_FORMED = re.compile(rf'\{{\s*(?:{_NAME}\s*=\s*"(?:[^"\\]|\\.)*"\s*(?:,\s*|(?=\}})))*\}}\s*',
                          re.DOTALL)
_PAIR = re.compile(rf'({_NAME})\s*=\s*"((?:[^"\\]|\\.)*)"', re.DOTALL)
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)",
                     re.DOTALL)
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
           "\\": "\\", '"': '"', "'": "'", "`": "`"}
_STOP = frozenset("=,{}\"'`") | frozenset(" \t\r\n")


def parse_labels(text: str) -> dict[str, str]:
    """Read a Loki stream selector as a push carries it: ``{app="api", level="info"}``.

    Tolerant of what shippers send: Go escapes inside double quotes
    (``\\"`` ``\\\\`` ``\\n`` ``\\t`` ``\\xHH`` ``\\uHHHH``...; an unknown escape
    is kept as written), a quote inside a value left unescaped (a quote ends
    the value only when a ``,``, the closing ``}`` or the end follows it),
    single-quoted, backquoted and unquoted values, missing braces, stray
    commas. The last of repeated names wins.

    Raises:
        ValueError: no sense can be made of it (an empty name, no ``=``, an
            unterminated quote); the message says where.

    >>> parse_labels('{app="api", msg="say \\\\"hi\\\\"", q=\\'x\\', n=3}')
    {'app': 'api', 'msg': 'say "hi"', 'q': 'x', 'n': '3'}
    >>> parse_labels('{path="C:\\\\dir", odd="a "b" c"}')
    {'path': 'C:\\\\dir', 'odd': 'a "b" c'}
    """
    if _WELL_FORMED.fullmatch(text):
        return {name: _unescape(value) if "\\" in value else value
                for name, value in _PAIR.findall(text)}
    return _scan(text)


def _scan(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    n, i = len(text), _skip(text, 0)
    if i < n and text[i] == "{":
        i += 1
    while True:
        while i < n and (text[i].isspace() or text[i] == ","):
            i += 1
        if i >= n:
            return labels
        if text[i] == "}":
            if text[i + 1:].strip():
                raise ValueError(f"unexpected text after the closing brace at offset {i}")
            return labels
        start = i
        while i < n and text[i] not in _STOP:
            i += 1
        name = text[start:i]
        if not name:
            raise ValueError(f"a label name is missing at offset {start}")
        i = _skip(text, i)
        if i >= n or text[i] != "=":
            raise ValueError(f"expected '=' after the label name {name!r}")
        i = _skip(text, i + 1)
        labels[name], i = _value(text, i, name)


def _value(text: str, i: int, name: str) -> tuple[str, int]:
    n = len(text)
    quote = text[i] if i < n else ""
    if quote == "`":
        end = text.find("`", i + 1)
        if end < 0:
            raise ValueError(f"the value of {name!r} has no closing backquote")
        return text[i + 1:end], end + 1
    if quote not in ('"', "'"):
        end = i
        while end < n and text[end] not in ",}":
            end += 1
        return text[i:end].strip(), end
    j = i + 1
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == quote:
            after = _skip(text, j + 1)
            if after >= n or text[after] in ",}":
                body = text[i + 1:j]
                return (_unescape(body) if "\\" in body else body), j + 1
        j += 1
    raise ValueError(f"the value of {name!r} has no closing quote")


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _unescape(body: str) -> str:
    """Go's escapes (as ``strconv.Unquote``); ``\\x`` and octal escapes are bytes."""
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(body):
        out += body[pos:match.start()].encode("utf-8", "surrogatepass")
        out += _escaped(match.group(1))
        pos = match.end()
    out += body[pos:].encode("utf-8", "surrogatepass")
    return out.decode("utf-8", "replace")


def _escaped(code: str) -> bytes:
    head = code[0]
    if head == "x":
        return bytes([int(code[1:], 16)])
    if head in "uU" and len(code) > 1:
        point = int(code[1:], 16)
        return (chr(point) if point <= 0x10FFFF else "\ufffd").encode("utf-8", "replace")
    if head in "01234567" and len(code) == 3:
        return bytes([int(code, 8) & 0xFF])
    simple: Any = _SIMPLE.get(code)
    return (simple if simple is not None else "\\" + code).encode("utf-8", "surrogatepass")
