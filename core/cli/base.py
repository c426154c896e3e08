"""What every command shares: the click group, the `command` decorator that registers a command and
runs it (forwarding to a server, opening the store, deciding who acts), argument types, and how a
mistake becomes one sentence.

Only click and the small core modules are imported here: a command imports the heavy ones
(pandas, scikit-learn, jieba, duckdb) inside its function, so `python -m core --help` stays fast.
"""
from __future__ import annotations

import getpass
import importlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TextIO

import click

from .. import forward, settings
from ..errors import InvalidInput, PermissionDenied

USER_ERROR = 2
PROG = "python -m core"
FORMATS = ("table", "json", "csv")
MAX_COUNT = 1_000_000  # largest --k, --limit or version number the command line accepts
LARGEST_ID = 2 ** 63 - 1  # a prediction id is the store's BIGINT
PATH_ARGUMENTS = ("file", "out", "dest", "src")


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


def _terminal() -> bool:
    return sys.stdin.isatty()


@dataclass
class Call:
    """One run of the command line: its words, and the console given by a server (None: this process's)."""
    argv: list[str]
    console: Console
    local: bool


# --- argument types -------------------------------------------------------------------------------

class WholeNumber(click.ParamType):
    """A whole number in [lo, hi], so a huge or negative count is a sentence, not a database error."""
    name = "integer"

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi

    def convert(self, value, param, ctx):
        if isinstance(value, int):  # a default
            return value
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or not self.lo <= number <= self.hi:
            self.fail(f"must be a whole number from {self.lo} to {self.hi}, not {value!r}", param, ctx)
        return number


class OneOf(click.ParamType):
    """One of a list of names, given or read from a core module only when a value is checked or the
    command's help is shown (see the module doc)."""
    name = "choice"

    def __init__(self, names=(), module: str | None = None, attribute: str | None = None):
        self.names, self.module, self.attribute = tuple(names), module, attribute

    def choices(self) -> list[str]:
        if self.module is None:
            return list(self.names)
        return list(getattr(importlib.import_module(self.module, "core"), self.attribute))

    def get_metavar(self, param, ctx=None) -> str:
        return "[" + "|".join(self.choices()) + "]"

    def convert(self, value, param, ctx):
        if value in self.choices():
            return value
        self.fail(f"invalid choice: {value!r} (choose from {', '.join(self.choices())})", param, ctx)


def count_option(name: str, default: int | None, help: str):
    return click.option(name, type=WholeNumber(1, MAX_COUNT), default=default, help=help)


def filters(f):
    """--business-line, --since, --until, --version: which predictions a command reads."""
    for option in reversed([
            click.option("--business-line", "business_line", multiple=True,
                         help="only this business line (repeatable)"),
            click.option("--since", help="from this date or time (inclusive)"),
            click.option("--until", help="before this date or time (exclusive)"),
            count_option("--version", None, "only predictions made by this version")]):
        f = option(f)
    return f


def out_options(what: str):
    def decorate(f):
        f = click.option("--excel", is_flag=True, help="write the --out file for Excel: a byte-order mark, and a ' "
                                                        "before a cell that starts like a formula (=, +, -, @)")(f)
        return click.option("--out", help=f"write {what} to this CSV file (plain UTF-8, every cell as stored)")(f)
    return decorate


def _common_options(defaults: bool) -> list[click.Option]:
    """--store, --user, --format, accepted before the command and after it (after it, they default to
    None, so a value given before the command stands unless the command's own overrides it)."""
    return [
        click.Option(["--store"], help=f"store file (default: $MMS_STORE or {settings.SETTINGS['store'].default})"),
        click.Option(["--user"], help="who acts (default: $MMS_USER or cli); once the store has users, a write "
                                      "needs $MMS_TOKEN or this user's password at a terminal"),
        click.Option(["--format"], type=OneOf(FORMATS), default="table" if defaults else None,
                     help="how tables and records are printed"),
    ]


# --- the group and the command decorator ----------------------------------------------------------

class _Group(click.Group):
    """Commands listed in the order they were added; an unknown one is named as argparse named it."""

    def list_commands(self, ctx):
        return list(self.commands)

    def resolve_command(self, ctx, args):
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            raise click.UsageError(f"argument COMMAND: invalid choice: {args[0]!r} "
                                   f"(choose from {', '.join(self.commands)})", ctx)
        return super().resolve_command(ctx, args)


def _top(**_options):
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is None:
        raise click.UsageError("the following arguments are required: COMMAND", ctx)


