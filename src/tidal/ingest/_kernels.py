"""Byte kernels: the nesting depth of JSON text, without parsing it.

Both functions scan bytes in windows with numpy and keep only the bytes that
matter (quotes, backslashes, brackets, newlines or commas), so memory stays
bounded, no Python runs per byte or line, and nothing recurses however deep
the text nests. A bracket
inside a string does not count; a quote after an odd run of backslashes does
not end a string. Depth counts objects and arrays: ``1`` is 0, ``{"a": 1}``
is 1, ``{"a": [{}]}`` is 3. Invalid JSON gets some depth without an error;
the parsers report it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["array_items", "line_depths"]

WINDOW_BYTES = 1 << 19
_QUOTE, _BACKSLASH, _NL, _COMMA = 0x22, 0x5C, 0x0A, 0x2C
_OPEN, _CLOSE = 0x7B, 0x7D  # "{" "}"; "[" "]" become these with bit 0x20 set


_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[0x20, 0x09, 0x0A, 0x0D]] = True
Events = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _escaped(pos: np.ndarray, byte: np.ndarray, odd_before: int, size: int
             ) -> tuple[np.ndarray, int]:
    """Which events of a window are escaped (right after an odd run of backslashes).

    ``odd_before``: the previous window ended in an odd run. Returns the mask and
    whether this window (``size`` bytes) ends in one.
    """
    n = pos.size
    escaped = np.zeros(n, dtype=bool)
    escaped[0] = bool(odd_before) and pos[0] == 0 and byte[0] != _BACKSLASH
    slashes = np.flatnonzero(byte == _BACKSLASH)  # event indices: few
    if slashes.size == 0:
        return escaped, 0
    at = pos[slashes]
    goes_on = np.zeros(slashes.size, dtype=bool)
    goes_on[1:] = at[1:] == at[:-1] + 1  # adjacent bytes are adjacent events
    first = np.flatnonzero(~goes_on)
    last = np.append(first[1:] - 1, slashes.size - 1)
    length = last - first + 1
    if odd_before and at[0] == 0:
        length[0] += 1
    end = slashes[last]
    after = end + 1  # the event right after each run, escaped if the run is odd
    hit = (length % 2 == 1) & (after < n)
    hit[hit] &= pos[after[hit]] == pos[end[hit]] + 1
    escaped[after[hit]] = True
    odd_after = int(length[-1] % 2) if at[-1] == size - 1 else 0
    return escaped, odd_after


def _document_events(data: np.ndarray) -> Iterator[Events]:
    """Per window: positions, bytes, depth after each, and whether inside a string, of
    the quotes, backslashes, brackets and commas of one JSON document."""
    depth, in_string, odd_backslashes = 0, 0, 0
    for lo in range(0, data.size, WINDOW_BYTES):
        w = data[lo : lo + WINDOW_BYTES]
        folded = w | 0x20
        mask = (folded == _OPEN) | (folded == _CLOSE) | (w == _QUOTE) | (w == _BACKSLASH)
        mask |= w == _COMMA
        pos = np.flatnonzero(mask)
        if pos.size == 0:
            odd_backslashes = 0
            continue
        byte = w[pos]
        escaped, odd_backslashes = _escaped(pos, byte, odd_backslashes, w.size)
        quote = (byte == _QUOTE) & ~escaped
        quotes = np.cumsum(quote, dtype=np.int64) + in_string
        quoted = ((quotes - quote) & 1).astype(bool)
        folded_byte = byte | 0x20
        delta = ((folded_byte == _OPEN) & ~quoted).astype(np.int64)
        delta -= (folded_byte == _CLOSE) & ~quoted
        level = np.cumsum(delta) + depth
        depth, in_string = int(level[-1]), int(quotes[-1] & 1)
        yield pos + lo, byte, level, quoted


class _SegmentMax:
    """Maximum depth per segment of a document, segments ending at separator events."""

    def __init__(self) -> None:
        self.done: list[np.ndarray] = []
        self.open = 0

    def add(self, depth: np.ndarray, separator: np.ndarray) -> None:
        seps = np.cumsum(separator)
        segment = seps - separator  # a separator belongs to the segment it ends
        starts = np.flatnonzero(np.diff(segment, prepend=-1))
        out = np.zeros(int(seps[-1]) + 1, dtype=np.int64)
        out[segment[starts]] = np.maximum.reduceat(depth, starts)
        out[0] = max(int(out[0]), self.open)
        self.open = int(out[-1])
        self.done.append(out[:-1])

    def result(self) -> np.ndarray:
        """Every segment's maximum, at least 0 (stray closing brackets go below)."""
        out = np.concatenate([*self.done, np.array([self.open], dtype=np.int64)])
        return np.maximum(out, 0)


