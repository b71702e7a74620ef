"""The baseline of `tidal bench eql-sequence`: the `eql` package's PythonEngine.

Run by the benchmark as a separate process (the package is AGPL; Tidal's code
never imports it):

    python bench/eql_reference.py EVENTS.ndjson QUERY

EVENTS.ndjson holds ECS events with `timestamp` in int nanoseconds; the event
category is read from `event.category`. Prints one JSON object: the events fed,
the seconds the engine took (parsing the file excluded) and the sequences found.
"""

from __future__ import annotations

import json
import sys
import time


def main(path: str, query: str) -> None:
    import eql

    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    events = [eql.Event(row["event"]["category"], row["timestamp"], row) for row in rows]
    found = []
    engine = eql.PythonEngine({"time_unit": 10**9})
    with eql.parser.skip_optimizations:
        engine.add_query(eql.parse_query(query))
    engine.add_output_hook(found.append)
    started = time.perf_counter()
    engine.stream_events(events)
    took = time.perf_counter() - started
    print(json.dumps({"events": len(events), "seconds": took, "found": len(found)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
