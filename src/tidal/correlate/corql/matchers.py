"""Label matchers → a row mask over Arrow tables, with Prometheus semantics.

A matcher compares a field's *string form* with a string: ``=`` and ``!=`` test
equality, ``=~`` and ``!~`` a fully anchored RE2 regex (``^(?:re)$``, as
Prometheus and Loki anchor theirs). A field that is absent, or null in a row,
reads as ``""``: so ``x=""`` keeps rows without ``x``, ``x!="v"`` keeps them too,
``x=~".*"`` keeps them and ``x=~".+"`` does not. Numbers, booleans and times
compare by the string pyarrow casts them to (``500``, ``true``, ``1.5``).

Everything runs as pyarrow compute kernels over whole columns; the choice of
kernel is made once, by :func:`compile_matchers`, so :meth:`MatcherPredicate.mask`
has no per-row Python. A dictionary-encoded column is matched on its dictionary
and the answers are taken through its indices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.corql.ast import Matcher
from tidal.correlate.corql.parser import check_regex
from tidal.errors import QueryError
from tidal.model.paths import get_path, nested_column, type_at

__all__ = ["MatcherPredicate", "compile_matchers", "prune"]

Values: TypeAlias = "pa.Array | pa.ChunkedArray"
_Kernel: TypeAlias = Callable[[Values], Values]


@dataclass(frozen=True)
class _Compiled:
    """One matcher, ready to run: its kernel over strings (``=`` or ``=~``; the
    negated operators invert), what ``""`` gives, and whether to invert."""

    path: str
    kernel: _Kernel
    on_empty: bool
    negate: bool

    def mask(self, table: pa.Table) -> np.ndarray:
        values = get_path(table, self.path)
        if values is None:
            return np.full(table.num_rows, self.on_empty != self.negate)
        if pa.types.is_dictionary(values.type):
            hits = pa.chunked_array([self._dictionary_hits(c) for c in values.chunks],
                                    type=pa.bool_())
        else:
            hits = self.kernel(_as_strings(values, self.path))
        mask = np.asarray(pc.fill_null(hits, self.on_empty).to_numpy(zero_copy_only=False),
                          dtype=np.bool_)
        return ~mask if self.negate else mask

    def _dictionary_hits(self, chunk: pa.DictionaryArray) -> pa.Array:
        """The kernel's answer per row of one dictionary chunk, null for null rows."""
        answers = self.kernel(_as_strings(chunk.dictionary, self.path))
        return pc.take(answers, chunk.indices)


@dataclass(frozen=True)
class MatcherPredicate:
    """A conjunction of label matchers, compiled; build it with :func:`compile_matchers`.

    Attributes:
        columns: the field paths it reads, each once, in the matchers' order.
    """

    columns: tuple[str, ...]
    _parts: tuple[_Compiled, ...]

    def mask(self, table: pa.Table) -> np.ndarray:
        """One bool per row of ``table``: whether every matcher holds.

        Raises:
            QueryError: a matched field holds structs, lists or maps.
        """
        out = np.ones(table.num_rows, dtype=np.bool_)
        for part in self._parts:
            out &= part.mask(table)
        return out


def compile_matchers(matchers: Sequence[Matcher]) -> MatcherPredicate:
    """A predicate that keeps the rows where every matcher holds (all rows when none).

    Raises:
        QueryError: a regex that RE2 cannot compile.

    Example:
        >>> t = pa.table({"status": [200, 500, 503], "path": ["/api/a", "/", None]})
        >>> pred = compile_matchers([Matcher("status", "=~", "5.."), Matcher("path", "!=", "/")])
        >>> pred.mask(t).tolist(), pred.columns
        ([False, False, True], ('status', 'path'))
    """
    return MatcherPredicate(tuple(dict.fromkeys(m.path for m in matchers)),
                            tuple(_compile(m) for m in matchers))


def prune(matchers: Sequence[Matcher], schema: pa.Schema) -> pc.Expression | None:
    """An expression for row-group pruning: ``field == value`` for each ``=`` matcher
    on a string column of ``schema``, joined with ``&``; None when there is none.

    It never drops a row that :meth:`MatcherPredicate.mask` keeps: ``x=""`` (which
    keeps nulls), other operators and non-string fields are left to the mask.

    >>> s = pa.schema([("k8s", pa.struct([("pod", pa.string())])), ("n", pa.int64())])
    >>> prune([Matcher("k8s.pod", "=", "web-1"), Matcher("n", "=", "5")], s)
    <pyarrow.compute.Expression (FieldRef.Nested(FieldRef.Name(k8s) FieldRef.Name(pod)) == "web-1")>
    """
    terms = []
    for m in matchers:
        if m.op != "=" or m.value == "" or not _is_string(type_at(schema, m.path)):
            continue
        ref = _field_ref(schema, m.path)
        if ref is not None:
            terms.append(ref == m.value)
    if not terms:
        return None
    out = terms[0]
    for term in terms[1:]:
        out = out & term
    return out


def _compile(matcher: Matcher) -> _Compiled:
    """The kernel for ``matcher``, chosen once."""
    if matcher.op in ("=", "!="):
        value = matcher.value

        def kernel(values: Values) -> Values:
            return pc.equal(values, value)

        on_empty = value == ""
    elif matcher.op in ("=~", "!~"):
        reason = check_regex(matcher.value)
        if reason is not None:
            raise QueryError(reason, position=matcher.pos)
        anchored = f"^(?:{matcher.value})$"

        def kernel(values: Values) -> Values:
            return pc.match_substring_regex(values, anchored)

        on_empty = bool(kernel(pa.array([""]))[0].as_py())
    else:
        raise QueryError(f"unknown label matcher operator {matcher.op!r}", position=matcher.pos)
    return _Compiled(matcher.path, kernel, on_empty, negate=matcher.op.startswith("!"))


def _as_strings(values: Values, path: str) -> Values:
    """``values`` as strings the kernels take; nulls stay null."""
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return values
    if pa.types.is_nested(kind):
        raise QueryError(f"field {path!r} holds objects/arrays; "
                         "a label matcher compares scalar values")
    try:
        return pc.cast(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise QueryError(f"field {path!r} holds {kind} values, which a label matcher "
                         f"cannot read as text: {exc}") from exc


def _is_string(kind: pa.DataType | None) -> bool:
    if kind is not None and pa.types.is_dictionary(kind):
        kind = kind.value_type
    return kind is not None and (pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _field_ref(schema: pa.Schema, path: str) -> pc.Expression | None:
    """``pc.field`` for ``path``: a top-level column, or a struct leaf reached through
    children without dots in their names; None for other nestings (never pruned)."""
    if path in schema.names:
        return pc.field(path)
    column = nested_column(schema, path)
    if column is None or column in schema.names:
        return None
    return pc.field(*column.split("."))
