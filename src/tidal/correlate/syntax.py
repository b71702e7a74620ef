"""What Tidal's query languages share: tokens, a cursor over them, and errors in
query text reported the same way (line, column and the line with a caret under
the place)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tidal.errors import QueryError

__all__ = ["Cursor", "Kind", "Token", "syntax_error"]

Kind = Literal["name", "quoted", "string", "number", "op", "end"]


@dataclass(frozen=True)
class Token:
    """One token: its kind, its value (names and strings decoded, numbers as text)
    and where it starts in the query."""

    kind: Kind
    value: str
    pos: int

    def is_op(self, *ops: str) -> bool:
        """An operator equal to one of ``ops``."""
        return self.kind == "op" and self.value in ops

    def is_word(self, *words: str) -> bool:
        """An unquoted name equal (in any case) to one of ``words``."""
        return self.kind == "name" and self.value.lower() in words


class Cursor:
    """A recursive-descent parser's place in its tokens (the last is ``end``)."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def error(self, message: str, tok: Token | None = None) -> QueryError:
        return syntax_error(self.text, (tok or self.tok).pos, message)


def syntax_error(query: str, pos: int, message: str) -> QueryError:
    """A :class:`QueryError` for ``query`` at offset ``pos``: the message, then the
    query's line with a caret under the place."""
    pos = max(0, min(pos, len(query)))
    line = query.count("\n", 0, pos) + 1
    start = query.rfind("\n", 0, pos) + 1
    stop = query.find("\n", pos)
    text = query[start:stop if stop >= 0 else len(query)]
    column = pos - start + 1
    caret = " " * (column - 1) + "^"
    return QueryError(f"line {line}, column {column}: {message}\n  {text}\n  {caret}",
                      query=query, position=pos, line=line, column=column)
