"""Predict: texts typed one per line, or a CSV/Excel upload; every prediction is logged."""
import streamlit as st

from core import export, predict, registry
from core.estimators import PROB_PREFIX
from pages import _ui

# Pixel widths that fit the main column of a 1400 px wide window with the sidebar open (~930 px):
# the text takes what the other columns leave, so the table needs no horizontal scrolling.
TABLE_WIDTH = 920
MIN_TEXT = 150
WIDTHS = {"label": 70, "top_prob": 120, "expected_grade": 90, "business_line": 100, "version": 60,
          "prediction_id": 70}
NARROW = 64  # a probability, or any other column
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


st.title("Predict")
name = _ui.require_model()
store = _ui.store()

with _ui.errors_as_messages():
    versions = [v.version for v in registry.list_versions(store, name)]
    model = registry.get_model(store, name)
if not versions:
    st.info(f"Model {name} has no trained version yet: train one on the **Train** page.")
    st.stop()

left, right = st.columns([3, 1])
with right:
    version = st.selectbox("Version", [None] + versions, key="predict_version",
                           format_func=lambda v: f"active (v{model.active_version})" if v is None else f"v{v}")
    line = st.text_input("Business line", key="predict_line", placeholder=predict.DEFAULT_LINE,
                         help="Used for texts, or file rows, that have no business_line of their own.")
with left:
    typed, uploaded = st.tabs(["Type texts", "Upload a file"])
    with typed:
        texts = st.text_area("One text per line", key="predict_texts", height=160,
                             placeholder="房间很干净，服务也很好\n快递太慢了，包装也破了")
        run_typed = st.button("Predict", key="predict_run", type="primary")
    with uploaded:
        upload = st.file_uploader("CSV or Excel with a text column (optional business_line, created_at)",
                                  type=["csv", "tsv", "txt", "xlsx", "xls"], key="predict_file")
        run_file = st.button("Predict the file", key="predict_file_run", disabled=upload is None)

result = None
with _ui.errors_as_messages():
    if run_typed:
        lines = [t for t in texts.splitlines() if t.strip()]
        with st.spinner(f"Predicting {len(lines)} texts…"):
            result = predict.predict_texts(store, name, lines, _ui.user(), business_line=line or None,
                                           version=version, source="app")
    elif run_file and upload is not None:
        with st.spinner(f"Predicting {upload.name}…"):
            result = predict.predict_file(store, name, upload.getvalue(), _ui.user(), filename=upload.name,
                                          business_line=line or None, version=version, source_tag="app")
if result is not None:
    st.session_state["predict_result"] = result

result = st.session_state.get("predict_result")
if result is not None:
    st.success(f"{len(result)} predictions logged with version {result['version'].iloc[0]}.")
    order, config = table_columns(list(result.columns))
    st.dataframe(result, key="predict_table", hide_index=True, column_order=order, column_config=config)
    st.download_button("Download CSV", export.to_csv_bytes(result), file_name=f"predictions-{name}.csv",
                       mime="text/csv", key="predict_download")
