"""The registry of ``tidal bench`` cases: each registers itself by name with :func:`case`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tidal.bench.figures import Context, Figure

__all__ = ["CASES", "Case", "case"]

CaseFn = Callable[[Context], list[Figure]]


@dataclass(frozen=True)
class Case:
    """A registered benchmark: ``fn(ctx)`` returns its figures."""

    name: str
    about: str
    fn: CaseFn


CASES: dict[str, Case] = {}


def case(name: str, about: str) -> Callable[[CaseFn], CaseFn]:
    """Register the decorated function as benchmark ``name``."""
    def register(fn: CaseFn) -> CaseFn:
        CASES[name] = Case(name, about, fn)
        return fn
    return register
