"""Event time: parsing anything users send into int64 nanoseconds UTC.

Inside Tidal, event time is always int64 nanoseconds since the Unix epoch, UTC.
:func:`to_ns` turns a column of whatever arrived (timestamps, dates, numbers,
strings) into that, vectorised, and reports which present values could not be
parsed. :func:`parse_instant` does the same for one API argument.

Rules:

* Arrow timestamps of any unit; naive ones are taken as UTC. Dates are midnight UTC.
* Numbers carry a ``unit`` (``s``, ``ms``, ``us``, ``ns``) or, with ``"auto"``,
  one guessed per value from ``abs(value)``: below 1e11 seconds, below 1e14
  milliseconds, below 1e17 microseconds, otherwise nanoseconds. Floats keep
  their fraction (rounded to the nanosecond). NaN, infinities and values
  outside the int64 nanosecond range are bad.
* Strings are RFC 3339 / ISO 8601: ``YYYY-MM-DD``, then optionally ``T`` or a
  space, ``hh:mm[:ss[.fraction]]``, then optionally ``Z`` or ``±hh[:mm]`` /
  ``±hhmm``. **A string without an offset is UTC.** Fractions keep nanosecond
  precision (digits past the ninth are cut). Strings that are plain numbers
  (``"1700000000"``, ``"1.7e9"``) follow the numeric rule. Empty (or blank)
  strings are null. Other ISO 8601 forms Python's ``datetime.fromisoformat``
  accepts are parsed on a slow path; anything else is bad.
* Booleans, structs, lists and other types are bad.
"""

from __future__ import annotations

import datetime as dt
import math
import time as _time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.errors import QueryError

__all__ = ["TIMESTAMP_TYPE", "now_ns", "parse_instant", "to_ns", "to_timestamp_array"]

TIMESTAMP_TYPE = pa.timestamp("ns", tz="UTC")

_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_I64_MAX = 2**63 - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

_INT_RE = r"^[+-]?\d{1,19}$"
_FLOAT_RE = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"


def now_ns() -> int:
    """The current time in nanoseconds since the epoch (UTC)."""
    return _time.time_ns()


# --------------------------------------------------------------------------- numbers


