"""A site's opening hours (Site.opening_hours): when a person may answer. Pure functions of the
hours text, a time zone and a moment, so they are tested without a clock.

The hours are written as an admin would say them, one rule per line (or separated by ";"):

    Mon-Fri 09:00-17:00
    Sat 10:00-14:00
    Mon,Wed 18:00-20:00

Days are Mon Tue Wed Thu Fri Sat Sun, one, a range (Fri-Mon wraps round the week) or a list;
times are one or more HH:MM-HH:MM spans (24:00 may end a day). A span past midnight is written as
two rules, one per day. Times are wall-clock times in the site's time zone: 09:00 stays 09:00
across a daylight-saving change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_RULE = re.compile(r"^(?P<days>[A-Za-z][A-Za-z,\s-]*?)\s+(?P<times>\d.*)$")
_SPAN = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")

Hours = dict[int, list[tuple[time, time | None]]]  # weekday (0 = Monday) -> spans; None ends at 24:00


class HoursError(ValueError):
    """The hours text cannot be read; the message says what to fix, for the admin form."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone, or HoursError."""
    try:
        return ZoneInfo(name.strip() or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HoursError(f"{name!r} is not a time zone; use a name such as Europe/Berlin or UTC.") from exc


def _day(word: str, rule: str) -> int:
    key = word.strip().lower()
    if key not in DAYS and key not in (name.lower() for name in DAY_NAMES):
        raise HoursError(
            f"{word.strip()!r} in {rule!r} is not a day; use Mon, Tue, Wed, Thu, Fri, Sat or Sun."
        )
    return DAYS.index(key[:3])


def _days(text: str, rule: str) -> list[int]:
    days: list[int] = []
    for part in text.split(","):
        if "-" in part:
            first, last = (_day(p, rule) for p in part.split("-", 1))
            days.extend((first + i) % 7 for i in range((last - first) % 7 + 1))
        elif part.strip():
            days.append(_day(part, rule))
    return days


def _clock(hour: str, minute: str, rule: str, *, end: bool) -> time | None:
    h, m = int(hour), int(minute)
    if end and (h, m) == (24, 0):
        return None  # the end of the day
    if h > 23 or m > 59:
        raise HoursError(
            f"{hour}:{minute} in {rule!r} is not a time; use 00:00 to 23:59 (24:00 to end a day)."
        )
    return time(h, m)


def parse_hours(text: str) -> Hours:
    """The weekly hours, or HoursError saying which rule is wrong. Empty text: no hours set."""
    hours: Hours = {}
    for raw in re.split(r"[;\n]", text):
        rule = raw.strip()
        if not rule:
            continue
        match = _RULE.match(rule)
        if not match:
            raise HoursError(f"{rule!r} should look like 'Mon-Fri 09:00-17:00'.")
        days = _days(match["days"], rule)
        for span in match["times"].split(","):
            times = _SPAN.match(span.strip())
            if not times:
                raise HoursError(f"{span.strip()!r} in {rule!r} should look like 09:00-17:00.")
            start = _clock(times[1], times[2], rule, end=False)
            end = _clock(times[3], times[4], rule, end=True)
            if start is None or (end is not None and end <= start):
                raise HoursError(
                    f"{span.strip()!r} in {rule!r} ends before it starts; write hours past midnight as "
                    "two rules, one for each day."
                )
            for day in days:
                hours.setdefault(day, []).append((start, end))
    return hours


@dataclass(frozen=True)
class Opening:
    """open_now: within the hours at that moment (None: the site sets no hours, so no one knows);
    next_opening: when the next span starts (UTC; None when open now or no hours are set)."""

    open_now: bool | None
    next_opening: datetime | None


def _spans(hours: Hours, day: date, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The day's spans as UTC moments. A wall time in a DST gap or fold resolves as zoneinfo
    does (fold=0): 02:30 on a spring-forward night is read in the old offset."""
    out = []
    for start, end in hours.get(day.weekday(), []):
        begin = datetime.combine(day, start, tzinfo=tz)
        finish = (
            datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
            if end is None
            else datetime.combine(day, end, tzinfo=tz)
        )
        out.append((begin.astimezone(UTC), finish.astimezone(UTC)))
    return out


def opening(hours_text: str, tz_name: str, now: datetime) -> Opening:
    """Whether a site with these hours is open at `now` (aware), and if not when it opens next."""
    hours = parse_hours(hours_text)
    if not hours:
        return Opening(None, None)
    tz = zone(tz_name)
    now = now.astimezone(UTC)
    today = now.astimezone(tz).date()
    upcoming = []
    for offset in range(-1, 9):  # yesterday (a span to 24:00) to past the same day next week
        for begin, finish in _spans(hours, today + timedelta(days=offset), tz):
            if begin <= now < finish:
                return Opening(True, None)
            if begin > now:
                upcoming.append(begin)
    return Opening(False, min(upcoming) if upcoming else None)


def describe_opening(moment: datetime, tz_name: str, now: datetime) -> str:
    """'today at 13:00', 'tomorrow at 09:00' or 'Monday at 09:00', in the site's time zone, with
    its abbreviation so a visitor elsewhere can tell: 'Monday at 09:00 (CET)'."""
    tz = zone(tz_name)
    local, today = moment.astimezone(tz), now.astimezone(tz).date()
    days = (local.date() - today).days
    when = "today" if days == 0 else "tomorrow" if days == 1 else DAY_NAMES[local.weekday()]
    return f"{when} at {local:%H:%M} ({local.tzname()})"
