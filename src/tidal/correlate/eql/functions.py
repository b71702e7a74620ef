"""EQL's functions, each as Arrow compute over whole columns.

A :class:`Spec` says how many arguments a function takes, of which kinds,
whether it has a ``~`` (case-insensitive) form and what it returns;
``build(literals, insensitive)`` is called once per query with the literal
arguments (None where an argument is not a literal) and returns the function
over evaluated arguments. Arguments that must be literals (patterns,
offsets) are checked then.

``binds`` marks the functions that name a variable (``arraySearch(a, x, x == 1)``):
the compiler evaluates their condition over each element of the array and hands
the function that test, a :class:`~tidal.correlate.plan.Many` of booleans,
to reduce per event.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.eql.values import (
    Many,
    Vec,
    as_column,
    as_text,
    count_true,
    like_pattern,
    lower,
    many_any,
    modulo,
)
from tidal.errors import QueryError

__all__ = ["FUNCTIONS", "Spec"]

Run = Callable[[list[Vec], int], Vec]


@dataclass(frozen=True)
class Spec:
    """One function: arity, argument kinds (the last one repeats), ``~`` form, result,
    and whether it binds a variable (argument 2) in a condition (argument 3)."""

    min_args: int
    max_args: int | None
    kinds: tuple[str, ...]
    returns: str
    tilde: bool
    build: Callable[[Sequence[object], bool], Run]
    binds: bool = False

    def arg_kinds(self, n: int) -> list[str]:
        return [self.kinds[min(i, len(self.kinds) - 1)] for i in range(n)]


def _on_text(test: Callable[[pa.Array], pa.Array]) -> Run:
    """A function of its first argument's text, applied to each element of an array field."""
    def run(args: list[Vec], n: int) -> Vec:
        value = args[0]
        if isinstance(value, Many):
            return Many(test(as_text(value.values, len(value.values))), value.parents,
                        value.rows)
        return test(as_text(value, n))
    return run


def _literal_text(literals: Sequence[object], i: int, name: str) -> str:
    value = literals[i] if i < len(literals) else None
    if not isinstance(value, str):
        raise QueryError(f"argument {i + 1} of {name}() must be a string literal")
    return value


def _literal_int(literals: Sequence[object], i: int, name: str, default: int | None = None
                 ) -> int | None:
    value = literals[i] if i < len(literals) else default
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise QueryError(f"argument {i + 1} of {name}() must be a whole number literal")
    return value


def _text_test(name: str, kernel: Callable[..., pa.Array]) -> Callable[..., Run]:
    """``name(text, pattern)``: startsWith, endsWith, stringContains."""
    def build(literals: Sequence[object], insensitive: bool) -> Run:
        pattern = _literal_text(literals, 1, name)
        return _on_text(lambda text: kernel(text, pattern=pattern, ignore_case=insensitive))
    return build


def _length(literals: Sequence[object], insensitive: bool) -> Run:
    def run(args: list[Vec], n: int) -> Vec:
        value = args[0]
        if isinstance(value, Many):
            return pa.array(np.bincount(value.parents, minlength=value.rows))
        array = as_column(value, n)
        if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            return pc.list_value_length(array)
        return pc.utf8_length(as_text(array, n))
    return run


def _wildcard(literals: Sequence[object], insensitive: bool) -> Run:
    patterns = [like_pattern(_literal_text(literals, i, "wildcard"))
                for i in range(1, len(literals))]

    def test(array: pa.Array) -> pa.Array:
        out = pc.match_like(array, pattern=patterns[0], ignore_case=insensitive)
        for pattern in patterns[1:]:
            out = pc.or_kleene(out, pc.match_like(array, pattern=pattern,
                                                  ignore_case=insensitive))
        return out

    return _on_text(test)


def _concat(literals: Sequence[object], insensitive: bool) -> Run:
    def run(args: list[Vec], n: int) -> Vec:
        return pc.binary_join_element_wise(*[as_text(a, n) for a in args], "")
    return run


def _substring(literals: Sequence[object], insensitive: bool) -> Run:
    start = _literal_int(literals, 1, "substring", 0) or 0
    stop = _literal_int(literals, 2, "substring")

    def run(args: list[Vec], n: int) -> Vec:
        return pc.utf8_slice_codeunits(as_text(args[0], n), start=start,
                                       stop=stop if stop is not None else 2**62)
    return run


def _index_of(literals: Sequence[object], insensitive: bool) -> Run:
    needle = _literal_text(literals, 1, "indexOf")
    start = _literal_int(literals, 2, "indexOf", 0) or 0

    def run(args: list[Vec], n: int) -> Vec:
        text = as_text(args[0], n)
        tail = pc.utf8_slice_codeunits(text, start=start, stop=2**62) if start else text
        found = pc.find_substring(tail, pattern=needle, ignore_case=insensitive)
        found = pc.if_else(pc.equal(found, -1), pa.scalar(None, found.type), found)
        return pc.add(found, start) if start else found
    return run


def _between(literals: Sequence[object], insensitive: bool) -> Run:
    left = _literal_text(literals, 1, "between")
    right = _literal_text(literals, 2, "between")
    greedy = literals[3] if len(literals) > 3 else False
    if not isinstance(greedy, bool):
        raise QueryError("argument 4 of between() must be true or false")
    flags = "(?is)" if insensitive else "(?s)"
    pattern = f"{flags}{re.escape(left)}(?P<v>.{'*' if greedy else '*?'}){re.escape(right)}"

    def run(args: list[Vec], n: int) -> Vec:
        extracted = pc.extract_regex(as_text(args[0], n), pattern=pattern)
        return pc.struct_field(extracted, [0])
    return run


