"""What the push routes (Loki, OTLP) share beyond :mod:`tidal.server.ingest`'s helpers.

* :func:`content_encoding` checks ``Content-Encoding`` against what a route takes;
* :func:`decompress` undoes it, never producing more than the limit (past it,
  413; a body that is not what its encoding says, 400): ``gzip`` and ``zstd``
  by :func:`tidal.server.ingest.decompress`, ``deflate`` (zlib, or raw as Go
  sends it) and the snappy *block* format (Loki's) here;
* :class:`Columns` collects decoded messages column by column (a value for a
  run of rows, like a stream's labels, is stored once) and builds one Arrow
  table at the end, dotted paths as nested structs.

Errors are :class:`~starlette.exceptions.HTTPException`: the app answers them
as JSON (:func:`tidal.server.app.error_response`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
from starlette.exceptions import HTTPException
from starlette.requests import Request

from tidal.server import ingest

__all__ = ["Columns", "content_encoding", "decompress", "media_type", "snappy_block"]

Path = tuple[str, ...]
_NONE = type(None)
_SNAPPY_FRAMED = b"\xff\x06\x00\x00sNaPpY"
_json = msgspec.json.Encoder()


# ------------------------------------------------------------------ bodies

def media_type(request: Request) -> str:
    """The request's ``Content-Type`` without parameters, lower case ('' if none)."""
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def content_encoding(request: Request, accepted: Sequence[str]) -> str:
    """The request's ``Content-Encoding`` ('' for none or ``identity``); 415 unless
    it is one of ``accepted``."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    encoding = "" if encoding == "identity" else "gzip" if encoding == "x-gzip" else encoding
    if encoding and encoding not in accepted:
        raise HTTPException(415, f"unsupported Content-Encoding {encoding!r}: send "
                                 f"{', '.join(accepted)} or identity")
    return encoding


def decompress(body: bytes, encoding: str, limit_bytes: int) -> bytes:
    """``body`` decoded from ``encoding`` ('' for none), at most ``limit_bytes`` of it."""
    if not encoding:
        return body
    if encoding in ("gzip", "zstd"):
        return ingest.decompress(body, encoding, limit_bytes)
    if encoding == "deflate":  # zlib as the RFC says; raw deflate as Go's flate sends it
        zlib_head = len(body) >= 2 and (body[0] & 0x0F) == 8 and (body[0] << 8 | body[1]) % 31 == 0
        return _inflate(body, zlib.MAX_WBITS if zlib_head else -zlib.MAX_WBITS, limit_bytes)
    if encoding == "snappy":
        return snappy_block(body, limit_bytes)
    raise HTTPException(415, f"unsupported Content-Encoding {encoding!r}")


def snappy_block(body: bytes, limit_bytes: int) -> bytes:
    """``body`` decoded from the snappy *block* format (what Loki clients send)."""
    import cramjam

    if body.startswith(_SNAPPY_FRAMED):
        raise HTTPException(400, "the body is in the snappy framed (stream) format; send "
                                 "the snappy block format, as Promtail, Alloy and the Loki "
                                 "clients do")
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as exc:
        raise HTTPException(400, f"the body does not decompress as snappy (block format): "
                                 f"{exc}") from exc
    if size > limit_bytes:
        raise _too_large(f"the body decompresses to {size:,} bytes, more", limit_bytes)
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise HTTPException(400, f"the body does not decompress as snappy (block format): "
                                 f"{exc}") from exc


def _inflate(body: bytes, wbits: int, limit_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit_bytes + 1)
    except zlib.error as exc:
        raise HTTPException(400, f"the body does not decompress as deflate: {exc}") from exc
    if len(out) > limit_bytes or inflater.unconsumed_tail:
        raise _too_large("the body decompresses to more", limit_bytes)
    if not inflater.eof:
        raise HTTPException(400, "the body does not decompress as deflate: it ends too soon")
    return out


def _too_large(what: str, limit_bytes: int) -> HTTPException:
    return HTTPException(413, f"{what} than the limit of {limit_bytes:,} bytes "
                              "(max_body_bytes)")


# ----------------------------------------------------------------- columns

class Columns:
    """Events collected column by column; :meth:`table` builds them once.

    A column is a path (``("service", "name")``). Values go in three ways, each
    replacing the one before it in a row: runs of rows sharing one value
    (:meth:`fill`: a stream's labels, a resource's attributes), single cells
    (:meth:`put`, or appending to :attr:`cells` directly in a hot loop), and
    whole columns (:meth:`dense`). Within runs, and within cells, later values
    replace earlier ones.

    >>> c = Columns()
    >>> c.fill(("service", "name"), 0, 2, "api")
    >>> c.put(("service", "name"), 1, "web")
    >>> c.put(("level",), 1, "warn")
    >>> c.dense(("message",), ["a", "b"])
    >>> c.table(2).to_pylist()
    [{'message': 'a', 'service': {'name': 'api'}, 'level': None}, \
{'message': 'b', 'service': {'name': 'web'}, 'level': 'warn'}]
    """

    def __init__(self) -> None:
        self.cells: dict[Path, tuple[list[int], list[Any]]] = {}
        """Path → (rows, values), in the order put."""
        self._runs: dict[Path, list[tuple[int, int, object]]] = {}
        self._dense: dict[Path, pa.Array | list[Any]] = {}

    def put(self, path: Path, row: int, value: object) -> None:
        """``value`` at ``row`` of ``path``."""
        cell = self.cells.get(path)
        if cell is None:
            cell = self.cells[path] = ([], [])
        cell[0].append(row)
        cell[1].append(value)

    def fill(self, path: Path, start: int, stop: int, value: object) -> None:
        """``value`` at rows ``start`` to ``stop - 1`` of ``path``."""
        if stop > start:
            runs = self._runs.get(path)
            if runs is None:
                runs = self._runs[path] = []
            runs.append((start, stop, value))

    def dense(self, path: Path, values: pa.Array | list[Any]) -> None:
        """The whole column at ``path`` (one value per row, None for none)."""
        self._dense[path] = values

    def table(self, rows: int) -> pa.Table:
        """The collected columns as a table of ``rows`` rows.

        Values of a column are typed once: all text, all bool, all int, numbers
        (int and float: float), lists (Arrow infers their type); columns mixing
        kinds hold text (non-text values as JSON). A path that holds a value and
        is also the parent of others (``a`` and ``a.b``) keeps its value, and
        the longer paths keep their dots below its parent (the field ``a.b``
        next to ``a``), where a dotted path still finds them.
        """
        root: dict[str, _Node] = {}
        leaves = [(path, _array(values) if isinstance(values, list) else values)
                  for path, values in self._dense.items()]
        for path in {**self._runs, **self.cells}:
            if path not in self._dense:
                values = _spread(self._runs.get(path, ()), rows)
                for row, value in zip(*self.cells.get(path, ((), ())), strict=True):
                    values[row] = value
                leaves.append((path, _array(values)))
        for path, array in leaves:
            children = root
            for step in path[:-1]:
                children = children.setdefault(step, _Node()).children
            children.setdefault(path[-1], _Node()).value = array
        names, arrays = zip(*_built(root, rows).items(), strict=True) if root else ((), ())
        return pa.Table.from_arrays(list(arrays), names=list(names))


class _Node:
    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.value: pa.Array | None = None
        self.children: dict[str, _Node] = {}


def _built(nodes: dict[str, _Node], rows: int) -> dict[str, pa.Array]:
    out: dict[str, pa.Array] = {}
    for name, node in nodes.items():
        below = _built(node.children, rows) if node.children else {}
        if node.value is None:
            out[name] = _struct(below, rows)
        else:
            out[name] = node.value
            out.update((f"{name}.{child}", array) for child, array in below.items())
    return out


def _struct(fields: dict[str, pa.Array], rows: int) -> pa.Array:
    """A struct of ``fields``, null in the rows where every field is null."""
    absent = np.ones(rows, dtype=bool)
    for array in fields.values():
        if array.null_count < rows:
            absent &= np.asarray(array.is_null(), dtype=bool)
    mask = pa.array(absent) if absent.any() else None
    return pa.StructArray.from_arrays(list(fields.values()), names=list(fields), mask=mask)


def _spread(runs: Iterable[tuple[int, int, object]], rows: int) -> list[Any]:
    values: list[Any] = [None] * rows
    for start, stop, value in runs:
        if stop == start + 1:
            values[start] = value
        else:
            values[start:stop] = [value] * (stop - start)
    return values


def _array(values: list[Any]) -> pa.Array:
    kinds = set(map(type, values)) - {_NONE}
    target = _TYPES.get(frozenset(kinds)) if len(kinds) <= 2 else None
    if target is not None or kinds == {list}:
        try:  # (lists: Arrow infers the type, or finds none)
            return pa.array(values, target)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    return pa.array([_text(v) for v in values], pa.string())


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _json.encode(value).decode()


_TYPES: dict[frozenset[type], pa.DataType] = {
    frozenset(): pa.null(), frozenset({str}): pa.string(), frozenset({bool}): pa.bool_(),
    frozenset({int}): pa.int64(), frozenset({float}): pa.float64(),
    frozenset({int, float}): pa.float64(),
}
