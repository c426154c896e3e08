"""Commands on labelling: hard-examples, label, review, decide, history, overlap, guidelines, team."""
from __future__ import annotations

import json
from typing import TextIO

import click

from ..errors import InvalidInput
from .base import LARGEST_ID, OneOf, WholeNumber, command, count_option, filters, out_options
from .output import cut, emit, emit_record, gaps_as_dashes

PREDICTION_ID = WholeNumber(1, LARGEST_ID)
QUEUE_COLUMNS = ["prediction_id", "reason", "first_by", "first_label", "second_by", "second_label", "predicted",
                 "top_prob", "business_line", "waiting_since", "text"]


@command("hard-examples", "the predictions to label next")
@click.argument("name")
@count_option("--k", 50, "how many (default 50)")
@click.option("--strategy", default="uncertain_spread", type=OneOf(module=".sampling", attribute="EVERY_STRATEGY"),
              help="how examples are chosen (default least_confidence)")
@filters
@out_options("the examples")
def cmd_hard_examples(args, store):
    from .. import sampling

    found = sampling.select_hard_examples(store, args.name, args.k, args.user, args.strategy,
                                          business_lines=args.business_line, since=args.since,
                                          until=args.until, version=args.version)
    print(f"batch {found.batch_id} chosen by {found.strategy}", file=args.console.err)
    emit(args, to_label(found.examples), args.out)


def to_label(examples):
    """Hard examples as a file to fill in: the model's guess in suggested_label and an empty label
    column, so that `label` given the file back unchanged records nothing (not the guesses as truth)."""
    shown = examples.rename(columns={"label": "suggested_label"})
    shown.insert(shown.columns.get_loc("text") + 1, "label", "")
    return shown


@command("label", "record labels (columns prediction_id,label; label may be skip or unclear)")
@click.argument("name")
@click.argument("file")
def cmd_label(args, store):
    from .. import feedback
    from ..files import display_name, read_table

    filename = display_name(args.file)
    frame = read_table(args.file, filename)
    if "label" in frame and not frame["label"].str.strip().any():  # a hard-examples file given back as it came
        raise InvalidInput(f"{filename}: every label is empty, so nothing was recorded; fill in the label column "
                           f"(suggested_label is the model's guess, never recorded by itself)")
    ids = feedback.record_labels(store, args.name, frame, args.user, filename=filename)
    emit_record(args, {"recorded": len(ids)})


@command("review", "items waiting for an owner: two labellers' disagreements and items marked unclear, "
                   "oldest first", reads=True)
@click.argument("name")
@count_option("--limit", 100, "how many items (default 100)")
def cmd_review(args, store):
    from .. import agreement

    queue = agreement.review_queue(store, args.name)
    print(f"{len(queue)} waiting for review; decide one with `python -m core decide {args.name} PREDICTION_ID "
          f"LABEL` (or {agreement.DISCARD} to leave it out of training)" if len(queue) else
          "nothing waits for review: every item labelled twice agrees, and nothing is marked unclear",
          file=args.console.err)
    shown = queue[QUEUE_COLUMNS].head(args.limit)
    if args.format == "table":  # one line per item: texts cut, times to the minute
        shown = shown.assign(top_prob=shown["top_prob"].map(lambda p: f"{p:.1%}"),
                             waiting_since=shown["waiting_since"].dt.strftime("%Y-%m-%d %H:%M"),
                             text=shown["text"].map(lambda t: cut(t, 30)))
    emit(args, shown)


@command("decide", "decide a waiting item's LABEL: one of the model's labels, or skip, which leaves it out of "
                   "training (owners)")
@click.argument("name")
@click.argument("prediction_id", type=PREDICTION_ID, metavar="PREDICTION_ID")
@click.argument("label", metavar="LABEL")
def cmd_decide(args, store):
    from .. import agreement

    label = args.label.strip()
    agreement.decide(store, args.name, args.prediction_id, label, args.user)
    emit_record(args, {"prediction_id": args.prediction_id, "label": label,
                       "trained_on": label != agreement.DISCARD,
                       "waiting": len(agreement.review_queue(store, args.name))})


@command("history", "an item's full label history: its prediction, who gave which label and when, skips, "
                    "undone labels and the review's decision", reads=True)
@click.argument("name")
@click.argument("prediction_id", type=PREDICTION_ID, metavar="PREDICTION_ID")
def cmd_history(args, store):
    from .. import feedback

    text, history = feedback.label_history(store, args.name, args.prediction_id)
    shown = cut(text, 60) if args.format == "table" else text
    print(f"prediction {args.prediction_id}: {shown}", file=args.console.err)
    if args.format == "table":
        history = history.assign(at=history["at"].dt.strftime("%Y-%m-%d %H:%M"))
    emit(args, history)


@command("overlap", "the SHARE of labelled items a second labeller labels again, blind: from 0 (off) to 1, "
                    "e.g. 0.1 for 10 % (without SHARE, print it)", reads=lambda args: args.share is None)
@click.argument("name")
@click.argument("share", required=False, metavar="SHARE")
def cmd_overlap(args, store):
    from .. import agreement

    if args.share is not None:
        agreement.set_overlap_share(store, args.name, args.share, args.user)
    emit_record(args, {"model": args.name, "share": agreement.overlap_share(store, args.name)})


@command("guidelines", "a model's labelling guidelines (markdown); print them, or set them from --file or --text",
         reads=lambda args: args.file is None and args.text is None, exclusive=("file", "text"))
@click.argument("name")
@click.option("--file", help="set them from this text file (UTF-8 or GBK)")
@click.option("--text", help="set them to this text (\"\" clears them)")
def cmd_guidelines(args, store):
    from .. import feedback
    from ..files import read_text

    text = read_text(args.file) if args.file is not None else args.text
    if text is not None:
        feedback.set_guidelines(store, args.name, text, args.user)
    current = feedback.guidelines(store, args.name)
    if args.format == "json":
        print(json.dumps({"model": args.name, "guidelines": current}, ensure_ascii=False), file=args.console.out)
    elif current:
        print(current, file=args.console.out)
    else:
        print(f"{args.name} has no labelling guidelines yet; an owner writes them with --file or --text",
              file=args.console.err)


@command("team", "agreement between labellers (Cohen's kappa per pair and business line) and each labeller's "
                 "figures", reads=True)
@click.argument("name")
def cmd_team(args, store):
    from .. import agreement

    report = agreement.team_report(store, args.name)
    if args.format == "json":
        print(json.dumps({"model": args.name, **report.record()}, ensure_ascii=False), file=args.console.out)
        return
    _print_team(report, args.console.out)


def _print_team(report, out: TextIO) -> None:
    kappa, raw, n = report.overall
    shown_kappa = "–" if kappa != kappa else f"{kappa:.2f}"  # NaN: both used one label only
    overall = f"{n} items labelled twice, raw agreement {raw:.1%}, Cohen's kappa {shown_kappa}" if n else \
        "no item is labelled twice yet"
    print(f"overlap share {report.share:g}; {report.waiting} waiting for review; {overall}", file=out)
    labellers = report.labellers.copy()
    labellers.insert(3, "active_minutes", labellers.pop("active_hours") * 60)
    for title, frame in (("per labeller pair", report.pairs), ("per business line", report.lines),
                         ("per labeller (decisions per hour of active time; audit accuracy on audit items "
                          "someone else decided too)", labellers)):
        print(f"\n{title}", file=out)
        print(gaps_as_dashes(frame).to_string(index=False, float_format=lambda x: f"{x:.3f}") if len(frame)
              else "(none)", file=out)
