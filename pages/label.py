"""Label (labellers): the predictions most worth a label, one after another, or a page at a time.

A batch of hard examples is fetched once per filter choice and kept in the session; it is
replaced only when the filters change or every example in it has a decision."""
from __future__ import annotations

import datetime as dt
from functools import partial

import pandas as pd
import streamlit as st

from core import auth, feedback, monitoring, sampling, slices
from core.errors import EmptyPool, InvalidInput, MMSError, StoreBusy
from core.estimators import prob_column
from core.registry import NOT_TRAINING_LABELS
from core.slices import Slice
from pages import _ui

BATCH_SIZE = 20
ALL = 0  # the version filter's "all versions" (versions count from 1)
FILTER_KEYS = ("label_strategy", "label_lines", "label_dates", "label_version")
SHORTCUTS = {"skip": "S", "unclear": "U"}
UNDO_SHORTCUT = "Z"
UNDO_DEPTH = 50


def notice(kind: str, text: str) -> None:
    """A message for the next run (callbacks run before the page is drawn)."""
    st.session_state["label_notice"] = (kind, text)


def show_notice() -> None:
    kind, text = st.session_state.pop("label_notice", (None, None))
    if kind:
        getattr(st, kind)(text)


# --- filters -------------------------------------------------------------------------------

def defaults(first: dt.date, last: dt.date) -> dict:
    return {"label_strategy": "least_confidence", "label_lines": [], "label_dates": (first, last),
            "label_version": ALL}


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
                     "label_strategy", saved.get("label_strategy", "least_confidence")),
                 "label_lines": [line for line in where.business_lines if line in lines],
                 "label_dates": where.widget_dates(first, last),
                 "label_version": where.version if where.version in versions else ALL}
        st.session_state["label_from_monitor"] = "pending"
    elif saved.get("model") != name:
        state = defaults(first, last)
        st.session_state["label_from_monitor"] = None
    else:
        state = {k: st.session_state.get(k, saved[k]) for k in FILTER_KEYS}
        state["label_dates"] = slices.follow_new_days(state["label_dates"], saved.get("range"), first, last)
    st.session_state["label_range"] = (first, last)
    for key, value in state.items():
        st.session_state[key] = value


def filters(lines: list[str], first: dt.date, last: dt.date, versions: dict) -> dict:
    """The filter row; returns the strategy and the slice it selects."""
    c1, c2, c3, c4 = st.columns([3, 3, 3, 2])
    strategy = c1.selectbox("Strategy", [*sampling.STRATEGIES, monitoring.AUDIT], key="label_strategy",
                            format_func=strategy_name)
    chosen = c2.multiselect("Business lines", lines, key="label_lines", placeholder="All business lines")
    dates = c3.date_input("Dates", min_value=first, max_value=last, key="label_dates")
    version = c4.selectbox("Version", [ALL, *versions], key="label_version",
                           format_func=lambda v: "All versions" if v == ALL else versions[v])
    st.session_state["label_query"] = {"model": st.session_state.get("model"), "label_strategy": strategy,
                                       "label_lines": chosen, "label_dates": dates, "label_version": version,
                                       "range": st.session_state.get("label_range")}
    since, until = slices.from_widget_dates(dates, first, last)
    return {"strategy": strategy, "slice": Slice.of(chosen, since, until, None if version == ALL else version)}


def strategy_name(s: str) -> str:
    if s == monitoring.AUDIT:
        return "audit sample: a random share of every line × period, for the audited accuracy (not hard examples)"
    return f"{s.replace('_', ' ')}: {sampling.STRATEGIES[s].description}"


# --- the batch -----------------------------------------------------------------------------

def batch_key(name: str, f: dict) -> tuple:
    return name, f["strategy"], f["slice"]


def current_batch(name: str, f: dict) -> dict | None:
    """The batch in the session, fetched once per filter choice and again when used up; None
    when nothing is left to label."""
    batch = st.session_state.get("label_batch")
    key = batch_key(name, f)
    if batch is None or batch["key"] != key or len(batch["done"]) >= len(batch["examples"]):
        st.session_state.pop("label_batch", None)
        with _ui.errors_as_messages(), st.spinner("Picking the next examples…"):
            try:
                draw = monitoring.select_audit_batch if f["strategy"] == monitoring.AUDIT else \
                    partial(sampling.select_hard_examples, strategy=f["strategy"])
                found = draw(_ui.store(), name, BATCH_SIZE, _ui.user(), **f["slice"].filters())
            except EmptyPool:
                return None
        batch = {"key": key, "batch_id": found.batch_id, "strategy": found.strategy,
                 "examples": found.examples, "done": []}
        st.session_state["label_batch"] = batch
        st.session_state["label_bulk_round"] = st.session_state.get("label_bulk_round", 0) + 1
    return batch


