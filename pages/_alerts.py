"""The Monitor's alerts: one line of counts at the top, and below it, folded, the model's open and
acknowledged alerts with their delivery, an acknowledge button (owners and analysts), and the
thresholds and webhook (owners)."""
import pandas as pd
import streamlit as st

from core import alerts, auth
from pages import _ui

KIND_WORDS = {alerts.DRIFT: "drift", alerts.ESTIMATED: "estimated accuracy", alerts.AUDITED: "audited accuracy",
              alerts.VOLUME: "volume drop", alerts.REFUSED: "policy refused"}
LISTING = "alerts_listing"  # the folded list's open state


def section(name: str) -> None:
    """The alerts of model `name`, newest first, and (for owners) their settings."""
    store = _ui.store()
    with _ui.errors_as_messages():
        table = alerts.alerts_table(store, name, limit=200)
        chosen = alerts.get_settings(store, name)
    opened = table[table["state"] == alerts.OPEN]
    st.markdown(summary(table, opened, chosen))
    # folded: the Monitor's figures come first. Its contents are drawn only while it is open (opening it
    # reruns the page), since a folded list still cost a fresh Monitor ~0.3 s of the browser's time.
    listing = st.expander("Alert list and thresholds", icon=":material/notifications:", key=LISTING,
                          on_change="rerun")
    if not listing.open:
        return
    with listing:
        on = chosen.describe()
        st.caption(("Raised when " + "; ".join(on) + f" (per {chosen.period})" if on else "No alert is on.")
                   + (f" · sent to {alerts._shown_url(chosen.webhook)}" if chosen.webhook else " · no webhook"))
        if table.empty:
            st.write("No alert has been raised for this model.")
        else:
            _list(table, opened)
        if auth.may(_ui.role(), "manage"):
            _settings_form(name, chosen)


def summary(table: pd.DataFrame, opened: pd.DataFrame, chosen: alerts.AlertSettings) -> str:
    """The alerts in one line: open and acknowledged counts, deliveries that failed, the newest."""
    icon = ":material/notifications_active:" if len(opened) else ":material/notifications:"
    parts = [f"{icon} **Alerts: {len(opened)} open**" if len(opened) else f"{icon} Alerts: none open"]
    if len(table) > len(opened):
        parts.append(f"{len(table) - len(opened)} acknowledged")
    failed = int((table["delivery"] == alerts.FAILED).sum())
    if failed:
        parts.append(f":red[{failed} not delivered]")
    if len(opened):
        parts.append(f"newest {pd.Timestamp(opened['raised_at'].max()):%Y-%m-%d %H:%M}")
    elif table.empty and not chosen.describe():
        parts.append("no threshold set")
    return " · ".join(parts)


def _list(table: pd.DataFrame, opened: pd.DataFrame) -> None:
    st.dataframe(view(table), hide_index=True, use_container_width=True, key="alerts_table",
                 column_config={"#": st.column_config.NumberColumn("#", format="%d", width="small"),
                                "raised": st.column_config.DatetimeColumn("raised", format="YYYY-MM-DD HH:mm"),
                                "message": st.column_config.TextColumn("message", width="large")})
    if opened.empty or not auth.may(_ui.role(), "acknowledge"):
        return
    choices = {int(r.alert_id): f"#{int(r.alert_id)} {r.message[:90]}" for r in opened.itertuples()}
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    alert_id = left.selectbox("Open alert", list(choices), format_func=choices.get, key="alerts_pick")
    if right.button("Acknowledge", key="alerts_ack", use_container_width=True):
        with _ui.errors_as_messages():
            alerts.acknowledge(_ui.store(), alert_id, _ui.user())
        st.session_state["flash"] = f"Alert #{alert_id} acknowledged."
        st.rerun()


def view(table: pd.DataFrame) -> pd.DataFrame:
    """The alerts in six columns that fit the page: who acknowledged one goes with its state, and its
    webhook delivery, attempts and last error in one sentence; the message last, in the room left."""
    def state(row) -> str:
        return f"acknowledged by {row.acknowledged_by}" if row.state == alerts.ACKNOWLEDGED else row.state

    def delivery(row) -> str:
        tries = f"{int(row.attempts)} attempt{'s' if int(row.attempts) != 1 else ''}"
        if row.delivery == alerts.NONE:
            return "no webhook"
        if row.delivery == alerts.SENT:
            return f"sent ({tries})"
        return f"{row.delivery} ({tries})" + (f": {row.last_error}" if row.last_error else "")

    rows = list(table.itertuples())
    return pd.DataFrame({"#": table["alert_id"], "raised": table["raised_at"], "state": [state(r) for r in rows],
                         "kind": table["kind"].map(KIND_WORDS).fillna(table["kind"]),
                         "webhook": [delivery(r) for r in rows], "message": table["message"]})


def _settings_form(name: str, chosen: alerts.AlertSettings) -> None:
    with st.form("alerts_form", border=False):
        st.markdown("**Alert when**")
        a, b = st.columns(2)
        drift = a.checkbox("drift is flagged on a line", value=chosen.drift, key="alerts_drift")
        refused = b.checkbox("a policy run is refused by the guard", value=chosen.policy_refused, key="alerts_refused")
        c, d, e = st.columns(3)
        estimated = c.number_input("estimated accuracy below (%; 0 off)", 0.0, 100.0,
                                   100.0 * (chosen.estimated_below or 0), 1.0, key="alerts_estimated")
        audited = d.number_input("audited upper bound below (%; 0 off)", 0.0, 100.0,
                                 100.0 * (chosen.audited_upper_below or 0), 1.0, key="alerts_audited")
        volume = e.number_input("volume falls by (%; 0 off)", 0.0, 100.0, float(chosen.volume_drop_percent or 0), 5.0,
                                key="alerts_volume")
        f, g = st.columns([3, 1])
        webhook = f.text_input("Webhook URL (http or https; empty: none)", chosen.webhook, key="alerts_webhook")
        period = g.selectbox("per", ["day", "week", "month"], ["day", "week", "month"].index(chosen.period),
                             key="alerts_period")
        if st.form_submit_button("Save alert settings"):
            with _ui.errors_as_messages():
                alerts.set_settings(_ui.store(), name, _ui.user(), drift=drift, policy_refused=refused,
                                    estimated_below=estimated / 100 or None, audited_upper_below=audited / 100 or None,
                                    volume_drop_percent=volume or None, webhook=webhook, period=period)
            st.session_state["flash"] = "Alert settings saved."
            st.rerun()
