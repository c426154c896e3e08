"""The Monitor's filters: the filter row, the drift reference in the sidebar, and the filters kept in
the address bar so that a view can be shared as a link."""
from __future__ import annotations

import datetime as dt

import streamlit as st

from core import slices
from core.slices import Slice
from pages import _ui

ALL = 0  # the version filter's "all versions" (versions count from 1)

FILTER_KEYS = ("monitor_lines", "monitor_period", "monitor_dates", "monitor_version", "monitor_range")


def reset_filters_on_model_change(name: str) -> None:
    """Business lines and dates differ per model: a newly selected model starts from all of them."""
    if st.session_state.get("monitor_model") != name:
        for key in FILTER_KEYS:
            st.session_state.pop(key, None)
        st.session_state["monitor_model"] = name


def follow_new_days(first: dt.date, last: dt.date) -> None:
    """Set the date range before its widget is drawn: all days at first, then as slices.follow_new_days says."""
    chosen = slices.follow_new_days(st.session_state.get("monitor_dates"), st.session_state.get("monitor_range"),
                                    first, last)
    st.session_state["monitor_dates"] = chosen or (first, last)
    st.session_state["monitor_range"] = (first, last)


def filters(lines: list[str], first: dt.date, last: dt.date, versions: dict[int, str]) -> tuple[str, Slice]:
    """The filter row; returns the period and the slice it selects."""
    # a row that wraps: four fixed columns beside the sidebar at 1000 px cut the Period control and
    # showed only the start date
    row = st.container(horizontal=True, key="monitor_filters")
    chosen = row.multiselect("Business lines", lines, key="monitor_lines", placeholder="All business lines")
    by = row.segmented_control("Period", list(slices.PERIODS), format_func=str.title, default="week",
                               required=True, key="monitor_period")
    dates = row.date_input("Dates", min_value=first, max_value=last, key="monitor_dates", width=240)
    version = row.selectbox("Version", [ALL, *versions], key="monitor_version",
                            format_func=lambda v: "All versions" if v == ALL else versions[v])
    since, until = slices.from_widget_dates(dates, first, last)
    return by or "week", Slice.of(chosen, since, until, None if version == ALL else version)


def from_url(name: str, lines: list[str], first: dt.date, last: dt.date, versions: dict[int, str]) -> None:
    """Set the filters from a shared link (?model=..&line=..&period=..&from=..&to=..&version=..) once
    per link, before they are drawn; a value the model does not have is named and left out."""
    link = {k: tuple(st.query_params.get_all(k)) for k in st.query_params}
    if not link or link == st.session_state.get("monitor_url"):
        return
    wanted = link.get("model", (name,))[0]
    if wanted != name and st.session_state.get("monitor_url_tried") != link:
        st.session_state["monitor_url_tried"] = link
        _ui.select_model(wanted)  # reruns on that model, if it exists; the rest is read then
    st.session_state["monitor_url"] = link
    wrong = [f"model {wanted}"] if wanted != name else []
    wrong += [f"business line {v}" for v in link.get("line", ()) if v not in lines]
    st.session_state["monitor_lines"] = [v for v in link.get("line", ()) if v in lines]
    period = link.get("period", ("week",))[0]
    if period in slices.PERIODS:
        st.session_state["monitor_period"] = period
    else:
        wrong.append(f"period {period}")
    try:
        since, until = (dt.date.fromisoformat(link.get(k, (str(d),))[0]) for k, d in (("from", first), ("to", last)))
        st.session_state["monitor_dates"] = (slices.clamp(since, first, last), slices.clamp(until, since, last))
    except ValueError:
        wrong.append(f"dates {link.get('from', ('',))[0]}..{link.get('to', ('',))[0]} (not YYYY-MM-DD)")
    version = link.get("version", (str(ALL),))[0]
    st.session_state["monitor_version"] = int(version) if version.isdigit() and int(version) in versions else ALL
    if st.session_state["monitor_version"] == ALL and version != str(ALL):
        wrong.append(f"version {version}")
    if wrong:
        st.warning("Left out of the link, not found: " + ", ".join(map(_ui.md_escape, wrong))
                   + f". Showing model {_ui.md_escape(name)}.")


def to_url(name: str, by: str, where: Slice, dates, first: dt.date, last: dt.date) -> None:
    """Keep the filters in the address bar, so a view can be shared as a link."""
    since, until = (tuple(dates) + (last,))[:2] if dates else (first, last)
    link = {"model": (name,), "period": (by,), "from": (str(since),), "to": (str(until),),
            **({"line": where.business_lines} if where.business_lines else {}),
            **({"version": (str(where.version),)} if where.version is not None else {})}
    if link != {k: tuple(st.query_params.get_all(k)) for k in st.query_params}:
        st.query_params.from_dict({k: list(v) for k, v in link.items()})
    st.session_state["monitor_url"] = link


def reference_window(first: dt.date, last: dt.date):
    """The drift reference from the sidebar: None for the training data, or a (since, until) window."""
    with st.sidebar:
        choice = st.radio("Drift reference", ["Training data", "A window of predictions"], key="monitor_reference",
                          help="What each line x period is compared with. Default: the version's training data.")
        if choice == "Training data":
            return None
        dates = st.date_input("Reference window", value=(first, min(first + dt.timedelta(days=13), last)),
                              min_value=first, max_value=last, key="monitor_reference_dates")
    since, until = slices.from_widget_dates(dates, first, last)
    return (str(since), str(until))
