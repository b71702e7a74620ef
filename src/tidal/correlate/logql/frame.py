"""Log entries as columns: which fields are labels and which is the line, and
the :class:`Frame` a pipeline works on.

A frame holds, per entry, its time (int64 ns), ``_seq``, its line (a string
column), its labels (one string column per label, null where an entry lacks
it: an empty value is no label, as in Loki) and, after ``| unwrap``, its sample
(float64). :func:`series_ids` numbers the
distinct label sets of a frame without a per-entry Python loop.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.errors import QueryError
from tidal.model.paths import get_path, has_path

__all__ = ["LINE_FIELDS", "Frame", "Layout", "concat", "event_json", "label_sets", "layout_of",
           "sanitize", "series_ids"]

LINE_FIELDS = ("message", "body", "line", "msg", "log")
SEQ = "_seq"
_INVALID = re.compile(r"[^A-Za-z0-9_]")
_NULL = pa.scalar(None, pa.string())


def sanitize(name: str) -> str:
    """A field path as a label name: dots and other characters become ``_``.

    >>> sanitize("service.name")
    'service_name'
    """
    return _INVALID.sub("_", name)


@dataclass(frozen=True)
class Layout:
    """Where a log query reads: the time field, the line field (None: the event
    as JSON text) and each label's field path by label name."""

    ts_field: str
    line_field: str | None
    labels: dict[str, str]

    def path_of(self, name: str) -> str:
        """The field a selector's matcher on ``name`` reads (a label's, or ``name``)."""
        return self.labels.get(name) or self.labels.get(sanitize(name)) or name


def layout_of(schema: pa.Schema, ts_field: str, line_field: str | None,
              label_fields: Sequence[str] | None) -> Layout:
    """The layout for ``schema``: the given fields, or by default the first of
    :data:`LINE_FIELDS` present and every string field (struct leaves included).

    Raises:
        QueryError: a given line or label field that ``schema`` does not have.
    """
    if line_field is not None and not has_path(schema, line_field):
        raise QueryError(f"no field {line_field!r} to read log lines from")
    if line_field is None:
        line_field = next((f for f in LINE_FIELDS if f in schema.names), None)
    if label_fields is not None:
        missing = [f for f in label_fields if not has_path(schema, f)]
        if missing:
            raise QueryError(f"no field {missing[0]!r} to read a label from")
        return Layout(ts_field, line_field, {sanitize(f): f for f in label_fields})
    skip = {ts_field, SEQ, line_field}
    labels: dict[str, str] = {}
    for f in schema:
        if f.name not in skip:
            _string_leaves(f.name, f.type, labels)
    return Layout(ts_field, line_field, labels)


def _string_leaves(path: str, kind: pa.DataType, out: dict[str, str]) -> None:
    if pa.types.is_struct(kind):
        for i in range(kind.num_fields):
            child = kind.field(i)
            _string_leaves(f"{path}.{child.name}", child.type, out)
    elif _is_text(kind):
        out.setdefault(sanitize(path), path)


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def as_label(values: pa.ChunkedArray | pa.Array | None, n: int) -> pa.Array:
    """``values`` as a label column: strings, null where absent or empty."""
    if values is None:
        return pa.nulls(n, pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not _is_text(values.type):
        values = pc.cast(values, pa.string())
    elif pa.types.is_dictionary(values.type) or pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    return pc.if_else(pc.equal(values, ""), _NULL, values)


@dataclass(frozen=True)
class Frame:
    """Log entries, column by column (see the module's docstring)."""

    ts: np.ndarray
    seq: np.ndarray
    line: pa.Array
    labels: dict[str, pa.Array]
    stream: frozenset[str]
    sample: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def read(cls, table: pa.Table, layout: Layout, with_line: bool = True) -> Frame:
        """The frame of stored events: their labels and lines per ``layout`` (the
        lines null when not ``with_line``: a query that never looks at them)."""
        n = table.num_rows
        ts = pc.cast(table.column(layout.ts_field), pa.int64()).to_numpy()
        seq = np.asarray(table.column(SEQ).to_numpy(), dtype=np.int64)
        if not with_line:
            line = pa.nulls(n, pa.string())
        elif layout.line_field is None:
            line = event_json(table, {layout.ts_field, SEQ})
        else:
            raw = get_path(table, layout.line_field)
            text = pc.cast(raw.combine_chunks(), pa.string()) if raw is not None \
                else pa.nulls(n, pa.string())
            line = pc.fill_null(text, "")
        labels = {name: as_label(get_path(table, path), n)
                  for name, path in layout.labels.items()}
        labels = {k: v for k, v in labels.items() if v.null_count < n}
        return cls(np.asarray(ts, dtype=np.int64), seq, line, labels, frozenset(labels))

    def filter(self, mask: np.ndarray) -> Frame:
        """The entries where ``mask`` is true."""
        if mask.all():
            return self
        keep = pa.array(mask)
        labels = {k: v.filter(keep) for k, v in self.labels.items()}
        return Frame(self.ts[mask], self.seq[mask], self.line.filter(keep),
                     {k: v for k, v in labels.items() if v.null_count < len(v)}, self.stream,
                     None if self.sample is None else self.sample[mask])

    def take(self, rows: np.ndarray) -> Frame:
        """The entries at ``rows``, in that order."""
        index = pa.array(rows, type=pa.int64())
        return Frame(self.ts[rows], self.seq[rows], self.line.take(index),
                     {k: v.take(index) for k, v in self.labels.items()}, self.stream,
                     None if self.sample is None else self.sample[rows])

    def with_labels(self, labels: dict[str, pa.Array]) -> Frame:
        """The same entries with ``labels`` (a label absent from every entry left out)."""
        n = len(self)
        return Frame(self.ts, self.seq, self.line,
                     {k: v for k, v in labels.items() if v.null_count < n}, self.stream,
                     self.sample)

    def with_line(self, line: pa.Array) -> Frame:
        """The same entries with ``line`` as their lines."""
        return Frame(self.ts, self.seq, line, self.labels, self.stream, self.sample)

    @classmethod
    def concat(cls, frames: Sequence[Frame]) -> Frame:
        """One frame of ``frames``' entries; a label one frame lacks is null there."""
        if not frames:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), pa.array([], pa.string()),
                       {}, frozenset())
        if len(frames) == 1:
            return frames[0]
        names = sorted({k for f in frames for k in f.labels})
        labels = {k: pa.concat_arrays([f.labels.get(k, pa.nulls(len(f), pa.string()))
                                       for f in frames]) for k in names}
        samples = [f.sample for f in frames]
        return cls(np.concatenate([f.ts for f in frames]),
                   np.concatenate([f.seq for f in frames]),
                   pa.concat_arrays([f.line for f in frames]), labels,
                   frozenset().union(*(f.stream for f in frames)),
                   None if any(s is None for s in samples)
                   else np.concatenate(cast(list[np.ndarray], samples)))


