"""Alerts: per model thresholds, the alerts they raise, and their delivery to a webhook.

An alert is raised once per model, kind and subject (a line x period, a policy run), kept in the
store (open until an owner or analyst acknowledges it) and, when the model has a webhook URL, POSTed
to it as JSON by a sender thread: retried with growing waits, every attempt recorded (sent, failed,
why). The record is written before any attempt, so a receiver that is down never loses an alert.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, fields

import pandas as pd

from . import auth, drift, registry, settings, stats
from . import store as db
from .errors import AlertNotFound, InvalidInput, MMSError, VersionNotFound
from .slices import PERIODS
from .store import Store

log = logging.getLogger("mms.alerts")

DRIFT, ESTIMATED, AUDITED, VOLUME, REFUSED = ("drift", "estimated_accuracy", "audited_upper", "volume_drop",
                                              "policy_refused")
KINDS = {
    DRIFT: "drift flagged on a business line",
    ESTIMATED: "estimated accuracy below the threshold",
    AUDITED: "the audited accuracy's 95 % interval entirely below the threshold (its upper bound)",
    VOLUME: "volume fell by at least the threshold's percentage against the period before",
    REFUSED: "a policy run's version refused by the promotion guard",
}
OPEN, ACKNOWLEDGED = "open", "acknowledged"
NONE, PENDING, SENT, FAILED = "none", "pending", "sent", "failed"
TIMEOUT_SECONDS = 5.0  # one POST's longest wait for the receiver


@dataclass(frozen=True)
class AlertSettings:
    """A model's thresholds; None (or False) leaves that alert off. Accuracies are shares (0.85),
    the volume drop a percentage (30 = a fall of 30 % or more)."""
    drift: bool = False
    estimated_below: float | None = None
    audited_upper_below: float | None = None
    volume_drop_percent: float | None = None
    policy_refused: bool = True
    webhook: str = ""
    period: str = "week"  # the line x period the figures are read per

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> list[str]:
        """Each alert that is on, in words."""
        on = []
        if self.drift:
            on.append("drift flagged on a line")
        if self.estimated_below is not None:
            on.append(f"estimated accuracy below {self.estimated_below:.0%}")
        if self.audited_upper_below is not None:
            on.append(f"audited interval's upper bound below {self.audited_upper_below:.0%}")
        if self.volume_drop_percent is not None:
            on.append(f"volume down {self.volume_drop_percent:g} % or more against the {self.period} before")
        if self.policy_refused:
            on.append("a policy run refused by the guard")
        return on


def _share(name: str, value) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a number between 0 and 1 (a share, 0.85 for 85 %), not {value!r}") from None
    if not math.isfinite(number) or not 0 < number <= 1:
        raise InvalidInput(f"{name} must be a share above 0 and at most 1 (0.85 for 85 %), not {value}")
    return number


def _percent(name: str, value) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a percentage between 0 and 100, not {value!r}") from None
    if not math.isfinite(number) or not 0 < number <= 100:
        raise InvalidInput(f"{name} must be a percentage above 0 and at most 100 (a fall of 30 % is 30), not {value}")
    return number


def check_webhook(url: str) -> str:
    """The webhook URL as stored ('' for none), or InvalidInput unless it is http(s) with a host."""
    url = (url or "").strip()
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"a webhook URL must start with http:// or https:// and name a host, not {url[:200]!r}")
    if any(ch.isspace() for ch in url):
        raise InvalidInput(f"a webhook URL cannot contain spaces: {url[:200]!r}")
    return url


def validate(values: dict) -> AlertSettings:
    """AlertSettings from loose values (CLI, API, page), every field checked; InvalidInput names the field."""
    unknown = set(values) - {f.name for f in fields(AlertSettings)}
    if unknown:
        raise InvalidInput(f"unknown alert setting(s): {', '.join(sorted(unknown))}")
    period = values.get("period", "week")
    if period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    return AlertSettings(drift=on_or_off("drift", values.get("drift", False)),
                         estimated_below=_share("estimated_below", values.get("estimated_below")),
                         audited_upper_below=_share("audited_upper_below", values.get("audited_upper_below")),
                         volume_drop_percent=_percent("volume_drop_percent", values.get("volume_drop_percent")),
                         policy_refused=on_or_off("policy_refused", values.get("policy_refused", True)),
                         webhook=check_webhook(values.get("webhook", "")), period=period)


def on_or_off(name: str, value) -> bool:
    """A setting given as a bool or as on/off, yes/no, true/false, 1/0; a sentence otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("on", "yes", "true", "1", "off", "no", "false", "0"):
        return value.strip().lower() in ("on", "yes", "true", "1")
    raise InvalidInput(f"{name} must be on or off, not {value!r}")


