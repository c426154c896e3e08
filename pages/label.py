"""Label (labellers): the predictions most worth a label, one after another, or a page at a time.

A batch of hard examples is fetched once per filter choice and kept in the session; it is
replaced only when the filters change or every example in it has a decision (or was skipped).
One example at a time runs as a fragment: a key reruns the example and the counters, not the
page, and the decision is written to the store right after the next example is drawn."""
from __future__ import annotations

import datetime as dt
import html
from functools import partial

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from core import auth, feedback, monitoring, sampling, slices
from core.errors import EmptyPool, InvalidInput, MMSError, StoreBusy
from core.estimators import prob_column
from core.registry import NOT_TRAINING_LABELS, SKIP, UNCLEAR
from core.slices import Slice
from pages import _ordinal, _ui

BATCH_SIZE = 20
ALL = 0  # the version filter's "all versions" (versions count from 1)
FILTER_KEYS = ("label_strategy", "label_lines", "label_dates", "label_version", "label_search")
SHORTCUTS = {SKIP: "S", UNCLEAR: "U"}
ACCEPT_SHORTCUT = "A"
UNDO_SHORTCUT = "Z"
UNDO_DEPTH = 50
BULK_SUBMIT_SHORTCUT = "Ctrl+Enter"
BULK_TEXT_PX = 560  # the bulk table's text column: about 40 Chinese characters a line
BULK_CHARS_PER_LINE = 38


def notice(kind: str, text: str) -> None:
    """A message for the next run (callbacks run before the page is drawn)."""
    st.session_state["label_notice"] = (kind, text)


def show_notice() -> None:
    kind, text = st.session_state.pop("label_notice", (None, None))
    if kind:
        getattr(st, kind)(text)


# --- filters -------------------------------------------------------------------------------

def defaults(first: dt.date, last: dt.date) -> dict:
    return {"label_strategy": sampling.DEFAULT_STRATEGY, "label_lines": [], "label_dates": (first, last),
            "label_version": ALL, "label_search": ""}


def prepare_filters(name: str, lines: list[str], first: dt.date, last: dt.date, versions: dict) -> None:
    """Set the filter widgets' state before they are drawn: from a slice the Monitor sent, else
    from this session's last choice for this model (widget state is dropped when the page is
    left), else the defaults."""
    sent = st.session_state.pop("label_filters", None)
    saved = st.session_state.get("label_query", {})
    if sent is not None and sent.get("model", name) != name:
        notice("warning", f"The slice sent from Monitor was for model {_ui.md_escape(sent['model'])}, not "
                          f"{_ui.md_escape(name)}; "
                          "showing this model's whole queue instead.")
        sent = None
    if sent is not None:
        where: Slice = sent["slice"]
        state = {**defaults(first, last),
                 "label_strategy": sent.get("strategy") or st.session_state.get(
                     "label_strategy", saved.get("label_strategy", sampling.DEFAULT_STRATEGY)),
                 "label_lines": [line for line in where.business_lines if line in lines],
                 "label_dates": where.widget_dates(first, last),
                 "label_version": where.version if where.version in versions else ALL}
        st.session_state["label_from_monitor"] = "pending"
    elif saved.get("model") != name:
        state = defaults(first, last)
        st.session_state["label_from_monitor"] = None
    else:
        state = {k: st.session_state.get(k, saved.get(k, "")) for k in FILTER_KEYS}
        state["label_dates"] = slices.follow_new_days(state["label_dates"], saved.get("range"), first, last)
    st.session_state["label_range"] = (first, last)
    for key, value in state.items():
        st.session_state[key] = value


