"""The fields Loki's ``detected_fields`` finds in a log query's newest lines.

A line that starts with ``{`` is parsed as JSON, any other as logfmt (each by
the LogQL engine's own ``| json`` / ``| logfmt``, over whole columns). A field
is a label a parser adds (not a stream label, not ``__error__``); its type is
the narrowest that all its values fit (``int``, ``float``, ``boolean``,
``duration``, ``bytes``, else ``string``), its cardinality the number of
distinct values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tidal.correlate.logql.run import LogqlOptions, Stream, run_logql
from tidal.store.readers import Snapshot

__all__ = ["DetectedField", "detected_fields"]

_PARSERS = (("json", ' |~ "^\\\\s*\\\\{" | json'), ("logfmt", ' !~ "^\\\\s*\\\\{" | logfmt'))
_TYPES = (("int", re.compile(r"[+-]?[0-9]+")),
          ("float", re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")),
          ("boolean", re.compile(r"(?i:true|false)")),
          ("duration", re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+")),
          ("bytes", re.compile(r"[0-9]+(?:\.[0-9]+)?\s*(?:[KMGTPE]i?)?B")))


@dataclass(frozen=True)
class DetectedField:
    """One detected field: its label name, type, distinct values and parsers."""

    label: str
    type: str
    values: tuple[str, ...]
    parsers: tuple[str, ...]

    @property
    def cardinality(self) -> int:
        return len(self.values)


def detected_fields(snapshot: Snapshot, text: str, *, start_ns: int, end_ns: int,
                    line_limit: int = 100, options: LogqlOptions | None = None
                    ) -> list[DetectedField]:
    """The fields of the newest ``line_limit`` lines of log query ``text`` in
    ``[start_ns, end_ns)`` (lines tied in time with the oldest of them count too),
    sorted by name.

    Raises:
        QueryError: bad syntax, or a metric query.
    """
    plain = run_logql(snapshot, text, start_ns=start_ns, end_ns=end_ns, limit=line_limit,
                      options=options)
    known = {name for stream in plain.streams for name in stream.labels}
    if not plain.streams:
        return []
    start_ns = min(stream.entries[-1][0] for stream in plain.streams)  # (the oldest kept)
    values: dict[str, set[str]] = {}
    parsers: dict[str, list[str]] = {}
    for parser, suffix in _PARSERS:
        found = run_logql(snapshot, text + suffix, start_ns=start_ns, end_ns=end_ns,
                          limit=line_limit, options=options)
        for name, seen in _labels(found.streams, known).items():
            values.setdefault(name, set()).update(seen)
            parsers.setdefault(name, []).append(parser)
    return [DetectedField(name, _type(values[name]), tuple(sorted(values[name])),
                          tuple(parsers[name])) for name in sorted(values)]


def _labels(streams: list[Stream], known: set[str]) -> dict[str, set[str]]:
    """The values of each parsed label (one a stream: labels are per stream)."""
    out: dict[str, set[str]] = {}
    for stream in streams:
        for name, value in stream.labels.items():
            if name not in known and not name.startswith("__"):
                out.setdefault(name, set()).add(value)
    return out


def _type(values: set[str]) -> str:
    for name, pattern in _TYPES:
        if values and all(pattern.fullmatch(v) for v in values):
            return name
    return "string"