def get_settings(store: Store, name: str) -> AlertSettings:
    """The model's alert settings (the defaults until an owner sets them)."""
    with store.connect() as con:
        row = db.alert_settings_row(con, registry.find_model(con, name).model_id)
    return AlertSettings(**json.loads(row["settings"])) if row else AlertSettings()


def set_settings(store: Store, name: str, user: str, **changes) -> AlertSettings:
    """The one writer of a model's alert settings (owners): the given fields change, the rest stay.
    A bad value is refused with a sentence and nothing changes."""
    with store.transaction() as con:
        auth.require(con, user, "manage")
        model = registry.find_model(con, name)
        row = db.alert_settings_row(con, model.model_id)
        current = json.loads(row["settings"]) if row else AlertSettings().to_dict()
        chosen = validate({**current, **changes})
        db.insert_alert_settings(con, model.model_id, json.dumps(chosen.to_dict()), user)
        db.add_event(con, user, "set_alerts", model.model_id,
                     {**chosen.to_dict(), "webhook": _shown_url(chosen.webhook)})
    return chosen


def _shown_url(url: str) -> str:
    """A webhook URL as the audit log shows it: without a password or query (tokens often ride there)."""
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


# --- raising ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Alert:
    alert_id: int
    model: str
    kind: str
    subject: str
    message: str
    details: dict
    raised_at: pd.Timestamp
    state: str
    delivery: str


_raise_lock = threading.Lock()  # one check-then-insert at a time in this process: an alert is raised once