def _number(literals: Sequence[object], insensitive: bool) -> Run:
    base = _literal_int(literals, 1, "number", 10)
    if base != 10:
        raise QueryError("number() reads base 10 only")

    def run(args: list[Vec], n: int) -> Vec:
        text = pc.utf8_trim_whitespace(as_text(args[0], n))
        try:
            return pc.cast(text, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        ok = pc.match_substring_regex(text, pattern=r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
        cleaned = pc.if_else(ok, text, pa.scalar(None, pa.string()))
        return pc.cast(cleaned, pa.float64())
    return run


def _string(literals: Sequence[object], insensitive: bool) -> Run:
    return lambda args, n: as_text(args[0], n)


def _arith(kernel: Callable[..., pa.Array]) -> Callable[..., Run]:
    def build(literals: Sequence[object], insensitive: bool) -> Run:
        def run(args: list[Vec], n: int) -> Vec:
            return kernel(as_column(args[0], n), as_column(args[1], n))
        return run
    return build


def _modulo(literals: Sequence[object], insensitive: bool) -> Run:
    return lambda args, n: modulo(args[0], args[1], n)


def _cidr_match(literals: Sequence[object], insensitive: bool) -> Run:
    networks = []
    for i in range(1, len(literals)):
        text = _literal_text(literals, i, "cidrMatch")
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise QueryError(f"cidrMatch(): {text!r} is not a network: {exc}") from None
        if network.version != 4:
            raise QueryError(f"cidrMatch(): only IPv4 networks are supported, not {text!r}")
        networks.append((int(network.network_address), int(network.netmask)))

    def test(text: pa.Array) -> pa.Array:
        parts = pc.split_pattern(text, pattern=".")
        ok = pc.fill_null(pc.equal(pc.list_value_length(parts), 4), False)
        ok = pc.and_(ok, pc.fill_null(pc.match_substring_regex(
            text, pattern=r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$"), False))
        good = np.flatnonzero(np.asarray(ok, dtype=bool))
        octets = np.asarray(pc.cast(pc.list_flatten(parts.take(pa.array(good))), pa.int64())
                            ).reshape(-1, 4) if good.size else np.zeros((0, 4), np.int64)
        valid = np.all(octets <= 255, axis=1)
        address = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
        hit = np.zeros(len(text), dtype=bool)
        for net, mask in networks:
            hit[good[valid & ((address & mask) == net)]] = True
        return pa.array(hit, mask=np.asarray(pc.is_null(text), dtype=bool))

    return _on_text(test)


def _array_contains(literals: Sequence[object], insensitive: bool) -> Run:
    wanted = list(literals[1:])
    if any(v is None for v in wanted):
        raise QueryError("arrayContains() takes literal values after the array")
    if insensitive:
        wanted = [v.lower() if isinstance(v, str) else v for v in wanted]
    values = pa.array(wanted)

    def run(args: list[Vec], n: int) -> Vec:
        array = args[0]
        if insensitive:
            array = lower(array)
        if isinstance(array, Many):
            found = pc.is_in(array.values, value_set=values.cast(array.values.type))
            return many_any(Many(found, array.parents, array.rows))
        column = as_column(array, n)
        return pc.is_in(column, value_set=values.cast(column.type))
    return run


def _array_search(literals: Sequence[object], insensitive: bool) -> Run:
    """``arraySearch``: true if the test holds for any element (no array: false)."""
    def run(args: list[Vec], n: int) -> Vec:
        tested = args[0]
        assert isinstance(tested, Many)
        return pa.array(count_true(tested) > 0)
    return run


def _array_count(literals: Sequence[object], insensitive: bool) -> Run:
    """``arrayCount``: how many elements the test holds for (no array: 0)."""
    def run(args: list[Vec], n: int) -> Vec:
        tested = args[0]
        assert isinstance(tested, Many)
        return pa.array(count_true(tested))
    return run


FUNCTIONS: dict[str, Spec] = {
    "add": Spec(2, 2, ("number",), "number", False, _arith(pc.add)),
    "subtract": Spec(2, 2, ("number",), "number", False, _arith(pc.subtract)),
    "multiply": Spec(2, 2, ("number",), "number", False, _arith(pc.multiply)),
    "divide": Spec(2, 2, ("number",), "number", False, _arith(pc.divide)),
    "modulo": Spec(2, 2, ("number",), "number", False, _modulo),
    "between": Spec(3, 4, ("text", "text", "text", "bool"), "text", True, _between),
    "cidrmatch": Spec(2, None, ("text",), "bool", False, _cidr_match),
    "concat": Spec(1, None, ("any",), "text", False, _concat),
    "endswith": Spec(2, 2, ("text",), "bool", True, _text_test("endsWith", pc.ends_with)),
    "startswith": Spec(2, 2, ("text",), "bool", True, _text_test("startsWith", pc.starts_with)),
    "stringcontains": Spec(2, 2, ("text",), "bool", True,
                           _text_test("stringContains", pc.match_substring)),
    "indexof": Spec(2, 3, ("text", "text", "number"), "number", True, _index_of),
    "length": Spec(1, 1, ("any",), "number", False, _length),
    "number": Spec(1, 2, ("text", "number"), "number", False, _number),
    "string": Spec(1, 1, ("any",), "text", False, _string),
    "substring": Spec(2, 3, ("text", "number"), "text", False, _substring),
    "wildcard": Spec(2, None, ("text",), "bool", True, _wildcard),
    "arraycontains": Spec(2, None, ("any",), "bool", True, _array_contains),
    "arraysearch": Spec(3, 3, ("array", "variable", "bool"), "bool", False, _array_search,
                        binds=True),
    "arraycount": Spec(3, 3, ("array", "variable", "bool"), "number", False, _array_count,
                       binds=True),
}
"""Every function by its lower-case name."""