def filters(lines: list[str], first: dt.date, last: dt.date, versions: dict, graded: bool = False) -> dict:
    """The filter row; returns the strategy and the slice it selects (an ordinal model, `graded`, is
    offered its own strategies first)."""
    row = st.container(horizontal=True, key="label_filters")  # wraps: four columns cut every filter at 1000 px
    offered = {**sampling.ORDINAL_STRATEGIES, **sampling.STRATEGIES} if graded else sampling.STRATEGIES
    c1 = row.container(width=240)
    strategy = c1.selectbox("Strategy", [*offered, monitoring.AUDIT], key="label_strategy",
                            format_func=strategy_name)
    c1.caption(strategy_description(strategy))  # under the select: in it, it was cut even at 1400 px
    chosen = row.multiselect("Business lines", lines, key="label_lines", placeholder="All business lines", width=240)
    dates = row.date_input("Dates", min_value=first, max_value=last, key="label_dates", width=240)
    version = row.selectbox("Version", [ALL, *versions], key="label_version", width=160,
                            format_func=lambda v: "All versions" if v == ALL else versions[v])
    audit = strategy == monitoring.AUDIT
    text = row.text_input("Search the texts", key="label_search", placeholder="a word or phrase", width=240,
                          max_chars=sampling.SEARCH_MAX_CHARS, disabled=audit,
                          help="Only texts that contain it. Not for the audit sample: a random sample searched "
                               "is no longer random.")
    st.session_state["label_query"] = {"model": st.session_state.get("model"), "label_strategy": strategy,
                                       "label_lines": chosen, "label_dates": dates, "label_version": version,
                                       "label_search": text, "range": st.session_state.get("label_range")}
    since, until = slices.from_widget_dates(dates, first, last)
    return {"strategy": strategy, "slice": Slice.of(chosen, since, until, None if version == ALL else version),
            "text": None if audit else text.strip() or None}


def strategy_name(s: str) -> str:
    return "audit sample" if s == monitoring.AUDIT else s.replace("_", " ")


def strategy_description(s: str) -> str:
    if s == monitoring.AUDIT:
        return "A random share of every line × period, for the audited accuracy (not hard examples)."
    described = sampling.EVERY_STRATEGY[s].description
    return described[:1].upper() + described[1:] + "."


# --- the batch -----------------------------------------------------------------------------
# A batch: its examples, `queue` (prediction ids still to decide, in the order shown), `done`
# (labelled or unclear) and `skipped` (skipped in this batch: they wait at the end of the queue).

def batch_key(name: str, f: dict) -> tuple:
    return name, f["strategy"], f["slice"], f.get("text")


def used_up(batch: dict) -> bool:
    """Nothing left but items already skipped in this batch: time for a new draw."""
    return all(pid in batch["skipped"] for pid in batch["queue"])


def current_batch(name: str, f: dict) -> dict | None:
    """The batch in the session, fetched once per filter choice and again when used up; None
    when nothing is left to label."""
    batch = st.session_state.get("label_batch")
    key = batch_key(name, f)
    if batch is None or batch["key"] != key or used_up(batch):
        flush(name)  # decisions not yet written: the new draw must leave their examples out
        st.session_state.pop("label_batch", None)
        with _ui.errors_as_messages(), st.spinner("Picking the next examples…"):
            try:
                draw = monitoring.select_audit_batch if f["strategy"] == monitoring.AUDIT else \
                    partial(sampling.select_hard_examples, strategy=f["strategy"], text=f.get("text"))
                found = draw(_ui.store(), name, BATCH_SIZE, _ui.user(), **f["slice"].filters())
            except EmptyPool:
                return None
            ids = found.examples["prediction_id"].astype(int).tolist()
            skipped_before = feedback.skipped(_ui.store(), name, _ui.user(), ids)
        batch = {"key": key, "batch_id": found.batch_id, "strategy": found.strategy, "examples": found.examples,
                 "queue": [p for p in ids if p not in skipped_before] + [p for p in ids if p in skipped_before],
                 "done": [], "skipped": set()}
        st.session_state["label_batch"] = batch
        st.session_state["label_bulk_round"] = st.session_state.get("label_bulk_round", 0) + 1
    return batch


def remaining(batch: dict) -> pd.DataFrame:
    """The examples still to decide, in the queue's order."""
    return batch["examples"].set_index("prediction_id", drop=False).loc[batch["queue"]].reset_index(drop=True)


def requeue(batch: dict, pid: int, front: bool) -> None:
    """Put an example back in the batch's queue (an undo, or a write that failed)."""
    if pid in batch["done"]:
        batch["done"].remove(pid)
    if pid in batch["queue"]:
        batch["queue"].remove(pid)
    batch["queue"].insert(0 if front else len(batch["queue"]), pid)


# --- counters: read from the store on a full run, moved by each decision once it is written --

