"""CorQL, a PromQL/LogQL-style join language over event streams: text → AST
(:mod:`.parser`), and label matchers → row masks over Arrow tables (:mod:`.matchers`).

>>> q = parse('events({service="web"})[5m] and on(request_id) events({service="db"})')
>>> str(q.links[0])
'and on(request_id) events({service="db"})'
"""

from tidal.correlate.corql.ast import KeyPair, Link, Matcher, Query, Selector
from tidal.correlate.corql.matchers import MatcherPredicate, compile_matchers, prune
from tidal.correlate.corql.parser import check_sources, parse

__all__ = [
    "KeyPair",
    "Link",
    "Matcher",
    "MatcherPredicate",
    "Query",
    "Selector",
    "check_sources",
    "compile_matchers",
    "parse",
    "prune",
]
