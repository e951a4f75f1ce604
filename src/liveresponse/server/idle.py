"""Idle sessions end (SPEC §6): ``idle_timeout_s`` without activity, with a warning a minute before.

Activity is what the store keeps in ``sessions.last_activity_at``: a command
logged or finished moves it (dispatcher). A session with a command or transfer
under way (``Dispatcher.busy_sessions``) is active whatever the clock says: each
sweep moves its ``last_activity_at`` to now. The clock is injected, so tests
drive time (tests/server/test_idle.py); the app's lifespan owns the loop.

Warning time: a minute before the end, or half-way for timeouts under two
minutes (a 10 s timeout warns after 5 s). A warning is given once per quiet
spell: new activity makes the session eligible for a new warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from liveresponse.server.dispatcher import Dispatcher
from liveresponse.server.store.store import Store

log = logging.getLogger("liveresponse.idle")

WARN_BEFORE_S = 60.0
SWEEP_EVERY_S = 1.0
IDLE_ACTOR = "server"


def warn_after_s(timeout_s: float) -> float:
    """Idle seconds after which the console is warned."""
    return timeout_s - min(WARN_BEFORE_S, timeout_s / 2)


class IdleReaper:
    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        clock: Callable[[], float],
        every_s: float = SWEEP_EVERY_S,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.clock = clock
        self.every_s = every_s
        self._warned: dict[str, float] = {}  # session id -> the last_activity_at its warning was about

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # one bad sweep (a store hiccup) must not end idle handling for good
                log.exception("idle sweep failed")
            await asyncio.sleep(self.every_s)

    async def sweep(self) -> list[str]:
        """One pass: keep busy sessions active, warn, end. Returns the ids of the sessions it ended."""
        now = self.clock()
        busy = self.dispatcher.busy_sessions()
        open_sessions = await self.store.open_sessions_with_idle_timeout()
        await self.store.touch_sessions(sorted(busy & {s.id for s, _ in open_sessions}), now)
        ended: list[str] = []
        still_open = set()
        for session, timeout_s in open_sessions:
            still_open.add(session.id)
            if session.id in busy or timeout_s <= 0:  # 0 switches the idle timeout off
                continue
            idle_s = now - session.last_activity_at
            if idle_s >= timeout_s:
                reason = f"idle timeout after {timeout_s} s"
                closed = await self.store.end_session(session.id, reason, IDLE_ACTOR)
                if closed is not None and closed.end_reason == reason:
                    self.dispatcher.notify(session.id, {"type": "session_ended", "reason": reason})
                    ended.append(session.id)
            elif idle_s >= warn_after_s(timeout_s) and self._warned.get(session.id) != session.last_activity_at:
                self._warned[session.id] = session.last_activity_at
                left_s = max(1, round(timeout_s - idle_s))
                message = (
                    f"session {session.id} ends in {left_s} s without activity (idle_timeout_s={timeout_s}); "
                    "run a command to keep it open"
                )
                self.dispatcher.notify(session.id, {"type": "notice", "message": message})
        for gone in set(self._warned) - still_open:
            del self._warned[gone]
        return ended
