"""Rules: named live queries that persist in the store directory, and the
correlations they find, stored durably.

* ``rules.json`` lists the rules (name, query, language, and the ``_seq`` each
  starts at: the next event when it was added), replaced atomically (temp
  file, fsync, rename, fsync of the directory).
* ``correlations.log`` holds every correlation a rule found, one framed record
  each (length, CRC-32, JSON), appended and fsynced before the next is taken.
  A torn record at the end (a crash mid-write) is cut off at open.

Each rule runs as a live subscription from its first ``_seq``: at open it
replays the stored events through the same executor, which finds the same
correlations again in the same order; those already in the log (the same rule
and the same events) are skipped, so after a crash every correlation of an
acknowledged event is found and none is stored twice.
"""

from __future__ import annotations

import functools
import json
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tidal.correlate.live import LiveStats
from tidal.correlate.result import Correlation
from tidal.correlate.subscription import Subscription
from tidal.errors import ConfigError, CorruptionError
from tidal.store.fs import FileSystem, LogFile

__all__ = ["CORRELATIONS_SCHEMA", "RuleInfo", "RuleSet"]

RULES_FILE = "rules.json"
LOG_FILE = "correlations.log"
_HEADER = struct.Struct("<II")  # length, crc32 of the body
CORRELATIONS_SCHEMA = pa.schema([
    ("rule", pa.string()), ("id", pa.int64()), ("key", pa.string()),
    ("start", pa.timestamp("ns", tz="UTC")), ("end", pa.timestamp("ns", tz="UTC")),
    ("completeness", pa.string()), ("seqs", pa.list_(pa.int64())),
])
"""The columns of the ``correlations`` SQL view: ``key`` and a partial
``completeness`` (the streams it lacks) as JSON text, ``seqs`` the ``_seq`` of
each of its events (null for a missing one)."""

Start = Callable[[str, str, int, Callable[[Correlation], None]], Subscription]
"""``start(query, language, from_seq, callback)``: a live subscription of a rule."""


@dataclass(frozen=True)
class RuleInfo:
    """One rule: its query and language, the ``_seq`` it starts at, and how its live
    run stands (``None`` for a store that does not run rules, read-only)."""

    name: str
    query: str
    language: str
    from_seq: int
    stats: LiveStats | None = None


class RuleSet:
    """The rules of one store and their stored correlations."""

    def __init__(self, directory: Path | None, fs: FileSystem, start: Start, *,
                 run: bool = True) -> None:
        self._dir, self._fs, self._start, self._run = directory, fs, start, run
        self._lock = threading.Lock()
        self._rules: dict[str, dict[str, Any]] = {}
        self._live: dict[str, Subscription] = {}
        self._records: list[dict[str, Any]] = []
        self._seen: dict[str, set[tuple[int | None, ...]]] = {}
        self._log: LogFile | None = None
        if directory is not None:
            path = directory / RULES_FILE
            if path.exists():
                listed = json.loads(path.read_text(encoding="utf-8"))["rules"]
                self._rules = {r["name"]: r for r in listed}
            self._read_log()
        for name in list(self._rules):
            if run:
                self._launch(name)

    # -- rules --------------------------------------------------------------------------

    def add(self, name: str, query: str, language: str, from_seq: int) -> None:
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ConfigError("a rule name must be text of 1 to 200 characters", field="name")
        with self._lock:
            if name in self._rules:
                raise ConfigError(f"there is a rule named {name!r} already", field="name")
            self._rules[name] = {"name": name, "query": query, "language": language,
                                 "from_seq": from_seq}
        try:
            if self._run:
                self._launch(name)  # (a query that cannot run live is refused here)
            self._save()
        except BaseException:
            with self._lock:
                self._rules.pop(name, None)
                live = self._live.pop(name, None)
            if live is not None:
                live.close()
            raise

    def remove(self, name: str) -> None:
        with self._lock:
            if name not in self._rules:
                raise ConfigError(f"there is no rule named {name!r}", field="name")
            del self._rules[name]
            live = self._live.pop(name, None)
        if live is not None:
            live.close()
        self._save()

    def infos(self) -> list[RuleInfo]:
        with self._lock:
            rules = list(self._rules.values())
            live = dict(self._live)
        return [RuleInfo(r["name"], r["query"], r["language"], r["from_seq"],
                         live[r["name"]].stats() if r["name"] in live else None)
                for r in rules]

    def _launch(self, name: str) -> None:
        rule = self._rules[name]
        self._live[name] = self._start(rule["query"], rule["language"], rule["from_seq"],
                                       functools.partial(self._found, name))

    def _save(self) -> None:
        if self._dir is None:
            return
        with self._lock:
            listed = sorted(self._rules.values(), key=lambda r: r["name"])
        body = json.dumps({"rules": listed}, indent=1).encode()
        self._fs.write_atomic(self._dir / RULES_FILE, body)

    # -- correlations -------------------------------------------------------------------

    def _found(self, rule: str, found: Correlation) -> None:
        """Store one correlation of ``rule`` durably (unless stored before)."""
        seqs = tuple(found.events.column("_seq").to_pylist())
        with self._lock:
            seen = self._seen.setdefault(rule, set())
            if seqs in seen:
                return  # (found again by the replay at open)
            record = {"rule": rule, "id": len(seen), "key": found.key,
                      "start": found.start, "end": found.end,
                      "completeness": found.completeness, "seqs": list(seqs)}
            if self._dir is not None:
                body = json.dumps(record, default=str).encode()
                if self._log is None:
                    self._log = self._fs.open_log(self._dir / LOG_FILE)
                self._log.write([_HEADER.pack(len(body), zlib.crc32(body)), body])
                self._log.sync()
            seen.add(seqs)
            self._records.append(record)

    def _read_log(self) -> None:
        assert self._dir is not None
        path = self._dir / LOG_FILE
        if not path.exists():
            return
        data = path.read_bytes()
        at = 0
        while at + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, at)
            body = data[at + _HEADER.size:at + _HEADER.size + length]
            if len(body) < length or zlib.crc32(body) != crc:
                break
            try:
                record = json.loads(body)
            except ValueError as exc:
                raise CorruptionError("a correlation record is not JSON", path=str(path),
                                      offset=at) from exc
            self._records.append(record)
            self._seen.setdefault(record["rule"], set()).add(tuple(record["seqs"]))
            at += _HEADER.size + length
        if at < len(data):  # a torn tail: the record being written when it crashed
            self._fs.truncate(path, at)

    def table(self, rule: str | None = None, start: int | None = None,
              end: int | None = None) -> pa.Table:
        """The stored correlations (of ``rule``; starting in [``start``, ``end``))."""
        with self._lock:
            records = [r for r in self._records
                       if (rule is None or r["rule"] == rule)
                       and (start is None or r["start"] >= start)
                       and (end is None or r["start"] < end)]
        return pa.table({
            "rule": [r["rule"] for r in records], "id": [r["id"] for r in records],
            "key": [json.dumps(r["key"], default=str) for r in records],
            "start": [r["start"] for r in records], "end": [r["end"] for r in records],
            "completeness": [r["completeness"] if isinstance(r["completeness"], str)
                             else json.dumps(r["completeness"]) for r in records],
            "seqs": [r["seqs"] for r in records]}, schema=CORRELATIONS_SCHEMA)

    def close(self) -> None:
        with self._lock:
            live, self._live = list(self._live.values()), {}
        for subscription in live:
            subscription.close()
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None
