"""Rule files: named EQL queries, one after another in a ``.eql`` file.

A rule starts with a line ``// rule: NAME``; the lines after it, up to the next
such line, are its query (other ``//`` lines are comments, as in any EQL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tidal.correlate.eql.parser import parse
from tidal.errors import QueryError

__all__ = ["Rule", "load_rules"]

_HEADER = re.compile(r"^\s*//\s*rule:\s*(\S+)\s*$")


@dataclass(frozen=True)
class Rule:
    """One named query from a rule file, and the line it starts on."""

    name: str
    query: str
    line: int


def load_rules(path: str | Path) -> list[Rule]:
    """The rules of the file at ``path``, each parsed once to check it.

    Raises:
        QueryError: a rule does not parse (the message names the rule and the
            line in the file), two rules share a name, or the file has none.
    """
    text = Path(path).read_text(encoding="utf-8")
    rules: list[Rule] = []
    name: str | None = None
    first = 0
    body: list[str] = []
    for number, line in enumerate([*text.splitlines(), "// rule: <end>"], start=1):
        header = _HEADER.match(line)
        if header is None:
            body.append(line)
            continue
        if name is not None:
            query = "\n".join(body).strip()
            try:
                parse(query)
            except QueryError as exc:
                raise QueryError(f"{path}: rule {name!r} (from line {first}): {exc}",
                                 query=query) from exc
            rules.append(Rule(name, query, first))
        name, first, body = header.group(1), number, []
    names = [r.name for r in rules]
    if not rules:
        raise QueryError(f"{path}: no rules (each starts with a '// rule: NAME' line)")
    if len(set(names)) != len(names):
        twice = sorted(n for n in set(names) if names.count(n) > 1)
        raise QueryError(f"{path}: rule names repeat: {twice}")
    return rules
