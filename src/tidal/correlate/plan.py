"""The logical plan that every correlation language compiles to.

A query language (EQL now, CorQL next) parses its text, checks it against the
store's schema and compiles it to a :class:`Plan`; the executor
(:mod:`tidal.correlate.execute`) runs plans and never sees the language.
Conditions and key expressions arrive compiled: a :class:`Predicate` gives
one bool per row of a batch, a :data:`KeyFn` one value per row. So every node
is evaluated over whole Arrow batches, never per event.

* :class:`Filter`: the events that match one predicate, in time order.
* :class:`Sequence`: stages in time order per join key, within ``maxspan``,
  with missing-event stages and ``until``.
* :class:`Join`: one event of each stage per key, in any order (Endgame).
* :class:`Sample`: per key, events of each stage in no order (Elastic).
* :class:`WindowJoin`: streams joined to the first on a key within time windows
  (CorQL's ``and``, ``or``, ``unless``).
* :class:`Pipe`: what is done with the result (``head``, ``count``, ...).

Every node has a :class:`Read`: the stored columns it needs, an expression the
scan prunes row groups with (the optimizer's pushdown) and the time bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["MATCH", "Filter", "Join", "KeyFn", "Many", "Pipe", "Plan", "Predicate", "Read",
           "Sample", "Sequence", "Stage", "Stream", "WindowJoin", "event_column",
           "match_schema"]

MATCH = "_match"
"""The column that numbers the matches in the rows pipes after a sequence, sample
or join see."""


def event_column(i: int) -> str:
    """The column of a match's ``i``-th event (0-based) in the rows its pipes see."""
    return f"events[{i}]"


def match_schema(schema: pa.Schema, width: int) -> pa.Schema:
    """What pipes after a sequence, sample or join read over a store of ``schema``: one
    row per match, the first event's fields at the top, and each event's as the
    struct :func:`event_column` ``(N)``."""
    stages = [pa.field(event_column(i), pa.struct(list(schema))) for i in range(width)]
    return pa.schema([*schema, *stages])


class Predicate(Protocol):
    """A compiled condition."""

    def mask(self, batch: pa.Table) -> np.ndarray:
        """One bool per row of ``batch``: whether it matches."""
        ...


@dataclass(frozen=True)
class Many:
    """The elements of an array field, flattened: ``values[i]`` belongs to row
    ``parents[i]`` of ``rows``. A test over them holds for a row when it holds for
    any of its elements; a join key of them joins on each."""

    values: pa.Array
    parents: np.ndarray
    rows: int


KeyFn = Callable[[pa.Table], Any]
"""A compiled value: an Arrow array of one value per row of a batch, or (a join
key over an array field) a :class:`Many`."""


@dataclass(frozen=True)
class Read:
    """What a node reads from the store."""

    columns: tuple[str, ...]
    """The stored fields the node reads (dotted paths), besides ``_seq``."""
    prune: pc.Expression | None = None
    """What every row that can match satisfies: the scan skips the row groups whose
    statistics rule it out (the node still tests every row it reads)."""
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Stage:
    """One stage: its condition, its join key and whether it is a missing-event
    stage (``![...]``: one of its events between its neighbours ends a match)."""

    predicate: Predicate
    keys: tuple[KeyFn, ...] = ()
    key_id: Hashable = ()
    """Equal for stages whose keys are the same expressions (coded together)."""
    missing: bool = False
    columns: tuple[str, ...] = ()
    """The stored fields its predicate and keys read (with the timestamp)."""
    key_fields: tuple[str | None, ...] = ()
    """The stored field each key is (None: a key computed from several)."""
    prune: pc.Expression | None = None
    """What every event of the stage satisfies (its pushdown), or None."""


@dataclass(frozen=True)
class Filter:
    """Events that match ``predicate``; at most ``limit`` (the first in time)."""

    predicate: Predicate
    read: Read
    limit: int | None = None


@dataclass(frozen=True)
class Sequence:
    """Stages matched in time order per key (``runs`` already unrolled)."""

    stages: tuple[Stage, ...]
    read: Read
    key_names: tuple[str, ...] = ()
    maxspan_ns: int | None = None
    until: Stage | None = None
    driver: int | None = None
    """The stage that may drive the scan (:mod:`tidal.correlate.drive`), or None."""


@dataclass(frozen=True)
class Join:
    """One event of each stage per key, in any order; ``until`` resets the key."""

    stages: tuple[Stage, ...]
    read: Read
    key_names: tuple[str, ...] = ()
    until: Stage | None = None


@dataclass(frozen=True)
class Sample:
    """Per key, up to ``max_per_key`` samples of one distinct event per stage."""

    stages: tuple[Stage, ...]
    read: Read
    key_names: tuple[str, ...] = ()
    max_per_key: int = 1


@dataclass(frozen=True)
class Stream:
    """One stream of a :class:`WindowJoin`: its events (a stage whose keys are the join
    key as this stream holds it) and how it joins the first stream."""

    stage: Stage
    op: str = "anchor"
    """``"anchor"`` (the first stream), ``"and"`` (a partner is required), ``"or"``
    (optional: without one the correlation is partial) or ``"unless"`` (one within
    the window drops the anchor)."""
    within_ns: int | None = None
    """The largest time difference from the anchor, inclusive (None: any)."""
    range_ns: int | None = None
    """How far back this stream reads: from the query's end over history; live,
    how long its events are held."""
    name: str = ""


@dataclass(frozen=True)
class WindowJoin:
    """Streams joined to the first (the anchor) on one key, each within its window;
    ``group`` ``"left"`` gives one correlation per anchor event (partners may be
    shared), ``"right"`` one per partner event; ``post`` keeps the correlations
    with an event that matches it."""

    streams: tuple[Stream, ...]
    read: Read
    key_names: tuple[str, ...] = ()
    group: str | None = None
    group_fields: tuple[str, ...] = ()
    post: Predicate | None = None


@dataclass(frozen=True)
class Pipe:
    """A step over the result: ``head``/``tail`` (``count``), ``count``, ``unique``,
    ``unique_count``, ``sort`` (``keys``, named ``key_names``) or ``filter``
    (``predicate``)."""

    name: str
    count: int | None = None
    keys: tuple[KeyFn, ...] = ()
    key_names: tuple[str, ...] = ()
    predicate: Predicate | None = None


@dataclass(frozen=True)
class Plan:
    """A whole query: its root node, its pipes, a row limit and the text it came from."""

    root: Filter | Sequence | Join | Sample | WindowJoin
    pipes: tuple[Pipe, ...] = ()
    size: int | None = None
    text: str = ""
