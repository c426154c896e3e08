"""The Versions page's experiments: every version with its settings and metrics, filtered, tagged and
sorted; a setting charted against a metric; and an owner's note and tags on a version."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import compare, experiments, registry
from core.errors import MMSError
from pages import _ui
from pages._versions_compare import keep_valid


def runs_filters(runs: pd.DataFrame) -> pd.DataFrame:
    """The filter expression, tag pills and sort order; returns the versions they leave, in order."""
    row = st.container(horizontal=True, vertical_alignment="bottom")  # wraps beside the sidebar at 1000 px
    left, mid, right = row, row, row
    expression = left.text_input("Filter", key="versions_filter", placeholder=experiments.EXAMPLE,
                                 help="Clauses joined by `and`: a setting or metric (full name, or its last part "
                                      "such as `macro_f1`, `C`, `estimator`), one of = != > >= < <= contains, "
                                      "and a value. `tags contains X` keeps the versions tagged X.", width=440)
    columns = list(runs.columns)
    keep_valid("versions_sort", columns, "metrics.macro_f1" if "metrics.macro_f1" in columns else "version")
    by = mid.selectbox("Sort by", columns, key="versions_sort", width=240)
    descending = right.toggle("Descending", value=True, key="versions_sort_desc")
    tags = sorted({t for row in runs["tags"] for t in row})
    wanted = st.pills("Tags", tags, selection_mode="multi", key="versions_tag_filter") if tags else []
    try:
        shown = experiments.filter_runs(runs, expression)
    except MMSError as e:  # a half-typed filter says what is wrong and shows every version meanwhile
        st.error(f"Filter not applied: {e}.")
        shown = runs
    shown = shown[shown["tags"].map(lambda row: set(wanted) <= set(row))]
    return experiments.sort_runs(shown, by, descending)


# headers of the experiments table; the filter and the sort keep the names (macro_f1, config.C)
WORDS = {"rows": "rows seen", "new_rows": "new rows", "test_rows": "test rows", "n_test": "test rows",
         "n": "test rows",
         "accuracy": "accuracy", "macro_f1": "macro-F1", "log_loss": "log loss", "ece": "ECE",
         "word_ngrams": "word n-grams", "char_ngrams": "char n-grams", "min_df": "min df",
         "max_features": "max features", "n_features": "hashed features", "max_iter": "max iterations",
         "seed": "random seed", "cut_mode": "jieba mode", "hmm": "HMM", "new_words": "new words",
         "stop_words": "stop words", "fullwidth_to_halfwidth": "full-width to half-width", "f1": "F1",
         "drop_punctuation": "drop punctuation"}



def header(column: str) -> str:
    """A readable header for an experiments column: 'rows from labelling', '正面 recall', 'macro-F1'."""
    parts = column.split(".")[1:] or [column]
    if parts[0] == "rows_by_source" and len(parts) == 2:
        return "rows " + _ui.SOURCES.get(parts[1], parts[1])
    last = WORDS.get(parts[-1], parts[-1].replace("_", " "))
    return " ".join([*parts[1:-1], last] if parts[0] in ("per_class", "by_business_line") else [last])


def runs_table(runs: pd.DataFrame, shown: pd.DataFrame) -> None:
    """Filtered versions with the settings that differ between versions and the metrics (all with the toggle)."""
    every = st.toggle("All settings and metrics", value=False, key="versions_runs_all")
    columns = list(experiments.LEADING) + (
        [c for c in runs.columns if c.startswith(experiments.SETTINGS + ("metrics.",))] if every else
        experiments.varying(runs, experiments.SETTINGS) + [c for c in experiments.HEADLINE if c in runs.columns])
    frame = shown.assign(status=shown["status"].map({registry.ACTIVE: "● active"}).fillna(""))
    st.dataframe(frame[[c for c in columns if c in frame.columns]], hide_index=True, key="versions_runs", placeholder="",
                 column_config={
                     "version": st.column_config.NumberColumn("version", format="v%d"),
                     "tags": st.column_config.ListColumn("tags"),
                     **{c: st.column_config.Column(header(c), help=f"`{c}` in the filter")  # name on hover
                        for c in columns if c.startswith(experiments.SETTINGS + ("metrics.",))},
                     **{c: st.column_config.NumberColumn(header(c), format="%.3f", help=f"`{c}` in the filter")
                        for c in experiments.metric_columns(runs) if not c.endswith(("n_test", ".n"))}})
    st.caption(f"{len(shown)} of {len(runs)} versions." + ("" if every else " Settings shown: those that differ "
                                                                           "between versions."))


def setting_chart(runs: pd.DataFrame, shown: pd.DataFrame, active: int | None) -> go.Figure | None:
    """A setting (x) against a metric (y), one point per version left by the filter."""
    settings = ["version"] + experiments.varying(runs, experiments.SETTINGS)
    metrics = experiments.metric_columns(runs)
    if not metrics:
        return None
    left, right = st.columns(2)
    keep_valid("versions_chart_x", settings, settings[1] if len(settings) > 1 else "version")
    keep_valid("versions_chart_y", metrics, metrics[1] if len(metrics) > 1 else metrics[0])
    x = left.selectbox("Setting", settings, key="versions_chart_x")
    y = right.selectbox("Metric", metrics, key="versions_chart_y")
    points = shown.dropna(subset=[y]).assign(label=lambda f: "v" + f["version"].astype(str)
                                             + f["version"].eq(active).map({True: " (active)", False: ""}))
    values = points[x].map(lambda v: compare.as_text(v) if isinstance(v, (list, str, bool)) or v is None else v)
    fig = go.Figure(go.Scatter(x=values, y=points[y], mode="markers+text", text=points["label"],
                               textposition=[("top center", "bottom center")[i % 2] for i in range(len(points))],
                               marker={"size": 11, "color": points["version"].eq(active)
                                                                  .map({True: "#16a34a", False: "#2563eb"})},
                               customdata=points["tags"].map(", ".join),
                               hovertemplate=f"%{{text}}<br>{x} %{{x}}<br>{y} %{{y:.4f}}<br>%{{customdata}}"
                                             "<extra></extra>"))
    numeric = pd.to_numeric(values, errors="coerce")
    log = numeric.notna().all() and len(numeric) > 1 and numeric.min() > 0 and numeric.max() / numeric.min() >= 100
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=20, b=10), showlegend=False)
    fig.update_xaxes(title=x, type="log" if log else ("category" if numeric.isna().any() else None))
    fig.update_yaxes(title=y)
    return fig


def note_editor(model: registry.Model, versions: list[registry.Version], annotations: dict) -> None:
    """An owner's note and tags on one version; others read them in the table."""
    numbers = [v.version for v in versions]
    keep_valid("versions_note_pick", numbers, numbers[-1])
    picked = st.selectbox("Version", numbers, key="versions_note_pick", format_func=lambda n: f"v{n}")
    current = annotations.get(picked, registry.Annotation(picked))
    if st.session_state.get("versions_note_for") != picked:  # another version: its own note and tags
        st.session_state.update(versions_note_for=picked, versions_note=current.note, versions_tags=list(current.tags))
    known = sorted({t for a in annotations.values() for t in a.tags} | set(st.session_state["versions_tags"]))
    note = st.text_area("Note", key="versions_note", max_chars=registry.MAX_NOTE, height=90,
                        placeholder="What this version tried, and what came of it")
    tags = st.multiselect("Tags", known, key="versions_tags", accept_new_options=True,
                          placeholder="e.g. baseline, hotel-fix (type a new one and press Enter)")
    if current.updated_by:
        st.caption(f"Last changed by {_ui.md_escape(current.updated_by)} at {current.updated_at:%Y-%m-%d %H:%M}.")
    if st.button(f"Save note and tags of v{picked}", key="versions_note_save", disabled=not _ui.may("manage"),
                 help=None if _ui.may("manage") else "Notes and tags need the owner role."):
        with _ui.errors_as_messages():
            registry.annotate_version(_ui.store(), model.name, picked, _ui.user(), note=note, tags=tags)
        st.session_state["flash"] = f"Saved the note and tags of v{picked}."
        st.session_state.pop("versions_note_for")
        st.rerun()


def experiments_section(model: registry.Model, versions: list[registry.Version], annotations: dict) -> None:
    st.subheader("Versions as experiments")
    runs = experiments.runs_table(versions, annotations)
    shown = runs_filters(runs)
    runs_table(runs, shown)
    chart, notes = st.columns([3, 2])
    with chart:
        st.markdown("**A setting against a metric**")
        fig = setting_chart(runs, shown, model.active_version) if len(versions) > 1 else None
        if fig is not None:
            st.plotly_chart(fig, key="versions_setting_chart")
        else:
            st.caption("With a second version, this charts a setting of each version against a metric.")
    with notes.container(border=True):
        st.markdown("**Note and tags**")
        note_editor(model, versions, annotations)
