"""Deterministic benchmark workloads: ``services``, ``k8s`` and ``security``.

Every generator is vectorised (numpy plus ``pyarrow.compute``; no per-event
Python), seeded, and returns a ``pa.Table`` whose ``timestamp`` column is
``timestamp("ns", tz="UTC")``, starting at :data:`EPOCH_NS` and sorted by time
(``services`` leaves a small seeded fraction slightly late, as real logs do).
``k8s`` and ``security`` plant incident chains and return their counts, which a
correlation rule must find exactly (:func:`k8s_chains` also says where each is).
:func:`to_ndjson` renders a table as NDJSON.

>>> services(1000, seed=1).num_rows
1000
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator, Mapping, Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EPOCH_NS = 1_767_225_600 * 10**9
"""2026-01-01T00:00:00Z in nanoseconds: where every workload starts."""

S = 10**9
MIN = 60 * S
HOUR = 60 * MIN
TIMESTAMP = pa.timestamp("ns", tz="UTC")

_SUFFIX = b"bcdfghjklmnpqrstvwxz2456789"  # the alphabet of Kubernetes pod suffixes
_HEX = b"0123456789abcdef"
_SERVICES = ("frontend", "checkout", "cart", "payment", "inventory", "shipping", "auth",
             "search", "recommendation", "catalog", "email", "ads")
_STATUS = np.array([200, 201, 204, 302, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504])
_STATUS_P = np.array([.80, .05, .04, .03, .012, .01, .004, .015, .003, .006, .01, .006, .004, .004])
_MESSAGES = {  # status class -> templates; {names} are per-row variables
    "ok": ("GET /products/{item} {status} {latency}ms", "cart add sku-{item} qty={qty}",
           "order {order} placed total={amount}", "payment ok order={order} {amount} USD",
           "cache hit product:{item}", "cache miss user:{user} {latency}ms",
           "search {count} hits in {latency}ms", "email sent order={order}",
           "reserved {qty}x sku-{item}", "call {upstream} {status} {latency}ms",
           "session refresh {user}", "shipping quote {amount} USD"),
    "client": ("bad request qty={qty}", "auth failed {user}: token expired",
               "rate limited {user}: {count}/min", "sku-{item} not found"),
    "server": ("upstream {upstream} {status} after {latency}ms retry={retry}",
               "timeout {latency}ms calling {upstream}", "db pool exhausted ({count} waiting)",
               "KeyError('sku-{item}') in handler"),
}
_K8S_REASONS = (  # reason, type, weight in the background, message template
    ("Scheduled", "Normal", 12, "Successfully assigned {ns}/{pod} to {node}"),
    ("Pulling", "Normal", 10, 'Pulling image "{image}"'),
    ("Pulled", "Normal", 12, 'Successfully pulled image "{image}" in {secs}s'),
    ("Created", "Normal", 12, "Created container {app}"),
    ("Started", "Normal", 12, "Started container {app}"),
    ("Killing", "Normal", 8, "Stopping container {app}"),
    ("Unhealthy", "Warning", 12, "Readiness probe failed: HTTP probe failed with statuscode: "
     "{code}"),
    ("BackOff", "Warning", 6, "Back-off restarting failed container {app} in pod {pod}_{ns}"),
    ("Evicted", "Warning", 2, "The node was low on resource: memory. Container {app} was "
     "using {mem}Ki, which exceeds its request of 0."),
    ("FailedScheduling", "Warning", 3, "0/{nodes} nodes are available: {k} Insufficient cpu."),
    ("FailedMount", "Warning", 2, 'MountVolume.SetUp failed for volume "{app}-data" : '
     'configmap "{app}-env" not found'),
    ("SandboxChanged", "Normal", 3, "Pod sandbox changed, it will be killed and re-created."),
    ("OOMKilled", "Warning", 0, "Container {app} in pod {pod} was OOMKilled (limit {mem}Mi)"),
    ("ConfigMapUpdated", "Normal", 0, 'ConfigMap "{ns}-config" updated in namespace {ns}'),
    ("SecretUpdated", "Normal", 0, 'Secret "{ns}-credentials" updated in namespace {ns}'),
    ("Failed", "Warning", 0, "Error: container {app} exited with code {exit}"),
    ("NodeHasMemoryPressure", "Warning", 0, "Node {node} status is now: NodeHasMemoryPressure"),
    ("NodeHasDiskPressure", "Warning", 0, "Node {node} status is now: NodeHasDiskPressure"),
)
_R = {name: i for i, (name, *_rest) in enumerate(_K8S_REASONS)}
_NAMESPACES = ("default", "payments", "checkout", "search", "monitoring", "ingress-nginx",
               "data", "ml-serving", "auth", "logging", "batch", "web")
_APPS = ("api", "worker", "web", "cache", "db-proxy", "scheduler", "gateway", "indexer")
_PROCS = ("bash", "python3", "java", "node", "git", "ssh", "curl", "cron", "vim", "make")
_DAEMONS = ("sshd", "nginx", "chrome", "systemd-resolved", "dockerd", "postgres")
_DROPPERS = ("powershell.exe", "curl", "nc", "python3", "wget")
_PORTS = np.array([443, 80, 53, 22, 8080, 3389, 5432, 6379])
# security row kinds: (event.category, event.type, event.action)
_SEC_KINDS = (("authentication", "start", "logon"), ("authentication", "end", "logoff"),
              ("process", "start", "start"), ("process", "end", "end"),
              ("network", "connection", "connection"), ("network", "connection", "connection"))
LOGON, LOGOFF, PSTART, PEND, NET_OUT, NET_IN = range(6)


# --- helpers ---------------------------------------------------------------------------------

def _ts(offsets_ns: np.ndarray) -> pa.Array:
    """Timestamps that start exactly at :data:`EPOCH_NS`."""
    offsets_ns = offsets_ns.astype(np.int64)
    start = offsets_ns.min() if len(offsets_ns) else 0
    return pa.array(EPOCH_NS + offsets_ns - start, type=TIMESTAMP)


def _strings(chars: np.ndarray) -> pa.Array:
    """A string array from a ``(rows, width)`` uint8 matrix of ASCII codes."""
    rows, width = chars.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(data))


def _random_matrix(rng: np.random.Generator, rows: int, width: int,
                   alphabet: bytes) -> np.ndarray:
    alpha = np.frombuffer(alphabet, dtype=np.uint8)
    return alpha[rng.integers(0, len(alpha), size=(rows, width), dtype=np.uint8)]


def _random_chars(rng: np.random.Generator, rows: int, width: int, alphabet: bytes) -> pa.Array:
    return _strings(_random_matrix(rng, rows, width, alphabet))


def _unique_chars(ordinals: np.ndarray, width: int, alphabet: bytes, seed: int) -> pa.Array:
    """Distinct random-looking codes: an affine scramble of distinct ordinals.

    The multiplier is prime to 2, 3 and 5, so the map is a bijection modulo
    ``len(alphabet) ** width`` for the alphabets used here.
    """
    base = len(alphabet)
    mult = 7_368_787
    x = (ordinals.astype(np.int64) * mult + seed * 104_729 + 4_660_046) % base**width
    digits = (x[:, None] // base ** np.arange(width)[None, :]) % base
    return _strings(np.frombuffer(alphabet, dtype=np.uint8)[digits])


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _str(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _take(names: Sequence[str] | pa.Array, codes: np.ndarray) -> pa.Array:
    return pa.array(names, pa.string()).take(pa.array(codes))


def _render(templates: Sequence[str], choice: np.ndarray,
            variables: Mapping[str, pa.Array | np.ndarray]) -> pa.Array:
    """Fill template ``choice[i]`` for row ``i``, one vectorised join per template.

    Numpy variables are turned into strings only for the rows that use them.
    """
    rows = len(choice)
    order = np.argsort(choice, kind="stable")
    counts = np.bincount(choice, minlength=len(templates))
    pieces, start = [], 0
    for template, count in zip(templates, counts, strict=True):
        if not count:
            continue
        idx = pa.array(order[start:start + count])
        start += count
        parts: list[pa.Array | str] = []
        for literal, name, _spec, _conv in string.Formatter().parse(template):
            if literal:
                parts.append(literal)
            if name:
                values = variables[name]
                if isinstance(values, np.ndarray):
                    parts.append(_str(values[order[start - count:start]]))
                else:
                    parts.append(values.take(idx))
        if any(isinstance(p, pa.Array) for p in parts):
            pieces.append(_join(*parts))
        else:
            pieces.append(pa.nulls(count, pa.string()).fill_null("".join(map(str, parts))))
    inverse = np.empty(rows, dtype=np.int64)
    inverse[order] = np.arange(rows)
    merged = pa.concat_arrays(pieces) if pieces else pa.array([], pa.string())
    return merged.take(pa.array(inverse))


def _pod_names(prefixes: pa.Array, seed: int) -> pa.Array:
    """``<prefix>-<5 suffix chars>`` names; the suffixes are distinct across all pods."""
    return _join(prefixes, "-", _unique_chars(np.arange(len(prefixes)), 5, _SUFFIX, seed))


def _struct(fields: Mapping[str, pa.Array], null: np.ndarray | None = None) -> pa.StructArray:
    mask = None if null is None else pa.array(null)
    return pa.StructArray.from_arrays(list(fields.values()), names=list(fields), mask=mask)


def _null_where(values: pa.Array, null: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(null), pa.scalar(None, values.type), values)


# --- services --------------------------------------------------------------------------------

def services(n: int, *, seed: int = 0, pods: int = 2000, services: int = 12,
             names_seed: int | None = None) -> pa.Table:
    """Request logs of ``services`` services on ``pods`` pods; ``pod`` is the entity.

    Each request touches 2 to 5 distinct services within 2 s, so ``request_id``
    repeats across services. About 0.2 % of rows are up to 500 ms late.
    ``names_seed`` (default: ``seed``) draws the pod names, so that tables of
    several seeds can share one fleet of pods.
    """
    if services < 2 or pods < services:
        raise ValueError("need at least 2 services and one pod per service")
    rng = np.random.default_rng([seed, 1])
    names = list(_SERVICES[:services]) + [f"service-{i}" for i in range(12, services)]
    # requests: 2..5 hops each, trimmed so that the hops add up to n exactly
    hops = rng.integers(2, min(5, services) + 1, size=n // 2 + 2)
    ends = np.cumsum(hops)
    reqs = int(np.searchsorted(ends, n)) + 1
    hops = hops[:reqs].copy()
    hops[-1] -= int(ends[reqs - 1]) - n
    if hops[-1] == 1 and reqs > 1:
        donors = np.flatnonzero(hops[:-1] > 2)
        if len(donors):
            hops[donors[-1]] -= 1
            hops[-1] += 1
    req = np.repeat(np.arange(reqs), hops)
    hop = np.arange(n) - np.repeat(np.cumsum(hops) - hops, hops)
    # times: ~2,000 events/s; hop j of a request lands j * (1..350 ms) after its start
    start_ns = np.cumsum(rng.exponential(hops.mean() * 500_000, size=reqs)).astype(np.int64)
    gap_ns = rng.integers(1_000_000, 350_000_000, size=(reqs, 5))
    gap_ns[:, 0] = 0
    ts = (start_ns[req] + np.cumsum(gap_ns, axis=1)[req, hop]) // 1000 * 1000  # microseconds
    # hop 0 is the frontend; later hops stride through the other services, all distinct
    others = services - 1
    steps = np.array([d for d in range(1, max(2, others)) if all(
        (d * m) % others for m in range(1, min(5, services) - 1))] or [1])
    base = rng.integers(0, others, size=reqs)
    step = steps[rng.integers(0, len(steps), size=reqs)]
    svc = np.where(hop == 0, 0, 1 + (base[req] + (hop - 1) * step[req]) % others)
    # order rows by time, then make a few slightly late; i.i.d. columns are drawn after
    order = np.argsort(ts, kind="stable")
    ts, req, svc = ts[order], req[order], svc[order]
    ts = np.maximum(ts - (rng.random(n) < 0.002) * rng.integers(1_000, 500_000, n) * 1000, 0)
    # pods: contiguous blocks per service, one replica-set hash per service
    per = np.full(services, pods // services)
    per[: pods % services] += 1
    first = np.cumsum(per) - per
    pod = first[svc] + (rng.random(n) * per[svc]).astype(np.int64)
    naming = rng if names_seed is None else np.random.default_rng([names_seed, 2])
    prefixes = _join(pa.array(names), "-", _random_chars(naming, services, 4, _HEX))
    pod_names = _pod_names(prefixes.take(pa.array(np.repeat(np.arange(services), per))),
                           seed if names_seed is None else names_seed)
    # status, level, latency, user
    status = rng.choice(_STATUS, size=n, p=_STATUS_P / _STATUS_P.sum())
    latency = rng.lognormal(np.log(18.0), 0.9, size=n) * (1 + 0.15 * svc) * np.where(
        status >= 500, 6.0, 1.0)
    latency = np.round(latency, 3)
    level = np.where(status >= 500, 2, np.where((status >= 400) | (latency > 1000), 1, 0))
    user = (50_000 * rng.random(reqs) ** 3).astype(np.int64)[req]
    request_ids = _strings(_random_matrix(rng, reqs, 16, _HEX)[req])
    users = _join("u", _str(user))
    cls = np.where(status >= 500, 2, np.where(status >= 400, 1, 0))
    templates = _MESSAGES["ok"] + _MESSAGES["client"] + _MESSAGES["server"]
    first_t = np.array([0, len(_MESSAGES["ok"]), len(_MESSAGES["ok"]) + len(_MESSAGES["client"])])
    count_t = np.array([len(_MESSAGES[k]) for k in ("ok", "client", "server")])
    choice = first_t[cls] + (rng.random(n) * count_t[cls]).astype(np.int64)
    variables: dict[str, pa.Array | np.ndarray] = {
        "item": rng.integers(1000, 99_999, size=n), "status": status,
        "latency": np.round(latency, 1), "user": users, "qty": rng.integers(1, 9, n),
        "order": _random_chars(rng, n, 8, _HEX), "rid": request_ids,
        "amount": np.round(rng.lognormal(3.5, 1.0, n), 2), "count": rng.integers(0, 500, n),
        "upstream": _take(names, (svc + rng.integers(1, services, n)) % services),
        "retry": rng.integers(1, 4, size=n),
    }
    return pa.table({
        "timestamp": _ts(ts), "service": _take(names, svc), "pod": pod_names.take(pa.array(pod)),
        "level": _take(("info", "warn", "error"), level), "status": pa.array(status, pa.int64()),
        "request_id": request_ids, "user_id": users, "latency_ms": pa.array(latency),
        "message": _render(templates, choice, variables),
    })


def services_stream(n: int, *, seed: int = 0, chunk: int = 1_000_000) -> Iterator[pa.Table]:
    """``n`` ``services`` events in chunks of ``chunk``, one continuous stream in time.

    Each chunk is drawn with its own seed over the same 2,000 pods and starts
    where the previous one ended, so large stores can be built without holding
    all their events in memory.
    """
    offset = 0
    for number, lo in enumerate(range(0, n, chunk)):
        part = services(min(chunk, n - lo), seed=seed * 100_003 + number, names_seed=seed)
        ts = pc.add(part.column("timestamp").cast(pa.int64()), offset)
        offset = int(pc.max(ts).as_py()) + 1_000_000 - EPOCH_NS
        yield part.set_column(0, "timestamp", ts.cast(TIMESTAMP))


# --- k8s ------------------------------------------------------------------------------------

_Rows = tuple[np.ndarray, np.ndarray | int, np.ndarray | int, np.ndarray | int, np.ndarray | int]
"""Planted k8s rows: times, reasons, pods, namespaces, nodes (-1: none)."""


def k8s(n: int, *, seed: int = 0, pods: int = 10_000,
        incident_rate: float = 0.001) -> tuple[pa.Table, dict[str, int]]:
    """Kubernetes events of ``pods`` pods (entity ``kubernetes.pod.name``), ~100 events/s.

    About ``n * incident_rate`` incident chains are planted, a quarter of each
    kind, and their counts returned; ``rules/k8s.eql`` has a rule for each:

    * ``oom_chains``: OOMKilled -> BackOff -> Started on one pod within 3 min;
    * ``config_chains``: ConfigMapUpdated or SecretUpdated in a namespace (no
      pod) -> Killing then Started of 2 or 3 of its pods within 90 s ->
      Unhealthy there within 5 min;
    * ``crash_loops``: Started -> Failed -> BackOff -> Started on one pod
      within 4 min;
    * ``node_pressures``: NodeHasMemoryPressure or NodeHasDiskPressure on a
      node (no pod) -> Evicted of 2 to 4 of its pods within 4 min.

    :func:`k8s_chains` gives the same table and where each chain is.

    >>> k8s(50_000, seed=0)[1]
    {'oom_chains': 13, 'config_chains': 13, 'crash_loops': 12, 'node_pressures': 12}
    """
    table, chains = k8s_chains(n, seed=seed, pods=pods, incident_rate=incident_rate)
    return table, {kind: truth.num_rows for kind, truth in chains.items()}


def k8s_chains(n: int, *, seed: int = 0, pods: int = 10_000,
               incident_rate: float = 0.001) -> tuple[pa.Table, dict[str, pa.Table]]:
    """:func:`k8s`'s table, and per kind of chain a table with a row per planted chain.

    A row holds ``key`` (the pod, namespace or node the chain is on: its rule's
    ``by`` value), ``trigger_ns`` (the time of its event of a reason the
    background never emits: OOMKilled, Failed, an update, a pressure),
    ``start_ns`` and ``end_ns`` (its first and last events), in time order.

    Each rule finds exactly one sequence per chain of its kind, and each starts
    (or, for a crash loop, fails) at the chain's trigger: only the chains emit
    those reasons; an OOM or crash-loop chain has a pod to itself; the chains
    of one namespace, or of one node, are 10 min slots apart and end within 9;
    each chain holds, in order and within the rule's maxspan, events that
    complete its rule, so background events of the later stages' reasons on
    its key can only complete the sequence sooner, never start another.
    """
    if pods < 3:
        raise ValueError("need at least 3 pods")
    rng = np.random.default_rng([seed, 2])
    n_ns = min(40, pods // 3)
    ns_of_pod = np.arange(pods) * n_ns // pods
    ns_first = np.searchsorted(ns_of_pod, np.arange(n_ns))
    ns_count = np.bincount(ns_of_pod, minlength=n_ns)
    nodes = max(1, pods // 30)
    node_of_pod = np.arange(pods) * 7_919 % nodes
    node_pods = np.argsort(node_of_pod, kind="stable")
    node_count = np.bincount(node_of_pod, minlength=nodes)
    node_first = np.cumsum(node_count) - node_count
    crowded = np.flatnonzero(node_count >= 2)
    span = max(n * S // 100, 2 * HOUR)
    chains = min(round(n * incident_rate), n // 16)
    slots = int((span - 5 * MIN) // (10 * MIN))  # per namespace or node: one chain per 10 min
    n_oom = min((chains + 3) // 4, pods // 2)
    n_cfg = min((chains + 2) // 4, slots * n_ns)
    n_crash = min((chains + 1) // 4, pods - n_oom)
    n_node = min(chains // 4, slots * len(crowded))
    own = rng.permutation(pods)[:n_oom + n_crash]  # OOM and crash-loop chains: a pod each
    # OOMKilled -> BackOff -> Started
    o_pod = own[:n_oom]
    t0 = np.sort(rng.integers(0, span - 5 * MIN, n_oom))
    t1 = t0 + rng.integers(5 * S, 60 * S, n_oom)
    t2 = t1 + rng.integers(10 * S, 120 * S, n_oom)
    # ConfigMapUpdated or SecretUpdated -> m x (Killing, Started) -> Unhealthy
    c_ns, c_t0 = _slot_times(rng, n_cfg, slots, n_ns)
    c_reason = np.where(rng.random(n_cfg) < 0.5, _R["ConfigMapUpdated"], _R["SecretUpdated"])
    m = rng.integers(2, 4, n_cfg)
    first = rng.integers(0, ns_count[c_ns]) if n_cfg else np.zeros(0, int)
    r_chain, r_rank = _ranks(m)
    r_pod = ns_first[c_ns[r_chain]] + (first[r_chain] + r_rank) % ns_count[c_ns[r_chain]]
    r_kill = c_t0[r_chain] + rng.integers(S, 30 * S, len(r_chain))
    r_start = r_kill + rng.integers(5 * S, 60 * S, len(r_chain))
    u_t = c_t0 + rng.integers(95 * S, 280 * S, n_cfg)
    u_pod = ns_first[c_ns] + first % ns_count[c_ns]
    # Started -> Failed -> BackOff -> Started
    k_pod = own[n_oom:]
    k0 = rng.integers(0, span - 5 * MIN, n_crash)
    k1 = k0 + rng.integers(5 * S, 60 * S, n_crash)
    k2 = k1 + rng.integers(5 * S, 60 * S, n_crash)
    k3 = k2 + rng.integers(10 * S, 120 * S, n_crash)
    # NodeHas{Memory,Disk}Pressure -> e x Evicted, distinct pods of the node
    p_node, p_t0 = _slot_times(rng, n_node, slots, len(crowded))
    p_node = crowded[p_node]
    p_reason = np.where(rng.random(n_node) < 0.5, _R["NodeHasMemoryPressure"],
                        _R["NodeHasDiskPressure"])
    e = np.minimum(rng.integers(2, 5, n_node), node_count[p_node])
    first = rng.integers(0, node_count[p_node]) if n_node else np.zeros(0, int)
    e_chain, e_rank = _ranks(e)
    e_node = p_node[e_chain]
    e_pod = node_pods[node_first[e_node] + (first[e_chain] + e_rank) % node_count[e_node]]
    e_t = p_t0[e_chain] + rng.integers(10 * S, 4 * MIN, len(e_chain))
    e_end = np.zeros(n_node, np.int64)
    np.maximum.at(e_end, e_chain, e_t)
    # background: skewed pods, none of the reasons that only chains emit
    planted = 3 * n_oom + 2 * n_cfg + 2 * len(r_chain) + 4 * n_crash + n_node + len(e_chain)
    nb = n - planted
    weights = np.array([w for _r, _t, w, _m in _K8S_REASONS], dtype=float)
    b_reason = rng.choice(len(weights), nb, p=weights / weights.sum())
    b_pod = rng.permutation(pods)[(pods * rng.random(nb) ** 2).astype(np.int64)]

    def on_pods(times: np.ndarray, reason: int | np.ndarray, pod: np.ndarray) -> _Rows:
        return times, reason, pod, ns_of_pod[pod], node_of_pod[pod]

    blocks: list[_Rows] = [  # times, reason, pod, namespace, node (-1: none)
        on_pods(rng.integers(0, span, nb), b_reason, b_pod),
        on_pods(t0, _R["OOMKilled"], o_pod), on_pods(t1, _R["BackOff"], o_pod),
        on_pods(t2, _R["Started"], o_pod),
        (c_t0, c_reason, -1, c_ns, -1), on_pods(r_kill, _R["Killing"], r_pod),
        on_pods(r_start, _R["Started"], r_pod), on_pods(u_t, _R["Unhealthy"], u_pod),
        on_pods(k0, _R["Started"], k_pod), on_pods(k1, _R["Failed"], k_pod),
        on_pods(k2, _R["BackOff"], k_pod), on_pods(k3, _R["Started"], k_pod),
        (p_t0, p_reason, -1, 0, p_node), on_pods(e_t, _R["Evicted"], e_pod),
    ]
    ts, reason, pod, ns, node = (np.concatenate([np.broadcast_to(b[i], len(b[0])) for b in blocks])
                                 for i in range(5))
    base = int(ts.min()) if n else 0
    order = np.argsort(ts, kind="stable")
    ts, reason, pod, ns, node = ts[order], reason[order], pod[order], ns[order], node[order]
    # names
    no_pod, no_node = pod < 0, node < 0
    pod, node = np.maximum(pod, 0), np.maximum(node, 0)
    ns_names = pa.array(list(_NAMESPACES[:n_ns]) + [f"team-{i}" for i in range(12, n_ns)])
    app_of_pod = (np.arange(pods) * 5 + ns_of_pod) % len(_APPS)
    deploy_hash = _random_chars(rng, n_ns * len(_APPS), 4, _HEX)
    prefixes = _join(_take(_APPS, app_of_pod), "-",
                     deploy_hash.take(pa.array(ns_of_pod * len(_APPS) + app_of_pod)))
    all_pods = _pod_names(prefixes, seed)
    pod_names = all_pods.take(pa.array(pod))
    all_nodes = _join("ip-10-0-", _str(np.arange(nodes) // 256), "-",
                      _str(np.arange(nodes) % 256), ".ec2.internal")
    node_names = all_nodes.take(pa.array(node))
    images = _join("registry.example.com/", _take(_APPS, app_of_pod), ":1.", _str(
        np.arange(pods) % 7))
    apps = _take(_APPS, app_of_pod[pod])
    row_ns = ns_names.take(pa.array(ns))
    variables: dict[str, pa.Array | np.ndarray] = {
        "ns": row_ns, "pod": pod_names, "node": node_names, "app": apps,
        "image": images.take(pa.array(pod)),
        "secs": np.round(rng.lognormal(0.5, 0.8, n), 3), "code": rng.choice([500, 503], n),
        "mem": rng.choice([256, 512, 1024, 2048], n), "nodes": np.full(n, nodes),
        "k": rng.integers(1, 9, n), "exit": rng.choice([1, 2, 127, 139], n),
    }
    kube = _struct({
        "pod": _struct({"name": _null_where(pod_names, no_pod)}, no_pod),
        "namespace": row_ns,
        "node": _struct({"name": _null_where(node_names, no_node)}, no_node),
    })
    table = pa.table({
        "timestamp": _ts(ts), "reason": _take([r for r, *_x in _K8S_REASONS], reason),
        "type": _take([t for _r, t, *_x in _K8S_REASONS], reason), "kubernetes": kube,
        "message": _render([msg for *_x, msg in _K8S_REASONS], reason, variables),
    })
    truth = {  # kind: (keys, trigger, start, end)
        "oom_chains": (all_pods.take(pa.array(o_pod)), t0, t0, t2),
        "config_chains": (ns_names.take(pa.array(c_ns)), c_t0, c_t0, u_t),
        "crash_loops": (all_pods.take(pa.array(k_pod)), k1, k0, k3),
        "node_pressures": (all_nodes.take(pa.array(p_node)), p_t0, p_t0, e_end),
    }
    return table, {kind: _chains(keys, trigger, start, end, EPOCH_NS - base)
                   for kind, (keys, trigger, start, end) in truth.items()}


def _slot_times(rng: np.random.Generator, count: int, slots: int,
                groups: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct (group, 10 min slot) pairs: the groups, and a time in each
    slot's first 4 min."""
    slot = rng.choice(slots * groups, count, replace=False) if count else np.zeros(0, int)
    return slot % groups, slot // groups * 10 * MIN + rng.integers(0, 4 * MIN, count)


