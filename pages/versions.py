"""Versions (product owners): every model at a glance; for the selected model its versions and their
metrics, reactivating any version with a reason, versions compared against a base, and the history.

Reactivating a version worse than the active one (an ordinary rollback, often) shows what regressed
(core.compare) and needs "reactivate anyway", recorded as forced with the reason."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import artifacts, auth, compare, experiments, registry
from core.errors import MMSError
from pages import _ordinal, _shadow, _ui

HEADLINES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1"}
CHART_WIDTH, BOX_WIDTH = 500, 410  # px: side by side in a 1400 px window, stacked at 1000 px
DIFF_KEYS = "versions_diff_a", "versions_diff_with"  # the base, the versions compared with it


@st.cache_data(show_spinner=False, max_entries=8)
def load_overview(_store, store_key: str, revision: tuple) -> pd.DataFrame:
    return registry.models_overview(_store)


@st.cache_data(show_spinner=False, max_entries=16)
def load_model(_store, store_key: str, name: str, revision: tuple) -> dict:
    """Everything this page shows about one model, read once per change of the store."""
    return {"model": registry.get_model(_store, name), "versions": registry.list_versions(_store, name),
            "table": registry.versions_table(_store, name),
            "history": registry.activation_history(_store, name),
            "events": registry.events_table(_store, name, limit=50),
            "annotations": registry.version_annotations(_store, name)}


def may(action: str) -> bool:
    return auth.may(_ui.role(), action)


def label_of(v: registry.Version, active: int | None) -> str:
    """A version as the dropdowns name it; "active" from the model's active version as read this run."""
    active = " · active" if v.version == active else ""
    return f"v{v.version} · {v.mode} · macro-F1 {_ui.fmt_num(v.headline)} · {v.created_at:%Y-%m-%d}{active}"


