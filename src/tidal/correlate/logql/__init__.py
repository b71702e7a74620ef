"""LogQL, Grafana Loki's query language (a subset), over a Tidal store snapshot.

Log queries (``{app="api"} |= "err" | json | status >= 500``) return streams;
metric queries (``sum by (level) (count_over_time({app="api"}[1m]))``) return
series. Text → AST in :mod:`.parser`; evaluation in :mod:`.evaluate`, over
whole Arrow columns; the entry point is :func:`run_logql`.

>>> is_metric('sum by (level) (rate({app="api"} |= "err" [5m]))')
True
"""

from tidal.correlate.logql.ast import LogQuery, Query
from tidal.correlate.logql.run import (
    LogqlOptions,
    LogqlResult,
    Series,
    Stream,
    is_metric,
    parse_logql,
    run_logql,
)

__all__ = [
    "LogQuery",
    "LogqlOptions",
    "LogqlResult",
    "Query",
    "Series",
    "Stream",
    "is_metric",
    "parse_logql",
    "run_logql",
]
