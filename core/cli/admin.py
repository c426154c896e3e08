"""Commands that look after users and the store: add-user, remove-user, users, create-token, backup,
restore, migrate, check, compact."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import MMSError
from .base import OneOf, command
from .output import emit, emit_record


def _password(args) -> str:
    if args.password_stdin:
        return args.console.stdin.readline().rstrip("\n")
    return args.console.ask_password(f"password for {args.name}: ")


@command("add-user", "add or update a user (the first one must be an owner)", creates_store=True)
@click.argument("name")
@click.option("--role", required=True, type=OneOf(module=".auth", attribute="ROLES"), help="the user's role")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def cmd_add_user(args, store):
    from .. import auth

    auth.add_user(store, args.name, args.role, _password(args), args.user)
    emit_record(args, {"user": args.name, "role": args.role})


@command("remove-user", "remove a user and their API tokens")
@click.argument("name")
def cmd_remove_user(args, store):
    from .. import auth

    auth.remove_user(store, args.name, args.user)
    emit_record(args, {"removed": args.name})


@command("users", "list users and roles", reads=True)
def cmd_users(args, store):
    from .. import auth

    emit(args, auth.users(store))


@command("create-token", "create an API bearer token acting as a user")
@click.argument("name")
@click.option("--label", help="what the token is for")
@click.option("--password-stdin", is_flag=True,
              help="read the password of the owner asking (--user, default NAME) from standard input")
def cmd_create_token(args, store):
    from .. import auth

    token = auth.create_token(store, args.name, args.user, args.label or "")
    emit_record(args, {"user": args.name, "token": token})
    print("keep this token now: it is stored only as a hash and cannot be shown again", file=args.console.err)


@command("backup", "copy the whole store (database and model files) into a new folder")
@click.argument("dest")
def cmd_backup(args, store):
    from .. import backup

    backup.backup(store, args.dest, args.user)
    emit_record(args, {"backup": args.dest})


@command("restore", "replace the store with a backup (the old file is kept beside it)", creates_store=True)
@click.argument("src")
@click.option("--key", help="the key the backup was signed with (default: MMS_BACKUP_KEY, else the key the "
                            "store keeps)")
def cmd_restore(args, store):
    from .. import backup

    kept = backup.restore(store, args.src, args.user, key=args.key)
    record = {"restored": str(store.path)}
    if kept is not None:
        record["previous_store_kept_as"] = str(kept)
    emit_record(args, record)


@command("migrate", "copy the whole store into a new store on the other backend: an embedded file into a "
                    "DuckLake, or back; all or nothing")
@click.option("--to", required=True, metavar="URL", help="ducklake:postgres:... or a new store file's path")
@click.option("--data-path", help="the new DuckLake's folder or s3://bucket/prefix (default: MMS_DATA_PATH)")
def cmd_migrate(args, store):
    from .. import migrate
    from ..store import Store

    def callers(where: str | None) -> str | None:  # a folder or file the caller named, not a URL
        if not where or not args.console.cwd or ":" in where.split("/")[0]:
            return where
        return str(Path(args.console.cwd) / Path(where).expanduser())

    done = migrate.migrate(store, Store(callers(args.to), data_path=callers(args.data_path)), args.user)
    for table, n in done.rows.items():
        print(f"{table}: {n} rows", file=args.console.out)
    print(f"model files: {done.model_files}", file=args.console.out)
    print(f"migrated to {done.target}; point MMS_STORE (and MMS_DATA_PATH) there to use it", file=args.console.err)


@command("check", "verify every model file's hash and each model's active version; remove model files no "
                  "version references")
def cmd_check(args, store):
    from .. import check

    report = check.check_store(store)
    for sentence in report.sentences():
        print(sentence, file=args.console.out)
    if not report.ok:
        raise MMSError(f"{len(report.problems)} problem(s) above need you")


@command("compact", "merge statistics rollup rows; on DuckLake also write inlined rows and small files out as "
                    "larger Parquet files (the server does this every MMS_COMPACT_SECONDS)")
@click.option("--orphans", is_flag=True, help="on DuckLake, also delete Parquet files no snapshot references that "
                                              "are over an hour old (`check` lists them)")
def cmd_compact(args, store):
    from .. import compact

    for what, n in compact.compact(store, orphans=args.orphans).items():
        print(f"{what.replace('_', ' ')}: {n}", file=args.console.out)
