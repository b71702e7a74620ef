"""Running a :class:`~tidal.correlate.plan.Sample` over a store snapshot (EQL's
``sample``, Elastic 8.x).

``sample by k, ... [stage] [stage] ...`` finds, per join key, one event of each
stage, in no particular time order. The join key of a stage is the sample's
``by`` values followed by the stage's own (a sample needs at least one, as in
Elastic); a null key never joins. The rules follow Elastic's
``SampleIterator``, with events taken in (timestamp, ``_seq``) order where
Elastic takes them as its shards return them:

* per key, each stage's candidates are its first ``stages + max_samples_per_key
  - 1`` matching events (what Elastic fetches per key and filter);
* a sample takes one candidate per stage, all distinct events (one event that
  matches two stages serves only one of them in a sample); the samples of a
  key are found in order: the first candidate of each stage not taken by an
  earlier stage, then (for ``max_samples_per_key`` > 1) the next pick that
  varies the last stage first, backing up to earlier stages when a stage runs
  out, as a backtracking search does. Samples of one key may share events;
* samples come back ordered by their key values (ascending, each key in
  turn, as Elastic's composite aggregation orders them), then in the order
  found.

Each sample is rows of ``Result.events`` (``_sequence``, its number, and
``_stage``, 1-based, first; one row per stage, in stage order) and a
:class:`~tidal.correlate.result.Correlation` (``start``/``end``: its earliest
and latest event). Memory: the candidate lists, at most ``stages × (stages +
max_samples_per_key - 1)`` events per key.
"""

from __future__ import annotations

from contextlib import closing

import numpy as np
import pyarrow as pa

from tidal.correlate._kernels_keys import KeyCodes
from tidal.correlate._kernels_sample import collect, pick
from tidal.correlate.matching import (
    Kept,
    KeyedStages,
    grown,
    key_columns,
    matched_batches,
    results,
)
from tidal.correlate.pipes import sort_ranks
from tidal.correlate.plan import Sample
from tidal.correlate.result import Correlation
from tidal.store.readers import Snapshot

__all__ = ["run_sample"]


def run_sample(snapshot: Snapshot, node: Sample, text: str
               ) -> tuple[pa.Table, list[Correlation]]:
    """Up to ``node.max_per_key`` samples of each join key, ordered by key."""
    width = len(node.stages)
    keyed = KeyedStages.of(node.stages, node.key_names)
    coder = KeyCodes()
    counts = np.zeros((0, width), dtype=np.int64)
    lists = np.zeros((0, width, width + node.max_per_key - 1), dtype=np.int64)
    kept = Kept()
    with closing(matched_batches(snapshot, node.read, keyed, coder)) as batches:
        for batch in batches:
            if not batch.rows.num_rows:
                continue
            counts, lists = grown(counts, len(coder)), grown(lists, len(coder))
            taken = collect(batch.codes, batch.ids, counts, lists)
            if taken.any():  # (every candidate may end up in a sample: none is dropped)
                kept.add(batch.rows.filter(pa.array(taken)), batch.ids[taken])
    found, _ = pick(counts, lists, len(coder), node.max_per_key)
    candidates, candidate_ids = kept.all(snapshot.schema)
    heads = candidates.take(pa.array(np.searchsorted(candidate_ids, found[:, 0]))) \
        if len(found) else candidates.slice(0, 0)
    order = _by_key(key_columns(heads, keyed.keys[0]), len(found))
    return results(snapshot, kept, snapshot.schema, found[order], keyed, text)


def _by_key(keys: list[pa.Array], count: int) -> np.ndarray:
    """The order of the samples by their key values (stable: ties keep their order)."""
    if not count:
        return np.zeros(0, dtype=np.int64)
    return np.lexsort([np.arange(count), *(sort_ranks(k) for k in reversed(keys))])