def raise_alert(store: Store, name: str, kind: str, subject: str, message: str, details: dict | None = None,
                user: str = "mms") -> Alert | None:
    """The one writer of an alert: recorded (with an audit event) unless the model already raised this
    kind for this subject, or that kind is off in its settings; queued for the webhook if one is set.
    Returns the new alert, or None."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown alert kind {kind!r}; kinds: {', '.join(KINDS)}")
    details = dict(details or {})
    with _raise_lock, store.transaction() as con:
        model = registry.find_model(con, name)
        row = db.alert_settings_row(con, model.model_id)
        chosen = AlertSettings(**json.loads(row["settings"])) if row else AlertSettings()
        if not _kind_on(chosen, kind) or (kind, subject) in db.alert_subjects(con, model.model_id):
            return None
        alert_id = db.new_event_id(con)
        delivery = PENDING if chosen.webhook else NONE
        db.insert_alert(con, alert_id, model.model_id, kind, subject, message,
                        json.dumps(details, ensure_ascii=False, default=str), delivery, chosen.webhook)
        db.add_event_with_id(con, alert_id, user, "alert", model.model_id,
                             {"kind": kind, "subject": subject, "message": message})
    if delivery == PENDING:
        _wake(store)
    return Alert(alert_id, name, kind, subject, message, details, db.now(), OPEN, delivery)


def _kind_on(chosen: AlertSettings, kind: str) -> bool:
    return {DRIFT: chosen.drift, ESTIMATED: chosen.estimated_below is not None,
            AUDITED: chosen.audited_upper_below is not None, VOLUME: chosen.volume_drop_percent is not None,
            REFUSED: chosen.policy_refused}[kind]


def check_model(store: Store, name: str, drift_budget: float | None = 20.0) -> list[Alert]:
    """Read the model's latest periods against its thresholds and raise what is crossed; the new alerts.

    Per business line and over all lines: drift flagged and the estimated accuracy in the latest two
    periods, the audited interval where labels came back, and the volume of the last finished period
    against the one before. Drift cells not measured yet are measured here, newest first, within
    `drift_budget` seconds (the rest on the next check)."""
    chosen = get_settings(store, name)
    if not any(_kind_on(chosen, k) for k in (DRIFT, ESTIMATED, AUDITED, VOLUME)):
        return []
    by = chosen.period
    lines, overall = stats.stats_by_line_and_overall(store, name, by)
    if overall.empty:
        return []
    recent = sorted(overall["period"].unique())[-2:]
    raised = []
    table = pd.concat([lines, overall], ignore_index=True)
    latest = table[table["period"].isin(recent)]
    if chosen.drift and not lines.empty:
        raised += _drift_alerts(store, name, by, lines[lines["period"].isin(recent)], drift_budget)
    for row in latest.itertuples():
        where = _where(row.business_line, row.period, by)
        if chosen.estimated_below is not None and pd.notna(row.estimated_accuracy) \
                and row.estimated_accuracy < chosen.estimated_below:
            raised.append(raise_alert(store, name, ESTIMATED, _subject(row.business_line, row.period),
                                      f"{name}: estimated accuracy {row.estimated_accuracy:.1%} on {where}, below "
                                      f"{chosen.estimated_below:.0%} ({int(row.volume)} predictions)",
                                      {"business_line": row.business_line, "period": row.period,
                                       "estimated_accuracy": row.estimated_accuracy, "threshold": chosen.estimated_below,
                                       "volume": int(row.volume)}))
        if chosen.audited_upper_below is not None and pd.notna(row.audit_high) \
                and row.audit_high < chosen.audited_upper_below:
            raised.append(raise_alert(store, name, AUDITED, _subject(row.business_line, row.period),
                                      f"{name}: audited accuracy {row.audited_accuracy:.1%} on {where}, its 95 % "
                                      f"interval up to {row.audit_high:.1%} only, below {chosen.audited_upper_below:.0%} "
                                      f"({int(row.audited)} audited)",
                                      {"business_line": row.business_line, "period": row.period,
                                       "audited_accuracy": row.audited_accuracy, "audit_high": row.audit_high,
                                       "audited": int(row.audited), "threshold": chosen.audited_upper_below}))
    if chosen.volume_drop_percent is not None:
        raised += _volume_alerts(store, name, by, table, chosen.volume_drop_percent)
    return [a for a in raised if a is not None]


def _subject(line: str, period) -> str:
    return f"{line} {pd.Timestamp(period).date()}"


def _where(line: str, period, by: str) -> str:
    what = "all lines" if line == stats.ALL_LINES else f"line {line}"
    return f"{what}, the {by} of {pd.Timestamp(period).date()}"


def _drift_alerts(store: Store, name: str, by: str, lines: pd.DataFrame, budget: float | None) -> list:
    try:
        report = drift.drift_by_line_and_period(store, name, by, lines.reset_index(drop=True), budget_seconds=budget)
    except VersionNotFound:  # no active version: nothing to measure against
        return []
    raised = []
    for cell in report.flagged().itertuples():
        raised.append(raise_alert(
            store, name, DRIFT, f"{_subject(cell.business_line, cell.period)} v{report.version}",
            f"{name}: drift flagged on {_where(cell.business_line, cell.period, by)} against version "
            f"{report.version}'s training data ({', '.join(cell.moved) if len(cell.moved) else 'moved'})",
            {"business_line": cell.business_line, "period": cell.period, "reference_version": report.version,
             "moved": list(cell.moved), "text_auc": cell.text_auc}))
    return raised


def _volume_alerts(store: Store, name: str, by: str, table: pd.DataFrame, percent: float) -> list:
    raised = []
    for line, rows in table.groupby("business_line"):
        done, _ = stats.without_running_period(rows.sort_values("period"), by)
        if len(done) < 2 or done["period"].nunique() < 2:
            continue
        before, last = done.iloc[-2], done.iloc[-1]
        if before["volume"] <= 0:
            continue
        fall = 100.0 * (before["volume"] - last["volume"]) / before["volume"]
        if fall >= percent:
            raised.append(raise_alert(
                store, name, VOLUME, _subject(line, last["period"]),
                f"{name}: volume on {_where(line, last['period'], by)} was {int(last['volume'])}, down {fall:.0f} % "
                f"from {int(before['volume'])} the {by} before (threshold {percent:g} %)",
                {"business_line": line, "period": last["period"], "volume": int(last["volume"]),
                 "volume_before": int(before["volume"]), "fall_percent": fall, "threshold": percent}))
    return raised


def check_all(store: Store) -> list[Alert]:
    """check_model for every model with alert settings; a model whose figures cannot be read is logged."""
    with store.connect() as con:
        names = [r["name"] for r in db.models_with_alert_settings(con)]
    raised = []
    for name in names:
        try:
            raised += check_model(store, name)
        except MMSError as e:
            log.warning("MMS: alerts of %s not checked: %s", name, e)
    return raised


# --- reading and acknowledging ------------------------------------------------------------------

ALERT_COLUMNS = ["alert_id", "model", "kind", "subject", "message", "raised_at", "state", "acknowledged_by",
                 "acknowledged_at", "delivery", "attempts", "last_error"]


def alerts_table(store: Store, name: str | None = None, state: str | None = None, limit: int = 1000) -> pd.DataFrame:
    """Alerts, newest first (one model's or all, one state or both) with their delivery: none (no
    webhook), pending (being retried), sent or failed, and the last failed attempt's reason."""
    if state not in (None, OPEN, ACKNOWLEDGED):
        raise InvalidInput(f"state must be {OPEN} or {ACKNOWLEDGED}, not {state!r}")
    with store.connect() as con:
        model_id = registry.find_model(con, name).model_id if name else None
        frame = db.alert_rows(con, model_id, state, limit)
        errors = {int(a): _last_error(db.delivery_rows(con, int(a))) for a in frame["alert_id"]
                  if a is not None} if len(frame) else {}
    frame["last_error"] = frame["alert_id"].map(errors).fillna("") if len(frame) else []
    return frame.reindex(columns=ALERT_COLUMNS + ["details", "url", "next_attempt_at"])