def load_counts(name: str, f: dict) -> dict:
    with _ui.errors_as_messages():
        mine = feedback.labelled_today(_ui.store(), name, _ui.user())
        left = (monitoring.audit_left(_ui.store(), name, **f["slice"].filters()) if f["strategy"] == monitoring.AUDIT
                else sampling.queue_size(_ui.store(), name, **f["slice"].filters(), text=f.get("text")))
    skipped, unclear = mine.pop(SKIP, 0), mine.pop(UNCLEAR, 0)
    counts = {"labelled": sum(mine.values()), "skipped": skipped, "unclear": unclear, "left": left}
    st.session_state["label_counts"] = counts
    return counts


def count(decision: dict, sign: int) -> None:
    counts = st.session_state.get("label_counts")
    if counts is None:
        return
    if "prediction_ids" in decision:  # a page of the bulk table, of several labels: read them again
        st.session_state["label_counts"] = None
        return
    kind = {SKIP: "skipped", UNCLEAR: "unclear"}.get(decision["label"], "labelled")
    counts[kind] += sign
    if decision["label"] != SKIP:
        counts["left"] = max(counts["left"] - sign, 0)


# --- decisions: a key moves the queue at once; the store is written right after the next example
# is drawn (flush), and a decision counts once it is written ------------------------------------

def pending() -> list[dict]:
    return st.session_state.setdefault("label_pending", [])


def decide(name: str, prediction_id: int, label: str) -> None:
    batch = st.session_state.get("label_batch")
    if batch is None or not batch["queue"] or batch["queue"][0] != prediction_id:
        return  # a double click, or a key pressed twice before the page showed the next example
    batch["queue"].pop(0)
    if label == SKIP:
        batch["queue"].append(prediction_id)
        batch["skipped"].add(prediction_id)
    else:
        batch["done"].append(prediction_id)
    comment = st.session_state.pop("label_comment", "").strip() if label in NOT_TRAINING_LABELS else ""
    pending().append({"model": name, "batch_id": batch["batch_id"], "prediction_id": prediction_id, "label": label,
                      "comment": comment or None})


def write(decision: dict) -> dict:
    """Write one decision to the store; returns its undo entry."""
    store, user = _ui.store(), _ui.user()
    if decision["label"] == SKIP:
        feedback.skip_prediction(store, decision["model"], decision["prediction_id"], user, decision["batch_id"],
                                 comment=decision.get("comment"))
        return {**decision, "feedback_ids": []}
    feedback_id = feedback.label_prediction(store, decision["model"], decision["prediction_id"], decision["label"],
                                            user, decision["batch_id"], comment=decision.get("comment"))
    return {**decision, "feedback_ids": [feedback_id]}


def flush(name: str) -> None:
    """Write the decisions waiting in the session, in order. A refused one (someone else labelled
    the example meanwhile) moves on; one that could not be written (a busy store) goes back to the
    front of the queue and the example shows again."""
    waiting = pending()
    while waiting:
        decision = waiting[0]
        try:
            entry = write(decision)
        except InvalidInput as e:
            waiting.pop(0)
            notice("warning", f"That example could not be labelled ({e}); moved on to the next one.")
            continue
        except MMSError as e:
            waiting.clear()
            batch = st.session_state.get("label_batch")
            if batch is not None and batch["batch_id"] == decision["batch_id"]:
                requeue(batch, decision["prediction_id"], front=True)
            notice("error", f"{e}: the example is shown again.")
            try:
                st.rerun(scope="fragment")
            except StreamlitAPIException:  # not a fragment's own rerun but the whole page's
                st.rerun()
        waiting.pop(0)  # no Streamlit call between the write and here: a rerun cannot cut in
        remember(entry)
        count(decision, +1)


def remember(entry: dict) -> None:
    stack = st.session_state.setdefault("label_undo", [])
    stack.append(entry)
    del stack[:-UNDO_DEPTH]


