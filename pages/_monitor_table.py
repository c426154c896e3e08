"""The Monitor's statistics table and its CSV download."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core import drift, export, monitoring, slices, stats
from pages import _ordinal


def without_blanks(frame: pd.DataFrame, percent: set[str]) -> pd.DataFrame:
    """Number columns with gaps as text with "–" in the gaps: a grid would print None there."""
    out = frame.copy()
    for c in out.columns:
        if c in percent and pd.api.types.is_float_dtype(out[c]) and not out[c].isna().any():
            out[c] = out[c] * 100  # shown by share_column's "%.1f%%": one decimal in every row, unlike "percent"
        elif pd.api.types.is_float_dtype(out[c]) and out[c].isna().any():
            fmt = (lambda v: f"{v:.1%}") if c in percent else (lambda v: f"{v:.3f}")
            out[c] = [("–" if pd.isna(v) else fmt(v)) for v in out[c]]
    return out


PERCENT = "%.1f%%"  # of a share times 100 (without_blanks): one decimal in every row


def share_column(shown: pd.DataFrame, column: str, label: str, help: str | None = None):
    """A share as a percentage: a number column, or text once without_blanks wrote "–" in its gaps (a
    column without gaps read 0.6667 and 1 beside 66.7% in the next period's table)."""
    if column in shown.columns and pd.api.types.is_float_dtype(shown[column]):
        return st.column_config.NumberColumn(label, format=PERCENT, help=help)
    return st.column_config.Column(label, help=help)


LABELLED_HELP = ("Every label that came back (audit, hard examples, imported): how much was labelled, not an "
                 "accuracy; its macro-F1 mixes random and hard labels, so it is not the model's")


def table(by_line: pd.DataFrame, name: str, by: str, report: drift.DriftReport | None) -> None:
    st.subheader("Statistics")
    percent = {"low_conf_share", "estimated_accuracy", "estimate_error", "estimate_low", "estimate_high",
               "audited_accuracy", "audit_low",
               "audit_high", "hard_example_accuracy", *[c for c in by_line.columns if c.startswith(slices.SHARE_PREFIX)]}
    shown = without_blanks(by_line, percent)
    shown["period"] = by_line["period"].dt.date
    first = ["business_line", "period", "volume", "estimated_accuracy", "audited_accuracy", "hard_example_accuracy"]
    # the accuracies first: after the period's other figures they were off screen at 1400 px
    st.dataframe(shown, hide_index=True, key="monitor_table", column_order=first + [c for c in shown if c not in first],
                 column_config={
        "business_line": "business line", "mean_top_prob": st.column_config.NumberColumn(
            "mean confidence", format="%.3f"), "low_conf_share": share_column(shown, "low_conf_share", "low-confidence share"),
        "labelled": st.column_config.NumberColumn("labels returned", help=LABELLED_HELP),
        "macro_f1": st.column_config.NumberColumn("macro-F1 of labels returned", format="%.3f", help=LABELLED_HELP)
        if pd.api.types.is_float_dtype(shown["macro_f1"])  # text once gaps read "–"
        else st.column_config.Column("macro-F1 of labels returned", help=LABELLED_HELP),
        "estimated_accuracy": share_column(shown, "estimated_accuracy", "estimated accuracy",
                                           help=monitoring.ACCURACIES["estimated_accuracy"]),
        "estimate_error": share_column(shown, "estimate_error", "estimate error"),
        "estimate_low": share_column(shown, "estimate_low", "estimate low (95 %)"),
        "estimate_high": share_column(shown, "estimate_high", "estimate high (95 %)"),
        "estimate_note": st.column_config.Column("estimate note", help="Why the estimate's interval is widened, or "
                                                 "why it cannot be trusted there (drift, texts unlike the test split)"),
        "audited_accuracy": share_column(shown, "audited_accuracy", "audited accuracy",
                                         help=monitoring.ACCURACIES["audited_accuracy"]),
        "audit_low": share_column(shown, "audit_low", "audit low"),
        "audit_high": share_column(shown, "audit_high", "audit high"),
        "hard_example_accuracy": share_column(shown, "hard_example_accuracy", "hard-example accuracy (biased)",
                                              help=monitoring.ACCURACIES["hard_example_accuracy"]),
        "mix_shift": st.column_config.NumberColumn("mix shift", format="%.3f",
                                                   help="Total variation distance between this period's class "
                                                        "mix and the line's mix over the whole range"),
        **{c: share_column(shown, c, c.removeprefix(slices.SHARE_PREFIX) + " share")
           for c in shown.columns if c.startswith(slices.SHARE_PREFIX)}, **_ordinal.column_config(shown)})
    download = by_line if report is None else stats.with_drift_columns(by_line, report.cells)
    st.download_button("Download CSV", export.to_csv_bytes(download), file_name=f"mms-stats-{name}-{by}.csv",
                       mime="text/csv", icon=":material/download:", key="monitor_download")
