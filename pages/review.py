"""Review (owners): items two labellers disagree on and items marked unclear, one at a time, decided
with a button per label; how many wait; the share of items two labellers label; agreement per
labeller pair and business line; and each labeller's figures."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core import agreement, auth, feedback
from core.errors import MMSError
from pages import _ui

REASONS = {"disagreement": "the two labellers disagree", "unclear": "a labeller marked it unclear"}


def notice(kind: str, text: str) -> None:
    """A message for the next run (callbacks run before the page is drawn)."""
    st.session_state["review_notice"] = (kind, text)


def show_notice() -> None:
    kind, text = st.session_state.pop("review_notice", (None, None))
    if kind:
        getattr(st, kind)(text)


# --- callbacks -----------------------------------------------------------------------------

def decide(name: str, prediction_id: int, label: str) -> None:
    try:
        agreement.decide(_ui.store(), name, prediction_id, label, _ui.user())
    except MMSError as e:
        notice("error", str(e))
        return
    said = "left out of training" if label == agreement.DISCARD else f"decided {label}"
    notice("toast", f"Prediction {prediction_id}: {said}.")


def save_share(name: str) -> None:
    try:
        agreement.set_overlap_share(_ui.store(), name, st.session_state["review_share"] / 100, _ui.user())
    except MMSError as e:
        notice("error", str(e))
        return
    notice("success", f"From now on {st.session_state['review_share']:g} % of labelled items are labelled again "
                      f"by a second labeller, blind.")


# --- sections ------------------------------------------------------------------------------

def overlap_setting(name: str, share: float) -> None:
    st.session_state.setdefault("review_share", round(share * 100, 1))
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.number_input("Share of labelled items that a second labeller labels again (%)", min_value=0.0,
                    max_value=100.0, step=5.0, format="%.0f", key="review_share",
                    help="Chosen at random. A second labeller gets them in their batches (that share of each "
                         "batch) without seeing the first label, and never their own.")
    c2.button("Save share", key="review_share_save", on_click=save_share, args=(name,))


def who_said_what(item: pd.Series) -> list[str]:
    """One line per opinion: each labeller's label, then the model's prediction and its confidence."""
    lines = [f"{item['first_by']}: {item['first_label']}"]
    if pd.notna(item["second_label"]):
        lines.append(f"{item['second_by']}: {item['second_label']}")
    return lines + [f"the model: {item['predicted']} ({item['top_prob']:.1%})"]


def queue_section(name: str, labels: list[str], queue: pd.DataFrame) -> None:
    st.subheader("Waiting for review")
    st.metric("Items waiting", f"{len(queue):,}", border=True,
              help="Disagreements between two labellers, and items marked unclear. Until decided they are "
                   "neither trained on nor counted in label statistics.")
    if queue.empty:
        st.success("Nothing waits for review: every item labelled twice agrees, and nothing is marked unclear.")
        return
    item = queue.iloc[0]
    pid = int(item["prediction_id"])
    with st.container(border=True, key="review_item"):
        st.text(f"{item['business_line']} · prediction {pid} · {REASONS[item['reason']]}")
        st.text(item["text"])
    with st.container(key="review_said"):
        for line in who_said_what(item):
            st.text(line)
        with _ui.errors_as_messages():
            said = feedback.comments(_ui.store(), name, [pid])
        for c in said.itertuples():  # the labellers' reasons for skip or unclear
            st.text(f"{c.created_by} ({c.decision}): {c.comment}")
    options = labels + [agreement.DISCARD]
    for col, (i, label) in zip(st.columns(len(options)), enumerate(options)):
        discard = label == agreement.DISCARD
        col.button("Leave out of training" if discard else f"Decide: {_ui.md_escape(label)}",
                   key="review_as_skip" if discard else f"review_as_{i}", on_click=decide, args=(name, pid, label),
                   shortcut=None if discard else (str(i + 1) if i < 9 else None), width="stretch",
                   type="secondary" if discard else "primary")
    with st.expander(f"The whole queue ({len(queue)})"):
        st.dataframe(queue.drop(columns=["top_prob"]), hide_index=True, key="review_queue_table")


def agreement_section(report: agreement.TeamReport) -> None:
    st.subheader("Agreement")
    kappa, raw, n = report.overall
    c1, c2, c3 = st.columns(3)
    c1.metric("Items labelled twice", f"{n:,}", border=True)
    c2.metric("Raw agreement", _ui.fmt_pct(raw), border=True, help="Share of items labelled twice where both agree")
    c3.metric("Cohen's kappa", _ui.fmt_num(kappa, 2), border=True,
              help="Agreement beyond chance: 1 perfect, 0 as by chance. Blank when both used one label only.")
    if not n:
        st.caption("No item is labelled twice yet: set a share above, and have a second labeller draw a batch.")
        return
    pct = st.column_config.NumberColumn(format="percent")
    kappa_col = st.column_config.NumberColumn("Cohen's kappa", format="%.2f")
    left, right = st.columns(2)
    left.caption("Per labeller pair")
    left.dataframe(report.pairs, hide_index=True, key="review_pairs", placeholder="", column_config={
        "labeller_a": "labeller", "labeller_b": "with", "agreement": pct, "kappa": kappa_col})
    right.caption("Per business line")
    if report.lines.empty:  # a bare grid read "empty"
        right.caption("The items labelled twice have no business line.")
        return
    right.dataframe(report.lines, hide_index=True, key="review_lines", placeholder="", column_config={
        "business_line": "business line", "agreement": pct, "kappa": kappa_col})


def team_section(report: agreement.TeamReport) -> None:
    st.subheader("Team")
    st.caption(f"Decisions per hour count active time: a pause over {agreement.ACTIVE_GAP.seconds // 60} minutes "
               "is a break. Audit accuracy: on audit-sample items whose label someone else decided too "
               "(agreed with, or decided in review).")
    table = report.labellers.copy()
    table.insert(3, "active_minutes", table.pop("active_hours") * 60)
    st.dataframe(table, hide_index=True, key="review_team", placeholder="–", column_config={
        "per_hour": st.column_config.NumberColumn("decisions / hour", format="%.0f"),
        "active_minutes": st.column_config.NumberColumn("active minutes", format="%.1f"),
        "double_labelled": st.column_config.NumberColumn("labelled twice"),
        "agreement": st.column_config.NumberColumn(format="percent"),
        "kappa": st.column_config.NumberColumn("Cohen's kappa", format="%.2f"),
        "audit_items": st.column_config.NumberColumn("audit items checked"),
        "audit_accuracy": st.column_config.NumberColumn("audit accuracy", format="percent")})


def main() -> None:
    name = _ui.require_model()
    st.title("Review")
    if not auth.may(_ui.role(), "review"):
        st.info("Reviewing labels is for owners: choose Owner in the sidebar.")
        st.stop()
    store = _ui.store()
    with _ui.errors_as_messages():
        labels, _ = _ui.labels_and_versions(store, str(store.path), _ui.revision(), name)
        report = agreement.team_report(store, name)
        queue = agreement.review_queue(store, name)
    st.caption(f"Labels of {_ui.md_escape(name)} that two labellers gave, and the items waiting for an owner's "
               "decision. Only decided labels are trained on: agreed, labelled once, or decided here.")
    show_notice()
    overlap_setting(name, report.share)
    queue_section(name, labels, queue)
    agreement_section(report)
    team_section(report)


main()
