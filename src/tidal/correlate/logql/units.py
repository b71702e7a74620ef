"""Durations and byte sizes in label values, as LogQL reads them.

``latency > 250ms`` compares the label read as a Go duration (``1h2m3.5s``,
``350ms``, ``1.5µs``); ``size >= 10KB`` reads it as a byte size (``42``,
``10KB`` = 10,000, ``1.5MiB`` = 1,572,864, case-insensitive, a space allowed
before the unit). One value (:func:`go_duration`, :func:`byte_size`) or a whole
column at once (:func:`durations`, :func:`byte_sizes`: pyarrow's RE2 kernels,
NaN where a value does not read).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["byte_size", "byte_sizes", "durations", "go_duration"]

_DURATION_UNITS = (("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 1e-3), ("us", 1e-6),
                   ("ns", 1e-9))
_NUM = r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+"
_DURATION_PART = re.compile(rf"({_NUM})(ns|us|µs|μs|ms|s|m|h)")
_DURATION_COLUMN = (r"^\s*(?P<sign>[+-]?)" + "".join(
    rf"(?:(?P<{'u' + unit}>{_NUM}){'(?:us|µs|μs)' if unit == 'us' else unit})?"
    for unit, _ in _DURATION_UNITS) + r"\s*$")
_BYTES = re.compile(rf"\s*({_NUM})\s*([kmgtpe]?)(i?)(b?)\s*", re.IGNORECASE)
_BYTES_COLUMN = rf"^\s*(?P<n>{_NUM})\s*(?P<p>[kmgtpeKMGTPE]?)(?P<i>[iI]?)(?P<b>[bB]?)\s*$"
_PREFIX = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def go_duration(text: str) -> float | None:
    """``text`` as a Go duration, in seconds; None when it is not one.

    >>> go_duration("1h2m3.5s"), go_duration("250ms"), go_duration("5"), go_duration("0")
    (3723.5, 0.25, None, 0.0)
    """
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(body):
        part = _DURATION_PART.match(body, pos)
        if part is None:
            return None
        number, unit = part.groups()
        total += float(number) * dict(_DURATION_UNITS)["us" if unit in ("µs", "μs") else unit]
        pos = part.end()
    return sign * total if body else None


def byte_size(text: str) -> float | None:
    """``text`` as a byte size (SI ``KB`` = 1000, IEC ``KiB`` = 1024); None when not one.

    >>> byte_size("10KB"), byte_size("1.5MiB"), byte_size("42"), byte_size("3 gb")
    (10000.0, 1572864.0, 42.0, 3000000000.0)
    """
    match = _BYTES.fullmatch(text)
    if match is None:
        return None
    number, prefix, iec, _ = match.groups()
    if iec and not prefix:
        return None
    base = 1024.0 if iec else 1000.0
    return float(number) * base ** _PREFIX[prefix.lower()]


def durations(values: pa.Array) -> np.ndarray:
    """Each value as a Go duration in seconds (NaN where absent or not one).

    >>> durations(pa.array(["1m30s", "250ms", "x", None, "0"])).tolist()
    [90.0, 0.25, nan, nan, 0.0]
    """
    parts = pc.extract_regex(values, _DURATION_COLUMN)
    total = np.zeros(len(values), dtype=np.float64)
    seen = np.zeros(len(values), dtype=np.bool_)
    for unit, seconds in _DURATION_UNITS:
        number = _floats(pc.struct_field(parts, "u" + unit))
        present = ~np.isnan(number)
        seen |= present
        total += np.where(present, number, 0.0) * seconds
    sign = np.where(_equals(pc.struct_field(parts, "sign"), "-"), -1.0, 1.0)
    zero = _equals(pc.utf8_trim_whitespace(values), "0")
    return np.where(seen, sign * total, np.where(zero, 0.0, np.nan))


def byte_sizes(values: pa.Array) -> np.ndarray:
    """Each value as a byte size (NaN where absent or not one).

    >>> byte_sizes(pa.array(["10KB", "2KiB", "7", "kb", None])).tolist()
    [10000.0, 2048.0, 7.0, nan, nan]
    """
    parts = pc.extract_regex(values, _BYTES_COLUMN)
    number = _floats(pc.struct_field(parts, "n"))
    prefix = pc.utf8_lower(pc.struct_field(parts, "p"))
    power = np.zeros(len(values), dtype=np.float64)
    for letter, exponent in _PREFIX.items():
        if letter:
            power[_equals(prefix, letter)] = exponent
    iec = ~_equals(pc.struct_field(parts, "i"), "")
    bad = iec & (power == 0)
    scale = np.where(iec, 1024.0, 1000.0) ** power
    return np.where(bad, np.nan, number * scale)


def _floats(values: pa.Array) -> np.ndarray:
    text = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    return np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False),
                      dtype=np.float64)


def _equals(values: pa.Array, text: str) -> np.ndarray:
    hits = pc.fill_null(pc.equal(pc.fill_null(values, ""), text), False)
    return np.asarray(hits.to_numpy(zero_copy_only=False), dtype=np.bool_)