def _bounds(mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (lo, hi) so that ``lo <= v <= hi`` keeps ``v * mult`` inside int64."""
    hi = np.int64(_I64_MAX) // mult
    lo = -((np.int64(_I64_MAX) // mult) + ((_I64_MAX % mult) == mult - 1))
    return lo, hi


def _mult_for(unit: str, v: np.ndarray) -> np.ndarray:
    """Nanoseconds per unit for each value; ``auto`` guesses from ``abs(value)``."""
    if unit != "auto":
        return np.full(len(v), _UNIT_NS[unit], dtype=np.int64)
    magnitude = np.abs(v.astype(np.float64))
    units = [magnitude < 1e11, magnitude < 1e14, magnitude < 1e17]
    return np.select(units, [1_000_000_000, 1_000_000, 1_000], 1).astype(np.int64)


def _scale(v: np.ndarray, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 ``v * mult`` → (ns, ok); ok is False where the product leaves int64."""
    lo, hi = _bounds(mult)
    ok = (v >= lo) & (v <= hi)
    return np.where(ok, v, 0) * mult, ok


def _ints_to_ns(v: np.ndarray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """int64 values → (ns, ok)."""
    return _scale(v, _mult_for(unit, v))


def _floats_to_ns(v: np.ndarray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """float64 values → (ns, ok); the fraction is kept and rounded to the nanosecond."""
    finite = np.isfinite(v)
    safe = np.where(finite, v, 0.0)
    mult = _mult_for(unit, safe)
    whole = np.floor(safe)
    frac_ns = np.rint((safe - whole) * mult).astype(np.int64)
    in_range = np.abs(whole) < 9.3e18
    whole_i = np.where(in_range, whole, 0.0).astype(np.int64)
    lo, hi = _bounds(mult)
    ok = finite & in_range & (whole_i >= lo) & (whole_i <= hi)
    base = np.where(ok, whole_i, 0) * mult
    ok &= base <= np.int64(_I64_MAX) - frac_ns
    ns = np.where(ok, base + frac_ns, 0)
    return ns, ok


# --------------------------------------------------------------------------- strings


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 for proleptic Gregorian dates (vectorised)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class _Chars:
    """Per-row byte access into a string array's buffers (vectorised over rows)."""

    def __init__(self, s: pa.Array) -> None:
        width = np.int64 if pa.types.is_large_string(s.type) else np.int32
        bufs = s.buffers()
        offsets = np.frombuffer(bufs[1], dtype=width)[s.offset : s.offset + len(s) + 1]
        bounds = np.asarray(offsets, dtype=np.int64)
        self.start: np.ndarray = bounds[:-1]
        self.length: np.ndarray = np.diff(bounds)
        data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else None
        self.data = data if data is not None and len(data) else np.zeros(1, np.uint8)

    def at(self, pos: np.ndarray | int) -> np.ndarray:
        """The byte at ``pos`` of each row (0 outside the string), as int16."""
        inside = (self.length > pos) & (pos >= 0)
        b = np.take(self.data, self.start + pos, mode="clip")
        return (b * inside).astype(np.int16)

    def digit(self, pos: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """(value, is_digit) of the byte at ``pos``."""
        v = self.at(pos) - 48
        return v, (v >= 0) & (v <= 9)

    def number(self, pos: np.ndarray | int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(value, all_digits) of ``width`` digits starting at ``pos``."""
        total = np.zeros(len(self.start), np.int64)
        good = np.ones(len(self.start), bool)
        for k in range(width):
            v, isd = self.digit(pos + k)
            total = total * 10 + v.astype(np.int64)
            good &= isd
        return total, good


def _parse_iso(s: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ISO 8601 strings (trimmed) → (ns, ok, starts_with_year), vectorised over bytes.

    Accepts ``YYYY-MM-DD[(T|t| )hh:mm[:ss[(.|,)fraction]]][Z|z|±hh|±hhmm|±hh:mm]``.
    """
    c = _Chars(s)
    n = len(s)
    y, ok = c.number(0, 4)
    starts_with_year = ok.copy()
    mo, g = c.number(5, 2)
    d, g2 = c.number(8, 2)
    ok &= g & g2 & (c.at(4) == ord("-")) & (c.at(7) == ord("-"))
    sep = c.at(10)
    has_time = (sep == ord("T")) | (sep == ord("t")) | (sep == ord(" "))
    h, g = c.number(11, 2)
    mi, g2 = c.number(14, 2)
    time_ok = g & g2 & (c.at(13) == ord(":"))
    ok &= (c.length == 10) | (has_time & time_ok)
    h, mi = np.where(has_time, h, 0), np.where(has_time, mi, 0)
    sec, g = c.number(17, 2)
    has_sec = has_time & (c.at(16) == ord(":"))
    ok &= ~has_sec | g
    sec = np.where(has_sec, sec, 0)
    pos = np.where(has_sec, 19, np.where(has_time, 16, 10))
    # fraction: a run of digits after '.' or ',' (digits past the ninth are cut)
    dot = c.at(pos)
    has_frac = has_sec & ((dot == ord(".")) | (dot == ord(",")))
    pos = np.where(has_frac, pos + 1, pos)
    frac = np.zeros(n, np.int64)
    ndig = np.zeros(n, np.int64)
    running = has_frac.copy()
    longest = int(c.length.max()) if n else 0
    for k in range(max(0, longest - 20)):
        if not running.any():
            break
        v, isd = c.digit(pos + k)
        running &= isd
        take = running & (ndig < 9)
        frac = np.where(take, frac * 10 + v, frac)
        ndig += running
    ok &= ~has_frac | (ndig > 0)
    frac_ns = frac * (10 ** (9 - np.minimum(ndig, 9)))
    pos = pos + ndig
    # offset
    rest = c.length - pos
    first = c.at(pos)
    is_z = (rest == 1) & ((first == ord("Z")) | (first == ord("z")))
    signed = (first == ord("+")) | (first == ord("-"))
    oh, g = c.number(pos + 1, 2)
    colon = c.at(pos + 3) == ord(":")
    om, g2 = c.number(pos + np.where(colon, 4, 3), 2)
    form_ok = (rest == 3) | ((rest == 5) & ~colon & g2) | ((rest == 6) & colon & g2)
    has_off = signed & g & form_ok
    ok &= (rest == 0) | is_z | has_off
    oh = np.where(has_off, oh, 0)
    om = np.where(has_off & (rest > 3), om, 0)
    sign = np.where(first == ord("-"), -1, 1)
    # calendar checks and arithmetic
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    mo_ok = (mo >= 1) & (mo <= 12)
    mo = np.where(mo_ok, mo, 1)
    dim = _DAYS_IN_MONTH[mo] + (leap & (mo == 2))
    ok &= mo_ok & (d >= 1) & (d <= dim) & (h <= 23) & (mi <= 59) & (sec <= 59)
    ok &= (oh <= 23) & (om <= 59)
    seconds = (
        _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60)
    )
    # borrow a second for negative times so the last partial second stays in range
    borrow = (seconds < 0) & (frac_ns > 0)
    seconds, frac_ns = seconds + borrow, frac_ns - borrow * _UNIT_NS["s"]
    ns, in_range = _scale(np.where(ok, seconds, 0), np.full(n, _UNIT_NS["s"], np.int64))
    ok &= in_range & np.where(
        frac_ns >= 0, ns <= np.int64(_I64_MAX) - frac_ns, ns >= np.int64(-_I64_MAX - 1) - frac_ns
    )
    return np.where(ok, ns + frac_ns, 0), ok, starts_with_year


def _parse_numbers(s: pa.Array, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Number strings → (ns, ok): integers exactly, others through float64."""
    ok = np.zeros(len(s), bool)
    is_number = _np_bool(pc.match_substring_regex(s, _FLOAT_RE))
    if not is_number.any():
        return np.zeros(len(s), np.int64), ok
    floats = pc.cast(pc.if_else(pa.array(is_number), s, "0"), pa.float64())
    f = np.asarray(floats.to_numpy(zero_copy_only=False), np.float64)
    ns, fok = _floats_to_ns(f, unit)
    ok = is_number & fok
    is_int = _np_bool(pc.match_substring_regex(s, _INT_RE)) & (np.abs(f) < 9.2e18)
    if is_int.any():  # exact: float64 would round 19-digit nanoseconds
        ints = pc.cast(pc.if_else(pa.array(is_int), s, "0"), pa.int64())
        ins, iok = _ints_to_ns(np.asarray(ints.to_numpy(zero_copy_only=False), np.int64), unit)
        ns = np.where(is_int, ins, ns)
        ok = np.where(is_int, iok, ok)
    return ns, ok


def _fromisoformat_ns(text: str) -> int | None:
    """Slow path for one string; None when it is not ISO 8601 or out of range."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    ns = _datetime_ns(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return ns if -(2**63) <= ns <= _I64_MAX else None


def _np_bool(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(a, False).to_numpy(zero_copy_only=False), dtype=bool)


def _try_cast(s: pa.Array, target: pa.DataType, *, probe: bool = False) -> pa.Array | None:
    """Arrow's own ISO 8601 parser, all or nothing; None when any value fails.

    A failed cast costs about a microsecond per failing value, so with ``probe``
    a strided sample is tried first.
    """
    try:
        if probe and len(s) > 512:
            pc.cast(s.take(np.arange(0, len(s), max(1, len(s) // 257) | 1)), target)
        result: pa.Array = pc.cast(s, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return result


_SIGNS = np.array([ord("+"), ord("-")])
_ZULU = np.array([ord("Z"), ord("z")])


def _is_space(b: np.ndarray) -> np.ndarray:
    return (b == 32) | ((b >= 9) & (b <= 13))


def _scatter(
    ns: np.ndarray, ok: np.ndarray, where: np.ndarray, part_ns: np.ndarray, part_ok: np.ndarray
) -> None:
    """Write a group's results (``part_*``, for the rows in ``where``) into ``ns``/``ok``."""
    if len(part_ns) == len(ns):
        ns[part_ok] = part_ns[part_ok]
        ok |= part_ok
        return
    idx = np.flatnonzero(where)[part_ok]
    ns[idx] = part_ns[part_ok]
    ok[idx] = True


def _strings_to_ns(s: pa.Array, unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strings → (ns, ok, present), cheapest route first."""
    ts = _try_cast(s, TIMESTAMP_TYPE, probe=True)  # the common case: RFC 3339 throughout
    if ts is not None:
        valid = _np_bool(ts.is_valid())
        return _ts_numpy(ts), valid, valid
    if pa.types.is_string_view(s.type):
        s = pc.cast(s, pa.string())
    c = _Chars(s)
    last = c.at(c.length - 1)
    if (_is_space(c.at(0)) | _is_space(last)).any():
        s = pc.utf8_trim_whitespace(s)
        c = _Chars(s)
        last = c.at(c.length - 1)
    n = len(s)
    ns = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    present = (c.length > 0) & _np_bool(s.is_valid())
    # cheap classification; the casts below do the real validation
    iso_like = c.number(0, 4)[1] & (c.at(4) == ord("-")) & (c.at(7) == ord("-"))
    signs = [np.isin(c.at(c.length - k), _SIGNS) for k in (3, 5, 6)]
    with_offset = (c.length > 10) & (np.isin(last, _ZULU) | signs[0] | signs[1] | signs[2])
    for group, target in (
        (iso_like & with_offset, TIMESTAMP_TYPE),
        (iso_like & ~with_offset, pa.timestamp("ns")),
    ):
        if group.any():
            part = s if group.all() else s.filter(pa.array(group))
            ts = _try_cast(part, target)
            if ts is not None:
                _scatter(ns, ok, group, _ts_numpy(ts), _np_bool(ts.is_valid()))
            else:  # some value Arrow refuses: parse the group ourselves
                part_ns, part_ok, _ = _parse_iso(part)
                _scatter(ns, ok, group, part_ns, part_ok)
    left = present & ~ok & ~iso_like
    if left.any():
        part_ns, part_ok = _parse_numbers(s.filter(pa.array(left)), unit)
        _scatter(ns, ok, left, part_ns, part_ok)
    left = present & ~ok
    if left.any():  # slow path: other ISO 8601 forms that fromisoformat accepts
        left &= c.number(0, 4)[1]
        for i in np.flatnonzero(left):
            value = _fromisoformat_ns(s[int(i)].as_py())
            if value is not None:
                ns[i] = value
                ok[i] = True
    return ns, ok, present


# --------------------------------------------------------------------------- dispatch


def _ts_numpy(a: pa.Array) -> np.ndarray:
    if pa.types.is_date32(a.type):
        a = a.view(pa.int32())
    ints = pc.fill_null(a.view(pa.int64()) if a.type.bit_width == 64 else a.cast(pa.int64()), 0)
    return np.asarray(ints.to_numpy(zero_copy_only=False), dtype=np.int64)


def _chunk_to_ns(a: pa.Array, unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Arrow array → (ns, ok, present) numpy arrays."""
    t = a.type
    n = len(a)
    present = _np_bool(a.is_valid())
    if pa.types.is_null(t):
        return np.zeros(n, np.int64), present, present
    if pa.types.is_dictionary(t):
        dns, dok, dpresent = _chunk_to_ns(a.dictionary, unit)
        idx = np.asarray(pc.fill_null(a.indices, 0).to_numpy(zero_copy_only=False), np.int64)
        if len(dns) == 0:
            return np.zeros(n, np.int64), np.zeros(n, bool), present
        return dns[idx], dok[idx] & present, dpresent[idx] & present
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        per = _UNIT_NS["ms"] if pa.types.is_date64(t) else 86_400 * _UNIT_NS["s"]
        per = _UNIT_NS[t.unit] if pa.types.is_timestamp(t) else per
        ns, ok = _scale(_ts_numpy(a), np.full(n, per, np.int64))
        return ns, ok & present, present
    if pa.types.is_integer(t):
        if pa.types.is_uint64(t):
            big = _np_bool(pc.greater(a, pa.scalar(_I64_MAX, pa.uint64())))
            raw = a.cast(pa.int64(), safe=False)
        else:
            big = np.zeros(n, bool)
            raw = a.cast(pa.int64())
        v = np.asarray(pc.fill_null(raw, 0).to_numpy(zero_copy_only=False), np.int64)
        ns, ok = _ints_to_ns(v, unit)
        return ns, ok & present & ~big, present
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        v = np.asarray(
            pc.fill_null(a.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False), np.float64
        )
        ns, ok = _floats_to_ns(v, unit)
        return ns, ok & present, present
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        ns, ok, nonblank = _strings_to_ns(a, unit)
        return ns, ok & present, nonblank & present
    return np.zeros(n, np.int64), np.zeros(n, bool), present


def to_ns(values: pa.ChunkedArray | pa.Array, unit: str = "auto") -> tuple[pa.Array, np.ndarray]:
    """Parse event times into int64 nanoseconds UTC.

    Args:
        values: timestamps, dates, numbers or strings (see the module docstring).
        unit: unit of numeric values: ``s``, ``ms``, ``us``, ``ns`` or ``auto``.

    Returns:
        An int64 array of nanoseconds (null where the value was null, empty or
        bad) and a numpy bool mask of values present but unparseable.

    >>> ns, bad = to_ns(pa.array(["1970-01-01T00:00:01Z", "1.5", "x", None]))
    >>> ns.to_pylist(), bad.tolist()
    ([1000000000, 1500000000, None, None], [False, False, True, False])
    """
    if unit != "auto" and unit not in _UNIT_NS:
        raise ValueError(f"unknown time unit {unit!r}; use s, ms, us, ns or auto")
    if isinstance(values, pa.ChunkedArray):
        if pa.types.is_dictionary(values.type) and values.num_chunks > 1:
            results = [_chunk_to_ns(c, unit) for c in values.chunks]
            ns = np.concatenate([r[0] for r in results])
            ok = np.concatenate([r[1] for r in results])
            present = np.concatenate([r[2] for r in results])
        else:
            chunk = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
            ns, ok, present = _chunk_to_ns(chunk, unit)
    else:
        ns, ok, present = _chunk_to_ns(values, unit)
    bad = present & ~ok
    return pa.array(ns, type=pa.int64(), mask=None if ok.all() else ~ok), bad


def to_timestamp_array(
    values: pa.ChunkedArray | pa.Array, unit: str = "auto"
) -> tuple[pa.Array, np.ndarray]:
    """Like :func:`to_ns`, but the array is typed :data:`TIMESTAMP_TYPE`."""
    if values.type == TIMESTAMP_TYPE:  # already normalized: zero-copy
        array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        return array, np.zeros(len(array), dtype=bool)
    ns, bad = to_ns(values, unit)
    return ns.view(TIMESTAMP_TYPE), bad


# --------------------------------------------------------------------------- one instant


def _datetime_ns(value: dt.datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _number(text: str) -> int | None:
    """``text`` as a number of nanoseconds, or None when it is not a number."""
    stripped = text.strip()
    try:
        if stripped.lstrip("+-").isdigit():
            return int(stripped)
        value = float(stripped)
    except ValueError:
        return None
    return round(value) if math.isfinite(value) else None


def parse_instant(value: object, *, name: str = "time") -> int | None:
    """Turn an API time argument (``start``, ``end``...) into ns UTC.

    One rule for every API time value: **a number is nanoseconds since the
    Unix epoch**, however it arrives (a Python ``int`` or ``float``, a
    command-line argument, a query-string parameter: ``"1767225600000000000"``
    and ``1767225600000000000`` are the same instant). ``None`` gives None. A
    timezone-aware ``datetime`` is converted exactly; a naive one is refused. A
    ``date`` is midnight UTC. Any other string is RFC 3339 / ISO 8601 (no
    offset means UTC). numpy ``datetime64`` values (which carry no timezone)
    are taken as UTC; pandas Timestamps must be timezone-aware like datetimes.

    (Event *data* is different: numeric timestamps in events follow the
    store's ``timestamp_unit``, ``auto`` guessing the unit by magnitude.)

    Raises:
        QueryError: the value cannot be read as an instant.

    >>> parse_instant("1970-01-01T00:00:01+00:00")
    1000000000
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise QueryError(f"{name}: cannot read {value!r} as a time")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise QueryError(f"{name}: cannot read {value!r} as a time")
        return round(value)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        return int(value.astype("datetime64[ns]").astype(np.int64))
    if type(value).__name__ == "NaTType":  # pandas.NaT
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise QueryError(f"{name}: naive datetime; give a timezone ({value!r})")
        exact = getattr(value, "value", None)  # pandas.Timestamp keeps nanoseconds here
        if isinstance(exact, int):
            return exact
        return _datetime_ns(value)
    if isinstance(value, dt.date):
        return _datetime_ns(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC))
    if isinstance(value, str):
        number = _number(value)
        if number is not None:
            return number
        ns, bad = to_ns(pa.array([value], pa.string()))
        result = ns[0].as_py()
        if result is None:
            raise QueryError(f"{name}: cannot read {value!r} as a time")
        return int(result)
    raise QueryError(f"{name}: cannot read {value!r} ({type(value).__name__}) as a time")
