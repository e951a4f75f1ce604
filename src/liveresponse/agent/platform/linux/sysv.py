"""SysV init scripts (/etc/init.d) and the runlevel links that start them.

A script is started at boot by an ``S<NN><name>`` link in ``/etc/rc<level>.d``
(``/etc/rc.d/rc<level>.d`` on RHEL). The LSB header gives the description; the
Debian ``DAEMON=`` and ``PIDFILE=`` conventions, when present, tell which
process is the service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from liveresponse.agent.platform.linux.rootfs import Reader

INIT_DIRS = ("/etc/init.d", "/etc/rc.d/init.d")
RUNLEVELS = ("0", "1", "2", "3", "4", "5", "6", "S")
RC_LOCAL = ("/etc/rc.local", "/etc/rc.d/rc.local")
_NOT_SCRIPTS = {
    "README",
    "skeleton",
    "functions",
    ".depend.boot",
    ".depend.start",
    ".depend.stop",
    ".legacy-bootordering",
}
_DESCRIPTION = re.compile(rb"^#\s*Short-Description:\s*(.+)$", re.MULTILINE)
_DAEMON = re.compile(rb"^\s*DAEMON=[\"']?([^\"'\s;]+)", re.MULTILINE)
_PIDFILE = re.compile(rb"^\s*PIDFILE=[\"']?([^\"'\s;$]+)", re.MULTILINE)


@dataclass
class InitScript:
    name: str
    path: str
    description: str | None
    daemon: str | None
    pid_file: str | None
    start_links: list[str] = field(default_factory=list)  # /etc/rcN.d/S..name

    @property
    def runlevels(self) -> list[str]:
        return sorted({link.split("/rc", 1)[1][0] for link in self.start_links})


def _rc_dirs(level: str) -> tuple[str, str]:
    return (f"/etc/rc{level}.d", f"/etc/rc.d/rc{level}.d")


def collect_init_scripts(reader: Reader) -> list[InitScript]:
    scripts: dict[str, InitScript] = {}
    for directory in reader.fs.distinct(INIT_DIRS):
        for path in reader.files_in(directory):
            name = path.rsplit("/", 1)[1]
            if name in _NOT_SCRIPTS or name in scripts or name.endswith((".dpkg-old", ".dpkg-dist", "~")):
                continue
            data = reader.read(path) or b""
            head = data[:8192]  # the LSB header and variables sit at the top
            description = _DESCRIPTION.search(head)
            daemon = _DAEMON.search(head)
            pid_file = _PIDFILE.search(head)
            scripts[name] = InitScript(
                name,
                path,
                description.group(1).strip().decode("utf-8", "replace") if description else None,
                daemon.group(1).decode("utf-8", "surrogateescape") if daemon else None,
                pid_file.group(1).decode("utf-8", "surrogateescape") if pid_file else None,
            )
    for level in RUNLEVELS:
        for rc_dir in _rc_dirs(level):
            if not reader.fs.is_dir(rc_dir):
                continue
            for link in reader.list_dir(rc_dir) or []:
                if link.startswith("S") and link[3:] in scripts:
                    scripts[link[3:]].start_links.append(f"{rc_dir}/{link}")
    return list(scripts.values())
