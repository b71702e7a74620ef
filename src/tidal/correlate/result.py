"""What a correlation query returns: matched events, and correlations for queries that
relate several events (sequences, samples, joins)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

__all__ = ["Correlation", "Result"]


class Correlation:
    """Events that belong together.

    Attributes:
        id: its number within the result (0, 1, ...).
        query: the query (or rule name) that found it.
        key: each ``by`` field, in order, to its value (None for null).
        events: its events, stage by stage, as one Arrow table.
        start: the first event's timestamp (int ns UTC).
        end: the last event's timestamp (int ns UTC).
        completeness: ``"complete"``, or the names of the stages it lacks.
        labels: fields carried from the other side (CorQL's ``group_left(..)``
            and ``group_right(..)``), by name.

    The correlations of one result share its events table: ``events`` is cut
    from it when asked for (``at`` and ``width`` say where), so making many
    correlations costs no table each.
    """

    __slots__ = ("_at", "_table", "_width", "completeness", "end", "id", "key", "labels",
                 "query", "start")

    def __init__(self, id: int, query: str, key: dict[str, Any],  # noqa: A002
                 events: pa.Table, start: int, end: int,
                 completeness: str | tuple[str, ...] = "complete",
                 labels: dict[str, Any] | None = None, *, at: int = 0,
                 width: int | None = None) -> None:
        self.id, self.query, self.key = id, query, key
        self._table, self._at, self._width = events, at, width
        self.start, self.end = start, end
        self.completeness = completeness
        self.labels = {} if labels is None else labels

    @property
    def events(self) -> pa.Table:
        if self._width is None:
            return self._table
        return self._table.slice(self._at, self._width)

    def renumbered(self, id: int, events: pa.Table | None = None) -> Correlation:  # noqa: A002
        """The same correlation numbered ``id`` (with ``events`` instead)."""
        if events is None:
            return Correlation(id, self.query, self.key, self._table, self.start, self.end,
                               self.completeness, self.labels, at=self._at, width=self._width)
        return Correlation(id, self.query, self.key, events, self.start, self.end,
                           self.completeness, self.labels)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Correlation):
            return NotImplemented
        return ((self.id, self.query, self.key, self.start, self.end, self.completeness,
                 self.labels) == (other.id, other.query, other.key, other.start, other.end,
                                  other.completeness, other.labels)
                and self.events.equals(other.events))

    __hash__ = None  # type: ignore[assignment]  # (mutable parts: key, labels)

    def __repr__(self) -> str:
        return (f"Correlation(id={self.id}, key={self.key!r}, start={self.start}, "
                f"end={self.end}, completeness={self.completeness!r}, "
                f"events={self.events.num_rows})")


@dataclass(frozen=True)
class Result:
    """The answer to one query.

    Attributes:
        events: the matched events as one Arrow table in the query's output order
            (an event query: by timestamp then ``_seq``); a ``count``-style pipe
            puts its table here.
        correlations: one :class:`Correlation` per sequence, sample or join match
            (empty for event queries).
        query: the query text.
    """

    events: pa.Table
    correlations: list[Correlation] = field(default_factory=list)
    query: str = ""

    def __len__(self) -> int:
        return len(self.correlations) if self.correlations else self.events.num_rows
