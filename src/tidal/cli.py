"""The ``tidal`` command line: glue over :func:`tidal.open` and the benchmark harness.

Subcommands: ``ingest``, ``consume``, ``serve``, ``timeline``, ``sql``, ``eql``,
``logql``, ``watch``, ``stats``, ``check``, ``repair``, ``demo`` and ``bench``. The read
commands (``timeline``, ``sql``, ``eql``, ``logql``, ``watch``, ``stats``, ``check``) open
the store
read-only, so they work next to a running writer and on read-only media.
Heavy modules (pyarrow, duckdb, numpy, rich) are imported inside the command
functions, so ``tidal --version`` and ``tidal --help`` start fast.

Errors are reported at one choke point, :func:`main`: every
:class:`~tidal.errors.TidalError` and :class:`OSError` becomes one
``tidal: error: ...`` line on stderr (a rejected input adds its first bad lines
below it) and exit status 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tidal.errors import ConfigError, IngestError, StorageError, TidalError

if TYPE_CHECKING:
    import threading
    from pathlib import Path

    import pyarrow as pa
    from rich.console import Console

    from tidal.api import Store
    from tidal.correlate.result import Correlation, Result

__all__ = ["build_parser", "main"]
PROBLEMS_SHOWN = 5
POSITIONS_SHOWN = 20
CORRELATIONS_SHOWN = 50
WATCH_POLL_S = 0.2
"""How often ``tidal watch`` looks up from waiting for a correlation to see Ctrl-C."""


# ---------------------------------------------------------------- parser


def _version() -> str:
    import tidal

    version = getattr(tidal, "__version__", None)
    if version is None:  # pragma: no cover - only before the package defines it
        from importlib.metadata import version as dist_version

        version = dist_version("tidal")
    return str(version)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tidal``; each subcommand sets ``func``."""
    parser = argparse.ArgumentParser(
        prog="tidal", description="Tidal: a fast, embeddable event store."
    )
    parser.add_argument("--version", action="version", version=f"tidal {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", required=True, metavar="DIR", help="store directory")
    store.add_argument("--entity-field", metavar="F", help="dotted path of the entity field")
    store.add_argument("--timestamp-field", metavar="F", help="dotted path of the event time")

    p = sub.add_parser("ingest", parents=[store], help="append files to a store")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="NDJSON, JSON, CSV, Parquet or Arrow file (.gz/.zst too)")
    p.add_argument("--format", dest="fmt", metavar="F",
                   help="input format (default: from the file name)")
    p.add_argument("--on-error", choices=("reject", "skip"), default="reject",
                   help="reject a file with bad lines whole (default), or skip the bad lines "
                        "into the store's dead-letter file")
    p.add_argument("--follow", action="store_true",
                   help="keep following the files as `tail -F` does (rotation, truncation, "
                        "files that appear later) until Ctrl-C or SIGTERM")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("timeline", parents=[store], help="one entity's events in time order")
    p.add_argument("entity", metavar="ENTITY")
    p.add_argument("--start", metavar="T",
                   help="inclusive start: RFC 3339 time, or a number of ns since the epoch")
    p.add_argument("--end", metavar="T", help="exclusive end, like --start")
    p.add_argument("--limit", type=_positive_int, metavar="N")
    p.add_argument("--desc", action="store_true", help="newest first")
    p.add_argument("--format", dest="fmt", choices=("table", "json"), default="table")
    p.add_argument("--plot", action="store_true",
                   help="draw the events on a time axis instead of listing them")
    p.add_argument("--color-by", metavar="FIELD",
                   help="with --plot: colour the events by this field (default: level, "
                        "event.category or reason, whichever the events have)")
    p.set_defaults(func=cmd_timeline)

    p = sub.add_parser("sql", parents=[store], help="run SQL over the view `events`")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--format", dest="fmt", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("eql", parents=[store],
                       help="run an EQL query (Elastic's Event Query Language)")
    p.add_argument("query", metavar="QUERY")
    p.add_argument("--start", metavar="T",
                   help="inclusive start: RFC 3339 time, or a number of ns since the epoch")
    p.add_argument("--end", metavar="T", help="exclusive end, like --start")
    p.add_argument("--size", type=_positive_int, metavar="N", help="return at most N")
    p.add_argument("--case-insensitive", action="store_true",
                   help="compare every string case-insensitively (Endgame's EQL)")
    p.add_argument("--category-field", metavar="FIELD",
                   help="the field holding the event category (default: the store's)")
    p.add_argument("--max-samples-per-key", type=_positive_int, metavar="N", default=1,
                   help="samples a 'sample' query returns per key (default 1)")
    p.add_argument("--format", dest="fmt", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_eql)

    p = sub.add_parser("logql", parents=[store],
                       help="run a LogQL query (Grafana Loki's language), as logcli does")
    p.add_argument("query", metavar="QUERY",
                   help='a log query ({app="api"} |= "error") or a metric query '
                        "(sum by (level) (count_over_time({app=\"api\"}[1m])))")
    p.add_argument("--since", metavar="DURATION",
                   help="the window ending at --end, like 1h or 30m (default: the whole "
                        "store)")
    p.add_argument("--start", metavar="T",
                   help="inclusive start: RFC 3339 time, or a number of ns since the epoch")
    p.add_argument("--end", metavar="T", help="exclusive end, like --start (default: now)")
    p.add_argument("--limit", type=_positive_int, metavar="N", default=30,
                   help="log lines to return (default 30, as logcli)")
    p.add_argument("--forward", action="store_true", help="the oldest lines, not the newest")
    p.add_argument("--step", metavar="DURATION",
                   help="a metric query's step, like 1m (default: the window over 250)")
    p.add_argument("--format", dest="fmt", choices=("table", "json", "raw"), default="table",
                   help="raw: the log lines alone")
    p.set_defaults(func=cmd_logql)

    p = sub.add_parser("watch", parents=[store],
                       help="print a live query's correlations as they fire, until Ctrl-C")
    p.add_argument("query", metavar="QUERY",
                   help="an EQL event query or sequence, or a CorQL join")
    p.add_argument("--language", choices=("eql", "corql"), default="eql",
                   help="the query's language (default: eql)")
    p.add_argument("--lateness", default="0s", metavar="DURATION",
                   help="how far behind the newest event time an event may come and still "
                        "be matched, e.g. 30s or 2m (default: 0s); later ones are counted "
                        "as late")
    p.add_argument("--idle-advance", metavar="DURATION",
                   help="when no event has come for this long, move event time on with the "
                        "clock, so missing-event stages fire in a quiet stream (default: off)")
    p.add_argument("--from-seq", type=_non_negative_int, metavar="N",
                   help="start at _seq N: replay the stored events from there, then go on "
                        "live (default: the next event appended)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("stats", parents=[store], help="store statistics")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("check", parents=[store],
                       help="verify every file of a store (checksums, WAL frames, _seq ranges)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("repair", parents=[store],
                       help="salvage a damaged store and report what could not be saved")
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("consume", help="read a NATS JetStream stream into a store, exactly once")
    p.add_argument("url", metavar="URL", help="nats://HOST:PORT (a cluster: several, "
                                              "separated by commas)")
    p.add_argument("--stream", required=True, metavar="NAME", help="the JetStream stream")
    p.add_argument("--store", required=True, metavar="DIR", help="store directory")
    p.add_argument("--subjects", metavar="PATTERN", help="only subjects matching this pattern")
    p.add_argument("--until-idle", type=float, metavar="SECONDS",
                   help="exit once the stream is drained and quiet this long "
                        "(default: run until Ctrl-C or SIGTERM)")
    p.add_argument("--batch", type=_positive_int, default=1000, metavar="N",
                   help="messages fetched and stored at a time (default 1000)")
    p.add_argument("--entity-field", metavar="F", help="dotted path of the entity field")
    p.add_argument("--timestamp-field", metavar="F", help="dotted path of the event time")
    p.set_defaults(func=cmd_consume)

    p = sub.add_parser("serve", help="run the store as an HTTP service until Ctrl-C or SIGTERM")
    p.add_argument("--store", metavar="DIR", help="store directory, created if missing "
                                                  "(default: the config's, else ./tidal-data)")
    p.add_argument("--host", metavar="HOST",
                   help="address to listen on (default 127.0.0.1; another one needs API tokens)")
    p.add_argument("--port", type=_non_negative_int, metavar="PORT",
                   help="TCP port (default 3100; 0: any free port)")
    p.add_argument("--config", metavar="FILE",
                   help="a TOML file: host, port, store, max_body_bytes, [[auth.tokens]]")
    p.add_argument("--entity-field", metavar="F", help="dotted path of the entity field")
    p.add_argument("--timestamp-field", metavar="F", help="dotted path of the event time")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="generate, ingest and query a sample data set")
    p.add_argument("--store", default="tidal-data", metavar="DIR",
                   help="demo directory, wiped first (default: ./tidal-data)")
    p.add_argument("--events", type=_positive_int, default=1_000_000, metavar="N",
                   help="events in all (default: 1_000_000)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="run benchmarks")
    p.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    p.add_argument("--events", type=_positive_int, metavar="N", help="events per workload")
    p.add_argument("--json", metavar="PATH", help="append results as JSON lines")
    p.set_defaults(func=cmd_bench)
    return parser


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tidal`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`tidal sql ... | head`): silence the final flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except IngestError as exc:
        _report_ingest_error(exc)
        return 1
    except TidalError as exc:
        _error(str(exc) or type(exc).__name__)
        return 1
    except OSError as exc:
        _error(f"{exc.strerror}: {exc.filename}" if exc.filename and exc.strerror else str(exc))
        return 1


def _error(message: str, details: Sequence[str] = ()) -> None:
    head, *rest = message.strip().splitlines() or [""]
    lines = [f"tidal: error: {head}", *(f"  {line}" for line in rest if line.strip())]
    lines.extend(f"  {d}" for d in details)
    sys.stderr.write("\n".join(lines) + "\n")


def _report_ingest_error(exc: IngestError) -> None:
    problems = exc.problems
    if not problems:
        _error(str(exc))
        return
    where = f"{exc.source}: " if exc.source else ""
    noun = "bad line" if len(problems) == 1 else "bad lines"
    details = [str(p) for p in problems[:PROBLEMS_SHOWN]]
    if len(problems) > PROBLEMS_SHOWN:
        details.append(f"... and {len(problems) - PROBLEMS_SHOWN} more")
    notes = list(getattr(exc, "__notes__", ()))
    if not any(note.startswith("lines ") for note in notes):  # not a partly stored big file
        notes.insert(0, "nothing of it was stored")
    _error(f"{where}rejected, {len(problems)} {noun}; {'; '.join(notes)}", details)


def _open(args: argparse.Namespace, *, read_only: bool, repair: bool = False) -> Store:
    """Open ``--store``: for writing (``ingest``, ``repair``), or read-only (queries)."""
    from pathlib import Path

    import tidal

    path = Path(args.store)
    if read_only and not path.is_dir():
        raise StorageError(f"no store at {str(path)!r} (create one with "
                           f"`tidal ingest FILE --store {path}`)", path=str(path))
    config = {name: value for name in ("entity_field", "timestamp_field")
              if (value := getattr(args, name, None)) is not None}
    return tidal.open(path, read_only=read_only, repair=repair, **config)


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    wide = stream.isatty() or "COLUMNS" in os.environ
    return Console(file=stream, width=None if wide else 240, highlight=False)


# ---------------------------------------------------------------- ingest


def cmd_ingest(args: argparse.Namespace) -> int:
    """``tidal ingest PATH... --store DIR [--follow]``."""
    from pathlib import Path

    paths = [Path(p) for p in args.paths]
    if args.follow:
        return _follow(args, paths)
    import rich.progress as rp

    from tidal.sources.files import FileResult, ingest_file

    total_bytes = sum(p.stat().st_size for p in paths)  # missing files fail before the store opens
    err = _console(stderr=True)
    totals = FileResult()
    started = time.perf_counter()
    with _open(args, read_only=False) as store, rp.Progress(
        rp.TextColumn("{task.description}"), rp.BarColumn(), rp.DownloadColumn(),
        rp.TransferSpeedColumn(), rp.TimeRemainingColumn(), console=err,
        disable=not err.is_terminal, transient=True,
    ) as progress:
        task = progress.add_task("ingest", total=total_bytes)
        for path in paths:
            progress.update(task, description=path.name)
            try:
                done = ingest_file(store, path, fmt=args.fmt, on_error=args.on_error,
                                   advance=lambda n: progress.advance(task, n))
            except IngestError as exc:
                if totals.count:
                    exc.add_note(f"the {totals.count:,} events of the files before it stay stored")
                raise
            totals.add(done)
    elapsed = time.perf_counter() - started
    rate = totals.count / elapsed if elapsed > 0 else 0.0
    files = "file" if len(paths) == 1 else "files"
    out = _console()
    for note in totals.notes:
        out.print(note)
    out.print(f"ingested {totals.count:,} events from {len(paths)} {files} "
              f"in {elapsed:.2f} s ({rate:,.0f} events/s)")
    if totals.skipped_bytes:
        out.print(f"skipped {totals.skipped_bytes:,} bytes ingested by an earlier run")
    if totals.waiting_bytes:
        out.print(f"left {totals.waiting_bytes:,} bytes of an unfinished last line "
                  "(no newline yet) for the next run")
    if totals.rejected:
        where = f" to {totals.dead_letter}" if totals.dead_letter else ""
        out.print(f"skipped {totals.rejected:,} bad lines{where}")
    return 0


def _follow(args: argparse.Namespace, paths: list[Path]) -> int:
    """``tidal ingest --follow``: tail the files until SIGINT or SIGTERM."""
    import signal
    import threading

    from rich.live import Live

    from tidal.sources.files import FileResult, follow_files

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    err, out = _console(stderr=True), _console()
    started = time.perf_counter()
    with _open(args, read_only=False) as store, Live(
            "", console=err, transient=True, refresh_per_second=4,
            auto_refresh=err.is_terminal) as live:

        def progress(total: FileResult) -> None:
            elapsed = max(time.perf_counter() - started, 1e-9)
            live.update(f"following {len(paths)} file(s): {total.count:,} events "
                        f"({total.count / elapsed:,.0f}/s); Ctrl-C stops")

        totals = follow_files(store, paths, stop=stop, on_error=args.on_error,
                              report=lambda note: out.print(note), progress=progress)
    out.print(f"stopped: ingested {totals.count:,} events from {len(paths)} followed "
              f"file(s) in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    """``tidal consume URL --stream NAME --store DIR``."""
    import signal
    import threading

    from tidal.sources.nats import consume

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    err, out = _console(stderr=True), _console()
    started = time.perf_counter()
    with _open(args, read_only=False) as store:
        result = consume(store, args.url, args.stream, subjects=args.subjects,
                         batch=args.batch, until_idle_s=args.until_idle, stop=stop,
                         report=lambda note: err.print(note))
    elapsed = time.perf_counter() - started
    out.print(f"consumed {result.messages:,} messages ({result.events:,} events, "
              f"{result.duplicates:,} already stored) from {args.stream} "
              f"in {elapsed:.2f} s")
    if result.rejected:
        out.print(f"skipped {result.rejected:,} bad lines to the dead-letter file")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``tidal serve [--store DIR] [--host H] [--port N] [--config FILE]``: until Ctrl-C
    (exit 130) or SIGTERM (exit 0), answering the requests in flight first."""
    from tidal.server.config import ServerConfig
    from tidal.server.serve import serve

    config = ServerConfig.load(args.config, store=args.store, host=args.host, port=args.port)
    args.store = config.store
    serve(config, _open(args, read_only=False))
    return 0


# ---------------------------------------------------------------- queries and output


COLOUR_FIELDS = ("level", "event.category", "reason", "severity_text", "service")
"""What ``tidal timeline --plot`` colours by when not told: the first the events have."""


def cmd_timeline(args: argparse.Namespace) -> int:
    """``tidal timeline ENTITY --store DIR``."""
    with _open(args, read_only=True) as store:
        table = store.timeline(args.entity, args.start, args.end, limit=args.limit,
                               desc=args.desc)
        ts_field = store.config.timestamp_field
    if args.plot:
        from tidal.model.paths import get_path
        from tidal.plots import timeline_plot

        colour = args.color_by or next((f for f in COLOUR_FIELDS
                                        if get_path(table, f) is not None), None)
        _console().print(timeline_plot(table, ts_field, colour,
                                       title=f"timeline of {args.entity}"))
        return 0
    _write(table, args.fmt, title=f"timeline of {args.entity}")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """``tidal sql QUERY --store DIR``."""
    with _open(args, read_only=True) as store:
        table = store.sql(args.query)
    _write(table, args.fmt)
    return 0


def cmd_eql(args: argparse.Namespace) -> int:
    """``tidal eql QUERY --store DIR``."""
    with _open(args, read_only=True) as store:
        result = store.eql(args.query, start=args.start, end=args.end, size=args.size,
                           case_insensitive=args.case_insensitive,
                           category_field=args.category_field,
                           max_samples_per_key=args.max_samples_per_key)
    if result.correlations and args.fmt == "table":
        _write_correlations(result)
    else:
        _write(result.events, args.fmt)
    return 0


def cmd_logql(args: argparse.Namespace) -> int:
    """``tidal logql QUERY --store DIR``."""
    start, end = _window(args)
    with _open(args, read_only=True) as store:
        result = store.logql(args.query, start=start, end=end, limit=args.limit,
                             direction="forward" if args.forward else "backward",
                             step_ns=_duration(args.step, "--step"))
    if args.fmt == "raw" and result.kind == "streams":
        lines = result.table(forward=args.forward).column("line").to_pylist()
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()
        return 0
    table = result.table(forward=args.forward)
    _write(table, "table" if args.fmt == "raw" else args.fmt)
    return 0


def _window(args: argparse.Namespace) -> tuple[object, object]:
    """``--start``/``--end``, or ``--since`` before ``--end`` (default now)."""
    if args.since is None:
        return args.start, args.end
    end_ns = _instant_ns(args.end) if args.end is not None else time.time_ns()
    return end_ns - (_duration(args.since, "--since") or 0), end_ns


def _duration(text: str | None, option: str) -> int | None:
    """A duration option (``1h30m``) in ns."""
    if text is None:
        return None
    from tidal.correlate.corql.parser import parse_duration

    value = parse_duration(text)
    if isinstance(value, str):
        raise ConfigError(f"{option}: {value}", field=option)
    return value


def _instant_ns(text: str) -> int:
    from tidal.model.time import parse_instant

    return parse_instant(text, name="--end") or 0


def _write_correlations(result: Result) -> None:
    """Each match of a sequence, sample or join as a group of rows under its key."""
    shown = result.correlations[:CORRELATIONS_SHOWN]
    for c in shown:
        _write_correlation(c)
    if len(result.correlations) > len(shown):
        _console().print(f"... {len(result.correlations) - len(shown):,} more "
                         "(--format json prints all)")


def _write_correlation(c: Correlation, *, completeness: bool = False) -> None:
    """One correlation: a title line (number, key, time span and, when asked, its
    completeness) over the table of its events."""
    from rich.markup import escape

    from tidal import render

    key = ", ".join(f"{k}={v}" for k, v in c.key.items()) or "(no key)"
    title = f"#{c.id}  {key}  {render.instant(c.start)} .. {render.instant(c.end)}"
    if completeness:
        title += "  " + (c.completeness if isinstance(c.completeness, str)
                         else "lacks " + ", ".join(c.completeness))
    events = c.events
    if "_sequence" in events.column_names:
        events = events.drop_columns(["_sequence"])
    _console().print(escape(title), style="bold", overflow="fold")  # a line of its own,
    _write(events, "table")  # not wrapped to the table's width as a table title would be


def cmd_watch(args: argparse.Namespace) -> int:
    """``tidal watch QUERY --store DIR``: live correlations until Ctrl-C or SIGTERM, then
    a summary line; exit 0."""
    import signal
    import threading

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _watch(args, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(args: argparse.Namespace, stop: threading.Event) -> int:
    out, err = _console(), _console(stderr=True)
    with _open(args, read_only=True) as store:
        sub = store.subscribe(args.query, language=args.language,
                              allowed_lateness=args.lateness, idle_advance=args.idle_advance,
                              from_seq=args.from_seq)
        with sub:
            where = (f"from _seq {args.from_seq}" if args.from_seq is not None
                     else f"after _seq {store.max_seq()}")
            err.print(f"watching {args.store} {where}; Ctrl-C stops", markup=False)
            while not stop.is_set():
                found = sub.get(WATCH_POLL_S)
                if found is not None:
                    _write_correlation(found, completeness=True)
                elif sub.closed:  # the store went away: nothing more will come
                    break
        while (found := sub.get(0)) is not None:  # found before the stop, not yet shown
            _write_correlation(found, completeness=True)
        stats = sub.stats()
    out.print(f"stopped: {stats.correlations:,} correlations, {stats.late:,} late events, "
              f"{stats.evicted:,} evicted (of {stats.events:,} events seen)")
    sys.stdout.flush()
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """``tidal stats --store DIR``."""
    with _open(args, read_only=True) as store:
        stats = store.stats()
        ts_field = store.config.timestamp_field
        times = store.scan([ts_field]).read_all().column(ts_field)
    from tidal import render
    from tidal.plots import histogram

    positions = stats.pop("positions")
    shown = dict(sorted(positions.items())[:POSITIONS_SHOWN])
    if len(positions) > POSITIONS_SHOWN:
        shown["..."] = f"{len(positions) - POSITIONS_SHOWN:,} more sources"
    stats["positions"] = shown
    if stats.get("wal_fsync"):
        stats["wal_fsync"].pop("buckets", None)
    out = _console()
    out.print(render.stats_table(stats, title=str(args.store)))
    import pyarrow.compute as pc

    out.print(histogram(pc.cast(times, "int64").to_numpy(), width=min(72, out.width - 2)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """``tidal check --store DIR``: exit 0 when intact, 1 when something is damaged."""
    from pathlib import Path

    from tidal.store.check import check_store

    report = check_store(Path(args.store))
    out = _console()
    for note in report.notes:
        out.print(f"note: {note}")
    for problem in report.problems:
        out.print(f"[red]problem:[/red] {problem}")
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    out.print(f"{args.store}: {verdict} ({report.segments} segments with "
              f"{report.segment_events:,} events, {report.wal_events:,} events in the WAL)")
    return 0 if report.ok else 1


def cmd_repair(args: argparse.Namespace) -> int:
    """``tidal repair --store DIR``: salvage, then report what was saved and lost."""
    with _open(args, read_only=False, repair=True) as store:
        report = store.repair_report
        max_seq = store.max_seq()
    out = _console()
    out.print(str(report) if report is not None else "nothing to repair")
    out.print(f"{args.store}: opens again; highest _seq {max_seq}")
    return 0


def _write(table: pa.Table, fmt: str, title: str | None = None) -> None:
    from tidal import render

    if fmt == "table":
        console = _console()
        if table.num_rows == 0:
            console.print(f"{title}: no events" if title else "no rows")
            return
        console.print(render.rich_table(table, title=title))
        if table.num_rows > render.TABLE_ROWS:
            console.print(f"... {table.num_rows - render.TABLE_ROWS:,} more rows "
                          "(--format json or csv prints all)")
    elif fmt == "json":
        render.write_json_lines(table, sys.stdout.buffer)
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(render.printable(table, nested_as_json=True), sys.stdout.buffer)
    sys.stdout.flush()


# ---------------------------------------------------------------- demo and bench


def cmd_demo(args: argparse.Namespace) -> int:
    """``tidal demo [--store DIR] [--events N]``."""
    from pathlib import Path

    from tidal._demo import run_demo

    run_demo(Path(args.store), args.events, _console())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``tidal bench [NAME...] [--events N] [--json PATH]``."""
    from tidal.bench.harness import run

    run(args.names, args.events, args.json, _console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