def series_ids(labels: dict[str, pa.Array], n: int) -> tuple[np.ndarray, np.ndarray]:
    """A dense id per entry, equal where the label sets are equal, and the first
    entry of each id.

    The labels' dictionary codes are combined into one integer key per entry;
    a key space no larger than a few times the entries is made dense with a
    bincount (linear), a larger one with a sort.

    >>> ids, first = series_ids({"a": pa.array(["x", "y", "x", None])}, 4)
    >>> ids.tolist(), first.tolist()
    ([1, 2, 1, 0], [3, 0, 1])
    """
    key = np.zeros(n, dtype=np.int64)
    span = 1  # keys lie in [0, span)
    for name in sorted(labels):
        encoded = pc.dictionary_encode(labels[name])
        codes = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(), dtype=np.int64) + 1
        size = len(encoded.dictionary) + 1
        if span * size >= 2**62:
            key, _ = _dense(key, n)
            span = int(key.max()) + 1 if n else 1
        key = key * size + codes
        span *= size
    return _dense(key, n)


def _dense(key: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``key`` renumbered 0.. in key order, and the first entry of each number."""
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    top = int(key.max()) + 1
    if top <= max(4 * n, 1 << 16):
        seen = np.zeros(top, dtype=np.bool_)
        seen[key] = True
        ids = (np.cumsum(seen) - 1)[key].astype(np.int64)
        first = np.empty(int(seen.sum()), dtype=np.int64)
        first[ids[::-1]] = np.arange(n - 1, -1, -1, dtype=np.int64)  # the earliest wins
        return ids, first
    _, first, ids = np.unique(key, return_index=True, return_inverse=True)
    return ids.astype(np.int64).reshape(-1), first.astype(np.int64)


def label_sets(labels: dict[str, pa.Array], rows: np.ndarray) -> list[dict[str, str]]:
    """The label set of each entry at ``rows`` (absent labels left out)."""
    index = pa.array(rows, type=pa.int64())
    columns = {name: values.take(index).to_pylist() for name, values in sorted(labels.items())}
    return [{name: value[i] for name, value in columns.items() if value[i] is not None}
            for i in range(len(rows))]


def event_json(table: pa.Table, skip: set[str]) -> pa.Array:
    """Each row as JSON object text (fields in ``skip``, nulls, lists and maps left out)."""
    parts = [_member(f.name, table.column(f.name).combine_chunks())
             for f in table.schema if f.name not in skip]
    return _object([p for p in parts if p is not None], table.num_rows)


def _member(name: str, values: pa.Array) -> pa.Array | None:
    text = _json_value(values)
    if text is None:
        return None
    return pc.binary_join_element_wise(_quoted(_text(name)), text, _text(":"))


def _json_value(values: pa.Array) -> pa.Array | None:
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = pc.cast(values, kind.value_type)
        kind = kind.value_type
    if pa.types.is_struct(kind):
        parts = [_member(kind.field(i).name, pc.struct_field(values, [i]))
                 for i in range(kind.num_fields)]
        obj = _object([p for p in parts if p is not None], len(values))
        return pc.if_else(pc.is_valid(values), obj, _NULL)
    if _is_text(kind) or pa.types.is_temporal(kind):
        return _quoted(pc.cast(values, pa.string()))
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return pc.cast(values, pa.string())
    return None


def _object(parts: list[pa.Array], n: int) -> pa.Array:
    if not parts:
        return pa.nulls(n, pa.string()).fill_null("{}")
    # (null_handling="skip" drops the rows where every part is null: join by hand)
    pieces = [pc.fill_null(pc.binary_join_element_wise(p, _text(","), _text("")), "")
              for p in parts]
    body = pc.utf8_rtrim(concat(pieces), characters=",")
    return pc.binary_join_element_wise(_text("{"), body, _text("}"), _text(""))


def _quoted(values: pa.Array | pa.Scalar) -> pa.Array:
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"),
                         ("\t", "\\t")):
        values = pc.replace_substring(values, raw, escaped)
    return pc.binary_join_element_wise(_text('"'), values, _text('"'), _text(""))


def concat(pieces: Sequence[pa.Array | pa.Scalar]) -> pa.Array:
    """The element-wise concatenation of ``pieces`` (at least one an array, no nulls)."""
    if len(pieces) == 1:
        return pieces[0]
    return pc.binary_join_element_wise(*pieces, _text(""))


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.string())
