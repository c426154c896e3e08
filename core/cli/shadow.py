"""The shadow command: put a version in shadow (it scores the live predictions, never answers), take
it out, score what it has not scored yet, or show its evidence beside the version that answered."""
from __future__ import annotations

import json

import click

from ..errors import InvalidInput
from .base import MAX_COUNT, OneOf, WholeNumber, command
from .output import emit


@command("shadow", "put a version in shadow (it scores the live predictions, never answers), take it out "
                   "(--stop), or show its evidence beside the active version")
@click.argument("name")
@click.argument("version", required=False, type=WholeNumber(1, MAX_COUNT))
@click.option("--stop", is_flag=True, help="take the model's version out of shadow")
@click.option("--catch-up", is_flag=True, help="score now what the version in shadow has not scored yet")
@click.option("--by", type=OneOf(("day", "week", "month")), default="week", help="the evidence's period (default week)")
def cmd_shadow(args, store):
    from .. import shadow

    if args.version is not None and args.stop:
        raise InvalidInput("give a version to put in shadow, or --stop, not both")
    if args.version is not None:
        now = shadow.start(store, args.name, args.version, args.user)
        print(f"{now.model} v{now.version} is in shadow since {now.since:%Y-%m-%d %H:%M:%S}: it scores the live "
              "predictions in the server's background and never answers", file=args.console.err)
    elif args.stop:
        stopped = shadow.stop(store, args.name, args.user)
        print(f"{args.name} v{stopped} is out of shadow; its evidence stays readable" if stopped
              else f"{args.name} had no version in shadow; nothing changed", file=args.console.err)
    if args.catch_up:  # forwarded to a running server: in its low-priority worker, as its scorer does
        n = shadow.catch_up(store, args.name, background=store.serving is not None)
        print(f"scored {n} predictions in shadow", file=args.console.err)
    if args.version is None and not args.stop:
        show(args, store, shadow)


def show(args, store, shadow) -> None:
    """The summary line and the evidence per line x period (JSON: shadow.report)."""
    found = shadow.report(store, args.name, args.by)
    if args.format == "json":
        print(json.dumps(found, ensure_ascii=False), file=args.console.out)
        return
    whole = found["summary"]
    if whole is None:
        print(f"{args.name}: no version in shadow and no shadow evidence; put one in shadow with "
              f"`python -m core shadow {args.name} VERSION`", file=args.console.out)
        return
    v = whole["shadow_version"]
    print(f"v{v} " + ("in shadow" if whole["in_shadow"] else "out of shadow")
          + f": {whole['n']} predictions scored, {whole['pending']} not yet; agreement {_pct(whole['agreement'])}; "
          f"estimated accuracy {whole['active_versions']} {_pct(whole['active_estimate'])}, v{v} "
          f"{_pct(whole['shadow_estimate'])}" + (f" ({whole['not_estimated']})" if whole["not_estimated"] else ""),
          file=args.console.out)
    emit(args, shadow.evidence(store, args.name, args.by, v))


def _pct(value) -> str:
    return "–" if value is None or value != value else f"{value:.1%}"