def undo() -> None:
    """Take back the last decision: one not yet written is just dropped; a written one is undone in the store."""
    batch = st.session_state.get("label_batch")
    if pending():
        last = pending().pop()
    else:
        stack = st.session_state.get("label_undo") or []
        if not stack:
            return
        last = stack[-1]
        try:
            if last["label"] == SKIP and not last["feedback_ids"]:
                feedback.undo_skip(_ui.store(), last["model"], last["prediction_id"], _ui.user())
            else:
                feedback.undo_labels(_ui.store(), last["model"], last["feedback_ids"], _ui.user())
        except MMSError as e:
            if not isinstance(e, StoreBusy):
                stack.pop()
            notice("error", f"Could not undo: {e}")
            return
        stack.pop()
        count(last, -1)
    what = _ui.md_escape(last.get("what") or last["label"])
    if batch is not None and batch["batch_id"] == last["batch_id"]:
        if last["label"] == SKIP:
            batch["skipped"].discard(last["prediction_id"])
        for pid in (last.get("prediction_ids") or [last["prediction_id"]])[::-1]:
            requeue(batch, pid, front=True)
        notice("toast", f"Took back {what}.")
    else:
        notice("toast", f"Took back {what}; the example is back in the queue.")


# --- drawing -------------------------------------------------------------------------------

def counters(batch: dict | None) -> None:
    counts = st.session_state.get("label_counts") or {}
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
        c5.metric("This batch", f"{len(batch['done'])} / {len(batch['examples'])}", border=True,
                  help=f"Batch {batch['batch_id']}, chosen by {batch['strategy'].replace('_', ' ')}")


