"""Asking systemd to act for a remediation: stop, start, daemon-reload (only ever called when systemd runs).

``systemctl`` runs it for the system manager or for one user's manager
(``--user --machine=USER@``); ``manager_user`` says which manager runs a unit of
a scope; ``daemon_reload`` makes a running manager see links removed or
re-created, and says in ``left`` when it could not.
"""

from __future__ import annotations

import subprocess

from liveresponse.agent.platform.linux.passwd import ALL_USERS
from liveresponse.agent.platform.linux.units import UnitScope
from liveresponse.protocol.errors import CommandFailed

SYSTEMCTL_TIMEOUT_S = 60


def manager_user(scope: UnitScope | None) -> str | None:
    """The user whose systemd instance runs the scope's units (None: the system's, or every user's)."""
    if scope is not None and scope.kind == "user" and scope.user != ALL_USERS:
        return scope.user
    return None


def daemon_reload(scope_kind: str, user: str | None, actions: list[str], left: list[str]) -> None:
    """Make a running systemd see removed or re-created links (only called when systemd runs)."""
    if scope_kind == "system":
        try:
            systemctl(None, "daemon-reload")
            actions.append("systemctl daemon-reload")
        except CommandFailed as error:
            left.append(f"systemd was not reloaded: {error.message}")
    elif user is not None:
        try:
            systemctl(user, "daemon-reload")
            actions.append(f"systemctl --user --machine={user}@ daemon-reload")
        except CommandFailed as error:
            left.append(f"the user manager of {user} was not reloaded: {error.message}")
    else:
        left.append("a global user unit: each user's manager sees the change at its next daemon-reload or login")


def systemctl(user: str | None, *args: str) -> str:
    """Run systemctl for the system (``user`` None) or one user's manager; its stdout."""
    command = ["systemctl", "--no-pager"]
    if user is not None:
        command += ["--user", f"--machine={user}@"]
    command += list(args)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        raise CommandFailed(f"{' '.join(command)}: {error}") from error
    if done.returncode != 0 and args[:1] != ("is-active",):
        raise CommandFailed(f"{' '.join(command)} failed: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout
