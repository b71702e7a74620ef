"""Timestamps as RFC 3339 text, many at once: ``YYYY-MM-DDTHH:MM:SS[.fff…][Z]``.

Arrow's ``strftime`` takes about a microsecond a value; this kernel writes the
fixed-width text of each value straight into one byte buffer (days to a civil
date by Howard Hinnant's ``civil_from_days``), some 50 times faster. Years 1
to 9999 only: callers check :func:`in_range` and fall back to ``strftime``.
"""

from __future__ import annotations

import numba
import numpy as np

# Years 0001 to 9999, in seconds since the epoch.
MIN_S = -62135596800
MAX_S = 253402300799


@numba.njit(cache=True, nogil=True)
def _digits(out: np.ndarray, at: int, value: int, width: int) -> None:
    for k in range(width - 1, -1, -1):
        out[at + k] = 48 + value % 10
        value //= 10


@numba.njit(cache=True, nogil=True)
def rfc3339(values: np.ndarray, per_second: int, fraction_digits: int,
            zulu: bool) -> np.ndarray:
    """The text of each of ``values`` (``per_second`` units a second), each
    ``19 + (1 + fraction_digits if fraction_digits else 0) + zulu`` bytes, one after another."""
    width = 19 + (fraction_digits + 1 if fraction_digits else 0) + (1 if zulu else 0)
    n = values.shape[0]
    out = np.empty(n * width, np.uint8)
    for i in range(n):
        value = values[i]
        seconds = value // per_second
        fraction = value - seconds * per_second
        days = seconds // 86400
        second_of_day = seconds - days * 86400
        z = days + 719468
        era = (z if z >= 0 else z - 146096) // 146097
        doe = z - era * 146097
        yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
        doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
        mp = (5 * doy + 2) // 153
        day = doy - (153 * mp + 2) // 5 + 1
        month = mp + 3 if mp < 10 else mp - 9
        year = yoe + era * 400 + (1 if month <= 2 else 0)
        at = i * width
        _digits(out, at, year, 4)
        out[at + 4] = 45  # -
        _digits(out, at + 5, month, 2)
        out[at + 7] = 45
        _digits(out, at + 8, day, 2)
        out[at + 10] = 84  # T
        _digits(out, at + 11, second_of_day // 3600, 2)
        out[at + 13] = 58  # :
        _digits(out, at + 14, second_of_day // 60 % 60, 2)
        out[at + 16] = 58
        _digits(out, at + 17, second_of_day % 60, 2)
        end = at + 19
        if fraction_digits:
            out[end] = 46  # .
            _digits(out, end + 1, fraction, fraction_digits)
            end += 1 + fraction_digits
        if zulu:
            out[end] = 90  # Z
    return out


def in_range(values: np.ndarray, per_second: int) -> bool:
    """Whether every value falls in the years 1 to 9999 (the kernel's fixed width)."""
    if not values.size:
        return True
    return bool(values.min() // per_second >= MIN_S and values.max() // per_second <= MAX_S)