def _last_error(attempts: pd.DataFrame) -> str:
    failed = attempts[~attempts["ok"].astype(bool)] if len(attempts) else attempts
    return "" if failed.empty else str(failed.iloc[-1]["error"])


def deliveries(store: Store, alert_id: int) -> pd.DataFrame:
    """Every delivery attempt of one alert: attempt, at, url, ok, status, error, seconds."""
    with store.connect() as con:
        return db.delivery_rows(con, int(alert_id))


def acknowledge(store: Store, alert_id: int, user: str) -> dict:
    """The one writer of an alert's acknowledgement (owners and analysts); acknowledging twice says so."""
    with store.transaction() as con:
        auth.require(con, user, "acknowledge")
        row = db.alert_row(con, int(alert_id))
        if row is None:
            raise AlertNotFound(f"there is no alert {alert_id}")
        if row["state"] == ACKNOWLEDGED:
            raise InvalidInput(f"alert {alert_id} was acknowledged already, by {row['acknowledged_by']} "
                               f"at {pd.Timestamp(row['acknowledged_at']):%Y-%m-%d %H:%M}")
        db.acknowledge_alert(con, int(alert_id), user)
        db.add_event(con, user, "acknowledge_alert", row["model_id"], {"alert_id": int(alert_id), "kind": row["kind"]})
        return db.alert_row(con, int(alert_id))


# --- delivery -----------------------------------------------------------------------------------

