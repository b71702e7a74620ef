"""EQL, Elastic's Event Query Language: text → AST (:mod:`.parser`)."""

from tidal.correlate.eql.parser import parse

__all__ = ["parse"]
