"""CorQL text → tokens, each with its offset; errors point at line and column.

Tokens: names (``events``, ``service``; ``kubernetes.pod.name`` is five tokens:
name, ``.``, name, ``.``, name), backquoted text (```my-field``` is a path
segment, or a raw string in a value's place; a doubled backquote is one),
strings (``"..."`` and ``'...'`` with Go's escapes), words that start with a
digit (``5m``, ``1h30m``: the parser reads them as durations) and operators
(``=~ !~ != = ( ) { } [ ] , .``). Whitespace and newlines may stand between any
two tokens; ``#`` starts a comment that runs to the end of the line.

Errors are built with :func:`~tidal.correlate.syntax.syntax_error`, so
both languages report a place the same way.
"""

from __future__ import annotations

import json
import re

from tidal.correlate.syntax import Token, syntax_error

__all__ = ["Token", "quote", "tokenize", "tokens_of"]


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"', "'": "'"}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}
_OPERATORS = ("=~", "!~", "!=", "=", "(", ")", "{", "}", "[", "]", ",", ".")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD = re.compile(r"[0-9][0-9A-Za-z_.]*")
_SPACE = re.compile(r"(?:\s+|#[^\n]*)+")


def quote(text: str) -> str:
    """``text`` in double quotes, as messages show what was found.

    >>> quote('a"b')
    '"a\\\\"b"'
    """
    return json.dumps(text, ensure_ascii=False)


def tokenize(query: str) -> list[Token]:
    """The tokens of ``query``, ending with an ``end`` token.

    Raises:
        QueryError: an unterminated string, a bad escape, or a character CorQL
            has no use for.

    Example:
        >>> [t.value for t in tokenize('events({a=~"x"})[5m] # look back')]
        ['events', '(', '{', 'a', '=~', 'x', '}', ')', '[', '5m', ']', '']
    """
    return tokens_of(query, _OPERATORS)


def tokens_of(query: str, operators: tuple[str, ...]) -> list[Token]:
    """The tokens of ``query`` with these ``operators`` (longest first where they share
    a start): CorQL's, and LogQL's (which adds pipes and comparisons)."""
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
            op = next((o for o in operators if query.startswith(o, pos)), None)
            if op is None:
                hint = "; a regex matcher is =~ or !~" if char == "~" else ""
                raise syntax_error(query, pos, f"unexpected character {quote(char)}{hint}")
            tokens.append(Token("op", op, pos))
            end = pos + len(op)
        pos = end


def _string(query: str, start: int) -> tuple[str, int]:
    """The decoded string literal at ``start`` and the offset after it."""
    closing = query[start]
    out: list[str] = []
    pos = start + 1
    while pos < len(query):
        char = query[pos]
        if char == closing:
            return "".join(out), pos + 1
        if char == "\n":
            break
        if char != "\\":
            out.append(char)
            pos += 1
            continue
        value, pos = _escape(query, pos)
        out.append(value)
    raise syntax_error(query, start, f"unterminated string: no closing {closing} on this line")


def _escape(query: str, pos: int) -> tuple[str, int]:
    """The character of the escape at ``pos`` (a backslash) and the offset after it."""
    nxt = query[pos + 1:pos + 2]
    if nxt in _ESCAPES:
        return _ESCAPES[nxt], pos + 2
    if nxt in _HEX_DIGITS:
        width = _HEX_DIGITS[nxt]
        digits = query[pos + 2:pos + 2 + width]
        if re.fullmatch(f"[0-9A-Fa-f]{{{width}}}", digits):
            code = int(digits, 16)
            if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return chr(code), pos + 2 + width
        raise syntax_error(query, pos, f"bad escape: \\{nxt} takes exactly {width} hex digits "
                           "naming a valid character")
    if re.fullmatch(r"[0-7]{3}", digits := query[pos + 1:pos + 4]) and int(digits, 8) < 256:
        return chr(int(digits, 8)), pos + 4
    if not nxt or nxt == "\n":
        raise syntax_error(query, pos, "unterminated string: a backslash ends the line")
    raise syntax_error(query, pos, f"unknown escape \\{nxt}: use \\n \\t \\\\ \\\" \\' "
                       "\\uXXXX or a `raw string`")


def _backquoted(query: str, start: int) -> tuple[str, int]:
    """The backquoted text at ``start`` (a doubled backquote is one) and the offset after it."""
    out: list[str] = []
    pos = start + 1
    while pos < len(query):
        if query[pos] == "`":
            if query.startswith("``", pos):
                out.append("`")
                pos += 2
                continue
            return "".join(out), pos + 1
        out.append(query[pos])
        pos += 1
    raise syntax_error(query, start, "unterminated backquoted name or raw string: no closing `")
