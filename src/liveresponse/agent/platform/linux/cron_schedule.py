"""Cron schedule expressions and their next run.

Supports what Vixie cron / cronie / cron(8) on Debian accept: five fields
(minute hour day-of-month month day-of-week), ``*``, lists, ranges, steps
(``*/15``, ``1-30/5``, ``5/10`` meaning 5 to the field's end), month and weekday
names, 7 as Sunday, and the ``@yearly``... ``@hourly`` shorthands. ``@reboot``
has no clock time: its next run is null with a reason.

The day rule is cron's own: when both day-of-month and day-of-week are
restricted (neither starts with ``*``) a day matches if *either* matches;
otherwise both must (the unrestricted one matches every day).

Schedules are wall-clock times in the crontab's time zone (the root's
``/etc/localtime`` or a ``CRON_TZ=`` line); next runs are returned in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
REBOOT = "@reboot"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# A schedule that matches nothing within this horizon (30 Feb) has no next run.
_SEARCH_DAYS = 366 * 8


@dataclass(frozen=True)
class CronSchedule:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_of_month_restricted: bool
    day_of_week_restricted: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_month_day = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        if self.day_of_month_restricted and self.day_of_week_restricted:
            return by_month_day or by_weekday
        return by_month_day and by_weekday


def _value(text: str, names: tuple[str, ...], offset: int) -> int:
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + offset
    if not text.isdigit():
        raise ValueError(f"bad cron value {text!r}")
    return int(text)


def _field(text: str, low: int, high: int, names: tuple[str, ...] = (), offset: int = 0) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad cron step in {item!r}")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _value(first, names, offset), _value(last, names, offset)
        else:
            start = _value(span, names, offset)
            end = high if step_text else start  # "5/10": from 5 to the end, every 10
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ValueError(f"cron value out of range in {item!r}")
        values.update(range(start, end + 1, step))
    return values


def parse_cron_schedule(expression: str) -> CronSchedule:
    """Parse five cron fields or a shorthand; raise ValueError when malformed."""
    text = MACROS.get(expression.strip().lower(), expression)
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"a cron schedule has 5 fields, not {len(fields)}: {expression!r}")
    minute, hour, day, month, weekday = fields
    weekdays = {d % 7 for d in _field(weekday, 0, 7, _WEEKDAYS)}  # 7 is Sunday too
    return CronSchedule(
        minutes=tuple(sorted(_field(minute, 0, 59))),
        hours=tuple(sorted(_field(hour, 0, 23))),
        days=frozenset(_field(day, 1, 31)),
        months=frozenset(_field(month, 1, 12, _MONTHS, offset=1)),
        weekdays=frozenset(weekdays),
        day_of_month_restricted=not day.startswith("*"),
        day_of_week_restricted=not weekday.startswith("*"),
    )


def next_cron_run(expression: str, now: datetime, zone: tzinfo = UTC) -> datetime | None:
    """The first run strictly after ``now`` (aware), in UTC; None for @reboot or never."""
    if expression.strip().lower() == REBOOT:
        return None
    schedule = parse_cron_schedule(expression)
    local_now = now.astimezone(zone)
    day = local_now.date()
    for _ in range(_SEARCH_DAYS):
        if schedule.matches_day(day):
            for hour in schedule.hours:
                for minute in schedule.minutes:
                    candidate = datetime.combine(day, time(hour, minute), tzinfo=zone)
                    if candidate > local_now:
                        return candidate.astimezone(UTC)
        day += timedelta(days=1)
    return None


def next_run_reason(expression: str) -> str | None:
    """Why a schedule has no computed next run, or None when it has one."""
    if expression.strip().lower() == REBOOT:
        return "runs at boot (@reboot), no clock time"
    return None
