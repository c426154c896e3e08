"""The slice rules every face shares: loose values checked, date pickers to bounds and back,
ranges that follow new days, period names, and the slice Monitor sends to Label."""
import datetime as dt

import pandas as pd
import pytest

from core import slices
from core.errors import InvalidInput
from core.slices import Slice

FIRST, LAST = dt.date(2026, 10, 19), dt.date(2026, 11, 1)


def test_a_slice_from_loose_values_is_checked():
    s = Slice.of("酒店", "2026-10-26", dt.date(2026, 10, 27), "2")
    assert s == Slice(("酒店",), pd.Timestamp("2026-10-26"), pd.Timestamp("2026-10-27"), 2)
    assert s.filters() == {"business_lines": ["酒店"], "since": dt.datetime(2026, 10, 26),
                           "until": dt.datetime(2026, 10, 27), "version": 2}
    assert Slice.of().filters() == {"business_lines": None, "since": None, "until": None, "version": None}
    assert Slice.of(since="2026-10-26T08:00:00+08:00").since == pd.Timestamp("2026-10-26 08:00")
    with pytest.raises(InvalidInput, match="since must be a date like 2026-11-01, not 'yesterday-ish'"):
        Slice.of(since="yesterday-ish")
    with pytest.raises(InvalidInput, match="until must be a date"):
        Slice.of(until="31/31/2026")
    with pytest.raises(InvalidInput, match="version must be a whole number"):
        Slice.of(version="latest")


def test_a_slice_is_a_cache_key():
    assert {Slice.of(["a", "b"], "2026-10-20"): 1}[Slice(("a", "b"), pd.Timestamp("2026-10-20"))] == 1


def test_clamping_moves_a_day_to_the_nearest_day_with_predictions():
    assert slices.clamp(dt.date(2026, 10, 1), FIRST, LAST) == FIRST
    assert slices.clamp(dt.date(2026, 12, 1), FIRST, LAST) == LAST
    assert slices.clamp(dt.date(2026, 10, 25), FIRST, LAST) == dt.date(2026, 10, 25)


def test_widget_dates_become_bounds_with_until_exclusive():
    assert slices.from_widget_dates((FIRST, LAST), FIRST, LAST) == (None, None)  # everything: no restriction
    assert slices.from_widget_dates((dt.date(2026, 10, 26), dt.date(2026, 10, 27)), FIRST, LAST) == \
        (dt.date(2026, 10, 26), dt.date(2026, 10, 28))
    assert slices.from_widget_dates((dt.date(2026, 10, 26),), FIRST, LAST) == (dt.date(2026, 10, 26), None)
    assert slices.from_widget_dates((), FIRST, LAST) == (None, None)


def test_bounds_become_widget_dates_inside_the_data():
    assert Slice.of(since="2026-10-26", until="2026-10-28").widget_dates(FIRST, LAST) == \
        (dt.date(2026, 10, 26), dt.date(2026, 10, 27))
    assert Slice().widget_dates(FIRST, LAST) == (FIRST, LAST)
    assert Slice.of(since="2026-01-01", until="2027-01-01").widget_dates(FIRST, LAST) == (FIRST, LAST)
    assert Slice.of(since="2026-12-01").widget_dates(FIRST, LAST) == (LAST, LAST)  # never an empty picker


def test_a_range_ending_on_the_last_day_follows_new_days():
    new_last = dt.date(2026, 11, 3)
    assert slices.follow_new_days((dt.date(2026, 10, 25), LAST), (FIRST, LAST), FIRST, new_last) == \
        (dt.date(2026, 10, 25), new_last)
    assert slices.follow_new_days((dt.date(2026, 10, 25), dt.date(2026, 10, 28)), (FIRST, LAST), FIRST, new_last) == \
        (dt.date(2026, 10, 25), dt.date(2026, 10, 28))
    # older days dropped out: a range that began on the first day keeps beginning on it
    assert slices.follow_new_days((FIRST, dt.date(2026, 10, 28)), (FIRST, LAST), dt.date(2026, 10, 21), LAST) == \
        (dt.date(2026, 10, 21), dt.date(2026, 10, 28))
    assert slices.follow_new_days((dt.date(2026, 10, 20), LAST), (FIRST, LAST), dt.date(2026, 10, 22), LAST) == \
        (dt.date(2026, 10, 22), LAST)
    unchanged = (dt.date(2026, 10, 25), LAST)
    assert slices.follow_new_days(unchanged, None, FIRST, new_last) == unchanged  # the first render
    assert slices.follow_new_days(unchanged, (FIRST, LAST), FIRST, LAST) == unchanged  # no new days


def test_periods_are_named_and_end_where_the_next_begins():
    monday = pd.Timestamp("2026-10-26")
    assert slices.period_label(monday, "week") == "week of 2026-10-26"
    assert slices.period_label(monday, "week", short=True) == "2026-10-26"
    assert slices.period_label(monday, "day") == "2026-10-26"
    assert slices.period_label(pd.Timestamp("2026-10-01"), "month") == "2026-10"
    assert slices.period_end(monday, "week") == pd.Timestamp("2026-11-02")
    assert slices.period_end(pd.Timestamp("2026-01-31"), "day") == pd.Timestamp("2026-02-01")
    assert slices.period_end(pd.Timestamp("2026-02-01"), "month") == pd.Timestamp("2026-03-01")
    with pytest.raises(InvalidInput, match="the period must be one of day, week, month, not 'year'"):
        slices.period_end(monday, "year")


def test_the_slice_monitor_sends_stays_inside_the_filter_and_the_data():
    everything = Slice()
    sent = slices.period_slice(everything, pd.Timestamp("2026-10-26"), "week", "酒店", FIRST, LAST)
    assert sent == Slice(("酒店",), pd.Timestamp("2026-10-26"), pd.Timestamp("2026-11-02"))
    assert sent.widget_dates(FIRST, LAST) == (dt.date(2026, 10, 26), LAST)
    # the week began before the data and the filter ends mid-week: both bounds are kept
    filtered = Slice.of(["图书", "数码"], until="2026-10-22", version=1)
    sent = slices.period_slice(filtered, pd.Timestamp("2026-10-19"), "week", None, dt.date(2026, 10, 20), LAST)
    assert sent == Slice(("图书", "数码"), pd.Timestamp("2026-10-20"), pd.Timestamp("2026-10-22"), 1)
