"""What Loki's metadata routes ask: the label names, one label's values, and the label
sets of the streams some selectors match, all within a time window.

A label counts once an event in the window carries it (not null, not empty).
Names and values come sorted; series in the order of their labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.logql.ast import LogQuery
from tidal.correlate.logql.evaluate import read_frame
from tidal.correlate.logql.frame import Layout, as_label, label_sets, layout_of, series_ids
from tidal.correlate.logql.parser import parse
from tidal.correlate.logql.run import LogqlOptions
from tidal.errors import QueryError
from tidal.model.paths import get_path, root_at

if TYPE_CHECKING:
    from tidal.store.readers import Snapshot

__all__ = ["label_cardinalities", "label_names", "label_values", "series"]


def _layout(snapshot: Snapshot, options: LogqlOptions | None) -> Layout | None:
    options = options or LogqlOptions()
    if snapshot.ts_field not in snapshot.schema.names:
        return None
    return layout_of(snapshot.schema, snapshot.ts_field, options.line_field,
                     options.label_fields)


def label_names(snapshot: Snapshot, *, start_ns: int, end_ns: int,
                selector: str | None = None, options: LogqlOptions | None = None
                ) -> list[str]:
    """The labels some event in ``[start_ns, end_ns)`` carries (among the entries of
    the log query ``selector`` when given)."""
    layout = _layout(snapshot, options)
    if layout is None or not layout.labels:
        return []
    if selector is not None:
        frame = read_frame(snapshot, _log_query(selector), layout, start_ns, end_ns)
        return sorted(frame.labels)
    seen: set[str] = set()
    for table in _tables(snapshot, list(layout.labels.values()), start_ns, end_ns):
        for name, path in layout.labels.items():
            if name not in seen and _carried(as_label(get_path(table, path), table.num_rows)):
                seen.add(name)
        if len(seen) == len(layout.labels):
            break
    return sorted(seen)


def label_values(snapshot: Snapshot, name: str, *, start_ns: int, end_ns: int,
                 selector: str | None = None, options: LogqlOptions | None = None
                 ) -> list[str]:
    """The values label ``name`` takes in ``[start_ns, end_ns)``, among the entries of
    the log query ``selector`` when given."""
    layout = _layout(snapshot, options)
    if layout is None:
        return []
    if selector is not None:
        frame = read_frame(snapshot, _log_query(selector), layout, start_ns, end_ns)
        values = frame.labels.get(name)
        return _distinct([values] if values is not None else [])
    path = layout.labels.get(name)
    if path is None:
        return []
    return _distinct([as_label(get_path(t, path), t.num_rows)
                      for t in _tables(snapshot, [path], start_ns, end_ns)])


def label_cardinalities(snapshot: Snapshot, *, start_ns: int, end_ns: int,
                        selector: str | None = None, options: LogqlOptions | None = None
                        ) -> dict[str, int]:
    """How many distinct values each label takes in ``[start_ns, end_ns)`` (among
    the entries of ``selector`` when given): Loki's ``detected_labels``. Distinct
    values are kept per batch with ``pc.unique`` and merged, column by column."""
    layout = _layout(snapshot, options)
    if layout is None:
        return {}
    if selector is not None:
        frame = read_frame(snapshot, _log_query(selector), layout, start_ns, end_ns)
        return {name: _count_distinct([values]) for name, values in sorted(frame.labels.items())}
    seen: dict[str, list[pa.Array]] = {}
    for table in _tables(snapshot, list(layout.labels.values()), start_ns, end_ns):
        for name, path in layout.labels.items():
            values = as_label(get_path(table, path), table.num_rows)
            if _carried(values):
                seen.setdefault(name, []).append(pc.unique(values))
    return {name: _count_distinct(parts) for name, parts in sorted(seen.items())}


def _count_distinct(parts: list[pa.Array]) -> int:
    return int(pc.count_distinct(pa.chunked_array(parts, pa.string()), mode="only_valid")
               .as_py())


def series(snapshot: Snapshot, selectors: Sequence[str], *, start_ns: int, end_ns: int,
           options: LogqlOptions | None = None) -> list[dict[str, str]]:
    """The distinct label sets of the entries each of ``selectors`` (log queries)
    matches in ``[start_ns, end_ns)``."""
    layout = _layout(snapshot, options)
    found: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for text in selectors:
        query = _log_query(text)
        if layout is None:
            continue
        frame = read_frame(snapshot, query, layout, start_ns, end_ns)
        if not len(frame):
            continue
        _, first = series_ids(frame.labels, len(frame))
        for labels in label_sets(frame.labels, first):
            found.setdefault(tuple(sorted(labels.items())), labels)
    return [found[key] for key in sorted(found)]


def _log_query(text: str) -> LogQuery:
    query = parse(text)
    if not isinstance(query, LogQuery):
        raise QueryError(f"a stream selector or log query is needed here, not {text!r}")
    return query


def _tables(snapshot: Snapshot, paths: list[str], start_ns: int, end_ns: int
            ) -> Iterator[pa.Table]:
    roots = list(dict.fromkeys(r for p in paths if (r := root_at(snapshot.schema, p))))
    reader = snapshot.scan(roots, start=start_ns, end=end_ns, order=None)
    try:
        for batch in reader:
            yield pa.Table.from_batches([batch])
    finally:
        reader.close()


def _carried(values: pa.Array) -> bool:
    return values.null_count < len(values)


def _distinct(arrays: list[pa.Array]) -> list[str]:
    if not arrays:
        return []
    values = pc.unique(pa.chunked_array(arrays, pa.string())).drop_null()
    return sorted(np.asarray(values.to_pylist(), dtype=object).tolist())
