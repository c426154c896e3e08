"""The Label page's filters: strategy, business lines, dates, version and a text search, set from a
slice the Monitor sent, else from this session's last choice for the model, else the defaults."""
from __future__ import annotations

import datetime as dt

import streamlit as st

from core import monitoring, sampling, slices
from core.labelqueue import Query
from core.slices import Slice
from pages import _ui

ALL = 0  # the version filter's "all versions" (versions count from 1)
FILTER_KEYS = ("label_strategy", "label_lines", "label_dates", "label_version", "label_search")


def notice(kind: str, text: str) -> None:
    """A message for the next run (callbacks run before the page is drawn)."""
    st.session_state.setdefault("label_notices", []).append((kind, text))


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


def filters(name: str, lines: list[str], first: dt.date, last: dt.date, versions: dict, graded: bool = False) -> Query:
    """The filter row; returns the query it selects (an ordinal model, `graded`, is offered its own
    strategies first)."""
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
    return Query(name, strategy, Slice.of(chosen, since, until, None if version == ALL else version),
                 None if audit else text.strip() or None)


def strategy_name(s: str) -> str:
    return "audit sample" if s == monitoring.AUDIT else s.replace("_", " ")


def strategy_description(s: str) -> str:
    if s == monitoring.AUDIT:
        return "A random share of every line × period, for the audited accuracy (not hard examples)."
    described = sampling.EVERY_STRATEGY[s].description
    return described[:1].upper() + described[1:] + "."
