"""The ``streams`` command: worker, migrate, topics, schemas, publish, backfill, simulate, demo, report,
erase, eraser, settings.

Logging is configured here, once: the worker logs at INFO, its client libraries included (an
operator reads them); every other command keeps the client libraries' INFO lines (connections,
metadata, group joins) out of its output unless ``-v`` asks for them. Every setting is an
environment variable (``streams settings`` lists them); invalid values stop the command with a
message naming the variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from streams.errors import SettingsError, StreamsError
from streams.runtime import logs
from streams.settings import Settings, describe, load_settings

log = logging.getLogger("streams")

#: Where ``streams report`` and ``streams demo`` write the page unless told otherwise.
DEFAULT_REPORT_PATH = "interactions-report.html"

#: Client libraries that log every connection and metadata refresh at INFO.
LIBRARY_LOGGERS = ("kafka", "aiokafka", "faust", "mode", "clickhouse_driver", "urllib3", "asyncio", "httpx2")


def _cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime.worker import run_worker
    from streams.topics import require_topics

    require_topics(settings)
    run_worker(settings)
    return 0


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from streams.clickhouse.migrate import migrate

    applied = migrate(settings, dry_run=args.dry_run)
    verb = "would apply" if args.dry_run else "applied"
    print(f"{verb} {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def _cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from streams.topics import ensure_topics

    report = ensure_topics(settings)
    print(f"created: {', '.join(report.created) or 'none'}")
    print(f"existing: {', '.join(report.existing) or 'none'}")
    for drift in report.drift:
        print(f"DRIFT {drift}")
    return 1 if report.drift and args.strict else 0


def _cmd_schemas(settings: Settings, args: argparse.Namespace) -> int:
    from streams.contracts.confluent import client_from_settings
    from streams.contracts.subjects import register_contracts

    if not settings.schema_registry_url:
        raise SettingsError("STREAMS_SCHEMA_REGISTRY_URL is empty: there is no registry to register the contracts in")
    done = register_contracts(client_from_settings(settings), settings.input_topics)
    for registration in done:
        print(registration)
    print(f"registered {sum(r.registered for r in done)} new, {sum(not r.registered for r in done)} already there")
    return 0


def _cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    from streams.publisher import Publisher, publish_lines

    if args.event:
        lines: Sequence[str] = [args.event]
    elif args.file == "-":
        lines = sys.stdin.read().splitlines()
    else:
        with open(args.file, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    with Publisher(settings) as publisher:
        report = publish_lines(publisher, lines)
    for error in report.errors:
        print(f"line {error.line}: {error.message}", file=sys.stderr)
    print(f"sent {report.sent}, failed {report.failed}")
    return 1 if report.failed else 0


def _cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.backfill import backfill, parse_cutover, report_lines, spooled_stdin

    cutover_ms = parse_cutover(args.cutover)
    path = spooled_stdin() if args.file == "-" else Path(args.file)
    try:
        report = backfill(settings, path, cutover_ms, max_rate=args.max_rate)
    finally:
        if args.file == "-":
            path.unlink()
    for line in report_lines(report):
        print(line, file=sys.stderr if line.startswith("item ") else sys.stdout)
    # 1 while the import has bad lines (this run's or an earlier one's); an import already done: 0.
    return 1 if report.state.invalid and not report.already_done else 0


def _cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.simulate import SimulationConfig, generate, publish, recent_day_start_ms, write_jsonl

    # Published: recent, and within the topics' retention (so without the shares made before the
    # span). Written to a file: the same for a seed on any day.
    config = SimulationConfig(seed=args.seed, customers=args.customers, events=args.events)
    records = generate(config if args.out else
                       dataclasses.replace(config, start_ms=recent_day_start_ms(), old_shares=False))
    if args.out:
        print(f"wrote {write_jsonl(records, args.out)} records to {args.out}")
    else:
        from streams.publisher import Publisher
        from streams.topics import ensure_topics

        ensure_topics(settings)
        with Publisher(settings) as publisher:
            sent = publish(records, publisher, settings)
        print(f"published {sum(sent.values())} records: " + ", ".join(f"{t}={n}" for t, n in sent.items()))
    return 0


def _cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.demo import run_demo

    return run_demo(settings, customers=args.customers, events=args.events, report_path=args.report,
                    prometheus_url=args.prometheus_url)


def _cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.report import write_report

    print(write_report(settings, args.out))
    return 0


def _cmd_erase(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.erase import erasure_status, request_erasure

    if args.status:
        for line in erasure_status(settings, args.status):
            print(line)
        return 0
    request_id = request_erasure(settings, args.ids, args.request_id)
    print(f"request {request_id}: {len(set(args.ids))} id(s) sent; "
          f"follow it with `streams erase --status {request_id}`")
    return 0


def _cmd_eraser(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime.eraser import run_eraser

    run_eraser(settings, once=args.once)
    return 0


def _cmd_settings(settings: Settings, args: argparse.Namespace) -> int:
    defaults = {name: default for name, default, _ in describe()}
    for name, value, doc in describe(settings):
        changed = "" if value == defaults[name] else f" (default {defaults[name]})"
        print(f"{name:40} {value:28} {doc}{changed}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streams", description=__doc__,
        epilog="Settings come from STREAMS_* environment variables; `streams settings` lists them.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the client libraries' INFO logs too (the worker always shows them)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a pipeline worker").set_defaults(run=_cmd_worker)
    migrate = sub.add_parser("migrate", help="apply ClickHouse migrations (--dry-run prints them)")
    migrate.add_argument("--dry-run", action="store_true", help="print the SQL, apply nothing")
    migrate.set_defaults(run=_cmd_migrate)
    topics = sub.add_parser("topics", help="create missing topics, report drift")
    topics.add_argument("--strict", action="store_true", help="exit 1 when a topic drifted")
    topics.set_defaults(run=_cmd_topics)
    schemas = sub.add_parser("schemas", help="register schemas/ in the Schema Registry, compatibility checked first")
    schemas.set_defaults(run=_cmd_schemas)
    publish = sub.add_parser("publish", help="publish events given as JSON")
    source = publish.add_mutually_exclusive_group(required=True)
    source.add_argument("--event", help="one event as a JSON object")
    source.add_argument("--file", help="JSON lines file, or - for stdin")
    publish.set_defaults(run=_cmd_publish)
    backfill = sub.add_parser("backfill", help="import history (JSON lines or an Avro container file) exactly, "
                              "resumable, beside live traffic")
    backfill.add_argument("file", help="JSON lines or Avro object container file, or - for stdin")
    backfill.add_argument("--cutover", required=True,
                          help="where history ends (ISO 8601 with offset, or epoch ms): events before it are "
                          "imported, the live topics carry the rest")
    backfill.add_argument("--max-rate", type=float, default=0.0, help="events per second at most (0: no limit)")
    backfill.set_defaults(run=_cmd_backfill)
    simulate = sub.add_parser("simulate", help="generate seeded traffic: to Kafka over the UTC day "
                                               "before yesterday, or --out FILE over 2026-11-01")
    for name, default in (("seed", 1), ("customers", 1_000), ("events", 20_000)):
        simulate.add_argument(f"--{name}", type=int, default=default)
    simulate.add_argument("--out", help="write JSON lines here instead of publishing")
    simulate.set_defaults(run=_cmd_simulate)
    demo = sub.add_parser("demo", help="topics, migrations, a worker, traffic, and what landed")
    demo.add_argument("--customers", type=int, default=500)
    demo.add_argument("--events", type=int, default=10_000)
    demo.add_argument("--report", default=DEFAULT_REPORT_PATH, help="where to write the HTML report")
    demo.add_argument("--prometheus-url", default="http://127.0.0.1:19090",
                      help="the Prometheus to point at (the local stack's)")
    demo.set_defaults(run=_cmd_demo)
    report = sub.add_parser("report", help="write an HTML page of charts of what landed in ClickHouse")
    report.add_argument("--out", default=DEFAULT_REPORT_PATH, help="the page's path")
    report.set_defaults(run=_cmd_report)
    erase = sub.add_parser("erase", help="request the erasure of people by id, or report a request (--status)")
    erase.add_argument("ids", nargs="*", help="customer or anonymous ids to erase")
    erase.add_argument("--request-id", help="the request's id (default: a new UUID); repeating one is safe")
    erase.add_argument("--status", metavar="REQUEST_ID", help="report this request target by target")
    erase.set_defaults(run=_cmd_erase)
    eraser = sub.add_parser("eraser", help="delete erased people's rows from ClickHouse and verify it (a service)")
    eraser.add_argument("--once", action="store_true", help="one pass, then exit")
    eraser.set_defaults(run=_cmd_eraser)
    sub.add_parser("settings", help="list every setting and its value (secrets masked)").set_defaults(
        run=_cmd_settings)
    return parser


def configure_logging(command: str, *, verbose: bool) -> None:
    """INFO on the console; the client libraries' INFO lines only for the worker or with ``-v``."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.INFO)
    quiet = command != "worker" and not verbose
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)
    # kafka-python warns whenever a step of its network loop took over 100 ms, which a short
    # publishing burst on a busy machine does; a command's user can do nothing about it.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR if quiet else logging.NOTSET)
    logs.install()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.command, verbose=args.verbose)
    try:
        settings = load_settings()
        return int(args.run(settings, args))
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except StreamsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