def keep_valid(key: str, options: list, default) -> None:
    """A selectbox keeps its choice across reruns, but not one the selected model does not have."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = default


def keep_labelled(key: str, labels: dict[int, str], default: int) -> None:
    """A selectbox whose options are the versions' labels keeps its version when the label changes
    (a version became, or stopped being, active). The label is the value so that the browser
    redraws it: with the number as the value, chromium kept showing the old "active" after a switch."""
    chosen = st.session_state.get(key)
    kept = next((n for n in labels if isinstance(chosen, str) and chosen.startswith(f"v{n} · ")), default)
    st.session_state[key] = labels[kept]


# --- sections -----------------------------------------------------------------------------

def overview(store, selected: str) -> None:
    st.subheader("All models")
    frame = load_overview(store, repr(store), _ui.revision())
    frame.insert(0, "selected", frame["model"].eq(selected).map({True: "▶", False: ""}))
    frame["active_version"] = frame["active_version"].astype("Int64")  # a model not trained yet: blank, not None
    st.dataframe(frame, hide_index=True, key="versions_models", placeholder="", column_config={
        "selected": st.column_config.TextColumn("", width="small"),
        "active_version": st.column_config.NumberColumn("active version", format="v%d"),
        "macro_f1": st.column_config.NumberColumn("macro-F1", format="%.3f"),
        "accuracy": st.column_config.NumberColumn("accuracy", format="percent"),
    })
    st.caption("Choose the model in the sidebar.")


def headline_chart(versions: list[registry.Version]) -> go.Figure:
    x = [v.version for v in versions]
    hover = [f"{v.mode} · {v.created_at:%Y-%m-%d} · {v.created_by}" for v in versions]
    fig = go.Figure()
    for key, name in HEADLINES.items():
        fig.add_trace(go.Scatter(x=x, y=[v.metrics.get(key) for v in versions], name=name, mode="lines+markers",
                                 customdata=hover, hovertemplate=f"v%{{x}} {name} %{{y:.3f}}<br>%{{customdata}}"
                                                                 "<extra></extra>"))
    _ordinal.headline_traces(fig, versions)
    active = [v for v in versions if v.status == registry.ACTIVE]
    if active:
        fig.add_vline(x=active[0].version, line_dash="dot", line_color="#16a34a",
                      annotation_text=f"active v{active[0].version}", annotation_position="top left")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.25),
                      hovermode="x unified")
    fig.update_xaxes(title="version", tickmode="array", tickvals=x, ticktext=[f"v{n}" for n in x])
    fig.update_yaxes(title="on the test split", tickformat=".3f", nticks=6, range=headline_range(fig))
    return fig


def headline_range(fig: go.Figure) -> list[float] | None:
    """The y range, at least 0.01 tall: one version, or versions a hair apart, drew five ticks that all
    read 0.813 (plotly spreads its ticks over whatever tiny range the points span)."""
    ys = [y for trace in fig.data for y in (trace.y or ()) if isinstance(y, (int, float))]
    if not ys:
        return None
    pad = max(0.005 - (max(ys) - min(ys)) / 2, 0) + 0.002
    return [min(ys) - pad, max(ys) + pad]


def versions_table(table: pd.DataFrame) -> None:
    shown = table.assign(status=table["status"].map({registry.ACTIVE: "● active"}).fillna(""),
                         parent=table["parent"].astype("Int64"))  # v1 has no parent: a gap
    st.dataframe(shown, hide_index=True, key="versions_table", placeholder="", column_config={
        "version": st.column_config.NumberColumn("version", format="v%d"),
        "parent": st.column_config.NumberColumn("parent", format="v%d"),
        "rows_seen": st.column_config.NumberColumn("rows seen", format="localized"),
        "accuracy": st.column_config.NumberColumn("accuracy", format="percent"),
        "macro_f1": st.column_config.NumberColumn("macro-F1", format="%.3f"),
        "log_loss": st.column_config.NumberColumn("log loss", format="%.3f"),
        "ece": st.column_config.NumberColumn("ECE", format="%.3f"),
        "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
        "created_by": st.column_config.TextColumn("by"),
        **_ordinal.versions_columns(),
    })


def reactivate_box(model: registry.Model, versions: list[registry.Version], history: pd.DataFrame):
    """Pick a version, give a reason, confirm (and, for a worse version, tick "anyway");
    returns (version, reason, was active before, force) on click."""
    st.markdown("**Switch the active version**")
    by_number = {v.version: v for v in versions}
    inactive = [v.version for v in versions if v.version != model.active_version]
    keep_valid("versions_pick", list(by_number), inactive[-1] if inactive else versions[-1].version)
    picked = st.selectbox("Version", list(by_number), key="versions_pick",
                          format_func=lambda n: label_of(by_number[n], model.active_version))
    v = by_number[picked]
    st.caption(f"Trained by {_ui.md_escape(v.created_by)} at {v.created_at:%Y-%m-%d %H:%M} · "
               + (f"{v.data.get('rows', 0):,} rows seen · " if v.data.get("rows") is not None else "")
               + ("answers predictions now." if picked == model.active_version else
                  "was active before." if picked in set(history["to_version"]) else "never active yet."))
    verdict = registry.guard_verdict(_ui.store(), model.name, picked) if picked != model.active_version else None
    found = verdict.found if verdict else []
    if found:
        sentence = verdict.sentence()
        st.error(sentence[:1].upper() + sentence[1:] + ".", icon=":material/trending_down:")
        st.dataframe(pd.DataFrame([r.to_dict() for r in found]), hide_index=True, key="versions_regressions",
                     column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                    for c in ("base", "candidate", "drop", "tolerance")})
    reason = st.text_input("Reason (recorded in the activation history)", key="versions_reason",
                           placeholder="e.g. version 3 misreads hotel reviews", max_chars=500)
    confirm = picked != model.active_version and st.checkbox(  # "from version 1 to version 1" read as nonsense
        f"Switch predictions from version {model.active_version} to version {picked}", key="versions_confirm")
    force = bool(found) and st.checkbox(f"Switch anyway, although version {picked} is worse (recorded as forced, "
                                        f"with your reason)", key="versions_force")
    ready = (may("activate") and picked != model.active_version and bool(reason.strip()) and confirm
             and (force or not found))
    why_not = ("Activating needs the owner role." if not may("activate")
               else "This version is already active." if picked == model.active_version
               else "Give a reason and tick the confirmation first." if not (reason.strip() and confirm)
               else "Tick “switch anyway” to activate a worse version." if not ready else None)
    verb = "Reactivate" if picked in set(history["to_version"]) else "Activate"
    if st.button(f"{verb} v{picked}" + (" anyway" if found else ""), key="versions_reactivate", type="primary",
                 disabled=not ready,
                 help=why_not or "The switch is one transaction, recorded with your name and reason."):
        if ready:  # a disabled button's click from a stale browser is ignored
            return picked, reason.strip(), verb == "Reactivate", bool(found)
    if not st.session_state.get("user"):
        st.caption("You will be recorded as “anonymous”: put your name in the sidebar.")
    return None


def model_file_section(model: registry.Model, versions: list[registry.Version]) -> None:
    """Download a version's model file, offered only once its sha256 matches the registry's."""
    by_number = {v.version: v for v in versions}
    row = st.container(horizontal=True, vertical_alignment="bottom")
    keep_valid("versions_file_pick", list(by_number), model.active_version or versions[-1].version)
    picked = row.selectbox("Model file of", list(by_number), key="versions_file_pick", width=160,
                           format_func=lambda n: f"v{n}" + (" (active)" if n == model.active_version else ""))
    v = by_number[picked]
    ready = st.session_state.get("versions_file")
    if not ready or ready["for"] != (model.name, v.version, v.sha256):
        if not row.button("Check its sha256", key="versions_file_check", icon=":material/verified:",
                          help="Reads the file and compares its sha256 with the one recorded when it was trained; "
                               "only a file that matches is offered."):
            row.caption(f"sha256 recorded: `{v.sha256[:16]}…`")
            return
        try:
            data = artifacts.verified_file(_ui.store(), v)
        except MMSError as e:
            st.error(str(e)[:1].upper() + str(e)[1:] + ".", icon=":material/gpp_bad:")
            return
        ready = st.session_state["versions_file"] = {"for": (model.name, v.version, v.sha256), "data": data}
    row.download_button(f"Download v{v.version}'s model file ({len(ready['data']) / 2 ** 20:.1f} MB)", ready["data"],
                        file_name=artifacts.download_name(model.name, v), mime="application/octet-stream",
                        key="versions_file_download", icon=":material/download:", on_click="ignore")
    row.caption(f"sha256 `{v.sha256[:16]}…` matches the registry's. A joblib file: load it with the same "
                f"versions of scikit-learn and jieba.")


def reactivate(model: registry.Model, version: int, reason: str, again: bool, force: bool) -> None:
    with _ui.errors_as_messages():
        registry.activate_version(_ui.store(), model.name, version, _ui.user(), reason, force=force)
    st.session_state["flash"] = (f"Version {version} is {'active again' if again else 'now active'}: it answers "
                                 f"{_ui.md_escape(model.name)}'s predictions from now on"
                                 + (" (forced, recorded with your reason)." if force else "."))
    st.session_state["versions_clear"] = True
    st.rerun()


def keep_labelled_many(key: str, labels: dict[int, str], default: list[int]) -> None:
    """`keep_labelled` for a multiselect of versions: each chosen version kept under its current label."""
    chosen = st.session_state.get(key)
    kept = [n for n in labels for c in chosen if isinstance(c, str) and c.startswith(f"v{n} · ")] \
        if isinstance(chosen, list) else default
    st.session_state[key] = [labels[n] for n in kept]


WHAT_WIDTH, VALUE_WIDTH, DELTA_WIDTH = 170, 100, 70  # px: the base and one version fit beside the sidebar at 1000 px
BETTER, WORSE = "color: #15803d", "color: #b91c1c"


def compare_table(frame: pd.DataFrame, base: registry.Version, others: list[registry.Version]) -> None:
    """core.compare's table as it reads: readable names, formatted values, deltas coloured better/worse."""
    shown = ["what", compare.base_column(base)] + [c for v in others for c in (f"v{v.version}", f"Δ v{v.version}")]

    def colour(row):
        return [BETTER if c.startswith("Δ ") and row[f"better {c[2:]}"] is True else
                WORSE if c.startswith("Δ ") and row[f"better {c[2:]}"] is False else "" for c in row.index]

    st.container(key="versions_diff_table").dataframe(  # the container's key names the table in a browser
        frame.style.apply(colour, axis=1), hide_index=True, key="versions_diff", column_order=shown,
        height=min(38 + 35 * len(frame), 740),
        column_config={"what": st.column_config.TextColumn("", width=WHAT_WIDTH, pinned=True),
                       **{c: st.column_config.TextColumn(c, width=DELTA_WIDTH if c.startswith("Δ") else VALUE_WIDTH)
                          for c in shown[1:]}})


