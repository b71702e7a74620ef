"""Log patterns: the shapes a log query's lines take, and how often each occurs.

What Loki's ``/loki/api/v1/patterns`` answers (Grafana's Logs Drilldown shows it
as the "Patterns" tab). A line's pattern is the line with every token that holds
a digit (numbers, ids, durations, addresses, timestamps) written ``<_>``, a run
of such tokens written once: ``GET /p/123 200 8ms`` and ``GET /p/9 404 1ms``
are both ``GET <_>``. It is not Loki's clustering (Drain, which also merges
lines that differ in a word): two lines share a pattern when they are the same
once their digit-bearing tokens are masked.

All of it is columnar: an RE2 replace over the line column, a dictionary encode
of the patterns and one ``bincount`` over (pattern, time bucket).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.logql.ast import LineFilter, LogQuery
from tidal.correlate.logql.evaluate import read_frame
from tidal.correlate.logql.frame import layout_of
from tidal.correlate.logql.parser import parse
from tidal.correlate.logql.run import LogqlOptions
from tidal.errors import QueryError
from tidal.store.readers import Snapshot

__all__ = ["LogPattern", "line_patterns", "log_patterns"]

MASK = "<_>"
_VARIABLE = r"[^\s]*[0-9][^\s]*"
_RUNS = r"<_>(?:\s+<_>)+"


@dataclass(frozen=True)
class LogPattern:
    """A pattern and its count per time bucket: ``(bucket start ns, lines)``."""

    pattern: str
    samples: list[tuple[int, int]]

    @property
    def total(self) -> int:
        return sum(count for _, count in self.samples)


def line_patterns(lines: pa.Array) -> pa.Array:
    """Each line's pattern.

    >>> line_patterns(pa.array(["GET /p/12 200 8ms", "user u42 logged in", "ok"])).to_pylist()
    ['GET <_>', 'user <_> logged in', 'ok']
    """
    masked = pc.replace_substring_regex(lines, _VARIABLE, MASK)
    return pc.replace_substring_regex(masked, _RUNS, MASK)


def log_patterns(snapshot: Snapshot, text: str, *, start_ns: int, end_ns: int,
                 step_ns: int, limit: int = 50, options: LogqlOptions | None = None
                 ) -> list[LogPattern]:
    """The ``limit`` most frequent patterns of log query ``text``'s lines in
    ``[start_ns, end_ns)``, most frequent first, each counted per ``step_ns`` bucket.

    Raises:
        QueryError: bad syntax, a metric query, or a step that is not positive.
    """
    query = parse(text)
    if not isinstance(query, LogQuery):
        raise QueryError(f"patterns are found in log queries, not a metric query: {text!r}")
    if step_ns <= 0:
        raise QueryError(f"step must be positive, not {step_ns} ns")
    options = options or LogqlOptions()
    if snapshot.ts_field not in snapshot.schema.names or end_ns <= start_ns:
        return []
    layout = layout_of(snapshot.schema, snapshot.ts_field, options.line_field,
                       options.label_fields)
    line_only = all(isinstance(stage, LineFilter) for stage in query.stages)
    frame = read_frame(snapshot, query, layout, start_ns, end_ns,
                       labels=frozenset() if line_only else None)  # (patterns need no label)
    if not len(frame):
        return []
    encoded = pc.dictionary_encode(line_patterns(frame.line))
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    buckets = (frame.ts - start_ns) // step_ns
    n_buckets = int((end_ns - 1 - start_ns) // step_ns) + 1
    counts = np.bincount(codes * n_buckets + buckets,
                         minlength=len(encoded.dictionary) * n_buckets
                         ).reshape(len(encoded.dictionary), n_buckets)
    totals = counts.sum(axis=1)
    order = np.argsort(-totals, kind="stable")[:limit]
    names = encoded.dictionary.to_pylist()
    out = []
    for code in order.tolist():
        filled = np.flatnonzero(counts[code])
        out.append(LogPattern(names[code], [(start_ns + int(b) * step_ns, int(counts[code, b]))
                                            for b in filled.tolist()]))
    return out
