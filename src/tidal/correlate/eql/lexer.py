"""EQL text → tokens, each with its offset; errors point at line and column.

Tokens: names (``process``, ``process.name`` is three tokens: name, ``.``, name),
backquoted names (```my-field```, a doubled backquote escapes one), strings
(``"..."`` with escapes, ``'...'`` in the Endgame dialect, ``\"\"\"raw\"\"\"``
without escapes), numbers (``42``, ``4.5``, ``1e3``), durations are a number
followed by a unit name (the parser joins them), and operators. Comments are
``//`` to the end of the line and ``/* ... */``.
"""

from __future__ import annotations

import re

from tidal.correlate.syntax import Token, syntax_error

__all__ = ["Token", "syntax_error", "tokenize"]


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}
_OPERATORS = ("==", "!=", "<=", ">=", "<", ">", "=", ":", "(", ")", "[", "]", ",", "|",
              "+", "-", "*", "/", "%", ".", "!", "~", "?")
_NUMBER = re.compile(r"(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_@][A-Za-z0-9_@]*")
_SPACE = re.compile(r"\s+|//[^\n]*|/\*.*?\*/", re.DOTALL)


def tokenize(query: str) -> list[Token]:
    """The tokens of ``query``, ending with an ``end`` token.

    Raises:
        QueryError: an unterminated string or comment, or a character EQL has no use for.
    """
    tokens: list[Token] = []
    pos, n = 0, len(query)
    while True:
        space = _SPACE.match(query, pos)
        if space:
            pos = space.end()
            continue
        if query.startswith("/*", pos):
            raise syntax_error(query, pos, "unterminated comment")
        if pos >= n:
            tokens.append(Token("end", "", pos))
            return tokens
        char = query[pos]
        if query.startswith('"""', pos):
            stop = query.find('"""', pos + 3)
            if stop < 0:
                raise syntax_error(query, pos, "unterminated raw string")
            tokens.append(Token("string", query[pos + 3:stop], pos))
            pos = stop + 3
        elif char in "\"'":
            value, end = _string(query, pos)
            tokens.append(Token("string", value, pos))
            pos = end
        elif char == "`":
            value, end = _quoted_name(query, pos)
            tokens.append(Token("quoted", value, pos))
            pos = end
        elif (number := _NUMBER.match(query, pos)) and (char.isdigit() or char == "."
                                                          and number.group(1) != "."):
            tokens.append(Token("number", number.group(0), pos))
            pos = number.end()
        elif name := _NAME.match(query, pos):
            tokens.append(Token("name", name.group(0), pos))
            pos = name.end()
        else:
            op = next((o for o in _OPERATORS if query.startswith(o, pos)), None)
            if op is None:
                raise syntax_error(query, pos, f"unexpected character {char!r}")
            tokens.append(Token("op", op, pos))
            pos += len(op)


def _string(query: str, start: int) -> tuple[str, int]:
    """The decoded string literal at ``start`` and the offset after it."""
    quote = query[start]
    out: list[str] = []
    pos = start + 1
    while pos < len(query):
        char = query[pos]
        if char == quote:
            return "".join(out), pos + 1
        if char == "\n":
            break
        if char == "\\":
            nxt = query[pos + 1:pos + 2]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                pos += 2
                continue
            if nxt == "u" and query[pos + 2:pos + 3] == "{":
                close = query.find("}", pos + 3)
                digits = query[pos + 3:close] if close > 0 else ""
                if close < 0 or not re.fullmatch(r"[0-9A-Fa-f]{2,8}", digits) or int(
                        digits, 16) > 0x10FFFF:
                    raise syntax_error(query, pos, "bad unicode escape, expected \\u{XXXX}")
                out.append(chr(int(digits, 16)))
                pos = close + 1
                continue
            raise syntax_error(query, pos, f"unknown escape \\{nxt}" if nxt else
                               "unterminated string")
        out.append(char)
        pos += 1
    raise syntax_error(query, start, "unterminated string")


def _quoted_name(query: str, start: int) -> tuple[str, int]:
    """The backquoted name at ``start`` (a doubled backquote is one) and the offset after it."""
    out: list[str] = []
    pos = start + 1
    while pos < len(query):
        if query[pos] == "`":
            if query.startswith("``", pos):
                out.append("`")
                pos += 2
                continue
            if not out:
                raise syntax_error(query, start, "empty field name")
            return "".join(out), pos + 1
        out.append(query[pos])
        pos += 1
    raise syntax_error(query, start, "unterminated backquoted name")
