"""Child process of the rules crash test: append events that the store's rules
correlate, until killed.

Run as ``python _rules_child.py STORE_DIR ROUND``: it opens the store (whose
rules then replay what is stored and run live), prints ``ready`` and appends
batch after batch, printing ``ack <last_seq>`` after each append returns.
"""

from __future__ import annotations

import random
import sys

T0 = 1_767_225_600_000_000_000
S = 10**9


def batch(round_no: int, k: int) -> list[dict]:
    """Batch ``k`` of a round, later in time than every earlier one (no late events)."""
    rng = random.Random(round_no * 100_003 + k)
    base = (round_no * 1_000 + k) * 20
    return [{"timestamp": T0 + (base + rng.randrange(20)) * S,
             "svc": rng.choice(["fe", "be", "db"]), "rid": f"r{rng.randrange(6)}"}
            for _ in range(rng.randint(1, 12))]


def main(argv: list[str]) -> int:
    import tidal

    store_dir, round_no = argv[1], int(argv[2])
    store = tidal.open(store_dir)
    print("ready", flush=True)
    k = 0
    while True:
        rows = sorted(batch(round_no, k), key=lambda e: e["timestamp"])
        receipt = store.append(rows)
        print("ack", receipt.last_seq, flush=True)
        k += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
