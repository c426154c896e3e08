"""Predict: texts typed one per line, or a CSV/Excel upload; every prediction is logged."""
import streamlit as st

from core import export, feedback, files, predict, registry
from core.errors import MMSError
from core.estimators import PROB_PREFIX
from pages import _ui

# Pixel widths that fit the main column of a 1400 px wide window with the sidebar open (~930 px):
# the text takes what the other columns leave, so the table needs no horizontal scrolling.
TABLE_WIDTH = 920
MIN_TEXT = 150
WIDTHS = {"label": 70, "top_prob": 120, "expected_grade": 90, "business_line": 100, "version": 60,
          "prediction_id": 70}
NARROW = 64  # a probability, or any other column
PREVIEW_ROWS = 5
COMPACT = {"top_prob": NARROW, "business_line": 80}  # when many grades leave the text too little room


def table_columns(columns: list[str]) -> tuple[list[str], dict]:
    """The results' column order (text, label, probabilities, then where they came from) and widths."""
    probs = [c for c in columns if c.startswith(PROB_PREFIX)]
    first = [c for c in ("text", "label", "top_prob", "expected_grade") if c in columns]
    last = [c for c in ("business_line", "version", "prediction_id") if c in columns]
    order = first + probs + [c for c in columns if c not in first + probs + last] + last
    widths = {c: WIDTHS.get(c, NARROW) for c in order if c != "text"}
    crowded = TABLE_WIDTH - sum(widths.values()) < MIN_TEXT  # many grades: the top probability as a number
    if crowded:
        widths.update({c: w for c, w in COMPACT.items() if c in widths})
    top = (st.column_config.NumberColumn("top p", format="%.3f", width=NARROW) if crowded else
           st.column_config.ProgressColumn("top probability", min_value=0.0, max_value=1.0, format="%.3f",
                                           width=WIDTHS["top_prob"]))
    config = {c: st.column_config.Column(width=NARROW) for c in order}
    config.update({c: st.column_config.NumberColumn(c.removeprefix(PROB_PREFIX), format="%.3f", width=NARROW)
                   for c in probs})
    config.update({
        "text": st.column_config.TextColumn("text", width=max(MIN_TEXT, TABLE_WIDTH - sum(widths.values()))),
        "label": st.column_config.TextColumn("label", width=WIDTHS["label"]),
        "top_prob": top,
        "expected_grade": st.column_config.NumberColumn("expected grade", format="%.2f",
                                                        width=WIDTHS["expected_grade"]),
        "business_line": st.column_config.TextColumn("business line", width=widths.get("business_line")),
        "version": st.column_config.NumberColumn("version", format="v%d", width=WIDTHS["version"]),
        "prediction_id": st.column_config.NumberColumn("id", format="%d", width=WIDTHS["prediction_id"]),
    })
    return order, {c: config[c] for c in order}


RESULTS = "predict_results"  # per input mode: {"typed": ..., "file": ...}; a mode never shows the other's


def preview(upload) -> None:
    """The uploaded file's first rows and its row count, read by core from its bytes before predicting
    (once per file: a rerun does not parse it again)."""
    kept = st.session_state.get("predict_preview")
    if not kept or kept["file_id"] != upload.file_id:
        try:
            frame = files.read_table(upload.getvalue(), upload.name)
            kept = {"file_id": upload.file_id, "rows": len(frame), "head": frame.head(PREVIEW_ROWS), "error": None}
        except MMSError as e:
            kept = {"file_id": upload.file_id, "error": str(e)}
        st.session_state["predict_preview"] = kept
    if kept["error"]:
        st.error(kept["error"])
        return
    st.caption(f"{_ui.md_escape(upload.name)}: {kept['rows']:,} rows"
               + ("" if "text" in kept["head"].columns else " — no `text` column: predicting it will say so")
               + (". The first rows:" if kept["rows"] > PREVIEW_ROWS else ":"))
    st.dataframe(kept["head"], hide_index=True, key="predict_file_preview")


