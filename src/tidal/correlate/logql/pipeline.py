"""A log pipeline over a :class:`~tidal.correlate.logql.frame.Frame`, stage by stage.

Each stage works on whole columns: line filters are pyarrow substring and RE2
kernels, parsers run in DuckDB (:mod:`.extract`), label filters reuse CorQL's
matchers (Prometheus semantics: an absent label reads as ``""``) or compare
numbers in numpy, and templates are element-wise string joins.

Numbers in label filters: a label that is absent or does not read as a number
fails the comparison (Loki keeps such an entry, marked ``__error__``).
A parser marks a line it cannot read with ``__error__="JSONParserErr"`` (or
``LogfmtParserErr``), as Loki does; a parsed key that names a label of the
stream is stored as ``<key>_extracted``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidal.correlate.corql.matchers import compile_matchers
from tidal.correlate.logql.ast import (
    LabelAnd,
    LabelCompare,
    LabelExpr,
    LabelFilter,
    LabelFormat,
    LabelMatch,
    LabelOr,
    LineFilter,
    LineFormat,
    Parser,
    Stage,
)
from tidal.correlate.logql.extract import parse_json, parse_logfmt
from tidal.correlate.logql.frame import Frame, concat
from tidal.correlate.logql.parser import TEMPLATE_FIELD

__all__ = ["ERROR_LABEL", "run_pipeline"]

ERROR_LABEL = "__error__"
_NUMERIC = r"^\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*$"
_COMPARE: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
    "<": operator.lt, "<=": operator.le,
}
_NULL = pa.scalar(None, pa.string())


def run_pipeline(frame: Frame, stages: Sequence[Stage]) -> Frame:
    """``frame`` through every stage, in order; stops early when nothing is left."""
    for stage in stages:
        if not len(frame):
            return frame
        frame = _apply(frame, stage)
    return frame


def _apply(frame: Frame, stage: Stage) -> Frame:
    if isinstance(stage, LineFilter):
        return frame.filter(line_mask(frame.line, stage))
    if isinstance(stage, Parser):
        return _parse(frame, stage)
    if isinstance(stage, LabelFilter):
        return frame.filter(label_mask(frame, stage.expr))
    if isinstance(stage, LineFormat):
        return Frame(frame.ts, frame.seq, render(frame, stage.template), frame.labels,
                     frame.stream)
    return _label_format(frame, stage)


def line_mask(lines: pa.Array, stage: LineFilter) -> np.ndarray:
    """Whether each line passes ``stage``.

    >>> line_mask(pa.array(["GET /a", "POST /b"]), LineFilter("|~", "^G")).tolist()
    [True, False]
    """
    if stage.op in ("|=", "!="):
        hits = pc.match_substring(lines, stage.value)
    else:
        hits = pc.match_substring_regex(lines, stage.value)
    mask = np.asarray(pc.fill_null(hits, False).to_numpy(zero_copy_only=False), dtype=np.bool_)
    return mask if stage.op.startswith("|") else ~mask


def _parse(frame: Frame, stage: Parser) -> Frame:
    parsed, bad = (parse_json if stage.kind == "json" else parse_logfmt)(frame.line)
    labels = dict(frame.labels)
    for name, values in parsed.items():
        labels[f"{name}_extracted" if name in frame.stream else name] = values
    if bad.any():
        error = "JSONParserErr" if stage.kind == "json" else "LogfmtParserErr"
        labels[ERROR_LABEL] = pc.if_else(pa.array(bad), pa.scalar(error, pa.string()), _NULL)
    return frame.with_labels(labels)


def label_mask(frame: Frame, expr: LabelExpr) -> np.ndarray:
    """Whether each entry's labels satisfy ``expr``."""
    if isinstance(expr, LabelAnd):
        return label_mask(frame, expr.left) & label_mask(frame, expr.right)
    if isinstance(expr, LabelOr):
        return label_mask(frame, expr.left) | label_mask(frame, expr.right)
    if isinstance(expr, LabelMatch):
        name = expr.matcher.path
        table = pa.table({name: frame.labels[name]}) if name in frame.labels \
            else pa.table({"_": pa.nulls(len(frame), pa.string())})
        return compile_matchers([expr.matcher]).mask(table)
    return _compare(frame, expr)


def _compare(frame: Frame, expr: LabelCompare) -> np.ndarray:
    values = frame.labels.get(expr.name)
    if values is None:
        return np.zeros(len(frame), dtype=np.bool_)
    numeric = pc.fill_null(pc.match_substring_regex(values, _NUMERIC), False)
    text = pc.utf8_trim_whitespace(pc.if_else(numeric, values, _NULL))
    numbers = np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False),
                         dtype=np.float64)
    present = ~np.isnan(numbers)
    with np.errstate(invalid="ignore"):
        return present & _COMPARE[expr.op](numbers, expr.value)


def render(frame: Frame, template: str) -> pa.Array:
    """``template`` with each ``{{.label}}`` (absent: ``""``) and ``{{__line__}}``
    filled in, per entry."""
    pieces: list[pa.Array | pa.Scalar] = []
    at = 0
    for field in TEMPLATE_FIELD.finditer(template):
        pieces.append(pa.scalar(template[at:field.start()], pa.string()))
        name, is_line = field.group(1), field.group(2)
        values = frame.line if is_line else frame.labels.get(name)
        pieces.append(pc.fill_null(values, "") if values is not None
                      else pa.scalar("", pa.string()))
        at = field.end()
    pieces.append(pa.scalar(template[at:], pa.string()))
    if not any(isinstance(p, pa.Array) for p in pieces):
        constant = "".join(str(p.as_py()) for p in pieces)
        return pa.nulls(len(frame), pa.string()).fill_null(constant)
    return concat(pieces)


def _label_format(frame: Frame, stage: LabelFormat) -> Frame:
    labels = dict(frame.labels)
    renamed: set[str] = set()
    for name, source, is_template in stage.items:
        if is_template:
            values = render(frame, source)
            labels[name] = pc.if_else(pc.equal(values, ""), _NULL, values)
        else:
            labels[name] = frame.labels.get(source, pa.nulls(len(frame), pa.string()))
            if source != name:
                renamed.add(source)
    for source in renamed - {name for name, _, _ in stage.items}:
        labels.pop(source, None)
    return frame.with_labels(labels)