def remaining(batch: dict) -> pd.DataFrame:
    examples = batch["examples"]
    return examples[~examples["prediction_id"].isin(batch["done"])]


def remember(name: str, feedback_ids: list[int], prediction_ids: list[int], what: str) -> None:
    batch = st.session_state["label_batch"]
    batch["done"].extend(prediction_ids)
    stack = st.session_state.setdefault("label_undo", [])
    stack.append({"model": name, "batch_id": batch["batch_id"], "feedback_ids": feedback_ids,
                  "prediction_ids": prediction_ids, "what": what})
    del stack[:-UNDO_DEPTH]


# --- callbacks (run before the page is drawn, so the next example shows at once) ------------

def decide(name: str, prediction_id: int, label: str) -> None:
    batch = st.session_state.get("label_batch")
    if batch is None or prediction_id in batch["done"]:
        return  # a double click
    try:
        feedback_id = feedback.label_prediction(_ui.store(), name, prediction_id, label, _ui.user(),
                                                batch["batch_id"])
    except InvalidInput as e:
        batch["done"].append(prediction_id)  # e.g. someone else labelled it meanwhile: move on
        notice("warning", f"That example could not be labelled ({e}); moved on to the next one.")
        return
    except MMSError as e:  # a busy store, a missing permission: the example stays
        notice("error", str(e))
        return
    remember(name, [feedback_id], [prediction_id], label)


def undo() -> None:
    stack = st.session_state.get("label_undo") or []
    if not stack:
        return
    last = stack[-1]
    try:
        feedback.undo_labels(_ui.store(), last["model"], last["feedback_ids"], _ui.user())
    except MMSError as e:
        if not isinstance(e, StoreBusy):
            stack.pop()
        notice("error", f"Could not undo: {e}")
        return
    stack.pop()
    batch = st.session_state.get("label_batch")
    if batch is not None and batch["batch_id"] == last["batch_id"]:
        batch["done"] = [p for p in batch["done"] if p not in last["prediction_ids"]]
        notice("toast", f"Took back {_ui.md_escape(last['what'])}.")
    else:
        notice("toast", f"Took back {_ui.md_escape(last['what'])}; the example is back in the queue.")


# --- drawing -------------------------------------------------------------------------------

def counters(name: str, f: dict, batch: dict | None) -> None:
    with _ui.errors_as_messages():
        mine = feedback.labelled_today(_ui.store(), name, _ui.user())
        left = (monitoring.audit_left if f["strategy"] == monitoring.AUDIT else sampling.queue_size)(
            _ui.store(), name, **f["slice"].filters())
    c1, c2, c3 = st.columns(3)
    c1.metric("You labelled today", f"{sum(mine.values()):,}", border=True,
              help=" · ".join(f"{_ui.md_escape(label)} {n}" for label, n in sorted(mine.items())) or None)
    c2.metric("Left in this queue", f"{left:,}", border=True,
              help="Distinct texts without a label that match the filters")
    if batch is not None:
        c3.metric("This batch", f"{len(batch['done'])} / {len(batch['examples'])}", border=True,
                  help=f"Batch {batch['batch_id']}, chosen by {batch['strategy'].replace('_', ' ')}")


def undo_button() -> None:
    stack = st.session_state.get("label_undo") or []
    last = stack[-1]["what"] if stack else None
    st.button(f"Undo ({_ui.md_escape(last)})" if last else "Undo", key="label_undo_button", icon=":material/undo:", on_click=undo,
              disabled=not stack, shortcut=UNDO_SHORTCUT, help="Take back the last decision")


