"""The Train page's retraining policy: what it says, its settings (owners), a due check by hand, and
every run with its trigger, what it trained, the guard's answer and the result."""
import streamlit as st

from core import auth, policy
from pages import _ui


def section(name: str) -> None:
    """The policy of model `name` and its runs."""
    store = _ui.store()
    with _ui.errors_as_messages():
        chosen = policy.get_policy(store, name)
        runs = policy.runs_table(store, name, limit=200)
    st.divider()
    st.subheader("Retraining policy")
    st.write(f"Policy {chosen.describe()}.")
    owner = auth.may(_ui.role(), "manage")
    if owner:
        with st.expander("Policy settings", icon=":material/autorenew:"):
            _form(name, chosen)
    if owner and st.button("Run a due check now", key="policy_check",
                           help="What the server does every MMS_POLICY_SECONDS: carry an open run on, or start one "
                                "if a trigger is met (this waits for the training)."):
        with _ui.errors_as_messages(), st.spinner("Checking the policy (and training, if a run is due)…"):
            said = policy.check_model(store, name, wait=True)
        st.session_state["flash"] = f"Policy: {said}"
        st.rerun()
    if runs.empty:
        st.caption("No policy run yet.")
        return
    st.dataframe(runs, hide_index=True, use_container_width=True, key="policy_runs",
                 column_config={"why": st.column_config.TextColumn("why", width="medium"),
                                "result": st.column_config.TextColumn("result", width="large"),
                                "seconds": st.column_config.NumberColumn("seconds", format="%.1f")})


def _form(name: str, chosen: policy.Policy) -> None:
    with st.form("policy_form", border=False):
        enabled = st.toggle("Retrain by itself", value=chosen.enabled, key="policy_enabled")
        a, b, c = st.columns(3)
        labels = a.number_input("after N new labels (0 off)", 0, policy.MAX_NEW_LABELS, chosen.new_labels or 0, 50,
                                key="policy_new_labels")
        every = b.number_input("every N hours (0 off)", 0.0, float(policy.MAX_HOURS), float(chosen.every_hours or 0),
                               1.0, key="policy_every_hours")
        on_drift = c.checkbox("when drift is flagged on a line", value=chosen.on_drift, key="policy_on_drift")
        d, e, f = st.columns(3)
        mode = d.radio("mode", [policy.FULL, policy.INCREMENTAL], [policy.FULL, policy.INCREMENTAL].index(chosen.mode),
                       horizontal=True, key="policy_mode")
        shadow_hours = e.number_input("shadow for N hours first (0 none)", 0.0, float(policy.MAX_HOURS),
                                      float(chosen.shadow_hours or 0), 1.0, key="policy_shadow_hours")
        shadow_predictions = f.number_input("or N live predictions (0 none)", 0, policy.MAX_NEW_LABELS,
                                            chosen.shadow_predictions or 0, 100, key="policy_shadow_predictions")
        if st.form_submit_button("Save policy"):
            with _ui.errors_as_messages():
                saved = policy.set_policy(_ui.store(), name, _ui.user(), enabled=enabled, new_labels=labels or None,
                                          every_hours=every or None, on_drift=on_drift, mode=mode,
                                          shadow_hours=shadow_hours or None,
                                          shadow_predictions=shadow_predictions or None)
            st.session_state["flash"] = f"Policy saved: {saved.describe()}."
            st.rerun()
