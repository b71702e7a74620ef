"""Benchmarks: seeded workload generators and the harness behind ``tidal bench``.

:mod:`tidal.bench.workloads` generates the ``services``, ``k8s`` and
``security`` workloads; :func:`tidal.bench.harness.run` runs the benchmarks of
:mod:`tidal.bench.cases`.
"""

from __future__ import annotations

from tidal.bench.workloads import (
    EPOCH_NS,
    k8s,
    security,
    services,
    to_ndjson,
    write_ndjson,
)

__all__ = ["EPOCH_NS", "k8s", "security", "services", "to_ndjson", "write_ndjson"]
