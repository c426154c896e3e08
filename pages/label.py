"""Label (labellers): the predictions most worth a label, one after another, or a page at a time.

The queue (core.labelqueue) keeps the batch, the decisions and undo in the session. One example at a
time runs as a fragment: a key reruns the example and the counters, not the page, and the decision
is written to the store right after the next example is drawn."""
from __future__ import annotations

import html

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from core import auth, feedback, monitoring
from core.estimators import prob_column
from core.labelqueue import LabelQueue, Query
from core.registry import NOT_TRAINING_LABELS, SKIP, UNCLEAR
from pages import _label_filters, _ordinal, _ui

SHORTCUTS = {SKIP: "S", UNCLEAR: "U"}
ACCEPT_SHORTCUT = "A"
UNDO_SHORTCUT = "Z"
BULK_SUBMIT_SHORTCUT = "Ctrl+Enter"
BULK_TEXT_PX = 560  # the bulk table's text column: about 40 Chinese characters a line
BULK_CHARS_PER_LINE = 38


def queue() -> LabelQueue:
    return st.session_state.setdefault("label_queue", LabelQueue())


def show_notices() -> None:
    """Messages left by the previous run or a callback (which runs before the page is drawn)."""
    for kind, text in st.session_state.pop("label_notices", []):
        getattr(st, kind)(text)
    for n in queue().take_notices():
        getattr(st, n.kind)(_ui.md_escape(n.text) if n.kind == "toast" else n.text)


def rerun() -> None:
    try:
        st.rerun(scope="fragment")
    except StreamlitAPIException:  # not a fragment's own rerun but the whole page's
        st.rerun()


def decide(prediction_id: int, label: str) -> None:
    comment = st.session_state.pop("label_comment", "") if label in NOT_TRAINING_LABELS else None
    queue().decide(prediction_id, label, comment)


def undo() -> None:
    queue().undo(_ui.store(), _ui.user())


def counters(batch) -> None:
    counts = queue().counts or {}
    # a row that wraps: five fixed columns beside the sidebar at 1000 px cut "10,977" to "1…"
    c1 = c2 = c3 = c4 = c5 = st.container(horizontal=True, key="label_counters")
    c1.metric("You labelled today", f"{counts.get('labelled', 0):,}", border=True,
              help="With one of the model's labels: these become training examples")
    c2.metric("Skipped today", f"{counts.get('skipped', 0):,}", border=True,
              help="Not labelled: a skipped example comes back later in the queue")
    c3.metric("Unclear today", f"{counts.get('unclear', 0):,}", border=True,
              help="Sent to the review queue, where an owner decides; never trained on as they are")
    c4.metric("Left in this queue", f"{counts.get('left', 0):,}", border=True,
              help="Distinct texts without a label that match the filters")
    if batch is not None:
        c5.metric("This batch", f"{len(batch.done)} / {len(batch.examples)}", border=True,
                  help=f"Batch {batch.batch_id}, chosen by {batch.strategy.replace('_', ' ')}")


def undo_button() -> None:
    last = queue().last()
    st.button(f"Undo ({_ui.md_escape(last)})" if last else "Undo", key="label_undo_button",
              icon=":material/undo:", on_click=undo, disabled=last is None, shortcut=UNDO_SHORTCUT,
              help="Take back the last decision")


def probabilities(row: pd.Series, labels: list[str]) -> None:
    values = [float(row[prob_column(lab)]) for lab in labels]
    digits = _ui.percent_digits(values)
    probs = pd.DataFrame({"label": labels, "probability": [100 * v for v in values]})
    probs["model says"] = probs["label"].eq(row["label"]).map({True: "◀", False: ""})
    st.dataframe(probs, hide_index=True, key="label_probs", width="stretch", column_config={  # 520 px cut it at 1000
        "label": st.column_config.TextColumn(width="small"), "model says": st.column_config.TextColumn(width="small"),
        "probability": st.column_config.ProgressColumn(min_value=0.0, max_value=100.0, format=f"%.{digits}f%%",
                                                       width="medium")})