def line_depths(data: np.ndarray) -> np.ndarray:
    """The depth of every newline-separated segment of ``data`` (uint8).

    Returns ``count(b"\\n") + 1`` values: segment ``k`` follows the ``k``-th newline.

    Example:
        >>> line_depths(np.frombuffer(b'{"a": [1]}\\n{"b": "[[["}\\n', np.uint8)).tolist()
        [2, 1, 0]
    """
    done: list[np.ndarray] = []
    depth = top = in_string = odd_backslashes = 0  # of the line still open
    for lo in range(0, data.size, WINDOW_BYTES):
        w = data[lo : lo + WINDOW_BYTES]
        folded = w | 0x20
        mask = (folded == _OPEN) | (folded == _CLOSE) | (w == _QUOTE) | (w == _BACKSLASH)
        mask |= w == _NL
        pos = np.flatnonzero(mask)
        n = pos.size
        if n == 0:
            odd_backslashes = 0
            continue
        byte = w[pos]
        escaped, odd_backslashes = _escaped(pos, byte, odd_backslashes, w.size)
        quote = (byte == _QUOTE) & ~escaped
        quotes = np.cumsum(quote, dtype=np.int32)
        newlines = np.flatnonzero(byte == _NL)
        before = quotes - quote  # quotes before each event in this window
        if newlines.size and (in_string or bool(np.any(quotes[newlines] & 1))):
            # a line with an odd number of quotes: count each line's quotes from its start
            base = np.concatenate([[-in_string], quotes[newlines]])
            sizes = np.diff(np.concatenate([[0], newlines + 1, [n]]))
            before = before - np.repeat(base, sizes)
        elif in_string:
            before = before + 1
        plain = (before & 1) == 0
        folded_byte = byte | 0x20
        delta = ((folded_byte == _OPEN) & plain).astype(np.int32)
        delta -= (folded_byte == _CLOSE) & plain
        level = np.cumsum(delta, dtype=np.int32)  # from the window start
        starts = np.concatenate([[0], newlines + 1])
        base_level = np.concatenate([[-depth], level[newlines]])  # level before each line
        if starts[-1] == n:  # no event after the last newline
            starts, base_level = starts[:-1], base_level[:-1]
        line_max = np.maximum.reduceat(level, starts) - base_level
        line_max[0] = max(int(line_max[0]), top)
        if newlines.size:
            done.append(line_max[: newlines.size])
            last = int(newlines[-1])
            if line_max.size > newlines.size:
                top = int(line_max[-1])
            else:
                top = 0
            depth = int(level[-1] - level[last])
            in_string = int((quotes[-1] - quotes[last]) & 1)
        else:
            top = int(line_max[0])
            depth += int(level[-1])
            in_string = int((in_string + int(quotes[-1])) & 1)
    out = np.concatenate([*done, np.array([top], dtype=np.int64)])
    return np.maximum(out, 0)


def array_items(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Item byte ranges and depths of a JSON array document (uint8), or None if not one.

    Returns ``(starts, stops, depths)`` of each top-level item (surrounding
    whitespace included), split at the commas at depth 1; None unless the
    document is one array with only whitespace around it.

    Example:
        >>> items = array_items(np.frombuffer(b'[{"a": [1]}, 2, {"s": "],"}]', np.uint8))
        >>> [a.tolist() for a in items]
        [[1, 12, 15], [11, 14, 27], [2, 0, 1]]
    """
    acc = _SegmentMax()
    seps: list[np.ndarray] = []
    after: list[np.ndarray] = []  # depth after each separator: 1 opens or goes on, 0 closes
    for pos, byte, depth, quoted in _document_events(data):
        folded = byte | 0x20
        sep = ~quoted & (((byte == _COMMA) & (depth == 1))
                         | ((folded == _OPEN) & (depth == 1))
                         | ((folded == _CLOSE) & (depth == 0)))
        acc.add(depth, sep)
        seps.append(pos[sep])
        after.append(depth[sep])
    where = np.concatenate(seps) if seps else np.empty(0, np.int64)
    level = np.concatenate(after) if after else np.empty(0, np.int64)
    if (where.size < 2 or level[0] != 1 or level[-1] != 0 or bool(np.any(level[1:-1] != 1))
            or data[where[0]] != ord("[") or data[where[-1]] != ord("]")
            or not _blank(data[: where[0]]) or not _blank(data[where[-1] + 1 :])):
        return None
    starts, stops = where[:-1] + 1, where[1:]
    if where.size == 2 and _blank(data[starts[0] : stops[0]]):
        return starts[:0], stops[:0], starts[:0]  # []
    depths = np.maximum(acc.result()[1:-1] - 1, 0)  # segment 0 precedes "[", the last follows "]"
    return starts, stops, depths


def _blank(data: np.ndarray) -> bool:
    return not bool(np.any(~_WHITESPACE[data]))
