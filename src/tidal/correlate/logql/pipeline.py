"""A log pipeline over a :class:`~tidal.correlate.logql.frame.Frame`, stage by stage.

Each stage works on whole columns: line filters are pyarrow substring and RE2
kernels, parsers run in DuckDB or RE2 (:mod:`.extract`), label filters reuse
CorQL's matchers (Prometheus semantics: an absent label reads as ``""``) or
compare numbers in numpy, and templates are element-wise string joins.

Numbers in label filters: a label that is absent or does not read as a number
(or a duration, or a byte size, as the filter's value is written) fails the
comparison (Loki keeps such an entry, marked ``__error__``).
``| unwrap`` reads a label as the entry's sample (numbers, or seconds of a
duration, or bytes) and takes the label away; an entry whose label does not
read gets ``__error__="SampleExtractionErr"``.
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

from tidal.correlate.corql.ast import Matcher
from tidal.correlate.corql.matchers import compile_matchers
from tidal.correlate.logql.ast import (
    Decolorize,
    DropKeep,
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
    Unwrap,
)
from tidal.correlate.logql.extract import (
    parse_json,
    parse_json_paths,
    parse_logfmt,
    parse_regex,
)
from tidal.correlate.logql.frame import Frame, concat
from tidal.correlate.logql.parse_log import TEMPLATE_FIELD
from tidal.correlate.logql.patterns import json_path, pattern_regex
from tidal.correlate.logql.units import byte_sizes, durations

__all__ = ["ERROR_LABEL", "run_pipeline"]

ERROR_LABEL = "__error__"
_NUMERIC = r"^\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*$"
_COMPARE: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
    "<": operator.lt, "<=": operator.le,
}
_NULL = pa.scalar(None, pa.string())
_ANSI = r"\x1b\[[0-9;?]*[A-Za-z]"


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
        return frame.with_line(render(frame, stage.template))
    if isinstance(stage, LabelFormat):
        return _label_format(frame, stage)
    if isinstance(stage, DropKeep):
        return _drop_keep(frame, stage)
    if isinstance(stage, Decolorize):
        return frame.with_line(pc.replace_substring_regex(frame.line, _ANSI, ""))
    return _unwrap(frame, stage)


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
    bad = np.zeros(len(frame), dtype=np.bool_)
    if stage.kind in ("pattern", "regexp"):
        regex = pattern_regex(stage.expression) if stage.kind == "pattern" \
            else stage.expression
        parsed = parse_regex(frame.line, regex)
    elif stage.kind == "json" and stage.params:
        paths = {name: json_path(expression) or "$" for name, expression in stage.params}
        parsed, bad = parse_json_paths(frame.line, paths)
    else:
        parsed, bad = (parse_json if stage.kind == "json" else parse_logfmt)(frame.line)
        if stage.params:  # logfmt a=b: label a is key b
            parsed = {name: parsed[key] for name, key in stage.params if key in parsed}
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
    if expr.unit == "duration":
        numbers = durations(values)
    elif expr.unit == "bytes":
        numbers = byte_sizes(values)
    else:
        numbers = numbers_of(values)
    present = ~np.isnan(numbers)
    with np.errstate(invalid="ignore"):
        return present & _COMPARE[expr.op](numbers, expr.value)


def numbers_of(values: pa.Array) -> np.ndarray:
    """Each label value read as a number (NaN where absent or not a number).

    >>> numbers_of(pa.array([" 1.5", "x", None, "-2e3"])).tolist()
    [1.5, nan, nan, -2000.0]
    """
    numeric = pc.fill_null(pc.match_substring_regex(values, _NUMERIC), False)
    text = pc.utf8_trim_whitespace(pc.if_else(numeric, values, _NULL))
    return np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False),
                      dtype=np.float64)


def _drop_keep(frame: Frame, stage: DropKeep) -> Frame:
    """Labels removed (``drop``) or all but these removed (``keep``); a
    ``name=value`` item removes (or keeps) the label only where it matches."""
    labels: dict[str, pa.Array] = {}
    by_name: dict[str, list[Matcher]] = {}
    for m in stage.matchers:
        by_name.setdefault(m.path, []).append(m)
    for name, values in frame.labels.items():
        listed = name in stage.names
        if name in by_name:
            hit = pa.array(compile_matchers(by_name[name]).mask(pa.table({name: values})))
            keep_where = pc.invert(hit) if stage.kind == "drop" else hit
            if stage.kind == "keep" and listed:
                labels[name] = values
            else:
                labels[name] = pc.if_else(keep_where, values, _NULL)
        elif listed == (stage.kind == "keep"):
            labels[name] = values
    return frame.with_labels(labels)


def _unwrap(frame: Frame, stage: Unwrap) -> Frame:
    values = frame.labels.get(stage.label)
    if values is None:
        sample = np.full(len(frame), np.nan)
    elif stage.conversion in ("duration", "duration_seconds"):
        sample = durations(values)
    elif stage.conversion == "bytes":
        sample = byte_sizes(values)
    else:
        sample = numbers_of(values)
    labels = {k: v for k, v in frame.labels.items() if k != stage.label}
    bad = np.isnan(sample)
    if bad.any():
        error = pc.if_else(pa.array(bad), pa.scalar("SampleExtractionErr", pa.string()), _NULL)
        if ERROR_LABEL in labels:
            error = pc.coalesce(labels[ERROR_LABEL], error)
        labels[ERROR_LABEL] = error
    out = frame.with_labels(labels)
    return Frame(out.ts, out.seq, out.line, out.labels, out.stream, sample)


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
