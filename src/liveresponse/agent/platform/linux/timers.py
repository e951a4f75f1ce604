"""systemd timers, system and per user, with the service each one starts.

Calendar timers (``OnCalendar=``) get a computed next run (``calendar_spec``).
Monotonic ones (``OnBootSec=``, ``OnStartupSec=``, ``OnActiveSec=``,
``OnUnitActiveSec=``, ``OnUnitInactiveSec=``) depend on boot time or the last
activation, which only the running manager knows: their next run is null with a
reason. A timer with both kinds gets the calendar's next run and the reason
notes the monotonic part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from liveresponse.agent.platform.linux.calendar_spec import next_calendar_run
from liveresponse.agent.platform.linux.passwd import User
from liveresponse.agent.platform.linux.rootfs import Reader
from liveresponse.agent.platform.linux.units import (
    UnitScope,
    enabling_links,
    exec_starts,
    index_units,
    load_unit,
    system_scope,
    user_scopes,
)

MONOTONIC_KEYS = ("OnActiveSec", "OnBootSec", "OnStartupSec", "OnUnitActiveSec", "OnUnitInactiveSec")


@dataclass
class TimerInfo:
    name: str
    path: str  # the timer unit file
    scope: UnitScope
    calendars: list[str]
    monotonic: list[str]  # "OnBootSec=15min"
    service: str
    commands: list[str]  # ExecStart= of the service
    run_as: str
    enabled_by: list[str] = field(default_factory=list)  # the wants links

    @property
    def schedule(self) -> str:
        parts = [f"OnCalendar={c}" for c in self.calendars] + self.monotonic
        return "; ".join(parts)

    def next_run(self, now: datetime, zone: tzinfo) -> tuple[datetime | None, str | None]:
        runs: list[datetime] = []
        problems: list[str] = []
        for calendar in self.calendars:
            try:
                run = next_calendar_run(calendar, now, zone)
            except ValueError as error:
                problems.append(f"OnCalendar={calendar} not computed: {error}")
                continue
            if run is not None:
                runs.append(run)
        if self.monotonic:
            problems.append(f"{', '.join(self.monotonic)} is relative to boot or unit activity, known only to systemd")
        return (min(runs) if runs else None), ("; ".join(problems) or None)


def collect_timers(reader: Reader, users: list[User]) -> list[TimerInfo]:
    timers: list[TimerInfo] = []
    for scope in [system_scope(reader), *user_scopes(reader, users)]:
        index = index_units(reader, scope.lookup_dirs, (".timer", ".service"))
        own = index_units(reader, scope.dirs, (".timer",)) if scope.dirs != scope.lookup_dirs else index
        links = enabling_links(reader, scope.lookup_dirs)
        for name in own:
            if not name.endswith(".timer"):
                continue
            unit = load_unit(reader, name, index, scope.lookup_dirs)
            if unit is None or unit.masked or unit.alias_of:
                continue
            service_name = unit.value("Timer", "Unit") or name.removesuffix(".timer") + ".service"
            service = load_unit(reader, service_name, index, scope.lookup_dirs)
            monotonic = [f"{key}={value}" for key in MONOTONIC_KEYS for value in unit.values("Timer", key)]
            timers.append(
                TimerInfo(
                    name=name,
                    path=unit.fragment or unit.path,
                    scope=scope,
                    calendars=unit.values("Timer", "OnCalendar"),
                    monotonic=monotonic,
                    service=service_name,
                    commands=exec_starts(service) if service else [],
                    run_as=(service.value("Service", "User") if service else None) or scope.user,
                    enabled_by=[link.path for link in links if link.name == name],
                )
            )
    return timers
