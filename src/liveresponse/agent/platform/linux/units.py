"""systemd unit files read from disk, the way systemd would find them.

Used when systemd is not PID 1 (containers, this machine) or the root is an
image. Search paths follow systemd.unit(5): the first directory that holds a
name wins; drop-ins (``NAME.d/*.conf``, and ``TEMPLATE@.service.d``) from every
directory are applied in file-name order, so an ``ExecStart=`` override planted
in a drop-in is what is reported. A unit is *enabled* when a ``*.wants``,
``*.requires`` or ``*.upholds`` directory links to it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from liveresponse.agent.platform.linux.passwd import ALL_USERS, User, home_path
from liveresponse.agent.platform.linux.rootfs import Reader

SYSTEM_UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
GLOBAL_USER_UNIT_DIRS = (
    "/etc/systemd/user",
    "/run/systemd/user",
    "/usr/local/lib/systemd/user",
    "/usr/lib/systemd/user",
    "/lib/systemd/user",
)
HOME_USER_UNIT_DIRS = (".config/systemd/user", ".local/share/systemd/user")
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".target", ".path", ".mount", ".automount", ".swap", ".slice")
ENABLING_DIR_SUFFIXES = (".wants", ".requires", ".upholds")
_EXEC_PREFIXES = "@-:+!"


@dataclass(frozen=True)
class UnitScope:
    """Where one systemd instance looks: the system, every user, or one user."""

    kind: str  # "system" or "user"
    user: str  # who the units run as by default: "root", ALL_USERS or a user name
    dirs: tuple[str, ...]  # listed for units and enabling links
    lookup_dirs: tuple[str, ...]  # also searched to resolve a name (a user's links may name a global unit)


def system_scope(reader: Reader) -> UnitScope:
    dirs = reader.fs.distinct(SYSTEM_UNIT_DIRS)
    return UnitScope("system", "root", dirs, dirs)


def user_scopes(reader: Reader, users: list[User]) -> list[UnitScope]:
    global_dirs = reader.fs.distinct(GLOBAL_USER_UNIT_DIRS)
    scopes = [UnitScope("user", ALL_USERS, global_dirs, global_dirs)]
    for user in users:
        own = tuple(home_path(user, relative) for relative in HOME_USER_UNIT_DIRS)
        scopes.append(UnitScope("user", user.name, own, own + global_dirs))
    return scopes


@dataclass
class Unit:
    name: str
    path: str  # where the name was found (maybe a link)
    fragment: str | None  # the file read (None when masked or unreadable)
    masked: bool = False
    alias_of: str | None = None
    settings: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    dropins: list[str] = field(default_factory=list)

    def values(self, section: str, key: str) -> list[str]:
        return self.settings.get((section, key), [])

    def value(self, section: str, key: str) -> str | None:
        found = self.values(section, key)
        return found[-1] if found else None

    @property
    def has_install_section(self) -> bool:
        return any(self.values("Install", key) for key in ("WantedBy", "RequiredBy", "UpheldBy", "Alias", "Also"))


def parse_unit_text(data: bytes, settings: dict[tuple[str, str], list[str]]) -> None:
    """Merge one unit file or drop-in into ``settings``; an empty value resets a list."""
    section = ""
    pending = ""
    for raw in data.decode("utf-8", "surrogateescape").splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        slot = settings.setdefault((section, key.strip()), [])
        if value.strip():
            slot.append(value.strip())
        else:
            slot.clear()


def index_units(reader: Reader, dirs: tuple[str, ...], suffixes: tuple[str, ...] = UNIT_SUFFIXES) -> dict[str, str]:
    """Unit name -> inside path of the first directory that has it."""
    found: dict[str, str] = {}
    for directory in dirs:
        for name in reader.list_dir(directory) or []:
            if name in found or not name.endswith(suffixes):
                continue
            path = f"{directory}/{name}"
            if not reader.fs.is_dir(path):
                found[name] = path
    return found


def template_of(name: str) -> str | None:
    """``getty@tty1.service`` -> ``getty@.service``."""
    stem, at, rest = name.partition("@")
    if not at or "." not in rest:
        return None
    return f"{stem}@.{rest.rsplit('.', 1)[1]}"


def load_unit(reader: Reader, name: str, index: dict[str, str], lookup_dirs: tuple[str, ...]) -> Unit | None:
    path = index.get(name) or index.get(template_of(name) or "")
    if path is None:
        return None
    unit = Unit(name, path, None)
    fs = reader.fs
    try:
        is_link = (fs.lstat(path).st_mode & 0o170000) == 0o120000
        target = fs.resolve(path) if is_link else path
    except OSError:
        is_link, target = False, path
    if target == "/dev/null":
        unit.masked = True
        return unit
    if is_link and target.rsplit("/", 1)[-1] not in (name, template_of(name)):
        unit.alias_of = target.rsplit("/", 1)[-1]
    data = reader.read(path)
    if data is None:
        return unit
    unit.fragment = target
    parse_unit_text(data, unit.settings)
    for dropin in _dropins(reader, name, lookup_dirs):
        content = reader.read(dropin)
        if content is not None:
            unit.dropins.append(dropin)
            parse_unit_text(content, unit.settings)
    return unit


def _dropins(reader: Reader, name: str, lookup_dirs: tuple[str, ...]) -> list[str]:
    by_file: dict[str, str] = {}
    names = [name] + ([template] if (template := template_of(name)) else [])
    for directory in lookup_dirs:
        for unit_name in names:
            folder = f"{directory}/{unit_name}.d"
            if not reader.fs.is_dir(folder):
                continue
            for file_name in reader.list_dir(folder) or []:
                if file_name.endswith(".conf"):
                    by_file.setdefault(file_name, f"{folder}/{file_name}")
    return [by_file[key] for key in sorted(by_file)]


@dataclass(frozen=True)
class EnablingLink:
    path: str  # the link, e.g. /etc/systemd/system/multi-user.target.wants/ssh.service
    name: str  # the unit it enables
    target: str | None  # where the link points, resolved inside the root
    wanted_by: str  # e.g. multi-user.target


def enabling_links(reader: Reader, dirs: tuple[str, ...]) -> list[EnablingLink]:
    links: list[EnablingLink] = []
    for directory in dirs:
        for folder in reader.list_dir(directory) or []:
            if not folder.endswith(ENABLING_DIR_SUFFIXES):
                continue
            folder_path = f"{directory}/{folder}"
            if not reader.fs.is_dir(folder_path):
                continue
            for name in reader.list_dir(folder_path) or []:
                path = f"{folder_path}/{name}"
                try:
                    target: str | None = reader.fs.resolve(path)
                except OSError:
                    target = None
                links.append(EnablingLink(path, name, target, folder.rsplit(".", 1)[0]))
    return links


def split_exec(command: str) -> tuple[str | None, list[str]]:
    """(executable, argv) of an ExecStart= value, its prefixes honoured.

    ``@`` means the second word is argv[0]; ``-:+!`` change error handling or
    privileges only.
    """
    stripped = command.lstrip(_EXEC_PREFIXES)
    prefixes = command[: len(command) - len(stripped)]
    try:
        words = shlex.split(stripped)
    except ValueError:
        words = stripped.split()
    if not words:
        return None, []
    if "@" in prefixes and len(words) > 1:
        return words[0], words[1:]
    return words[0], words


def exec_starts(unit: Unit) -> list[str]:
    return unit.values("Service", "ExecStart")