def decision_buttons(labels: list[str], row: pd.Series, can_label: bool) -> None:
    pid, suggested = int(row["prediction_id"]), str(row["label"])
    top = f"{100 * float(row['top_prob']):.{_ui.percent_digits([row[prob_column(lab)] for lab in labels])}f}%"
    st.button(f"Accept the suggestion: {_ui.md_escape(suggested)} ({top})",  # Streamlit shows the key on it
              key="label_accept", type="primary", on_click=decide, args=(pid, suggested),
              shortcut=ACCEPT_SHORTCUT, disabled=not can_label, icon=":material/check:")
    options = labels + list(NOT_TRAINING_LABELS)
    row = st.container(horizontal=True, key="label_decisions")  # wraps: fixed columns cut "正面" to "正…"
    for i, label in enumerate(options):
        shortcut = SHORTCUTS.get(label) or (str(i + 1) if i < 9 else None)
        shown = f"grade {label}" if label == shortcut else label  # the key shows on the button: not "1 1"
        row.button(_ui.md_escape(shown), key=f"label_as_{label}" if label in NOT_TRAINING_LABELS else f"label_as_{i}",
                   on_click=decide, args=(pid, label), shortcut=shortcut, disabled=not can_label,
                   width="stretch")
    st.text_input("Comment for skip or unclear (optional)", key="label_comment", disabled=not can_label,
                  max_chars=feedback.COMMENT_MAX_CHARS, placeholder="why: kept with the decision, shown in review")


def show_guidelines(text: str, can_write: bool) -> None:
    """An owner's markdown, with any HTML in it shown as the characters typed (never rendered)."""
    with st.container(border=True, key="label_guidelines"):
        st.markdown("**Guidelines**")
        if text:
            st.markdown(html.escape(text, quote=False))
        else:
            st.caption("No guidelines for this model yet." + (" Write them below the page." if can_write else ""))


def one_at_a_time(labels: list[str], batch, can_label: bool, guidance: str, can_write: bool) -> None:
    row = batch.remaining().iloc[0]
    item, guide = st.columns([3, 2])
    with item:
        with st.container(border=True, key="label_item"):
            st.text(f"{row['business_line']} · {pd.Timestamp(row['created_at']):%Y-%m-%d %H:%M} · "
                    f"version {row['version']} · prediction {int(row['prediction_id'])}")
            st.text(row["text"])
        _ordinal.expected_note(row, labels)
        probabilities(row, labels)
        decision_buttons(labels, row, can_label)
    with guide:
        show_guidelines(guidance, can_write)


def section(labels: list[str], q: Query, can_label: bool, guidance: str, can_write: bool, bulk_mode: bool) -> None:
    """The example (or a page of them in a table), undo and the counters; the one place the decisions
    waiting are written, after the next example is drawn."""
    show_notices()
    slot = None if bulk_mode else st.empty()  # one at a time: the counters above, once this key's decision counts
    with _ui.errors_as_messages(), st.spinner("Picking the next examples…"):
        batch = queue().batch_for(_ui.store(), q, _ui.user())
    if bulk_mode:  # nothing decided waits here: a page of the table is written at once
        counters(batch)
    if batch is None:
        st.success("Nothing left to label here: every prediction that matches these filters has a label. "
                   "Pick other filters, or come back when new predictions arrive.")
    elif bulk_mode:
        bulk(labels, batch, can_label)
    else:
        one_at_a_time(labels, batch, can_label, guidance, can_write)
    undo_button()
    if not queue().flush(_ui.store(), _ui.user()):
        rerun()
    if queue().counts is None:
        read_counts(q)
    if slot is not None:
        with slot.container():
            counters(batch)


@st.fragment
def labelling(labels: list[str], q: Query, can_label: bool, guidance: str, can_write: bool) -> None:
    """One example at a time: a key reruns only this, not the page."""
    section(labels, q, can_label, guidance, can_write, bulk_mode=False)


def read_counts(q: Query) -> None:
    with _ui.errors_as_messages():
        queue().read_counts(_ui.store(), _ui.user(), q)


def bulk(labels: list[str], batch, can_label: bool) -> None:
    rows = batch.remaining().set_index("prediction_id")
    table = pd.DataFrame({"label": pd.Series([None] * len(rows), index=rows.index, dtype="object"),
                          "text": rows["text"], "model says": rows["label"], "confidence": rows["top_prob"],
                          "business line": rows["business_line"]})
    st.caption("Pick a label in the rows you are sure of and submit; rows left empty stay in the queue. "
               "Keys: arrows move between cells, Enter opens a row's label list (type to filter, Enter "
               f"to choose); Escape, then {BULK_SUBMIT_SHORTCUT} submits.")
    height = _ui.wrapped_row_height(rows["text"], BULK_CHARS_PER_LINE)
    with st.form("label_bulk_form", border=False):
        edited = st.data_editor(
            table, hide_index=True, key=f"label_bulk_editor_{queue().round}",
            placeholder="choose…", row_height=height, height=(height or 35) * len(table) + 38,
            disabled=["text", "model says", "confidence", "business line"], column_config={
                "label": st.column_config.SelectboxColumn("label", options=labels + [UNCLEAR], width="small"),
                "text": st.column_config.TextColumn(width=BULK_TEXT_PX),
                "confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")})
        submitted = st.form_submit_button(f"Submit labels ({BULK_SUBMIT_SHORTCUT})", key="label_bulk_submit",
                                          type="primary", disabled=not can_label, shortcut=BULK_SUBMIT_SHORTCUT)
    if submitted:
        submit_bulk(edited)


