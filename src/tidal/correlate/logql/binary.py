"""Binary operations between LogQL values (numbers and vectors), as Prometheus
defines them.

* Arithmetic (``+ - * / % ^``) applies element-wise at every step; a series
  keeps its labels. ``%`` is Go's ``math.Mod`` (the sign of the dividend) and
  ``x / 0`` is ``±Inf`` or ``NaN``.
* Comparisons keep the left side's samples where they hold, or with ``bool``
  give 1 or 0 at every step where both sides have a value.
* Two vectors pair their series by their labels, or only those ``on (...)``,
  or all but those ``ignoring (...)``; each pair gives a series with the left
  side's labels (only the ``on`` labels, or without the ``ignoring`` ones). A
  side may hold at most one series per pairing at a step, unless
  ``group_left``/``group_right`` lets the many side match one of the other.
* ``and`` keeps the left series' samples whose pairing has a right sample at
  that step, ``unless`` those that have none, ``or`` every left sample and the
  right samples whose pairing has no left sample at that step.

Values are (series × steps) arrays: the work per step is numpy's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tidal.correlate.logql.ast import COMPARISONS, BinaryOp, BinaryOperator, VectorMatching
from tidal.correlate.logql.metric import Scalar, SeriesValues
from tidal.errors import QueryError

__all__ = ["Value", "apply_binary"]

Value = Scalar | list[SeriesValues]
Key = tuple[tuple[str, str], ...]

_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "%": np.fmod,
    "^": np.power, "==": np.equal, "!=": np.not_equal, ">": np.greater,
    ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
}


def apply_binary(node: BinaryOp, left: Value, right: Value) -> Value:
    """``left node.op right``.

    Raises:
        QueryError: two series of one side pair with the same series of the
            other at one step (give ``on``/``ignoring`` or a group modifier).

    >>> from tidal.correlate.logql.parser import parse
    >>> v = [SeriesValues({"a": "1"}, np.array([2.0, 5.0]), np.array([True, True]))]
    >>> out = apply_binary(parse("vector(0) > 3"), v, Scalar(np.array([3.0, 3.0])))
    >>> out[0].present.tolist()
    [False, True]
    """
    op = node.op
    if isinstance(left, Scalar) and isinstance(right, Scalar):
        return Scalar(_arith(op, left.values, right.values))
    if isinstance(right, Scalar):
        assert not isinstance(left, Scalar)
        return _with_scalar(node, left, right.values, scalar_left=False)
    if isinstance(left, Scalar):
        return _with_scalar(node, right, left.values, scalar_left=True)
    if op in ("and", "or", "unless"):
        return _set_operation(op, left, right, node.matching)
    return _vector_vector(node, left, right)


def _arith(op: BinaryOperator, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = _OPS[op](a, b)
    return np.asarray(out, dtype=np.float64)


def _with_scalar(node: BinaryOp, vector: list[SeriesValues], scalar: np.ndarray,
                 scalar_left: bool) -> list[SeriesValues]:
    out = []
    for s in vector:
        a, b = (scalar, s.values) if scalar_left else (s.values, scalar)
        result = _arith(node.op, a, b)
        if node.op not in COMPARISONS:
            out.append(SeriesValues(s.labels, result, s.present))
        elif node.bool_modifier:
            out.append(SeriesValues(s.labels, result, s.present))
        else:
            present = s.present & (result != 0)
            if present.any():
                out.append(SeriesValues(s.labels, s.values, present))
    return out


def _key(labels: dict[str, str], matching: VectorMatching | None) -> Key:
    if matching is None:
        return tuple(sorted(labels.items()))
    if matching.on:
        return tuple(sorted((k, v) for k, v in labels.items() if k in matching.labels))
    return tuple(sorted((k, v) for k, v in labels.items() if k not in matching.labels))


def _result_labels(left: dict[str, str], right: dict[str, str], matching: VectorMatching | None
                   ) -> dict[str, str]:
    if matching is None:
        return dict(left)
    if not matching.group:
        return dict(_key(left, matching))
    out = dict(left)
    for name in matching.include:
        if name in right:
            out[name] = right[name]
        else:
            out.pop(name, None)
    return out


def _one_per_key(series: list[SeriesValues], matching: VectorMatching | None, side: str
                 ) -> dict[Key, tuple[np.ndarray, np.ndarray, dict[str, str]]]:
    """Per pairing key: the one value per step (checked), presence, and labels."""
    merged: dict[Key, tuple[np.ndarray, np.ndarray, dict[str, str]]] = {}
    for s in series:
        key = _key(s.labels, matching)
        if key not in merged:
            merged[key] = (s.values.copy(), s.present.copy(), s.labels)
            continue
        values, present, labels = merged[key]
        if (present & s.present).any():
            shown = "{" + ", ".join(f'{k}="{v}"' for k, v in key) + "}"
            raise QueryError(
                f"found duplicate series for the match group {shown} on the {side} hand-side "
                "of the operation: many-to-many matching not allowed: matching labels must be "
                "unique on one side (use on(...), ignoring(...) or group_left/group_right)")
        values[s.present] = s.values[s.present]
        present |= s.present
    return merged


def _vector_vector(node: BinaryOp, left: list[SeriesValues], right: list[SeriesValues]
                   ) -> list[SeriesValues]:
    matching = node.matching
    group = matching.group if matching is not None else ""
    if group == "right":  # many on the right: pair from the right side, keep its labels
        one = _one_per_key(left, matching, "left")
        many = right
    else:
        one = _one_per_key(right, matching, "right")
        many = left
        if not group:
            _one_per_key(left, matching, "left")
    out = []
    for s in many:
        match = one.get(_key(s.labels, matching))
        if match is None:
            continue
        other, other_present, other_labels = match
        present = s.present & other_present
        if not present.any():
            continue
        a, b = (other, s.values) if group == "right" else (s.values, other)
        result = _arith(node.op, a, b)
        if node.op in COMPARISONS and not node.bool_modifier:
            present = present & (result != 0)
            result = a
        labels = _result_labels(s.labels, other_labels, matching)
        if present.any():
            out.append(SeriesValues(labels, result, present))
    return out


def _set_operation(op: str, left: list[SeriesValues], right: list[SeriesValues],
                   matching: VectorMatching | None) -> list[SeriesValues]:
    n_steps = len(left[0].values) if left else len(right[0].values) if right else 0

    def presence(series: list[SeriesValues]) -> dict[Key, np.ndarray]:
        seen: dict[Key, np.ndarray] = {}
        for s in series:
            key = _key(s.labels, matching)
            seen[key] = seen.get(key, np.zeros(n_steps, dtype=np.bool_)) | s.present
        return seen

    if op == "or":
        taken = presence(left)
        out = list(left)
        for s in right:
            covered = taken.get(_key(s.labels, matching))
            present = s.present if covered is None else s.present & ~covered
            if present.any():
                out.append(SeriesValues(s.labels, s.values, present))
        return out
    others = presence(right)
    out = []
    for s in left:
        other = others.get(_key(s.labels, matching), np.zeros(n_steps, dtype=np.bool_))
        present = s.present & (other if op == "and" else ~other)
        if present.any():
            out.append(SeriesValues(s.labels, s.values, present))
    return out