def retry_wait(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: doubling from MMS_ALERT_RETRY_SECONDS, at most
    MMS_ALERT_RETRY_MAX_SECONDS."""
    base = float(settings.get("alert_retry_seconds"))
    return min(base * 2 ** (attempt - 1), float(settings.get("alert_retry_max_seconds")))


def payload(row: dict, model: str) -> dict:
    """What the webhook receives."""
    return {"alert_id": int(row["alert_id"]), "model": model, "kind": row["kind"], "about": KINDS[row["kind"]],
            "subject": row["subject"], "message": row["message"], "details": json.loads(row["details"]),
            "raised_at": pd.Timestamp(row["raised_at"]).isoformat(), "state": row["state"],
            "attempt": int(row["attempts"]) + 1}


def post(url: str, body: dict) -> tuple[bool, int | None, str]:
    """POST `body` as JSON; (delivered, HTTP status or None, why not)."""
    data = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8",
                                              "User-Agent": "MMS-alerts"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
            return 200 <= answer.status < 300, answer.status, "" if answer.status < 300 else f"HTTP {answer.status}"
    except urllib.error.HTTPError as e:
        return False, e.code, f"the receiver answered HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        return False, None, f"the receiver could not be reached: {e.reason}"
    except (OSError, ValueError) as e:  # a timeout, a reset connection
        return False, None, f"the receiver could not be reached: {e}"


def deliver_due(store: Store) -> int:
    """One attempt for every pending delivery that is due; each attempt and the alert's delivery state
    are recorded (sent; pending again after a growing wait; failed after MMS_ALERT_ATTEMPTS). Returns
    how many attempts were made. One pass at a time in a process: two would send the same alert twice."""
    with _delivering:
        return _deliver_due(store)


_delivering = threading.Lock()


def _deliver_due(store: Store) -> int:
    with store.connect() as con:
        due = db.due_deliveries(con)
        names = {m["model_id"]: m["name"] for m in db.all_models(con)}
    limit = int(settings.get("alert_attempts"))
    for row in due:
        attempt = int(row["attempts"]) + 1
        began = time.perf_counter()
        ok, status, error = post(row["url"], payload(row, names.get(row["model_id"], "")))
        seconds = time.perf_counter() - began
        if ok:
            state, next_at = SENT, None
        elif attempt >= limit:
            state, next_at = FAILED, None
            error = f"{error}; gave up after {attempt} attempts"
        else:
            state, next_at = PENDING, db.now() + pd.Timedelta(seconds=retry_wait(attempt))
        with store.transaction() as con:
            db.record_delivery(con, int(row["alert_id"]), attempt, row["url"], ok, status, error, seconds, state, next_at)
        (log.info if ok else log.warning)("MMS: alert %s to %s: %s", row["alert_id"], _shown_url(row["url"]),
                                          "sent" if ok else error)
    return len(due)


_wakers: dict[str, threading.Event] = {}


def _wake(store: Store) -> None:
    event = _wakers.get(store.key)
    if event is not None:
        event.set()


class Sender:
    """The server's sender thread: sends pending alerts as soon as they are raised and retries the
    failed ones when due; nothing on a request's path waits for it."""
    IDLE_SECONDS = 5.0  # the longest sleep between looks at the store (another process may raise alerts)

    def __init__(self, store: Store, stopped=lambda: False):
        self.store, self.stopped = store, stopped
        self._stop = threading.Event()
        self._wake = _wakers.setdefault(store.key, threading.Event())
        self._thread = threading.Thread(target=self._run, name="mms-alert-sender", daemon=True)

    def start(self) -> "Sender":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=TIMEOUT_SECONDS * 2)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.stopped():  # the server let go of its store: never open it again from here
                return
            self._wake.clear()
            wait = self.IDLE_SECONDS
            try:
                deliver_due(self.store)
                with self.store.connect() as con:
                    due = db.next_delivery_at(con)
                if due is not None:
                    wait = min(wait, max(0.05, (pd.Timestamp(due) - db.now()).total_seconds()))
            except MMSError as e:
                log.warning("MMS: sending alerts: %s", e)
            except Exception:
                log.exception("MMS: sending alerts failed")
            self._wake.wait(wait)
