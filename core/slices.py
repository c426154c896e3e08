"""Slices of the prediction log (business lines × a time range × a version) and the periods
statistics group by: the date rules the Monitor, the Label page, the CLI and the API share.

Bounds follow one convention everywhere: `since` is inclusive, `until` exclusive, and None
means "no restriction". A date picker shows whole days, so its last day becomes `until` = the
next day's start.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from .errors import InvalidInput

PERIODS = ("day", "week", "month")
PERIOD_STEP = {"day": pd.DateOffset(days=1), "week": pd.DateOffset(weeks=1), "month": pd.DateOffset(months=1)}
ONE_DAY = dt.timedelta(days=1)
# A line x period statistics table has a column SHARE_PREFIX + label per predicted label: its share of the volume.
SHARE_PREFIX = "share_"


def check_period(period: str) -> str:
    """The period itself, or InvalidInput naming the allowed ones."""
    if period not in PERIODS:
        raise InvalidInput(f"the period must be one of {', '.join(PERIODS)}, not {period!r}")
    return period


def parse_bound(value, field: str) -> pd.Timestamp | None:
    """A date or time as a naive timestamp (None stays None); InvalidInput names the field."""
    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        ts = pd.NaT
    if pd.isna(ts):
        raise InvalidInput(f"{field} must be a date like 2026-11-01, not {value!r}")
    return ts.tz_localize(None) if ts.tzinfo else ts


def clamp(day: dt.date, first: dt.date, last: dt.date) -> dt.date:
    """The one clamping rule: a day outside the days with predictions moves to the nearest of them."""
    return min(max(day, first), last)


@dataclass(frozen=True)
class Slice:
    """Which predictions a statistic or a labelling queue covers. Empty lines = every line."""
    business_lines: tuple[str, ...] = ()
    since: pd.Timestamp | None = None  # inclusive
    until: pd.Timestamp | None = None  # exclusive
    version: int | None = None

    @classmethod
    def of(cls, business_lines=None, since=None, until=None, version=None) -> "Slice":
        """A slice from loose values (a line or a list of lines, dates as text or dates), checked."""
        if isinstance(business_lines, str):
            business_lines = [business_lines]
        if version is not None:
            try:
                version = int(version)
            except (TypeError, ValueError):
                raise InvalidInput(f"version must be a whole number, not {version!r}") from None
        return cls(tuple(business_lines or ()), parse_bound(since, "since"), parse_bound(until, "until"), version)

    def filters(self) -> dict:
        """The keyword arguments the store's queries take."""
        return {"business_lines": list(self.business_lines) or None,
                "since": None if self.since is None else self.since.to_pydatetime(),
                "until": None if self.until is None else self.until.to_pydatetime(),
                "version": self.version}

    def widget_dates(self, first: dt.date, last: dt.date) -> tuple[dt.date, dt.date]:
        """The (first, last) days a date picker shows for this slice, inside the days with predictions."""
        start = clamp(self.since.date() if self.since is not None else first, first, last)
        end = (self.until - ONE_DAY).date() if self.until is not None else last
        return start, clamp(end, start, last)


def from_widget_dates(dates, first: dt.date, last: dt.date) -> tuple[dt.date | None, dt.date | None]:
    """A date picker's days as (since, until) bounds; a picker still waiting for its second day
    ends on the last day, and a bound at the edge of the data is no restriction (None)."""
    start, end = (tuple(dates) + (last,))[:2] if dates else (first, last)
    return (None if start <= first else start), (None if end >= last else end + ONE_DAY)


def follow_new_days(dates, old: tuple | None, first: dt.date, last: dt.date):
    """The picker's days after the data's range changed from `old` to (first, last): a range that
    began on the first day or ended on the last day keeps doing so; other days are clamped."""
    if not old or old == (first, last) or not dates:
        return dates
    start, end = (tuple(dates) + (old[1],))[:2]
    return (first if start <= old[0] else clamp(start, first, last),
            last if end >= old[1] else clamp(end, first, last))


def period_end(start, by: str) -> pd.Timestamp:
    """The first moment after the period that starts at `start`."""
    return pd.Timestamp(start) + PERIOD_STEP[check_period(by)]


def period_label(start, by: str, short: bool = False) -> str:
    """How a period is named on screen: 2026-11, week of 2026-10-26 (short: 2026-10-26), 2026-11-02."""
    start = pd.Timestamp(start)
    if by == "month":
        return start.strftime("%Y-%m")
    if by == "week" and not short:
        return f"week of {start:%Y-%m-%d}"
    return f"{start:%Y-%m-%d}"


def period_slice(within: Slice, start, by: str, line: str | None, first: dt.date, last: dt.date) -> Slice:
    """One period (and optionally one business line) of a filtered slice: what the Monitor's
    "Label this slice" sends to the Label page. Bounds never leave the filter or the data."""
    since = max(pd.Timestamp(start), within.since if within.since is not None else pd.Timestamp(first))
    until = min(period_end(start, by), within.until if within.until is not None else pd.Timestamp(last + ONE_DAY))
    return Slice((line,) if line else within.business_lines, since, until, within.version)
