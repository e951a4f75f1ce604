"""The only place with OS branches (STYLE.md).

``current()`` names the platform the agent runs on. Linux implementations live
in ``platform/linux/``; a command whose implementation is missing for the
running platform raises ``NotAvailable("<command> is not available on <platform>")``
through :func:`require_linux`.
"""

from __future__ import annotations

import sys

from liveresponse.protocol.errors import NotAvailable


def current() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "macos"
    if sys.platform.startswith("win"):
        return "windows"
    return sys.platform


def require_linux(command: str) -> None:
    if current() != "linux":
        raise NotAvailable(f"{command} is not available on {current()}")
