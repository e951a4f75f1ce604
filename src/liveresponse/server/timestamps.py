"""How the server writes times for people: ISO 8601 UTC with 'Z' (one place, so every message agrees)."""

from __future__ import annotations

import time


def iso_seconds(ts: float | None) -> str:
    """Whole seconds, for messages ("open since …", "last seen …"); "never" for no time."""
    return "never" if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def iso_millis(ts: float | None) -> str | None:
    """Milliseconds, for API fields; None stays None."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}Z"
