"""What a correlation query returns: matched events, and correlations for queries that
relate several events (sequences, samples, joins)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

__all__ = ["Correlation", "Result"]


@dataclass(frozen=True)
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
    """

    id: int
    query: str
    key: dict[str, Any]
    events: pa.Table
    start: int
    end: int
    completeness: str | tuple[str, ...] = "complete"
    labels: dict[str, Any] = field(default_factory=dict)


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