def one_at_a_time(name: str, labels: list[str], batch: dict, can_label: bool) -> None:
    row = remaining(batch).iloc[0]
    pid = int(row["prediction_id"])
    with st.container(border=True):
        st.text(f"{row['business_line']} · {pd.Timestamp(row['created_at']):%Y-%m-%d %H:%M} · "
                f"version {row['version']} · prediction {pid}")
        st.text(row["text"])
    probs = pd.DataFrame({"label": labels, "probability": [float(row[prob_column(lab)]) for lab in labels]})
    probs["model says"] = probs["label"].eq(row["label"]).map({True: "◀", False: ""})
    st.dataframe(probs, hide_index=True, key="label_probs", width=520, column_config={
        "label": st.column_config.TextColumn(width="small"), "model says": st.column_config.TextColumn(width="small"),
        "probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent",
                                                       width="medium")})
    options = labels + list(NOT_TRAINING_LABELS)
    for col, (i, label) in zip(st.columns(len(options)), enumerate(options)):
        shortcut = SHORTCUTS.get(label) or (str(i + 1) if i < 9 else None)
        col.button(_ui.md_escape(label), key=f"label_as_{label}" if label in NOT_TRAINING_LABELS else f"label_as_{i}",
                   on_click=decide, args=(name, pid, label), shortcut=shortcut, disabled=not can_label,
                   width="stretch")


def bulk(name: str, labels: list[str], batch: dict, can_label: bool) -> None:
    rows = remaining(batch).set_index("prediction_id")
    table = pd.DataFrame({"label": pd.Series([None] * len(rows), index=rows.index, dtype="object"),
                          "text": rows["text"], "model says": rows["label"], "confidence": rows["top_prob"],
                          "business line": rows["business_line"]})
    st.caption("Pick a label in the rows you are sure of and submit; rows left empty stay in the queue. "
               "Click a text to read it in full.")
    with st.form("label_bulk_form", border=False):
        edited = st.data_editor(
            table, hide_index=True, key=f"label_bulk_editor_{st.session_state['label_bulk_round']}",
            placeholder="choose…", height=35 * (len(table) + 1) + 3,
            disabled=["text", "model says", "confidence", "business line"], column_config={
                "label": st.column_config.SelectboxColumn("label", options=labels + list(NOT_TRAINING_LABELS),
                                                          width="small"),
                "text": st.column_config.TextColumn(width="large"),
                "confidence": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")})
        submitted = st.form_submit_button("Submit labels", key="label_bulk_submit", type="primary",
                                          disabled=not can_label)
    if not submitted:
        return
    chosen = edited[edited["label"].notna()]
    if chosen.empty:
        st.warning("Choose a label in at least one row, then submit.")
        return
    frame = pd.DataFrame({"prediction_id": chosen.index.astype("int64"), "label": chosen["label"].to_numpy()})
    with _ui.errors_as_messages(), st.spinner(f"Recording {len(frame)} labels…"):
        ids = feedback.record_labels(_ui.store(), name, frame, _ui.user(), batch["batch_id"])
    remember(name, ids, frame["prediction_id"].tolist(), f"{len(ids)} labels")
    st.session_state["label_bulk_round"] += 1
    notice("success", f"Recorded {len(ids)} labels.")
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

    keys = " · ".join(f"{i + 1} {_ui.md_escape(label)}" for i, label in enumerate(labels[:9]))
    st.caption(f"The predictions of {_ui.md_escape(name)} most worth a label, one after another. Keys: {keys} · "
               f"S skip · U unclear · Z undo. Skip and unclear are kept but never trained on.")
    prepare_filters(name, lines, first, last, versions)
    f = filters(lines, first, last, versions)
    if st.session_state.get("label_from_monitor") == "pending":
        st.session_state["label_from_monitor"] = batch_key(name, f)
    if st.session_state.get("label_from_monitor") == batch_key(name, f):
        st.caption("Filters set from the slice the Monitor page sent.")
    if f["strategy"] == monitoring.AUDIT:
        st.info("**Audit items**: predictions drawn at random, not for being hard. Label each as it is, easy ones "
                "too; skipping some would bias the audited accuracy the Monitor shows.", icon=":material/casino:")
    show_notice()
    batch = current_batch(name, f)
    counters(name, f, batch)
    if batch is None:
        st.success("Nothing left to label here: every prediction that matches these filters has a label. "
                    "Pick other filters, or come back when new predictions arrive.")
        undo_button()
        st.stop()
    mode = st.toggle("Bulk mode: a page of examples in a table", key="label_bulk")
    if mode:
        bulk(name, labels, batch, can_label)
    else:
        one_at_a_time(name, labels, batch, can_label)
    undo_button()


main()