def submit_bulk(edited: pd.DataFrame) -> None:
    chosen = edited[edited["label"].notna()]
    if chosen.empty:
        st.warning("Choose a label in at least one row, then submit.")
        return
    frame = pd.DataFrame({"prediction_id": chosen.index.astype("int64"), "label": chosen["label"].to_numpy()})
    with _ui.errors_as_messages(), st.spinner(f"Recording {len(frame)} labels…"):
        queue().submit_bulk(_ui.store(), _ui.user(), frame)
    st.rerun()


def guidelines_editor(name: str, text: str) -> None:
    """Owners write the model's guidelines here (markdown; HTML shows as typed)."""
    with st.expander("Edit the guidelines labellers see beside each example (owners)"):
        with st.form("label_guidelines_form", border=False):
            new = st.text_area("Guidelines (markdown)", value=text, height=200, key="label_guidelines_text",
                               max_chars=feedback.GUIDELINES_MAX_CHARS)
            if st.form_submit_button("Save guidelines", key="label_guidelines_save"):
                with _ui.errors_as_messages():
                    feedback.set_guidelines(_ui.store(), name, new, _ui.user())
                _label_filters.notice("success", "Guidelines saved: every labeller of this model sees them now.")
                st.rerun()


def main() -> None:
    name = _ui.require_model()
    store = _ui.store()
    key = str(store.path)
    st.title("Label")
    with _ui.errors_as_messages():
        revision = _ui.revision()
        labels, versions = _ui.labels_and_versions(store, key, revision, name)
        lines, first, last = _ui.slice_options(store, key, name, revision)
    if first is None:
        st.info(f"Model {_ui.md_escape(name)} has no predictions yet, so there is nothing to label. Log some on the "
                "Predict page first.")
        st.stop()
    can_label = auth.may(_ui.role(), "label")
    if not can_label:
        st.info("Your role is Analyst (read only): choose Labeller in the sidebar to label.")
        st.stop()
    if not st.session_state.get("user"):
        st.info("Who is working? Type your name in the sidebar so your labels are credited to you.")
        st.stop()

    keys = " · ".join(_ui.md_escape(_ui.keyed(i + 1, label)) for i, label in enumerate(labels[:9]))
    st.caption(f"The predictions of {_ui.md_escape(name)} most worth a label, one after another. Keys: "
               f"{ACCEPT_SHORTCUT} accept the model's suggestion · {keys} · S skip (the example comes back later) · "
               f"U unclear (an owner reviews it) · Z undo. Skip and unclear are never trained on.")
    grades = _ordinal.grades(store, key, revision, name)
    if grades:
        st.caption(_ordinal.key_hint(grades))
    _label_filters.prepare_filters(name, lines, first, last, versions)
    q = _label_filters.filters(name, lines, first, last, versions, graded=bool(grades))
    if st.session_state.get("label_from_monitor") == "pending":
        st.session_state["label_from_monitor"] = q
    if st.session_state.get("label_from_monitor") == q:
        st.caption("Filters set from the slice the Monitor page sent.")
    if q.strategy == monitoring.AUDIT:
        st.info("**Audit items**: predictions drawn at random, not for being hard. Label each as it is, easy ones "
                "too; skipping some would bias the audited accuracy the Monitor shows.", icon=":material/casino:")
    with _ui.errors_as_messages():
        guidance = feedback.guidelines(store, name)
    can_write = auth.may(_ui.role(), "manage")
    read_counts(q)
    if st.toggle("Bulk mode: a page of examples in a table", key="label_bulk"):
        section(labels, q, can_label, guidance, can_write, bulk_mode=True)
    else:
        labelling(labels, q, can_label, guidance, can_write)
    if can_write:
        guidelines_editor(name, guidance)


main()
