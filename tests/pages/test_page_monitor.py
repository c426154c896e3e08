"""Monitor page: headline numbers, charts, the statistics download, and sending a slice to Label."""
import datetime as dt
import re

from core import registry

MODEL = "评论情感"


def plotly_charts(at):
    return at.get("plotly_chart")


def table_with(at, column: str):
    """The shown table that has `column` (the statistics: mix_shift; the drift view: text_auc)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_monitor_shows_headline_numbers_charts_and_the_table(app):
    at = app("pages/monitor.py")
    assert not at.exception
    assert not at.error
    titles = [m.label for m in at.metric]
    assert titles == ["Volume", "Mean confidence", "Low-confidence share", "Estimated accuracy", "Audited accuracy",
                      "Hard-example accuracy (biased)"]  # three accuracies, side by side and never merged
    assert all(m.value not in ("", "–") for m in at.metric[:3])
    assert any("audit items labelled" in c.value for c in at.caption)
    assert any("chosen for being hard" in c.value for c in at.caption)
    # volume, confidence, heatmap, class mix over time, the three accuracies: one tab each, the open one drawn
    assert [t.label for t in at.tabs] == ["Volume", "Confidence", "Low confidence", "Class mix", "Accuracy"]
    assert [c.proto.id.endswith("monitor_chart_volume") for c in plotly_charts(at)] == [True]
    assert [s.value for s in at.subheader if s.value.startswith("Drift")] == ["Drift against the reference"]
    drift = table_with(at, "text_auc")
    assert set(drift["business_line"]) == {"图书", "数码", "母婴", "综合", "酒店"}
    assert not drift.astype(str).isin(["None", "nan"]).any().any()
    assert at.multiselect(key="monitor_lines").options == ["图书", "数码", "母婴", "综合", "酒店"]
    assert at.button_group(key="monitor_period").value == "week"
    assert at.date_input(key="monitor_dates").value == (dt.date(2026, 10, 19), dt.date(2026, 11, 1))
    assert at.selectbox(key="monitor_version").options == ["All versions", "v1 (active)"]
    assert at.selectbox(key="monitor_version").value == 0  # all versions
    table = table_with(at, "mix_shift")
    assert set(table["business_line"]) == {"图书", "数码", "母婴", "综合", "酒店"}
    assert not table.astype(str).isin(["None", "nan"]).any().any()  # gaps read "–"
    assert at.download_button(key="monitor_download")
    assert any("MMS_LOW_CONFIDENCE" in c.value for c in at.caption)


def test_filters_change_the_numbers(app):
    at = app("pages/monitor.py")
    all_lines = at.metric[0].value
    at.multiselect(key="monitor_lines").set_value(["酒店"])
    at.button_group(key="monitor_period").set_value("day").run()
    assert not at.exception
    assert any(c.value == "Latest day: 2026-11-01, against 2026-10-31." for c in at.caption)
    assert at.metric[0].value != all_lines
    assert set(table_with(at, "mix_shift")["business_line"]) == {"酒店"}


def test_sending_a_slice_opens_label_with_its_filters(app):
    at = app("pages/monitor.py")
    at.selectbox(key="monitor_slice_line").set_value("酒店")
    periods = at.selectbox(key="monitor_slice_period").options
    at.button(key="monitor_send").click().run()
    assert not at.exception
    sent = at.session_state["label_query"]  # the Label page consumed label_filters and kept them
    assert sent["label_lines"] == ["酒店"]
    since, until = sent["label_dates"]
    assert since == dt.date(2026, 10, 26) and until == dt.date(2026, 11, 1)  # the latest week
    assert periods[0].startswith("week of 2026-10-26")
    assert at.multiselect(key="label_lines").value == ["酒店"]
    assert [t.value for t in at.title] == ["Label"]


def test_a_model_without_predictions_gets_a_hint(store, monkeypatch):
    from streamlit.testing.v1 import AppTest
    from conftest import ROOT

    registry.create_model(store, "空模型", ["好", "坏"], "tester")
    monkeypatch.setenv("MMS_STORE", str(store.path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("no predictions yet" in i.value for i in at.info)
    assert not plotly_charts(at)


def test_a_date_range_ending_on_the_last_day_follows_new_predictions(app, seeded_store):
    import streamlit as st
    from core import predict

    at = app("pages/monitor.py")
    at.date_input(key="monitor_dates").set_value((dt.date(2026, 10, 25), dt.date(2026, 11, 1))).run()
    predict.predict_texts(seeded_store, MODEL, ["房间很干净，服务也很好"], "tester", business_line="酒店",
                          created_at="2026-11-03 10:00", workers=1)
    st.cache_data.clear()  # the filter options are kept five minutes; a new session would see them at once
    at.run()
    assert not at.exception
    assert at.date_input(key="monitor_dates").value == (dt.date(2026, 10, 25), dt.date(2026, 11, 3))


def test_audit_this_slice_opens_label_on_the_audit_sample_kept_apart(app):
    at = app("pages/monitor.py")
    at.button(key="monitor_audit").click().run()
    assert not at.exception
    assert at.selectbox(key="label_strategy").value == "audit"
    assert any("Audit items" in i.value for i in at.info)
    assert [t.value for t in at.title] == ["Label"]


def test_drift_cells_beyond_the_render_budget_are_pending_until_measured(app, monkeypatch):
    monkeypatch.setenv("MMS_DRIFT_RENDER_SECONDS", "0")
    at = app("pages/monitor.py")
    assert not at.exception
    assert any("server measures the other" in i.value for i in at.info)
    at.button(key="monitor_measure_rest_button").click().run()
    assert not at.exception
    assert not any("server measures the other" in i.value for i in at.info)
    drift = table_with(at, "text_auc")
    assert "not measured yet" not in set(drift["status"])


def drawn_charts(at) -> list[str]:
    return [re.search(r"monitor_chart_\w+$", c.proto.id).group(0) for c in plotly_charts(at)]


def test_only_the_open_charts_tab_is_built_and_each_tab_draws_its_own_chart(app):
    """A fresh Monitor built and sent five Plotly figures, most of them off screen: the browser's
    drawing of them was most of a fresh load. Each chart now has a tab, and only the open tab's is
    drawn; every tab keeps its title and caption, and the tab stays open across a period switch."""
    at = app("pages/monitor.py")
    assert drawn_charts(at) == ["monitor_chart_volume"]
    titles = ["Volume per business line", "Confidence over time", "Low-confidence share by line and period",
              "Class mix over time per business line", "Accuracy: estimated, audited, hard examples"]
    assert [s.value for s in at.subheader][:5] == titles
    assert any("labelled on purpose" in c.value for c in at.caption)  # the accuracy tab's caption
    for tab, key in (("Confidence", "confidence"), ("Low confidence", "heatmap"), ("Class mix", "mix"),
                     ("Accuracy", "accuracy"), ("Volume", "volume")):
        at.session_state["monitor_tab"] = tab
        at.run()
        assert not at.exception
        assert drawn_charts(at) == [f"monitor_chart_{key}"], tab
        assert [s.value for s in at.subheader][:5] == titles
    at.session_state["monitor_tab"] = "Accuracy"
    at.run()
    at.button_group(key="monitor_period").set_value("day").run()
    assert drawn_charts(at) == ["monitor_chart_accuracy"]
    assert any(c.value.startswith("Latest day:") for c in at.caption)


def legend_entries(chart) -> list[str]:
    import json

    return [t.get("name") for t in json.loads(chart.proto.spec)["data"] if t.get("showlegend", True)]


def test_chart_legends_name_each_series_once(app):
    """The confidence chart's legend read "complete" (its two measures were not named) and the volume chart's
    "图书, complete": each entry names one series, once, whether or not a period is still running."""
    at = app("pages/monitor.py")
    assert not at.exception
    volume = next(c for c in plotly_charts(at) if "monitor_chart_volume" in c.proto.id)
    at.session_state["monitor_tab"] = "Confidence"
    at.run()
    confidence = next(c for c in plotly_charts(at) if "monitor_chart_confidence" in c.proto.id)
    assert sorted(legend_entries(volume)) == ["图书", "数码", "母婴", "综合", "酒店"]
    assert legend_entries(confidence) == ["mean confidence", "share below 0.60"]


def test_every_share_in_the_statistics_table_reads_as_a_percentage(app):
    """A share column without gaps (estimated accuracy here; accuracy in a store where every period has
    labels) was drawn as a raw fraction, 0.7436 or 1, beside columns that read 74.4%."""
    import json

    at = app("pages/monitor.py")
    shown = next(d for d in at.dataframe if "mix_shift" in d.value.columns)
    config = json.loads(shown.proto.columns)
    shares = ["low_conf_share", "estimated_accuracy", "estimate_error", "estimate_low", "estimate_high",
              "audited_accuracy", "audit_low",
              "audit_high", "hard_example_accuracy", "share_正面", "share_负面"]
    for column in shares:
        values = shown.value[column]
        if values.dtype.kind == "f":  # Streamlit's "percent" read 70 %, 65.2 % and 74.46 % in one column
            assert config[column].get("type_config", {}).get("format") == "%.1f%%", column
            assert values.between(0, 100).all() and values.max() > 1, column  # a share times 100
        else:  # text: gaps read "–", the rest were written as percentages with one decimal
            assert all(v == "–" or re.fullmatch(r"\d+\.\d%", v) for v in values), column


def test_the_statistics_download_has_the_drift_columns(app, monkeypatch):
    """The Monitor's CSV had the statistics but not the drift verdicts the page shows beside them."""
    import io

    import pandas as pd
    from streamlit.runtime.media_file_manager import MediaFileManager

    offered, add = {}, MediaFileManager.add

    def record(self, data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        offered[file_name] = data
        return add(self, data, mimetype, coordinates, file_name, is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", record)
    at = app("pages/monitor.py")
    assert not at.exception
    data = next(v for k, v in offered.items() if k and k.startswith("mms-stats-"))
    frame = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")
    assert {"drift_flagged", "drift_status", "text_auc", "unseen_share", "estimated_accuracy"} <= set(frame.columns)
    assert frame["drift_status"].notna().all()


def test_an_analyst_is_not_offered_to_label_or_audit_a_slice(app):
    """Both buttons were enabled for an analyst and led to "The Label page needs the role labeller or owner"."""
    at = app("pages/monitor.py", role="analyst")
    assert not at.exception
    keys = {b.key for b in at.button}
    assert "monitor_send" not in keys and "monitor_audit" not in keys
    assert any("needs the role labeller or owner" in c.value for c in at.caption)
    labeller = app("pages/monitor.py", role="labeller")
    assert {"monitor_send", "monitor_audit"} <= {b.key for b in labeller.button}


def open_link(seeded_store, monkeypatch, query: dict):
    """The Monitor opened from a shared link with these query parameters."""
    from streamlit.testing.v1 import AppTest
    from conftest import ROOT, use_navigation_in_apptest

    monkeypatch.setenv("MMS_STORE", str(seeded_store.path))
    use_navigation_in_apptest(monkeypatch)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["user"], at.session_state["role"] = "tester", "analyst"
    at.query_params.update(query)
    return at.run()


def test_a_shared_link_sets_the_filters_and_the_filters_set_the_link(seeded_store, monkeypatch):
    at = open_link(seeded_store, monkeypatch, {"model": MODEL, "period": "day", "line": ["酒店", "图书"],
                                               "from": "2026-10-26", "to": "2026-11-01"})
    assert not at.exception and not [w for w in at.warning if "Left out of the link" in w.value]
    assert at.button_group(key="monitor_period").value == "day"
    assert at.multiselect(key="monitor_lines").value == ["酒店", "图书"]
    assert at.date_input(key="monitor_dates").value == (dt.date(2026, 10, 26), dt.date(2026, 11, 1))
    assert set(table_with(at, "mix_shift")["business_line"]) == {"酒店", "图书"}
    at.button_group(key="monitor_period").set_value("month").run()
    assert at.query_params["period"] == "month" and at.query_params["line"] == ["酒店", "图书"]


def test_a_link_with_values_the_model_lacks_names_them_and_shows_the_rest(seeded_store, monkeypatch):
    at = open_link(seeded_store, monkeypatch, {"model": MODEL, "period": "year", "line": ["火星"], "version": "9",
                                               "from": "2026-13-01"})
    assert not at.exception
    said = " ".join(w.value for w in at.warning if "Left out of the link" in w.value)
    for named in ("business line 火星", "period year", "version 9", "dates 2026\\-13\\-01"):  # as markdown
        assert named in said, named
    assert at.button_group(key="monitor_period").value == "week"
    assert at.multiselect(key="monitor_lines").value == []


def test_a_switch_to_a_view_the_server_is_measuring_waits_for_none_of_its_cells(app, seeded_store, monkeypatch):
    """The server claims every period it is about to measure (core.driftfill): a render of such a view
    measures no cell itself (the first switch to Day waited for a render budget of fits) and says the
    server measures them."""
    from core import drift

    at = app("pages/monitor.py")
    fits = []
    real = drift._measure
    # by period: a thread the first render started may still be measuring its weeks meanwhile
    monkeypatch.setattr(drift, "_measure", lambda *a: fits.append(a[-1]) or real(*a))
    assert drift.claim(seeded_store, MODEL, "day")
    try:
        at.button_group(key="monitor_period").set_value("day").run()
    finally:
        drift.release(seeded_store, MODEL, "day")
    assert not at.exception
    assert "day" not in fits
    assert any("server measures the other" in i.value for i in at.info)
