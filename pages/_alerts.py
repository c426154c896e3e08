"""The Monitor's alerts: the model's open and acknowledged alerts with their delivery, an
acknowledge button (owners and analysts), and the thresholds and webhook (owners)."""
import pandas as pd
import streamlit as st

from core import alerts, auth
from pages import _ui

SHOWN = ["alert_id", "raised_at", "state", "message", "kind", "acknowledged_by", "delivery", "attempts", "last_error"]


def section(name: str) -> None:
    """The alerts of model `name`, newest first, and (for owners) their settings."""
    store = _ui.store()
    with _ui.errors_as_messages():
        table = alerts.alerts_table(store, name, limit=200)
        chosen = alerts.get_settings(store, name)
    opened = table[table["state"] == alerts.OPEN]
    title = f"Alerts: {len(opened)} open" if len(opened) else "Alerts: none open"
    with st.expander(title, expanded=bool(len(opened)), icon=":material/notifications:"):
        on = chosen.describe()
        st.caption(("Raised when " + "; ".join(on) + f" (per {chosen.period})" if on else "No alert is on.")
                   + (f" · sent to {alerts._shown_url(chosen.webhook)}" if chosen.webhook else " · no webhook"))
        if table.empty:
            st.write("No alert has been raised for this model.")
        else:
            _list(table, opened)
        if auth.may(_ui.role(), "manage"):
            _settings_form(name, chosen)


def _list(table: pd.DataFrame, opened: pd.DataFrame) -> None:
    st.dataframe(table[SHOWN].fillna({"acknowledged_by": ""}), hide_index=True, use_container_width=True, key="alerts_table",
                 column_config={"raised_at": st.column_config.DatetimeColumn("raised", format="YYYY-MM-DD HH:mm"),
                                "message": st.column_config.TextColumn("message", width="large"),
                                "last_error": st.column_config.TextColumn("last delivery error")})
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
