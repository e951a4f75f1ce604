"""One text form for every point in time the agent reports: ISO 8601, UTC, with ``Z``.

Microseconds are always written so that rows sort as text and a timeline keeps
sub-second order (file times are nanosecond-precise on most Linux file systems).
A time whose source has whole seconds only (a cron next run, an at job) is
written the same way, ``.000000Z``: one format across every command, so an
analyst can merge and sort the rows of several commands.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_utc(moment: datetime) -> str:
    """An aware datetime as ISO 8601 UTC; the one formatter every other form goes through."""
    # isoformat, unlike strftime, pads years before 1000 to four digits.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def iso_utc_from_ns(ns: int) -> str | None:
    """Nanoseconds since the epoch (``st_mtime_ns``...) as ISO 8601 UTC.

    Times before 1970 are valid (and, when planted by timestomping, telling);
    only a time outside the years 1-9999 has no ISO form and gives ``None``.
    """
    try:
        moment = _EPOCH + timedelta(microseconds=ns // 1000)
    except OverflowError:
        return None
    return iso_utc(moment)


def iso_utc_from_seconds(seconds: float) -> str | None:
    return iso_utc_from_ns(round(seconds * 1_000_000_000))
