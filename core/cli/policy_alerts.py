"""Commands of the loop that runs itself: policy (show, set, runs, check) and alerts (list, set, ack,
deliveries)."""
from __future__ import annotations

import click

from ..errors import InvalidInput
from .base import MAX_COUNT, OneOf, command, count_option
from .output import emit, emit_record

OFF = ("off", "none")  # what turns a number-valued trigger or threshold off


def _number(value: str | None):
    """An option's text as core takes it: None when not given, "" (off) for off/none, else the text
    (core checks it and names the field in its sentence)."""
    if value is None:
        return None
    return "" if value.strip().lower() in OFF else value


def _given(**values) -> dict:
    return {k: v for k, v in values.items() if v is not None}


@command("policy", "a model's retraining policy: show it, set it (owners), list its runs, or run one due "
                   "check now (every model with a policy without NAME)",
         reads=lambda args: args.action in ("show", "runs"))
@click.argument("action", type=OneOf(["show", "set", "runs", "check"]))
@click.argument("name", required=False)
@click.option("--on/--off", "enabled", default=None, help="retrain by itself, or not (set)")
@click.option("--new-labels", help="retrain once N new labels have arrived since the newest version (off: no)")
@click.option("--on-drift/--no-drift", "on_drift", default=None, help="retrain when drift is flagged on a line")
@click.option("--every-hours", help="retrain every H hours when there is anything new (off: no)")
@click.option("--mode", type=OneOf(["full", "incremental"]), help="full retrain or incremental update")
@click.option("--shadow-hours", help="shadow the new version H hours before the guard judges it (off: no)")
@click.option("--shadow-predictions", help="... or until it scored N live predictions, whichever first (off: no)")
@click.option("--period", type=OneOf(["day", "week", "month"]), help="the line x period drift is read per")
@count_option("--limit", 100, "how many runs (default 100)")
def cmd_policy(args, store):
    from .. import policy

    if args.action == "check":
        done = ({args.name: policy.check_model(store, args.name)} if args.name else policy.check_all(store))
        import pandas as pd

        emit(args, pd.DataFrame({"model": list(done), "what": list(done.values())}, columns=["model", "what"]))
        return
    if not args.name:
        raise InvalidInput(f"policy {args.action} needs a model name")
    if args.action == "runs":
        emit(args, policy.runs_table(store, args.name, args.limit))
        return
    if args.action == "set":
        changes = _given(enabled=args.enabled, new_labels=_number(args.new_labels), on_drift=args.on_drift,
                         every_hours=_number(args.every_hours), mode=args.mode,
                         shadow_hours=_number(args.shadow_hours),
                         shadow_predictions=_number(args.shadow_predictions), period=args.period)
        if not changes:
            raise InvalidInput("policy set needs at least one setting, e.g. --on --new-labels 500")
        chosen = policy.set_policy(store, args.name, args.user, **changes)
    else:
        chosen = policy.get_policy(store, args.name)
    emit_record(args, {"model": args.name, **chosen.to_dict(), "policy": chosen.describe()})


@command("alerts", "alerts: list them (one model's or all), show or set a model's thresholds and webhook "
                   "(owners), acknowledge one (owners, analysts), or list one's delivery attempts",
         reads=lambda args: args.action in ("list", "show", "deliveries"))
@click.argument("action", type=OneOf(["list", "show", "set", "ack", "deliveries"]))
@click.argument("target", required=False, metavar="NAME|ALERT_ID")
@click.option("--state", type=OneOf(["open", "acknowledged"]), help="only open or only acknowledged alerts (list)")
@click.option("--drift/--no-drift", "drift", default=None, help="alert when drift is flagged on a line")
@click.option("--estimated-below", help="alert when the estimated accuracy is below this share, e.g. 0.85 (off: no)")
@click.option("--audited-upper-below", help="alert when the audited interval's upper bound is below this share (off: no)")
@click.option("--volume-drop", help="alert when volume falls by this percentage against the period before (off: no)")
@click.option("--policy-refused/--no-policy-refused", "policy_refused", default=None,
              help="alert when a policy run's version is refused by the guard")
@click.option("--webhook", help="POST each alert as JSON to this http(s) URL (off: none)")
@click.option("--period", type=OneOf(["day", "week", "month"]), help="the line x period figures are read per")
@count_option("--limit", 100, "how many alerts (default 100)")
def cmd_alerts(args, store):
    from .. import alerts

    if args.action == "list":
        emit(args, alerts.alerts_table(store, args.target, args.state, args.limit).drop(columns=["details", "url"]))
        return
    if not args.target:
        raise InvalidInput(f"alerts {args.action} needs " + ("an alert id" if args.action in ("ack", "deliveries")
                                                              else "a model name"))
    if args.action in ("ack", "deliveries"):
        if not args.target.isdigit() or int(args.target) > MAX_COUNT * 10**9:
            raise InvalidInput(f"an alert id is a whole number, not {args.target!r}")
        if args.action == "deliveries":
            emit(args, alerts.deliveries(store, int(args.target)))
        else:
            row = alerts.acknowledge(store, int(args.target), args.user)
            emit_record(args, {"alert_id": int(row["alert_id"]), "state": row["state"],
                               "acknowledged_by": row["acknowledged_by"], "message": row["message"]})
        return
    if args.action == "set":
        webhook = None if args.webhook is None else ("" if args.webhook.strip().lower() in OFF else args.webhook)
        changes = _given(drift=args.drift, estimated_below=_number(args.estimated_below),
                         audited_upper_below=_number(args.audited_upper_below),
                         volume_drop_percent=_number(args.volume_drop), policy_refused=args.policy_refused,
                         webhook=webhook, period=args.period)
        if not changes:
            raise InvalidInput("alerts set needs at least one setting, e.g. --estimated-below 0.85")
        chosen = alerts.set_settings(store, args.target, args.user, **changes)
    else:
        chosen = alerts.get_settings(store, args.target)
    emit_record(args, {"model": args.target, **chosen.to_dict(), "alerts": "; ".join(chosen.describe()) or "none"})