def diff_section(versions: list[registry.Version], active: int | None) -> None:
    st.subheader("Compare versions")
    if len(versions) < 2:
        st.caption("Only one version so far: train another on the Train page to compare.")
        return
    by_number = {v.version: v for v in versions}
    numbers = list(by_number)
    newest_other = next((n for n in reversed(numbers) if n != active), numbers[-1])
    labels = {n: label_of(by_number[n], active) for n in numbers}
    keep_labelled(DIFF_KEYS[0], labels, active if active in by_number else numbers[-2])
    keep_labelled_many(DIFF_KEYS[1], labels, [newest_other])
    number = {label: n for n, label in labels.items()}
    row = st.container(horizontal=True, vertical_alignment="bottom")
    with row:
        a = number[st.selectbox("Base version", list(labels.values()), key=DIFF_KEYS[0], width=400,
                                help="Every other version's deltas are against this one.")]
        st.session_state[DIFF_KEYS[1]] = [c for c in st.session_state[DIFF_KEYS[1]] if c != labels[a]]
        chosen = st.multiselect("Compared with", [label for n, label in labels.items() if n != a],
                                key=DIFF_KEYS[1], width=420, placeholder="choose versions")
        only_diff = st.toggle("Only differences", value=True, key="versions_diff_only")
    others = [by_number[number[label]] for label in chosen if number[label] != a]
    if not others:
        st.caption("Choose one or more versions to compare with the base.")
        return
    frame = compare.compare_versions([by_number[a], *others], by_number[a])
    st.caption(f"{int(frame['differs'].sum())} of {len(frame)} settings and figures differ from v{a}. "
               "Δ: the version minus the base; green is better, red worse.")
    compare_table(frame[frame["differs"]] if only_diff else frame, by_number[a], others)
    st.markdown("**Reliability** (on the test split: a calibrated model's points lie on the diagonal)")
    st.plotly_chart(_ui.reliability_figure([by_number[a], *others]), key="versions_reliability")
    b = others[0]
    _ui.model_choice(b, "versions_choice")
    _ordinal.version_section(b, by_number[a], "versions_ordinal")


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
    if st.button(f"Save note and tags of v{picked}", key="versions_note_save", disabled=not may("manage"),
                 help=None if may("manage") else "Notes and tags need the owner role."):
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