app = _Group(name="core", help="MMS: model management for text classifiers.", callback=_top,
             params=_common_options(defaults=True), invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})


def command(name: str, help: str, *, reads: bool | Callable = False, creates_store: bool = False,
            exclusive: tuple[str, str] | None = None):
    """Register the decorated function as the command `name`. Its click arguments and options sit
    on it, as usual; it is called as body(args, store) with every option in `args` (with --store,
    --user, --format, --out, --excel and args.console) once the store is open and the caller known.

    reads: the command only reads (or a function of args saying so), so it needs no credential;
    creates_store: the command may start a new store where there is none;
    exclusive: two options that cannot both be given."""
    def decorate(body):
        params = list(reversed(getattr(body, "__click_params__", []))) + _common_options(defaults=False)

        def callback(**values):
            return _run(name, body, values, reads, creates_store, exclusive)

        app.add_command(click.Command(name, callback=callback, params=params, help=help, short_help=help,
                                      context_settings={"help_option_names": ["-h", "--help"]}))
        return body
    return decorate


def _run(name, body, values, reads, creates_store, exclusive) -> int:
    ctx = click.get_current_context()
    call: Call = ctx.find_object(Call)
    for param in ctx.command.params:  # a repeatable option given no time is None, given some a list
        if isinstance(param, click.Option) and param.multiple:
            values[param.name] = list(values[param.name]) or None
    args = SimpleNamespace(**{"out": None, "excel": False, **values}, command=name, console=call.console)
    if exclusive and None not in (values[exclusive[0]], values[exclusive[1]]):
        raise click.UsageError(f"argument --{exclusive[1]}: not allowed with argument --{exclusive[0]}", ctx)
    for key, value in ctx.parent.params.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if call.local:
        server = forward.find(Path(args.store or settings.get("store")).resolve())
        if server is not None:
            return through_server(server, args, call.argv)
    if args.console.cwd:
        _as_the_caller_meant(args, Path(args.console.cwd))
    if args.out:
        check_out_path(args.out)
    store = _open_store(args, creates_store)
    args.user = _acting_user(args, store, reads(args) if callable(reads) else reads)
    body(args, store)
    return 0


def sentence(e: click.UsageError) -> str:
    """A command-line mistake as one sentence, worded as the argparse parser before click worded it."""
    where = e.ctx.command_path if e.ctx is not None else PROG
    if isinstance(e, click.NoSuchOption):
        said = f"unrecognized arguments: {e.option_name}"
    elif isinstance(e, click.MissingParameter) and e.param is not None:
        said = f"the following arguments are required: {_named(e.param)}"
    elif isinstance(e, click.BadParameter) and e.param is not None:
        said = f"argument {_named(e.param)}: {e.message}"
    elif extra := re.match(r"Got unexpected extra arguments? \((.*)\)$", e.message):
        said = f"unrecognized arguments: {extra[1]}"
    else:
        said = e.message
    return f"error: {said} (see `{where} --help`)"


def _named(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return param.opts[0]
    return param.metavar or param.name


# --- the pipeline every command goes through ------------------------------------------------------

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


def _open_store(args, creates_store: bool):
    """The store the command works on; a store path with nothing there is refused unless the command creates one."""
    import duckdb  # after parsing, like the store module (which imports duckdb and pandas)

    from ..store import Store

    store = args.console.store or Store(args.store)
    if not store.is_lake and store.path.is_dir():  # a DuckLake's path is only a name (on S3 not even a folder)
        raise InvalidInput(f"--store {store.path} is a folder; give the store's file, e.g. {store.path / 'mms.duckdb'}")
    if not store.exists():
        if not creates_store:
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


def _acting_user(args, store, reads: bool) -> str:
    """Who a command acts as. Once the store has users, a write needs a credential, so the audit log
    tells the truth: the token in MMS_TOKEN (--user, if given, must name its user), or the password
    of --user typed at a terminal (create-token, which makes the first token, also takes it on stdin;
    its --user defaults to the token's user). Reads need none, and an open store takes --user as said."""
    from .. import auth

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


def _as_the_caller_meant(args, cwd: Path) -> None:
    """Relative paths a command line sent are relative to its folder, not the server's."""
    for name in PATH_ARGUMENTS:
        value = getattr(args, name, None)
        if value:
            setattr(args, name, str(cwd / Path(value).expanduser()))


def through_server(server: forward.Server, args, argv: list[str]) -> int:
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
