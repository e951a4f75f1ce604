"""Persistence that runs when someone logs in or a program starts.

Shell start-up files, /etc/ld.so.preload, SSH authorized_keys, XDG autostart and
update-motd scripts. See ``persistence.py`` for the row shape and rules.

Shell start-up files are one row per file (a line-by-line listing of every
.bashrc would drown the rest); the file's own sha256 lets an analyst compare
it with a known-good copy.
"""

from __future__ import annotations

from liveresponse.agent.platform.linux.autostart import SYSTEM_AUTOSTART_DIRS, USER_AUTOSTART_DIR, collect_autostart
from liveresponse.agent.platform.linux.passwd import ALL_USERS, User, home_path
from liveresponse.agent.platform.linux.persistence import Mechanism, Scan, program_of
from liveresponse.agent.platform.linux.rootfs import lines_of, show
from liveresponse.agent.platform.linux.sshkeys import parse_authorized_key
from liveresponse.protocol.names import escape_bytes, unescape_to_bytes

SYSTEM_SHELL_FILES = (
    "/etc/profile", "/etc/bash.bashrc", "/etc/bashrc", "/etc/bash.bash_logout", "/etc/environment",
    "/etc/zshenv", "/etc/zprofile", "/etc/zshrc", "/etc/zlogin", "/etc/zlogout",
    "/etc/zsh/zshenv", "/etc/zsh/zprofile", "/etc/zsh/zshrc", "/etc/zsh/zlogin", "/etc/zsh/zlogout",
    "/etc/csh.cshrc", "/etc/csh.login", "/etc/csh.logout", "/etc/fish/config.fish",
)  # fmt: skip
SYSTEM_SHELL_DIRS = ("/etc/profile.d", "/etc/fish/conf.d")
USER_SHELL_FILES = (
    ".profile", ".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".zshenv", ".zprofile", ".zshrc",
    ".zlogin", ".zlogout", ".cshrc", ".tcshrc", ".login", ".logout", ".config/fish/config.fish", ".xprofile",
    ".xinitrc", ".xsession",
)  # fmt: skip
LD_SO_PRELOAD = "/etc/ld.so.preload"
AUTHORIZED_KEYS_FILES = (".ssh/authorized_keys", ".ssh/authorized_keys2")
MOTD_DIR = "/etc/update-motd.d"


def _shell_startup(scan: Scan, users: list[User], homes: list[User]) -> None:
    candidates = [(path, ALL_USERS) for path in SYSTEM_SHELL_FILES]
    for directory in SYSTEM_SHELL_DIRS:
        candidates.extend((path, ALL_USERS) for path in scan.reader.files_in(directory))
    for home in homes:
        candidates.extend((home_path(home, name), home.name) for name in USER_SHELL_FILES)
    for path, user_name in candidates:
        if scan.reader.read(path) is not None:
            scan.add(path, user=user_name, entry=show(path.rsplit("/", 1)[1]), target=path)


def _ld_so_preload(scan: Scan, users: list[User], homes: list[User]) -> None:
    data = scan.reader.read(LD_SO_PRELOAD)
    for number, raw in lines_of(data or b""):
        # Entries are separated by blanks or newlines; '#' starts a comment (ld.so(8)).
        for word in raw.split(b"#", 1)[0].split():
            library = escape_bytes(word)
            target = unescape_to_bytes(library).decode("utf-8", "surrogateescape")
            scan.add(LD_SO_PRELOAD, line=number, user=ALL_USERS, entry=library, command=library,
                     target=target if target.startswith("/") else None)  # fmt: skip


def _authorized_keys(scan: Scan, users: list[User], homes: list[User]) -> None:
    for user in homes:
        for relative in AUTHORIZED_KEYS_FILES:
            path = home_path(user, relative)
            for number, raw in lines_of(scan.reader.read(path) or b""):
                key = parse_authorized_key(escape_bytes(raw))
                if key is None:
                    continue
                forced = key.option("command")
                entry = " ".join(part for part in (key.key_type, key.fingerprint, key.comment) if part)
                scan.add(
                    path,
                    line=number,
                    user=user.name,
                    entry=entry or escape_bytes(raw.strip()),
                    command=forced,
                    target=program_of(scan.fs, forced),
                    key_type=key.key_type,
                    fingerprint=key.fingerprint,
                    bits=key.bits,
                    comment=key.comment,
                    options=list(key.options),
                    from_hosts=key.option("from"),
                    problem=key.problem,
                )


def _xdg_autostart(scan: Scan, users: list[User], homes: list[User]) -> None:
    for item in collect_autostart(scan.reader, homes):
        scan.add(item.path, user=item.user, entry=item.name, command=item.exec, target=program_of(scan.fs, item.exec),
                 enabled=item.enabled, overrides=show(item.overrides) if item.overrides else None)  # fmt: skip


def _update_motd(scan: Scan, users: list[User], homes: list[User]) -> None:
    for path in scan.reader.files_in(MOTD_DIR):
        scan.add(path, user="root", entry=show(path.rsplit("/", 1)[1]), command=show(path), target=path)


MECHANISMS = (
    Mechanism(
        "shell-startup", "/etc/profile, /etc/profile.d, /etc/bash.bashrc, ~/.bashrc, ~/.profile...", _shell_startup
    ),
    Mechanism("ld.so.preload", LD_SO_PRELOAD, _ld_so_preload),
    Mechanism("ssh-authorized-keys", ", ".join(f"~/{name}" for name in AUTHORIZED_KEYS_FILES), _authorized_keys),
    Mechanism("xdg-autostart", ", ".join((*SYSTEM_AUTOSTART_DIRS, f"~/{USER_AUTOSTART_DIR}")), _xdg_autostart),
    Mechanism("update-motd", MOTD_DIR, _update_motd),
)