def history_section(history: pd.DataFrame, events: pd.DataFrame) -> None:
    st.subheader("History")
    tab_activations, tab_events = st.tabs(["Activations", "Recent events"])
    with tab_activations:
        if history.empty:
            st.caption("No activations yet.")
        st.dataframe(history, hide_index=True, key="versions_history", placeholder="", column_config={
            "at": st.column_config.DatetimeColumn("at", format="YYYY-MM-DD HH:mm:ss"),
            "from_version": st.column_config.NumberColumn("from", format="v%d"),
            "to_version": st.column_config.NumberColumn("to", format="v%d")})
    with tab_events:
        st.dataframe(events[["at", "user", "action", "details"]], hide_index=True, key="versions_events",
                     column_config={"at": st.column_config.DatetimeColumn("at", format="YYYY-MM-DD HH:mm:ss")})
        st.caption("The model's latest 50 audit events, newest first.")


# --- the page -----------------------------------------------------------------------------

def main() -> None:
    name = _ui.require_model()
    store = _ui.store()
    if st.session_state.pop("versions_clear", False):
        # assigned, not deleted: the browser keeps a deleted widget's old value on screen
        st.session_state.update(versions_reason="", versions_confirm=False, versions_force=False, versions_pick=None)
    with _ui.errors_as_messages():
        data = load_model(store, repr(store), name, _ui.revision())
    model, versions = data["model"], data["versions"]

    st.title("Versions")
    st.subheader(f"{_ui.md_escape(model.name)} · " + (f"active version v{model.active_version}" if model.active_version
                                           else "no active version"))
    if model.description:
        st.text(model.description)
    trivial = compare.baseline(next((v for v in versions if v.status == registry.ACTIVE), None))
    if trivial is not None and not trivial.beaten:  # forced: no better than guessing, said plainly
        st.warning(f"Version {trivial.version} answers predictions, but {trivial.sentence()}.", icon=":material/warning:")
    if not versions:
        st.info("This model has no version yet: train one on the Train page.")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        overview(store, name)
        return

    # side by side at 1400 px, one under the other at 1000 px: fixed columns squeezed the switch box
    # beside the open sidebar until its regressions table showed one column
    row = st.container(horizontal=True)
    with row.container(width=CHART_WIDTH):
        st.plotly_chart(headline_chart(versions), key="versions_chart")
    panel = row.container(border=True, width=BOX_WIDTH)
    with panel:
        to_activate = reactivate_box(model, versions, data["history"])
    versions_table(data["table"])
    _shadow.versions_section(model, versions)
    model_file_section(model, versions)
    experiments_section(model, versions, data["annotations"])
    diff_section(versions, model.active_version)
    history_section(data["history"], data["events"])
    st.divider()
    overview(store, name)
    if to_activate:  # last, so that an error message cannot hide the rest of the page
        with panel:
            reactivate(model, *to_activate)


main()
