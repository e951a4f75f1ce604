"""Next runs of cron expressions and systemd OnCalendar= values, for a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from liveresponse.agent.platform.linux.calendar_spec import next_calendar_run
from liveresponse.agent.platform.linux.cron_schedule import next_cron_run, next_run_reason

NOW = datetime(2030, 1, 1, 10, 7, 30, tzinfo=UTC)  # a Tuesday


def iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/15 * * * *", "2030-01-01T10:15:00Z"),
        ("0 0 * * *", "2030-01-02T00:00:00Z"),
        ("@daily", "2030-01-02T00:00:00Z"),
        ("@midnight", "2030-01-02T00:00:00Z"),
        ("@hourly", "2030-01-01T11:00:00Z"),
        ("@weekly", "2030-01-06T00:00:00Z"),
        ("@monthly", "2030-02-01T00:00:00Z"),
        ("@yearly", "2031-01-01T00:00:00Z"),
        ("30 9 * * mon-fri", "2030-01-02T09:30:00Z"),
        ("0 12 13 * fri", "2030-01-04T12:00:00Z"),  # DOM or DOW when both are restricted
        ("0 12 13 * *", "2030-01-13T12:00:00Z"),
        ("0 0 * * 7", "2030-01-06T00:00:00Z"),
        ("0 0 * * Sun", "2030-01-06T00:00:00Z"),
        ("0 0 1 JAN *", "2031-01-01T00:00:00Z"),
        ("5-20/5 10 * * *", "2030-01-01T10:10:00Z"),
        ("5/20 * * * *", "2030-01-01T10:25:00Z"),
        ("*/30 9-17 * feb *", "2030-02-01T09:00:00Z"),
        ("0 0 29 2 *", "2032-02-29T00:00:00Z"),
        ("7,8,9 10 * * *", "2030-01-01T10:08:00Z"),
        ("0 0 31 4 *", None),  # 31 April never comes
    ],
)
def test_next_cron_run(expression: str, expected: str | None) -> None:
    assert iso(next_cron_run(expression, NOW)) == expected


def test_day_of_month_star_step_counts_as_unrestricted() -> None:
    # Vixie cron treats a field starting with '*' as unrestricted: "*/2" with Friday means
    # odd days AND Fridays. Jan 3 is a Thursday, Jan 4 (even) Friday, Jan 11 odd Friday.
    assert iso(next_cron_run("0 12 */2 * fri", NOW)) == "2030-01-11T12:00:00Z"


def test_cron_time_zone_is_wall_clock() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # UTC+1 in January: 09:00 there is 08:00 UTC
    assert iso(next_cron_run("0 9 * * *", NOW, berlin)) == "2030-01-02T08:00:00Z"


def test_reboot_has_no_next_run() -> None:
    assert next_cron_run("@reboot", NOW) is None
    assert next_run_reason("@reboot") == "runs at boot (@reboot), no clock time"
    assert next_run_reason("* * * * *") is None


@pytest.mark.parametrize("expression", ["61 * * * *", "* * *", "* * * * * *", "*/0 * * * *", "@often", "5-1 * * * *"])
def test_malformed_cron_is_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        next_cron_run(expression, NOW)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("minutely", "2030-01-01T10:08:00Z"),
        ("hourly", "2030-01-01T11:00:00Z"),
        ("daily", "2030-01-02T00:00:00Z"),
        ("weekly", "2030-01-07T00:00:00Z"),
        ("monthly", "2030-02-01T00:00:00Z"),
        ("yearly", "2031-01-01T00:00:00Z"),
        ("annually", "2031-01-01T00:00:00Z"),
        ("quarterly", "2030-04-01T00:00:00Z"),
        ("semiannually", "2030-07-01T00:00:00Z"),
        ("*-*-* 06,18:00", "2030-01-01T18:00:00Z"),
        ("*-*-* 6:00", "2030-01-02T06:00:00Z"),
        ("Mon..Fri 09:30", "2030-01-02T09:30:00Z"),
        ("Sat,Sun *-*-* 10:00:00", "2030-01-05T10:00:00Z"),
        ("Fri..Mon 08:00", "2030-01-04T08:00:00Z"),
        ("*:0/20", "2030-01-01T10:20:00Z"),
        ("*-*-01 00:00:00", "2030-02-01T00:00:00Z"),
        ("2030-03-15 12:00", "2030-03-15T12:00:00Z"),
        ("03-15", "2030-03-15T00:00:00Z"),
        ("*-*-* 10:07:45", "2030-01-01T10:07:45Z"),
        ("*-*-* 10..12:00:00", "2030-01-01T11:00:00Z"),
        ("Mon *-*-* 00:00:00 Europe/Berlin", "2030-01-06T23:00:00Z"),
        ("2029-01-01", None),
    ],
)
def test_next_calendar_run(expression: str, expected: str | None) -> None:
    assert iso(next_calendar_run(expression, NOW)) == expected


def test_calendar_in_root_time_zone() -> None:
    assert iso(next_calendar_run("daily", NOW, ZoneInfo("Europe/Berlin"))) == "2030-01-01T23:00:00Z"


@pytest.mark.parametrize("expression", ["*-*~01", "Funday 10:00", "*-13-01", "25:00", "sometimes"])
def test_malformed_calendar_is_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        next_calendar_run(expression, NOW)
