"""A site's opening hours (assistant/models/hours.py): reading the admin's text, open now or not,
and the next opening, across a daylight-saving change and round the end of the week."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from assistant.models import Site
from assistant.models.hours import HoursError, describe_opening, opening, parse_hours

WEEKDAYS = "Mon-Fri 09:00-17:00"
BERLIN = "Europe/Berlin"


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_weekday_hours_are_open_inside_and_closed_outside():
    # Wednesday 2026-12-09: Berlin is UTC+1 in winter.
    assert opening(WEEKDAYS, BERLIN, at(2026, 12, 9, 8, 0)).open_now is True  # 09:00 local
    assert opening(WEEKDAYS, BERLIN, at(2026, 12, 9, 15, 59)).open_now is True  # 16:59
    closed = opening(WEEKDAYS, BERLIN, at(2026, 12, 9, 16, 0))  # 17:00: the end is not open
    assert closed.open_now is False and closed.next_opening == at(2026, 12, 10, 8, 0)
    early = opening(WEEKDAYS, BERLIN, at(2026, 12, 9, 6, 0))  # 07:00: later the same day
    assert early.next_opening == at(2026, 12, 9, 8, 0)
    assert describe_opening(early.next_opening, BERLIN, at(2026, 12, 9, 6, 0)) == "today at 09:00 (CET)"


def test_friday_evening_wraps_round_the_weekend_to_monday():
    friday_evening = at(2026, 12, 11, 18, 0)  # 19:00 in Berlin
    state = opening(WEEKDAYS, BERLIN, friday_evening)
    assert state.open_now is False and state.next_opening == at(2026, 12, 14, 8, 0)
    assert describe_opening(state.next_opening, BERLIN, friday_evening) == "Monday at 09:00 (CET)"
    # Sunday late in the evening: Monday is tomorrow.
    sunday = at(2026, 12, 13, 22, 0)
    assert describe_opening(opening(WEEKDAYS, BERLIN, sunday).next_opening, BERLIN, sunday).startswith(
        "tomorrow at 09:00"
    )


def test_a_day_range_may_wrap_round_the_week():
    hours = parse_hours("Fri-Mon 10:00-12:00")
    assert sorted(hours) == [0, 4, 5, 6]
    tuesday = at(2026, 12, 8, 12, 0)
    assert opening("Fri-Mon 10:00-12:00", "UTC", tuesday).next_opening == at(2026, 12, 11, 10, 0)


def test_the_next_opening_keeps_wall_clock_time_across_the_spring_change():
    # Clocks in Berlin go forward on Sunday 2026-03-29: Friday 09:00 is 08:00 UTC, Monday 09:00 is 07:00 UTC.
    friday = at(2026, 3, 27, 16, 30)  # 17:30 CET: closed
    state = opening(WEEKDAYS, BERLIN, friday)
    assert state.open_now is False and state.next_opening == at(2026, 3, 30, 7, 0)
    assert describe_opening(state.next_opening, BERLIN, friday) == "Monday at 09:00 (CEST)"
    assert opening(WEEKDAYS, BERLIN, at(2026, 3, 30, 7, 30)).open_now is True
    assert opening(WEEKDAYS, BERLIN, at(2026, 3, 27, 7, 30)).open_now is False  # 08:30 CET


def test_the_autumn_change_and_a_span_to_midnight():
    # Sunday 2026-10-25, clocks go back at 03:00 CEST; open "Sun 00:00-24:00" lasts 25 hours.
    hours = "Sun 00:00-24:00"
    assert opening(hours, BERLIN, at(2026, 10, 24, 22, 0)).open_now is True  # 00:00 CEST
    assert opening(hours, BERLIN, at(2026, 10, 25, 22, 30)).open_now is True  # 23:30 CET
    assert opening(hours, BERLIN, at(2026, 10, 25, 23, 0)).open_now is False  # Monday 00:00


def test_several_rules_and_spans_and_full_day_names():
    text = "Monday-Friday 09:00-12:00, 13:00-17:00\nsat 10:00-14:00; Sun 12:00-24:00"
    hours = parse_hours(text)
    assert len(hours[0]) == 2 and hours[5] and hours[6] == [(hours[6][0][0], None)]
    lunch = at(2026, 12, 9, 12, 30)  # UTC site: lunch break
    assert opening(text, "UTC", lunch).open_now is False
    assert opening(text, "UTC", lunch).next_opening == at(2026, 12, 9, 13, 0)


def test_no_hours_means_unknown_not_closed():
    state = opening("", BERLIN, at(2026, 12, 9, 3, 0))
    assert state.open_now is None and state.next_opening is None


@pytest.mark.parametrize(
    "text, says",
    [
        ("Mon-Fri", "should look like 'Mon-Fri 09:00-17:00'"),
        ("Mo-Fr 09:00-17:00", "is not a day"),
        ("Mon 9-17", "should look like 09:00-17:00"),
        ("Mon 25:00-26:00", "is not a time"),
        ("Mon 17:00-09:00", "ends before it starts"),
        ("Sat 22:00-02:00", "two rules"),
    ],
)
def test_bad_hours_say_what_to_fix(text, says):
    with pytest.raises(HoursError) as caught:
        parse_hours(text)
    assert says in str(caught.value)


@pytest.mark.django_db
def test_the_admin_form_refuses_bad_hours_and_time_zones():
    site = Site(key="acme", name="Acme", opening_hours="Mon-Fri 9 to 5", time_zone="Mars/Olympus")
    with pytest.raises(ValidationError) as caught:
        site.full_clean()
    assert set(caught.value.message_dict) == {"opening_hours", "time_zone"}
    site.opening_hours, site.time_zone = WEEKDAYS, BERLIN
    site.full_clean()
