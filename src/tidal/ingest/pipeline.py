"""The ingest pipeline: decode → normalize → reject or dead-letter, ready to store.

:func:`prepare` is the one path every input takes before the store assigns
``_seq`` (``Store.append`` and, later, the server's ingest routes): it returns
the events to store, or raises :class:`IngestError` naming every bad line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa

from tidal.config import StoreConfig
from tidal.errors import ConfigError, IngestError
from tidal.ingest.deadletter import write_dead_letter
from tidal.ingest.decode import decode
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
    if on_error not in ("reject", "skip"):
        raise ConfigError(f"on_error must be 'reject' or 'skip', not {on_error!r}",
                          field="on_error")
    decoded = decode(data, format=format)
    normal = normalize(decoded.table, config=config, now_ns=now_ns, lines=decoded.lines)
    problems = sorted(decoded.problems + normal.problems, key=lambda p: p.line)
    table = normal.table
    if problems and on_error == "reject":
        raise IngestError(f"rejected {decoded.source or 'input'}: {len(problems)} bad "
                          f"line{'s' if len(problems) != 1 else ''}",
                          problems=problems, source=decoded.source)
    if not problems:
        return Prepared(table, source=decoded.source)
    if normal.keep is not None:
        table = table.filter(pa.array(normal.keep))
    target = dead_letter_path or Path("tidal-dead-letter.ndjson")
    write_dead_letter(target, problems, source=decoded.source)
    return Prepared(table, len(problems), str(target), decoded.source)