def _ranks(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For groups of ``sizes`` rows: each row's group, and its rank in it."""
    group = np.repeat(np.arange(len(sizes)), sizes)
    return group, np.arange(len(group)) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def _chains(keys: pa.Array, trigger: np.ndarray, start: np.ndarray, end: np.ndarray,
            shift: int) -> pa.Table:
    order = np.argsort(trigger, kind="stable")
    return pa.table({"key": keys.take(pa.array(order)),
                     **{name: pa.array(col[order] + shift, pa.int64()) for name, col in
                        (("trigger_ns", trigger), ("start_ns", start), ("end_ns", end))}})


# --- security -------------------------------------------------------------------------------

def security(n: int, *, seed: int = 0, hosts: int = 500, users: int = 2000,
             incident_rate: float = 0.001) -> tuple[pa.Table, dict[str, int]]:
    """ECS-shaped process, network and authentication events over at least 24 h.

    About ``n * incident_rate`` sequences are planted, half of each kind:
    ``logon_without_logoff``: a logon with no logoff of the same ``user.name`` and
    ``host.name`` within 8 h (all planted logons are 8 h before the last event);
    ``process_then_connect``: a process start, then an outbound network
    connection from the same ``host.name`` and ``process.pid`` within 5 s, then
    (``start_connect_end``, the same chains) the process's end within 10 s of its
    start.
    Background logons all get a logoff within 8 h, background connections come
    from long-running daemons (pid < 1000), and planted pids (>= 40000) and
    planted user/host pairs are used by nothing else.
    """
    if users < 2 or hosts < 1:
        raise ValueError("need at least 2 users and 1 host")
    rng = np.random.default_rng([seed, 3])
    span = max(n * S // 20, 24 * HOUR)
    reserved = max(1, users // 20)
    chains = min(round(n * incident_rate), n // 8)
    n_logon = min(chains // 2, reserved * hosts)
    n_pc = min(chains - chains // 2, 25_000)
    # planted: unclosed logons on pairs nothing else uses; half get a logoff after 8 h
    pair = rng.choice(reserved * hosts, n_logon, replace=False)
    l_t = rng.integers(0, span - 8 * HOUR - MIN, n_logon)
    l_off = l_t + 8 * HOUR + rng.integers(10 * MIN, 2 * HOUR, n_logon)
    late = (rng.random(n_logon) < 0.5) & (l_off < span)
    # planted: process start -> outbound connection within 5 s, fresh pids
    p_t = np.sort(rng.integers(0, span - 10 * S, n_pc))
    p_host = rng.integers(0, hosts, n_pc)
    p_pid = 40_000 + np.arange(n_pc) % 25_000
    nb = n - n_logon - int(late.sum()) - 3 * n_pc
    n_sess, n_proc = nb * 6 // 100, nb * 15 // 100
    n_net = nb - 2 * n_sess - 2 * n_proc
    s_len = np.clip(rng.lognormal(np.log(HOUR), 1.0, n_sess), MIN, 7.5 * HOUR).astype(np.int64)
    s_t = (rng.random(n_sess) * (span - s_len)).astype(np.int64)
    s_user = (users - reserved) * rng.random(n_sess) ** 2
    s_host = rng.integers(0, hosts, n_sess)
    q_len = np.clip(rng.lognormal(np.log(30 * S), 2.0, n_proc), S, span // 2).astype(np.int64)
    q_t = (rng.random(n_proc) * (span - q_len)).astype(np.int64)
    q_host, q_pid = rng.integers(0, hosts, n_proc), rng.integers(1000, 40_000, n_proc)
    q_user = (users - reserved) * rng.random(n_proc) ** 2
    q_name = rng.integers(0, len(_PROCS), n_proc)
    d_pid = rng.integers(1, 1000, n_net)
    names = _PROCS + _DAEMONS + _DROPPERS
    d_name = len(_PROCS) + d_pid % len(_DAEMONS)
    x_name = len(_PROCS) + len(_DAEMONS) + rng.integers(0, len(_DROPPERS), n_pc)
    none = np.full
    cat = np.concatenate
    p_connect = p_t + rng.integers(S // 20, 45 * S // 10, n_pc)
    ts = cat([s_t, s_t + s_len, q_t, q_t + q_len, rng.integers(0, span, n_net), l_t,
              l_off[late], p_t, p_connect,
              p_connect + rng.integers(S // 20, p_t + 10 * S - p_connect, n_pc)])
    kind = cat([none(n_sess, LOGON), none(n_sess, LOGOFF), none(n_proc, PSTART),
                none(n_proc, PEND), np.where(rng.random(n_net) < 0.7, NET_OUT, NET_IN),
                none(n_logon, LOGON), none(int(late.sum()), LOGOFF), none(n_pc, PSTART),
                none(n_pc, NET_OUT), none(n_pc, PEND)])
    l_user, l_host = users - reserved + pair % reserved, pair // reserved
    host = cat([s_host, s_host, q_host, q_host, rng.integers(0, hosts, n_net), l_host,
                l_host[late], p_host, p_host, p_host])
    bg_user = rng.integers(0, users - reserved, n_pc)
    user = cat([s_user, s_user, q_user, q_user, none(n_net, -1), l_user, l_user[late],
                bg_user, bg_user, bg_user]).astype(np.int64)
    pid = cat([none(2 * n_sess, -1), q_pid, q_pid, d_pid, none(n_logon + late.sum(), -1),
               p_pid, p_pid, p_pid])
    pname = cat([none(2 * n_sess, 0), q_name, q_name, d_name, none(n_logon + late.sum(), 0),
                 x_name, x_name, x_name])
    order = np.argsort(ts, kind="stable")
    ts, kind, host, user, pid, pname = (a[order] for a in (ts, kind, host, user, pid, pname))
    is_net, no_user, no_proc = kind >= NET_OUT, user < 0, pid < 0
    octets = np.where(kind[:, None] == NET_OUT,
                      rng.choice([13, 34, 52, 104, 142, 151, 185], n)[:, None], 10)
    octets = np.hstack([octets, rng.integers(0, 256, (n, 3))])
    ip = _join(_str(octets[:, 0]), ".", _str(octets[:, 1]), ".", _str(octets[:, 2]), ".",
               _str(octets[:, 3]))
    return pa.table({
        "timestamp": _ts(ts),
        "event": _struct({k: _take([s[i] for s in _SEC_KINDS], kind)
                          for i, k in enumerate(("category", "type", "action"))}),
        "host": _struct({"name": _join("host-", pc.utf8_lpad(_str(host), 4, "0"))}),
        "user": _struct({"name": _null_where(_join("user", _str(np.maximum(user, 0))), no_user)},
                        no_user),
        "process": _struct({"name": _null_where(_take(names, pname), no_proc),
                            "pid": _null_where(pa.array(pid), no_proc)}, no_proc),
        "destination": _struct({"ip": _null_where(ip, ~is_net), "port": _null_where(
            pa.array(rng.choice(_PORTS, n)), ~is_net)}, ~is_net),
        "network": _struct({"direction": _null_where(
            _take(("outbound", "inbound"), (kind == NET_IN).astype(np.int8)), ~is_net)}, ~is_net),
    }), {"logon_without_logoff": n_logon, "process_then_connect": n_pc,
         "start_connect_end": n_pc}


# --- NDJSON ----------------------------------------------------------------------------------

def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """``(rows, width)`` ASCII digits of non-negative ints, zero padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers[None, :] % 10 + 48).astype(np.uint8)


def rfc3339(ns: np.ndarray) -> pa.Array:
    """UTC nanoseconds as RFC 3339 strings ending in ``Z``, with as few fraction digits
    (0, 3, 6 or 9) as keep every value exact.

    >>> rfc3339(np.array([EPOCH_NS + 1_500_000])).to_pylist()
    ['2026-01-01T00:00:00.001500Z']
    """
    ns = np.asarray(ns, dtype=np.int64)
    secs, frac = np.divmod(ns, S)
    days, sod = np.divmod(secs, 86_400)
    # civil_from_days (H. Hinnant), vectorised
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    places = next((p for p in (0, 3, 6) if not np.any(frac % 10 ** (9 - p))), 9)
    sep = np.frombuffer(b"--T::", dtype=np.uint8)
    cols = [_digits(year, 4), sep[None, :1], _digits(month, 2), sep[None, 1:2], _digits(day, 2),
            sep[None, 2:3], _digits(sod // 3600, 2), sep[None, 3:4], _digits(sod // 60 % 60, 2),
            sep[None, 4:5], _digits(sod % 60, 2)]
    if places:
        cols += [np.array([[46]], np.uint8), _digits(frac // 10 ** (9 - places), places)]
    cols.append(np.array([[90]], np.uint8))
    rows = len(ns)
    return _strings(np.hstack([np.broadcast_to(c, (rows, c.shape[1])) for c in cols]))


def _rfc3339_columns(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            column = table.column(i).combine_chunks()
            ns = column.cast(pa.timestamp("ns", field.type.tz)).cast(pa.int64())
            text = rfc3339(ns.fill_null(0).to_numpy())
            table = table.set_column(i, field.name, _null_where(text, ns.is_null().to_numpy(
                zero_copy_only=False)))
    return table


def iter_ndjson(table: pa.Table, *, chunk_rows: int = 250_000) -> Iterator[bytes]:
    """``table`` as NDJSON, ``chunk_rows`` lines at a time; see :func:`to_ndjson`."""
    con = duckdb.connect()
    try:
        con.register("__tidal_rows", _rfc3339_columns(table))
        query = "SELECT to_json(__tidal_row)::VARCHAR FROM __tidal_rows AS __tidal_row"
        reader = con.sql(query).to_arrow_reader(chunk_rows)
        for batch in reader:
            newline, empty = pa.scalar("\n", pa.large_string()), pa.scalar("", pa.large_string())
            lines = pc.binary_join_element_wise(batch.column(0).cast(pa.large_string()), newline,
                                                empty)
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64, count=len(lines) + 1,
                                    offset=lines.offset * 8)
            start, end = int(offsets[0]), int(offsets[-1])
            yield lines.buffers()[2].slice(start, end - start).to_pybytes()
    finally:
        con.close()


def to_ndjson(table: pa.Table) -> bytes:
    """``table`` as NDJSON bytes: one object per line, nested columns as nested
    objects, timestamps as RFC 3339 strings in UTC (``...Z``).

    >>> to_ndjson(pa.table({"a": [1, 2]}))
    b'{"a":1}\\n{"a":2}\\n'
    """
    return b"".join(iter_ndjson(table))


def write_ndjson(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """Write ``table`` to ``path`` as NDJSON, chunk by chunk; see :func:`to_ndjson`."""
    with open(path, "wb") as f:
        for chunk in iter_ndjson(table):
            f.write(chunk)
