"""The expressions of LogQL's ``pattern``, ``regexp`` and ``json`` parameters.

* ``| pattern "<ip> - - [<_>] \\"<method> <path> <_>\\" <status>"``: literal text
  and ``<name>`` captures (``<_>`` skips). The match starts at the beginning of
  the line; a capture runs to the first place where the text after it follows
  (the last capture to the end of the line). :func:`pattern_regex` writes it as
  an RE2 regex with a named group per capture.
* ``| regexp "(?P<method>\\\\w+) (?P<path>\\\\S+)"``: an RE2 regex with named groups.
* ``| json status="response.code", ua=`request.headers["User-Agent"]`, first="items[0]"``:
  :func:`json_path` turns the expression into a DuckDB JSON path.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.corql.parser import check_regex

__all__ = ["json_path", "json_path_error", "pattern_error", "pattern_regex", "regexp_error"]

_CAPTURE = re.compile(r"<(_|[A-Za-z_][A-Za-z0-9_]*)>")
_NAMED_GROUP = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")
_JSON_STEP = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_]*)|\[([0-9]+)\]|\["((?:[^"\\]|\\.)*)"\]')
_RE2_SPECIAL = re.compile(r"([\\.^$|?*+()\[\]{}])")


def _parts(pattern: str) -> list[tuple[bool, str]]:
    """(is_capture, text) in order; empty literals left out."""
    parts: list[tuple[bool, str]] = []
    at = 0
    for capture in _CAPTURE.finditer(pattern):
        if capture.start() > at:
            parts.append((False, pattern[at:capture.start()]))
        parts.append((True, capture.group(1)))
        at = capture.end()
    if at < len(pattern):
        parts.append((False, pattern[at:]))
    return parts


def pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a pattern expression, or None.

    >>> pattern_error("<a> <b>"), pattern_error("<_> x")
    (None, 'a pattern needs at least one named capture like <status>')
    >>> pattern_error("<a><b>")
    'captures <a> and <b> must have text between them'
    """
    parts = _parts(pattern)
    names = [text for is_capture, text in parts if is_capture and text != "_"]
    if not names:
        return "a pattern needs at least one named capture like <status>"
    for (a_cap, a), (b_cap, b) in zip(parts, parts[1:], strict=False):
        if a_cap and b_cap:
            return f"captures <{a}> and <{b}> must have text between them"
    repeated = next((n for n in names if names.count(n) > 1), None)
    if repeated is not None:
        return f"capture <{repeated}> is named twice"
    return None


def pattern_regex(pattern: str) -> str:
    """The RE2 regex that matches as ``pattern`` does.

    >>> pattern_regex("<method> <path> <_>")
    '(?s)^(?P<method>.*?) (?P<path>.*?) .*'
    """
    out = ["(?s)^"]
    parts = _parts(pattern)
    for i, (is_capture, text) in enumerate(parts):
        if not is_capture:
            out.append(_RE2_SPECIAL.sub(r"\\\1", text))
            continue
        body = ".*" if i == len(parts) - 1 else ".*?"
        out.append(body if text == "_" else f"(?P<{text}>{body})")
    return "".join(out)


def regexp_error(regex: str) -> str | None:
    """Why ``regex`` cannot be a ``regexp`` parser's expression, or None.

    >>> regexp_error("(?P<code>[0-9]+)"), regexp_error("[0-9]+")
    (None, 'regexp needs at least one named group like (?P<status>[0-9]+)')
    """
    if reason := check_regex(regex):
        return reason
    if not _NAMED_GROUP.search(regex):
        return "regexp needs at least one named group like (?P<status>[0-9]+)"
    try:
        pc.extract_regex(pa.array([""]), regex)
    except pa.ArrowInvalid as exc:
        return f"invalid regexp {regex!r}: {exc}"
    return None


def json_path(expression: str) -> str | None:
    """``expression`` (``a.b``, ``a[0]``, ``a["x y"]``) as a DuckDB JSON path; None if bad.

    >>> json_path('request.headers["User-Agent"]'), json_path("items[0].id"), json_path("a..b")
    ('$."request"."headers"."User-Agent"', '$."items"[0]."id"', None)
    """
    steps = ["$"]
    at = 0
    while at < len(expression):
        step = _JSON_STEP.match(expression, at)
        if step is None or (step.group(1) and at > 0 and expression[at] != "."):
            return None
        if step.group(0).startswith(".") and at == 0:
            return None
        name, index, quoted = step.groups()
        if index is not None:
            steps.append(f"[{index}]")
        else:
            key = name if name is not None else re.sub(r"\\(.)", r"\1", quoted)
            steps.append("." + '"' + key.replace('"', '\\"') + '"')
        at = step.end()
    return "".join(steps) if len(steps) > 1 else None


def json_path_error(expression: str) -> str | None:
    """Why ``expression`` is not a json parameter, or None."""
    if json_path(expression) is None:
        return (f"invalid json expression {expression!r}: write keys joined with '.', "
                'indexes like [0] and quoted keys like ["User-Agent"]')
    return None
