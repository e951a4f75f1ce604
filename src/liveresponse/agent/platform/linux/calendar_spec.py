"""systemd ``OnCalendar=`` expressions and their next elapse (systemd.time(7)).

Supported: the shorthands (minutely, hourly, daily, weekly, monthly, yearly,
annually, quarterly, semiannually), ``[WEEKDAYS] [YYYY-]MM-DD [HH:MM[:SS]] [ZONE]``
with ``*``, lists (``a,b``), ranges (``a..b``) and repetitions (``a/n``, ``*/n``)
in every field, weekday lists and ranges (``Mon..Fri,Sun``), an omitted date
(every day) or time (midnight), and a trailing time-zone name. The ``~`` (days
from the end of the month) form is refused with ValueError, which callers report
as "next run not computed".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SHORTHANDS = {
    "minutely": "*-*-* *:*:00",
    "hourly": "*-*-* *:00:00",
    "daily": "*-*-* 00:00:00",
    "monthly": "*-*-01 00:00:00",
    "weekly": "Mon *-*-* 00:00:00",
    "yearly": "*-01-01 00:00:00",
    "annually": "*-01-01 00:00:00",
    "quarterly": "*-01,04,07,10-01 00:00:00",
    "semiannually": "*-01,07-01 00:00:00",
}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SEARCH_DAYS = 366 * 10


@dataclass(frozen=True)
class CalendarSpec:
    weekdays: frozenset[int]  # 0 = Monday
    years: frozenset[int] | None  # None: every year
    months: frozenset[int]
    days: frozenset[int]
    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]
    zone: tzinfo | None

    def matches_day(self, day: date) -> bool:
        return (
            (self.years is None or day.year in self.years)
            and day.month in self.months
            and day.day in self.days
            and day.weekday() in self.weekdays
        )


def _number(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"bad calendar value {text!r}")
    return int(text)


def _component(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if "~" in item:
            raise ValueError("'~' (from the end of the month) is not supported")
        span, _, step_text = item.partition("/")
        step = _number(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad repetition in {item!r}")
        if span == "*":
            start, end = low, high
        elif ".." in span:
            first, _, last = span.partition("..")
            start, end = _number(first), _number(last)
        else:
            start = _number(span.split(".")[0])  # "05.500" seconds: whole seconds only
            end = high if step_text else start
        if start < low or end > high or start > end:
            raise ValueError(f"calendar value out of range in {item!r}")
        values.update(range(start, end + 1, step))
    return values


def _weekdays(text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.lower().split(","):
        first, _, last = item.partition("..")
        try:
            start = _WEEKDAYS.index(first[:3])
            end = _WEEKDAYS.index(last[:3]) if last else start
        except ValueError:
            raise ValueError(f"bad weekday {item!r}") from None
        days.update(range(start, end + 1) if start <= end else [*range(start, 7), *range(0, end + 1)])
    return frozenset(days)


def zone_named(name: str) -> tzinfo | None:
    """The time zone a schedule names (``UTC``, ``Europe/Berlin``), or None when there is none such."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def parse_calendar(expression: str) -> CalendarSpec:
    text = SHORTHANDS.get(expression.strip().lower(), expression.strip())
    words = text.split()
    zone = None
    if len(words) > 1 and ":" not in words[-1] and "-" not in words[-1].lstrip("*"):
        zone = zone_named(words[-1])
        if zone is not None:
            words = words[:-1]
    weekdays = frozenset(range(7))
    if words and words[0][:1].isalpha():
        weekdays = _weekdays(words.pop(0))
    date_text, time_text = "*-*-*", "00:00:00"
    for word in words:
        if ":" in word:
            time_text = word
        elif "-" in word:
            date_text = word
        else:
            raise ValueError(f"cannot read {word!r} in calendar {expression!r}")
    date_parts = date_text.split("-")
    if len(date_parts) == 2:
        date_parts.insert(0, "*")
    time_parts = time_text.split(":")
    if len(time_parts) == 2:
        time_parts.append("00")
    if len(date_parts) != 3 or len(time_parts) != 3:
        raise ValueError(f"cannot read calendar {expression!r}")
    year, month, day = date_parts
    return CalendarSpec(
        weekdays=weekdays,
        years=None if year == "*" else frozenset(_component(year, 1970, 2199)),
        months=frozenset(_component(month, 1, 12)),
        days=frozenset(_component(day, 1, 31)),
        hours=tuple(sorted(_component(time_parts[0], 0, 23))),
        minutes=tuple(sorted(_component(time_parts[1], 0, 59))),
        seconds=tuple(sorted(_component(time_parts[2], 0, 59))),
        zone=zone,
    )


def next_calendar_run(expression: str, now: datetime, zone: tzinfo = UTC) -> datetime | None:
    """First elapse strictly after ``now``, in UTC (None when it never elapses)."""
    spec = parse_calendar(expression)
    local_zone = spec.zone or zone
    local_now = now.astimezone(local_zone)
    day = local_now.date()
    for _ in range(_SEARCH_DAYS):
        if spec.matches_day(day):
            for hour in spec.hours:
                if day == local_now.date() and hour < local_now.hour:
                    continue
                for minute in spec.minutes:
                    for second in spec.seconds:
                        candidate = datetime.combine(day, time(hour, minute, second), tzinfo=local_zone)
                        if candidate > local_now:
                            return candidate.astimezone(UTC)
        day += timedelta(days=1)
    return None
