"""A writer in another process, driven line by line over stdin.

Run as ``python _writer_child.py STORE_DIR``. Commands: ``append FIRST N``
(events with ids FIRST..FIRST+N-1, see ``events.batch``), ``flush``,
``compact``, ``quit``. Each answer is one line, ``ok <max_seq>``, printed
after the command returned.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tidal


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from events import batch  # beside this script

    with tidal.open(sys.argv[1], compact_min_rows=10_000) as store:
        print(f"ok {store.max_seq()}", flush=True)
        for line in sys.stdin:
            words = line.split()
            if words[0] == "append":
                store.append(batch(int(words[1]), int(words[2])))
            elif words[0] == "flush":
                store.flush()
            elif words[0] == "compact":
                store.compact()
            elif words[0] == "quit":
                break
            print(f"ok {store.max_seq()}", flush=True)


if __name__ == "__main__":
    main()
