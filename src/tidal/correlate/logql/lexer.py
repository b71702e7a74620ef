"""LogQL text → tokens, each with its offset; errors point at line and column.

Tokens are CorQL's (:mod:`tidal.correlate.corql.lexer`): names, strings in
``"..."`` with Go's escapes, raw strings in backquotes (kind ``quoted``), words
that start with a digit (``500``, ``1.5``, ``5m``: the parser reads them as
numbers or durations) and operators. LogQL adds the pipe operators ``|= |~ |``
and the comparisons ``== >= <= > <``, and ``-`` (a negative number). Whitespace
may stand between any two tokens; ``#`` starts a comment that runs to the end
of the line.
"""

from __future__ import annotations

import re

# The string decoders are CorQL's, so both languages read literals alike.
from tidal.correlate.corql.lexer import _backquoted, _string, quote
from tidal.correlate.syntax import Token, syntax_error

__all__ = ["Token", "quote", "tokenize"]

_OPERATORS = ("|=", "|~", "!=", "!~", "=~", "==", ">=", "<=", "|", "=", ">", "<", "(", ")",
              "{", "}", "[", "]", ",", ".", "-")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[0-9][0-9A-Za-z_.]*")
_SPACE = re.compile(r"(?:\s+|#[^\n]*)+")


def tokenize(query: str) -> list[Token]:
    """The tokens of ``query``, ending with an ``end`` token.

    Raises:
        QueryError: an unterminated string, a bad escape, or a character LogQL
            has no use for.

    Example:
        >>> [t.value for t in tokenize('{app="x"} |= "err" | status >= 500')]
        ['{', 'app', '=', 'x', '}', '|=', 'err', '|', 'status', '>=', '500', '']
    """
    tokens: list[Token] = []
    pos, n = 0, len(query)
    while True:
        space = _SPACE.match(query, pos)
        if space:
            pos = space.end()
        if pos >= n:
            tokens.append(Token("end", "", pos))
            return tokens
        char = query[pos]
        if char in "\"'":
            value, end = _string(query, pos)
            tokens.append(Token("string", value, pos))
        elif char == "`":
            value, end = _backquoted(query, pos)
            tokens.append(Token("quoted", value, pos))
        elif word := _WORD.match(query, pos):
            tokens.append(Token("number", word.group(0), pos))
            end = word.end()
        elif name := _NAME.match(query, pos):
            tokens.append(Token("name", name.group(0), pos))
            end = name.end()
        else:
            op = next((o for o in _OPERATORS if query.startswith(o, pos)), None)
            if op is None:
                raise syntax_error(query, pos, f"unexpected character {quote(char)}")
            tokens.append(Token("op", op, pos))
            end = pos + len(op)
        pos = end