def show_result(mode: str, file_name: str) -> None:
    """The latest result of this input mode, with a download named for it."""
    kept = st.session_state.get(RESULTS, {}).get(mode)
    if kept is None:
        return
    result = kept["frame"]
    st.success(f"{len(result)} predictions logged with version {result['version'].iloc[0]}: "
               f"{_ui.md_escape(kept['what'])}.")
    order, config = table_columns(list(result.columns))
    st.dataframe(result, key=f"predict_table_{mode}", hide_index=True, column_order=order, column_config=config)
    st.download_button("Download CSV", export.to_csv_bytes(result), file_name=file_name, mime="text/csv",
                       key=f"predict_download_{mode}")


def history_section(store, name: str) -> None:
    """One prediction's label history: the id column of a result (or of a hard-example file) names it."""
    st.subheader("History of a prediction")
    pid = st.number_input("Prediction id", min_value=0, max_value=2 ** 53 - 1, value=None, step=1,
                          key="predict_history_id", placeholder="the id column of a result, e.g. 1234",
                          help="Who predicted it with which version, who gave which label and when, skips, "
                               "undone labels and the review's decision.")
    if pid is None:
        return
    with _ui.errors_as_messages():
        text, history = feedback.label_history(store, name, int(pid))
    st.markdown(f"**{int(pid)}** · {_ui.md_escape(text)}")
    st.dataframe(history, hide_index=True, key="predict_history", column_config={
        "at": st.column_config.DatetimeColumn("at", format="YYYY-MM-DD HH:mm:ss"),
        "detail": st.column_config.TextColumn("detail", width="large")})
    if len(history) == 1:
        st.caption("Not labelled yet.")


st.title("Predict")
name = _ui.require_model()
store = _ui.store()

with _ui.errors_as_messages():
    versions = [v.version for v in registry.list_versions(store, name)]
    model = registry.get_model(store, name)
if not versions:
    st.info(f"Model {name} has no trained version yet: train one on the **Train** page.")
    st.stop()

options = st.container(horizontal=True)
with options:
    version = st.selectbox("Version", [None] + versions, key="predict_version", width=220,
                           format_func=lambda v: f"active (v{model.active_version})" if v is None else f"v{v}")
    line = st.text_input("Business line", key="predict_line", placeholder=predict.DEFAULT_LINE, width=220,
                         help="Used for texts, or file rows, that have no business_line of their own.")
typed, uploaded = st.tabs(["Type texts", "Upload a file"])
with typed:
    texts = st.text_area("One text per line", key="predict_texts", height=160,
                         placeholder="房间很干净，服务也很好\n快递太慢了，包装也破了")
    run_typed = st.button("Predict", key="predict_run", type="primary")
with uploaded:
    upload = st.file_uploader("CSV or Excel with a text column (optional business_line, created_at)",
                              type=["csv", "tsv", "txt", "xlsx", "xls"], key="predict_file")
    if upload is not None:
        preview(upload)
    run_file = st.button("Predict the file", key="predict_file_run", disabled=upload is None)

results = st.session_state.setdefault(RESULTS, {})
with _ui.errors_as_messages():
    if run_typed:
        lines = [t for t in texts.splitlines() if t.strip()]
        with typed, st.spinner(f"Predicting {len(lines)} texts…"):
            frame = predict.predict_texts(store, name, lines, _ui.user(), business_line=line or None,
                                          version=version, source="app")
        results["typed"] = {"frame": frame, "what": "the typed texts"}
    elif run_file and upload is not None:
        with uploaded, st.spinner(f"Predicting {upload.name}…"):
            frame = predict.predict_file(store, name, upload.getvalue(), _ui.user(), filename=upload.name,
                                         business_line=line or None, version=version, source_tag="app")
        results["file"] = {"frame": frame, "what": upload.name, "file_id": upload.file_id}
if results.get("file") and (upload is None or results["file"]["file_id"] != upload.file_id):
    del results["file"]  # another file, or none: its results are not this file's
with typed:
    show_result("typed", f"predictions-{name}-typed-texts.csv")
with uploaded:
    if upload is not None:
        show_result("file", f"predictions-{name}-{upload.name.rsplit('.', 1)[0]}.csv")
st.divider()
history_section(store, name)
