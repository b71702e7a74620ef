"""LogQL text → tokens, each with its offset; errors point at line and column.

Tokens are CorQL's (:mod:`tidal.correlate.corql.lexer`): names, strings in
``"..."`` with Go's escapes, raw strings in backquotes (kind ``quoted``), words
that start with a digit (``500``, ``1.5``, ``5m``: the parser reads them as
numbers or durations) and operators. LogQL adds the pipe operators ``|= |~ |``
the comparisons ``== >= <= > <``, and the arithmetic ``+ - * / % ^``. Whitespace
may stand between any two tokens; ``#`` starts a comment that runs to the end
of the line.
"""

from __future__ import annotations

# CorQL's tokenizer with LogQL's operators, so both languages read literals alike.
from tidal.correlate.corql.lexer import quote, tokens_of
from tidal.correlate.syntax import Token

__all__ = ["Token", "quote", "tokenize"]

_OPERATORS = ("|=", "|~", "!=", "!~", "=~", "==", ">=", "<=", "|", "=", ">", "<", "(", ")",
              "{", "}", "[", "]", ",", ".", "-", "+", "*", "/", "%", "^")


def tokenize(query: str) -> list[Token]:
    """The tokens of ``query``, ending with an ``end`` token.

    Raises:
        QueryError: an unterminated string, a bad escape, or a character LogQL
            has no use for.

    Example:
        >>> [t.value for t in tokenize('{app="x"} |= "err" | status >= 500')]
        ['{', 'app', '=', 'x', '}', '|=', 'err', '|', 'status', '>=', '500', '']
    """
    return tokens_of(query, _OPERATORS)