def undo_button() -> None:
    stack = pending() or st.session_state.get("label_undo") or []
    last = (stack[-1].get("what") or stack[-1]["label"]) if stack else None
    st.button(f"Undo ({_ui.md_escape(last)})" if last else "Undo", key="label_undo_button",
              icon=":material/undo:", on_click=undo, disabled=not stack, shortcut=UNDO_SHORTCUT,
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


def decision_buttons(name: str, labels: list[str], row: pd.Series, can_label: bool) -> None:
    pid, suggested = int(row["prediction_id"]), str(row["label"])
    top = f"{100 * float(row['top_prob']):.{_ui.percent_digits([row[prob_column(lab)] for lab in labels])}f}%"
    st.button(f"Accept the suggestion: {_ui.md_escape(suggested)} ({top})",  # Streamlit shows the key on it
              key="label_accept", type="primary", on_click=decide, args=(name, pid, suggested),
              shortcut=ACCEPT_SHORTCUT, disabled=not can_label, icon=":material/check:")
    options = labels + list(NOT_TRAINING_LABELS)
    row = st.container(horizontal=True, key="label_decisions")  # wraps: fixed columns cut "正面" to "正…"
    for i, label in enumerate(options):
        shortcut = SHORTCUTS.get(label) or (str(i + 1) if i < 9 else None)
        shown = f"grade {label}" if label == shortcut else label  # the key shows on the button: not "1 1"
        row.button(_ui.md_escape(shown), key=f"label_as_{label}" if label in NOT_TRAINING_LABELS else f"label_as_{i}",
                   on_click=decide, args=(name, pid, label), shortcut=shortcut, disabled=not can_label,
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


def one_at_a_time(name: str, labels: list[str], batch: dict, can_label: bool, guidance: str, can_write: bool) -> None:
    row = remaining(batch).iloc[0]
    item, guide = st.columns([3, 2])
    with item:
        with st.container(border=True, key="label_item"):
            st.text(f"{row['business_line']} · {pd.Timestamp(row['created_at']):%Y-%m-%d %H:%M} · "
                    f"version {row['version']} · prediction {int(row['prediction_id'])}")
            st.text(row["text"])
        _ordinal.expected_note(row, labels)
        probabilities(row, labels)
        decision_buttons(name, labels, row, can_label)
    with guide:
        show_guidelines(guidance, can_write)


@st.fragment
def labelling(name: str, labels: list[str], f: dict, can_label: bool, guidance: str, can_write: bool) -> None:
    """The example, its keys and the counters: a key reruns only this, not the page (about 2 s)."""
    show_notice()
    slot = st.empty()
    batch = current_batch(name, f)
    if batch is None:
        flush(name)
        st.success("Nothing left to label here: every prediction that matches these filters has a label. "
                   "Pick other filters, or come back when new predictions arrive.")
    else:
        one_at_a_time(name, labels, batch, can_label, guidance, can_write)
    undo_button()
    flush(name)
    if st.session_state.get("label_counts") is None:
        load_counts(name, f)
    with slot.container():
        counters(batch)


def bulk(name: str, labels: list[str], batch: dict, can_label: bool) -> None:
    rows = remaining(batch).set_index("prediction_id")
    table = pd.DataFrame({"label": pd.Series([None] * len(rows), index=rows.index, dtype="object"),
                          "text": rows["text"], "model says": rows["label"], "confidence": rows["top_prob"],
                          "business line": rows["business_line"]})
    st.caption("Pick a label in the rows you are sure of and submit; rows left empty stay in the queue. "
               "Keys: arrows move between cells, Enter opens a row's label list (type to filter, Enter "
               f"to choose); Escape, then {BULK_SUBMIT_SHORTCUT} submits.")
    height = _ui.wrapped_row_height(rows["text"], BULK_CHARS_PER_LINE)
    with st.form("label_bulk_form", border=False):
        edited = st.data_editor(
            table, hide_index=True, key=f"label_bulk_editor_{st.session_state['label_bulk_round']}",
            placeholder="choose…", row_height=height, height=(height or 35) * len(table) + 38,
            disabled=["text", "model says", "confidence", "business line"], column_config={
                "label": st.column_config.SelectboxColumn("label", options=labels + [UNCLEAR], width="small"),
                "text": st.column_config.TextColumn(width=BULK_TEXT_PX),
                "confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")})
        submitted = st.form_submit_button(f"Submit labels ({BULK_SUBMIT_SHORTCUT})", key="label_bulk_submit",
                                          type="primary", disabled=not can_label, shortcut=BULK_SUBMIT_SHORTCUT)
    if submitted:
        submit_bulk(name, batch, edited)


def submit_bulk(name: str, batch: dict, edited: pd.DataFrame) -> None:
    chosen = edited[edited["label"].notna()]
    if chosen.empty:
        st.warning("Choose a label in at least one row, then submit.")
        return
    flush(name)
    frame = pd.DataFrame({"prediction_id": chosen.index.astype("int64"), "label": chosen["label"].to_numpy()})
    with _ui.errors_as_messages(), st.spinner(f"Recording {len(frame)} labels…"):
        ids = feedback.record_labels(_ui.store(), name, frame, _ui.user(), batch["batch_id"])
    done = frame["prediction_id"].astype(int).tolist()
    batch["done"].extend(done)
    batch["queue"] = [p for p in batch["queue"] if p not in done]
    remember({"model": name, "batch_id": batch["batch_id"], "prediction_id": done[0], "prediction_ids": done,
              "label": "bulk", "feedback_ids": ids, "what": f"{len(ids)} labels"})
    st.session_state["label_bulk_round"] += 1
    notice("success", f"Recorded {len(ids)} labels.")
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
                notice("success", "Guidelines saved: every labeller of this model sees them now.")
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
    prepare_filters(name, lines, first, last, versions)
    f = filters(lines, first, last, versions, graded=bool(grades))
    if st.session_state.get("label_from_monitor") == "pending":
        st.session_state["label_from_monitor"] = batch_key(name, f)
    if st.session_state.get("label_from_monitor") == batch_key(name, f):
        st.caption("Filters set from the slice the Monitor page sent.")
    if f["strategy"] == monitoring.AUDIT:
        st.info("**Audit items**: predictions drawn at random, not for being hard. Label each as it is, easy ones "
                "too; skipping some would bias the audited accuracy the Monitor shows.", icon=":material/casino:")
    with _ui.errors_as_messages():
        guidance = feedback.guidelines(store, name)
    can_write = auth.may(_ui.role(), "manage")
    load_counts(name, f)
    if st.toggle("Bulk mode: a page of examples in a table", key="label_bulk"):
        bulk_mode(name, labels, f, can_label)
    else:
        labelling(name, labels, f, can_label, guidance, can_write)
    if can_write:
        guidelines_editor(name, guidance)


def bulk_mode(name: str, labels: list[str], f: dict, can_label: bool) -> None:
    show_notice()
    flush(name)
    batch = current_batch(name, f)
    counters(batch)
    if batch is None:
        st.success("Nothing left to label here: every prediction that matches these filters has a label.")
    else:
        bulk(name, labels, batch, can_label)
    undo_button()


main()
