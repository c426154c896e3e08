"""Commands that read what happened: stats, events."""
from __future__ import annotations

import click

from .base import OneOf, command, count_option, filters, out_options
from .output import emit


@command("stats", "statistics per business line and period: volume, confidence, estimated / audited / "
                  "hard-example accuracy (never mixed) and drift against a reference", reads=True)
@click.argument("name")
@click.option("--by", type=OneOf(["day", "week", "month"]), default="day")
@filters
@click.option("--no-drift", is_flag=True, help="leave out the drift measures (they sample texts)")
@click.option("--reference-since", help="compare with predictions from this day instead of the training data")
@click.option("--reference-until", help="end (exclusive) of the reference window")
@out_options("the table")
def cmd_stats(args, store):
    from .. import monitoring, stats

    window = None if args.reference_since is None else (args.reference_since, args.reference_until)
    table, _ = stats.stats_with_drift(store, args.name, args.by, business_lines=args.business_line, since=args.since,
                                      until=args.until, version=args.version, window=window,
                                      with_drift=not args.no_drift)
    emit(args, table, args.out)
    if args.format == "table" and not args.out:
        for column, meaning in monitoring.ACCURACIES.items():
            print(f"{column}: {meaning}", file=args.console.err)


@command("events", "the audit log, newest first", reads=True)
@click.argument("name", required=False)
@count_option("--limit", 100, "how many events (default 100)")
def cmd_events(args, store):
    from .. import registry

    emit(args, registry.events_table(store, args.name, limit=args.limit))
