"""The Versions page's comparison: versions against a chosen base, their settings and figures side by
side with deltas coloured better or worse, and their reliability curves."""
import pandas as pd
import streamlit as st

from core import compare, registry
from pages import _ordinal, _ui

DIFF_KEYS = "versions_diff_a", "versions_diff_with"  # the base, the versions compared with it


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
