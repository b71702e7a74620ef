"""The ingest pipeline: decode → normalize → reject or dead-letter, ready to store.

:func:`prepare` is the one path every input takes before the store assigns
``_seq`` (``Store.append`` and, later, the server's ingest routes): it returns
the events to store, or raises :class:`IngestError` naming every bad line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa

from tidal.config import StoreConfig
from tidal.errors import ConfigError, IngestError, Problem
from tidal.ingest.deadletter import write_dead_letter
from tidal.ingest.decode import Decoded, decode, decode_blocks
from tidal.ingest.normalize import normalize

OnError = Literal["reject", "skip"]


@dataclass(frozen=True)
class Prepared:
    """Events ready to append, and what was skipped on the way.

    Attributes:
        table: the normalized events to store.
        rejected: bad lines skipped (``on_error="skip"`` only).
        dead_letter: the file the skipped lines went to, if any.
        source: what the input was (``"ndjson bytes"``, a file path, ...).
    """

    table: pa.Table
    rejected: int = 0
    dead_letter: str | None = None
    source: str | None = None


def expected_events(data: object) -> int:
    """How many events ``data`` holds, where that is known without decoding it (else 1)."""
    if isinstance(data, pa.Table | pa.RecordBatch):
        return data.num_rows
    if isinstance(data, list | tuple):
        return len(data)
    if type(data).__name__ == "DataFrame":
        return len(data)  # type: ignore[arg-type]
    return 1


def prepare(data: object, *, config: StoreConfig, now_ns: int, format: str | None = None,
            on_error: OnError = "reject", dead_letter_path: Path | None = None) -> Prepared:
    """Decode and normalize ``data`` under ``config``.

    With ``on_error="reject"`` any bad line raises :class:`IngestError` listing
    every bad line and why. With ``on_error="skip"`` the bad lines are written
    to ``dead_letter_path`` with their reasons and the good events returned.
    """
    _check_on_error(on_error)
    table, problems, source = _normalized(decode(data, format=format), config, now_ns)
    return _settled(table, problems, source, on_error, dead_letter_path)


def prepare_blocks(data: object, *, config: StoreConfig, now_ns: int,
                   format: str | None = None, on_error: OnError = "reject",
                   dead_letter_path: Path | None = None) -> Prepared | PreparedBlocks:
    """:func:`prepare`, except that a large NDJSON input comes back as
    :class:`PreparedBlocks`: decoded and normalized one block at a time as it is
    iterated, so each block can be stored while the next is decoded."""
    _check_on_error(on_error)
    decoded = decode_blocks(data, format=format)
    if isinstance(decoded, Decoded):
        table, problems, source = _normalized(decoded, config, now_ns)
        return _settled(table, problems, source, on_error, dead_letter_path)
    return PreparedBlocks(decoded, config, now_ns, on_error, dead_letter_path)


class PreparedBlocks:
    """A large input's events, block by block, then what was skipped on the way.

    Iterating gives each block's normalized events. With ``on_error="reject"``
    it gives nothing more once a bad line is found, goes on only to find every
    other one, and ends by raising :class:`IngestError` (what was given must
    not be stored). With ``on_error="skip"`` it ends by writing the bad lines to
    the dead-letter file; ``rejected`` and ``dead_letter`` are set then.
    """

    def __init__(self, blocks: Iterator[Decoded], config: StoreConfig, now_ns: int,
                 on_error: OnError, dead_letter_path: Path | None) -> None:
        self._blocks = blocks
        self._config, self._now_ns = config, now_ns
        self._on_error, self._dead_letter_path = on_error, dead_letter_path
        self.rejected = 0
        self.dead_letter: str | None = None
        self.source: str | None = None

    def __iter__(self) -> Iterator[pa.Table]:
        problems: list[Problem] = []
        for decoded in self._blocks:
            table, found, self.source = _normalized(decoded, self._config, self._now_ns)
            problems += found
            if not (problems and self._on_error == "reject"):
                yield table
        done = _settled(pa.table({}), problems, self.source, self._on_error,
                        self._dead_letter_path)
        self.rejected, self.dead_letter = done.rejected, done.dead_letter


def _check_on_error(on_error: str) -> None:
    if on_error not in ("reject", "skip"):
        raise ConfigError(f"on_error must be 'reject' or 'skip', not {on_error!r}",
                          field="on_error")


def _normalized(decoded: Decoded, config: StoreConfig, now_ns: int
                ) -> tuple[pa.Table, list[Problem], str | None]:
    """The good rows of ``decoded``, normalized; every problem found, by line."""
    normal = normalize(decoded.table, config=config, now_ns=now_ns, lines=decoded.lines)
    problems = sorted(decoded.problems + normal.problems, key=lambda p: p.line)
    table = normal.table
    if problems and normal.keep is not None:
        table = table.filter(pa.array(normal.keep))
    return table, problems, decoded.source


def _settled(table: pa.Table, problems: list[Problem], source: str | None, on_error: OnError,
             dead_letter_path: Path | None) -> Prepared:
    """``table`` to store, once ``problems`` are settled: raised (reject) or written to
    the dead-letter file (skip)."""
    if problems and on_error == "reject":
        raise IngestError(f"rejected {source or 'input'}: {len(problems)} bad "
                          f"line{'s' if len(problems) != 1 else ''}",
                          problems=problems, source=source)
    if not problems:
        return Prepared(table, source=source)
    target = dead_letter_path or Path("tidal-dead-letter.ndjson")
    write_dead_letter(target, problems, source=source)
    return Prepared(table, len(problems), str(target), source)
