"""The one command catalogue (SPEC §4, §5).

Console (help, completion, validation), server (permission, timeout,
prerequisites) and agent (dispatch) all read this table; nothing about a
command is restated elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Tier(StrEnum):
    """Permission tier. ``console`` commands never leave the analyst's machine."""

    CONSOLE = "console"
    BASIC = "basic"
    ADVANCED = "advanced"


class Runs(StrEnum):
    CONSOLE = "console"  # handled by the console alone
    AGENT = "agent"  # signed, sent to the device
    SERVER = "server"  # answered by the server (e.g. the tenant library), logged like the others


class ParamType(StrEnum):
    STRING = "string"
    INT = "int"
    FLAG = "flag"
    CHOICE = "choice"


class TimeoutClass(StrEnum):
    NORMAL = "command_timeout_s"
    LONG = "long_command_timeout_s"


class ResultShape(StrEnum):
    ROWS = "rows"  # a list of rows (JSON: a list)
    OBJECT = "object"  # one object
    NONE = "none"


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType = ParamType.STRING
    help: str = ""
    required: bool = False
    choices: tuple[str, ...] = ()
    metavar: str = ""

    @property
    def display(self) -> str:
        return self.metavar or self.name


@dataclass(frozen=True)
class CommandSpec:
    name: str
    summary: str
    tier: Tier
    runs: Runs
    positional: tuple[Param, ...] = ()
    named: tuple[Param, ...] = ()
    aliases: tuple[str, ...] = ()
    cancellable: bool = False
    timeout: TimeoutClass = TimeoutClass.NORMAL
    prerequisite: str | None = None
    result: ResultShape = ResultShape.OBJECT
    fields: tuple[str, ...] = ()
    table_fields: tuple[str, ...] = ()
    example: str = ""
    notes: str = ""
    # A command whose result is rows for one value of one parameter (``remediate list``): (param, value).
    rows_when: tuple[str, str] | None = None

    def result_for(self, args: dict[str, object]) -> ResultShape:
        """The result shape of one invocation (SPEC §3: a list for listings, an object for the others)."""
        if self.rows_when is not None:
            key, value = self.rows_when
            return ResultShape.ROWS if args.get(key) == value else ResultShape.OBJECT
        return self.result

    @property
    def all_params(self) -> tuple[Param, ...]:
        return self.positional + self.named

    def param(self, name: str) -> Param | None:
        lowered = name.lower()
        for p in self.all_params:
            if p.name.lower() == lowered:
                return p
        return None

    @property
    def usage(self) -> str:
        parts = [self.name]
        for p in self.positional:
            parts.append(f"<{p.display}>" if p.required else f"[{p.display}]")
        for p in self.named:
            if p.type is ParamType.FLAG:
                parts.append(f"[-{p.name}]")
            else:
                parts.append(f"[-{p.name} {p.display.upper()}]")
        parts.append("[-output json|table]")
        return " ".join(parts)


OUTPUT_PARAM = Param("output", ParamType.CHOICE, "output format", choices=("json", "table"))

_PATH = "path"
REMEDIATION_TYPES = ("file", "process", "service", "scheduledtask", "startupfolder", "registry")
ANALYZE_TYPES = ("file", "process")
# remediate TYPE ID needs this listing of the entity earlier in the session (SPEC §4).
REMEDIATION_PREREQUISITES = {
    "file": "fileinfo",
    "process": "processes",
    "service": "services",
    "scheduledtask": "scheduledtasks",
    "startupfolder": "startupfolders",
}

COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(
        "cd",
        "change the session's working directory; without a path, print it",
        Tier.BASIC,
        Runs.AGENT,
        positional=(Param(_PATH, help="directory, absolute or relative to the working directory"),),
        fields=("cwd",),
        table_fields=("cwd",),
        example="cd /var/log",
    ),
    CommandSpec("cls", "clear the console screen", Tier.CONSOLE, Runs.CONSOLE, result=ResultShape.NONE, example="cls"),
    CommandSpec(
        "connect",
        "(re)open the session to the device",
        Tier.CONSOLE,
        Runs.CONSOLE,
        fields=("session_id", "device"),
        example="connect",
    ),
    CommandSpec(
        "connections",
        "TCP and UDP sockets, IPv4 and IPv6, with their owning process",
        Tier.BASIC,
        Runs.AGENT,
        result=ResultShape.ROWS,
        fields=(
            "proto",
            "local_address",
            "local_port",
            "remote_address",
            "remote_port",
            "state",
            "pid",
            "process",
            "owner_unknown_reason",
        ),
        table_fields=(
            "proto",
            "local_address",
            "local_port",
            "remote_address",
            "remote_port",
            "state",
            "pid",
            "process",
        ),
        example="connections -output json",
    ),
    CommandSpec(
        "drivers",
        "kernel modules (from /proc/modules, else /sys/module)",
        Tier.BASIC,
        Runs.AGENT,
        result=ResultShape.ROWS,
        fields=(
            "name",
            "size",
            "used_by",
            "state",
            "path",
            "version",
            "signer",
            "refcount",
            "taint",
            "source",
            "details_reason",
        ),
        table_fields=("name", "size", "state", "version", "signer", "used_by"),
        example="drivers",
    ),
    CommandSpec(
        "persistence",
        "every known persistence mechanism, for the system and every user",
        Tier.BASIC,
        Runs.AGENT,
        named=(Param("root", help="examine another file-system root (a mounted image)"),),
        cancellable=True,
        result=ResultShape.ROWS,
        fields=(
            "mechanism",
            "location",
            "line",
            "user",
            "entry",
            "command",
            "modified",
            "sha256",
            "target",
            "checked",
            "reason",
        ),
        table_fields=("mechanism", "user", "location", "line", "command"),
        example="persistence -output json",
        notes="a mechanism that could not be checked is listed with the reason",
    ),
    CommandSpec(
        "scheduledtasks",
        "cron entries, systemd timers and at jobs with their next run (UTC)",
        Tier.BASIC,
        Runs.AGENT,
        positional=(Param("name", help="task name filter (exact or glob)"),),
        named=(Param("root", help="examine another file-system root (a mounted image)"),),
        result=ResultShape.ROWS,
        fields=("name", "schedule", "command", "user", "source", "next_run", "kind"),
        table_fields=("name", "schedule", "user", "next_run", "command"),
        example="scheduledtasks",
    ),
    CommandSpec(
        "services",
        "systemd services (through systemd, else unit files and /proc) and SysV scripts",
        Tier.BASIC,
        Runs.AGENT,
        named=(
            Param("name", help="service name filter (exact or glob)"),
            Param("root", help="examine another file-system root (a mounted image)"),
        ),
        result=ResultShape.ROWS,
        fields=(
            "name",
            "description",
            "state",
            "enabled",
            "main_pid",
            "exec",
            "unit_file",
            "kind",
            "scope",
            "user",
            "aliases",
            "dropins",
            "state_reason",
        ),
        table_fields=("name", "state", "enabled", "main_pid", "description"),
        example="services -name ssh*",
    ),
    CommandSpec(
        "startupfolders",
        "XDG autostart entries, system and per user",
        Tier.BASIC,
        Runs.AGENT,
        named=(Param("root", help="examine another file-system root (a mounted image)"),),
        result=ResultShape.ROWS,
        fields=("path", "name", "exec", "user"),
        table_fields=("user", "name", "exec", "path"),
        example="startupfolders",
    ),
    CommandSpec(
        "dir",
        "list a directory",
        Tier.BASIC,
        Runs.AGENT,
        positional=(Param(_PATH, help="directory (default: working directory)"),),
        named=(Param("full_path", ParamType.FLAG, "show absolute paths in the table"),),
        aliases=("ls",),
        result=ResultShape.ROWS,
        fields=(
            "name",
            "path",
            "type",
            "size",
            "mode",
            "owner",
            "group",
            "modified",
            "link_target",
            "mode_octal",
            "uid",
            "gid",
        ),
        table_fields=("type", "mode", "owner", "size", "modified", "name"),
        example="dir /etc -full_path",
    ),
    CommandSpec(
        "fileinfo",
        "describe one file: metadata and hashes (FIFOs, sockets and devices are never read)",
        Tier.BASIC,
        Runs.AGENT,
        positional=(Param(_PATH, required=True, help="file to describe"),),
        fields=(
            "path",
            "type",
            "size",
            "mode",
            "owner",
            "group",
            "uid",
            "gid",
            "inode",
            "created",
            "modified",
            "accessed",
            "changed",
            "md5",
            "sha1",
            "sha256",
            "magic",
            "link_target",
            "mode_octal",
            "links",
            "hash_skipped_reason",
        ),
        table_fields=("path", "type", "size", "mode", "owner", "modified", "sha256"),
        example='fileinfo "/tmp/my file.txt"',
        notes="files over fileinfo_hash_max_bytes are described without hashes",
    ),
    CommandSpec(
        "findfile",
        "find files by exact name or glob across local file systems",
        Tier.BASIC,
        Runs.AGENT,
        positional=(Param("name", required=True, help="exact name or glob (*, ?, [..])"),),
        named=(Param(_PATH, help="where to start (default /)", metavar="root"),),
        cancellable=True,
        timeout=TimeoutClass.LONG,
        result=ResultShape.ROWS,
        fields=("path", "size", "modified", "type"),
        table_fields=("path", "size", "modified"),
        example="findfile *.so -path /tmp",
        notes="pseudo and network file systems are skipped; symbolic links are not followed",
    ),
    CommandSpec(
        "getfile",
        "collect a file from the device; it is saved under ./downloads/<device>/ on your side",
        Tier.BASIC,
        Runs.AGENT,
        positional=(Param("path", required=True, help="file to collect"),),
        named=(Param("auto", ParamType.FLAG, "run the fileinfo prerequisite first"),),
        aliases=("download",),
        cancellable=True,
        timeout=TimeoutClass.LONG,
        prerequisite="fileinfo",
        fields=("path", "size", "sha256", "download_id", "name", "resumed_from"),
        table_fields=("path", "size", "sha256", "download_id"),
        example="getfile /var/log/auth.log -auto",
        notes="needs fileinfo of the same path in this session first (or -auto); files over getfile_max_bytes, "
        "FIFOs, sockets and devices are refused before any byte moves; an interrupted transfer resumes",
    ),
    CommandSpec(
        "help",
        "list commands, or show one command's usage",
        Tier.CONSOLE,
        Runs.CONSOLE,
        positional=(Param("command", help="command name"),),
        example="help findfile",
    ),
    CommandSpec(
        "jobs",
        "list background commands with their id and status",
        Tier.CONSOLE,
        Runs.CONSOLE,
        result=ResultShape.ROWS,
        fields=("id", "command_line", "status"),
        table_fields=("id", "status", "command_line"),
        example="jobs",
    ),
    CommandSpec(
        "fg",
        "bring a background command to the foreground",
        Tier.CONSOLE,
        Runs.CONSOLE,
        positional=(Param("id", required=True, help="command id from jobs"),),
        example="fg cmd_0123456789abcdef",
    ),
    CommandSpec(
        "status",
        "show one command's status and output",
        Tier.CONSOLE,
        Runs.CONSOLE,
        positional=(Param("id", required=True, help="command id"),),
        example="status cmd_0123456789abcdef",
    ),
    CommandSpec(
        "processes",
        "list processes with full names and command lines",
        Tier.BASIC,
        Runs.AGENT,
        positional=(Param("pid", ParamType.INT, "one process id"),),
        named=(Param("name", help="process name (exact, case-insensitive, or glob)"),),
        aliases=("process",),
        cancellable=True,
        result=ResultShape.ROWS,
        fields=(
            "pid",
            "ppid",
            "name",
            "user",
            "state",
            "cmdline",
            "exe",
            "exe_deleted",
            "started",
            "cpu_percent",
            "rss",
            "threads",
            "uid",
        ),
        table_fields=("pid", "ppid", "user", "state", "rss", "started", "cmdline"),
        example="processes -name sshd",
    ),
    CommandSpec(
        "registry",
        "read the Windows registry (not available on Linux)",
        Tier.BASIC,
        Runs.AGENT,
        positional=(Param("key", help="registry key"),),
        example=r"registry HKLM\SOFTWARE",
    ),
    CommandSpec(
        "library",
        "list the tenant library, or delete one file from it",
        Tier.ADVANCED,
        Runs.SERVER,
        positional=(
            Param("action", ParamType.CHOICE, "delete (deleting needs library.manage too)", choices=("delete",)),
            Param("name", help="library file name"),
        ),
        result=ResultShape.ROWS,
        fields=(
            "name",
            "size",
            "sha256",
            "description",
            "has_parameters",
            "parameters_description",
            "created_by",
            "created",
            "updated",
            "signed",
            "publisher",
        ),
        table_fields=("name", "size", "signed", "publisher", "updated", "description"),
        example="library delete old-triage.sh",
        notes="upload with 'lr library upload FILE'; sign with 'lr library sign FILE --key KEY'",
    ),
    CommandSpec(
        "putfile",
        "copy a library file into the device's working folder, verified by sha256",
        Tier.ADVANCED,
        Runs.AGENT,
        positional=(Param("name", required=True, help="library file name"),),
        named=(
            Param("overwrite", ParamType.FLAG, "replace a file of that name already in the working folder"),
            Param("keep", ParamType.FLAG, "keep the file across the device's next restart"),
        ),
        cancellable=True,
        fields=("name", "path", "size", "sha256", "kept", "overwritten"),
        table_fields=("name", "path", "size", "sha256", "kept"),
        example="putfile triage.sh -keep",
        notes="the working folder is inside the agent's state directory (mode 0700); files put without -keep "
        "are removed at the device's next boot",
    ),
    CommandSpec(
        "run",
        "run a library script on the device; its output streams live",
        Tier.ADVANCED,
        Runs.AGENT,
        positional=(Param("script", required=True, help="library script name"),),
        named=(
            Param("parameters", help="the script's arguments, split like a console line"),
            Param("timeout", ParamType.INT, "seconds before the script's whole process group is killed"),
        ),
        cancellable=True,
        timeout=TimeoutClass.LONG,
        fields=(
            "script",
            "exit_code",
            "stdout",
            "stderr",
            "duration",
            "sha256",
            "publisher",
            "interpreter",
            "argv",
            "stdout_bytes",
            "stderr_bytes",
            "truncated",
        ),
        table_fields=("stdout",),
        example="run collect.sh -parameters \"-v '/var/log/my app'\" -timeout 60",
        notes="-parameters is split with the console's rules (quotes, doubled quotes) and handed to the script "
        "as its argument vector: no shell is involved, so no character is special or forbidden (; $ | & > "
        "and * reach the script as typed). Interpreter by extension (.sh bash, .py python3, .ps1 pwsh), else "
        "the #! line. Environment: PATH, HOME, LANG=C.UTF-8, USER, LOGNAME, PWD only; working directory: the "
        "session's. A non-zero exit fails the command (its output is kept). -timeout, the command timeout "
        "and Ctrl+C kill the script's whole process group. Scripts need a valid signature from a trusted "
        "publisher unless unsigned_scripts_allowed.",
    ),
    CommandSpec(
        "analyze",
        "give a verdict on a file or a process: tenant indicators, tenant YARA rules, built-in heuristics",
        Tier.ADVANCED,
        Runs.AGENT,
        positional=(
            Param("type", ParamType.CHOICE, "what to analyze", required=True, choices=ANALYZE_TYPES),
            Param("target", help="a path (file) or a process id (process)", required=True),
        ),
        cancellable=True,
        timeout=TimeoutClass.LONG,
        fields=("verdict", "findings", "type", "target", "path", "size", "sha256", "pid", "engines"),
        table_fields=("verdict", "type", "target", "sha256", "findings"),
        example="analyze file /tmp/payload.bin",
        notes="verdict is malicious, suspicious or clean; findings has one entry per engine hit (engine, result, "
        "reason, rule). Engines: hash (lr admin ioc add), yara (lr admin rules add), heuristics",
    ),
    CommandSpec(
        "remediate",
        "take a threat off the device, kept for undo; 'remediate list' lists what was remediated",
        Tier.ADVANCED,
        Runs.AGENT,
        positional=(
            Param(
                "type",
                ParamType.CHOICE,
                "what to remediate, or list",
                required=True,
                choices=(*REMEDIATION_TYPES, "list"),
            ),
            Param("id", help="path (file, startupfolder), pid (process), name (service, scheduledtask)"),
        ),
        named=(
            Param("auto", ParamType.FLAG, "run the entity's listing (or fileinfo) first"),
            Param("force", ParamType.FLAG, "also quarantine package-owned and core system files"),
        ),
        prerequisite="listing",
        rows_when=("type", "list"),
        fields=(
            "id",
            "type",
            "entity",
            "state",
            "actions",
            "left",
            "path",
            "sha256",
            "remediated_by",
            "remediated_at",
            "session_id",
            "command_id",
            "restored_by",
            "restored_at",
        ),
        table_fields=("id", "type", "entity", "state", "remediated_by", "remediated_at", "actions", "left"),
        example="remediate file /tmp/dropper -auto",
        notes="needs the entity's listing in this session first (fileinfo PATH, processes, services, "
        "scheduledtasks, startupfolders), or -auto. file: quarantined (encrypted in the agent's state "
        "directory); process: SIGTERM, a grace period, SIGKILL, then its image quarantined; service: stopped, "
        "disabled (enabling links kept), its executable quarantined; scheduledtask: the cron line or at job "
        "removed, or the timer disabled; startupfolder: the entry quarantined. Package-owned and core system "
        "files are left in place without -force. Once begun, a remediation completes; it cannot be cancelled",
    ),
    CommandSpec(
        "undo",
        "restore a remediated entity exactly: content, path, mode, owner, times; services and tasks re-enabled",
        Tier.ADVANCED,
        Runs.AGENT,
        positional=(
            Param("type", ParamType.CHOICE, "the remediated entity's type", required=True, choices=REMEDIATION_TYPES),
            Param("id", help="the remediation id (remediate list), or the entity's path or name", required=True),
        ),
        fields=("id", "type", "entity", "state", "actions", "left", "path", "sha256", "restored_by", "restored_at"),
        table_fields=("id", "type", "entity", "state", "actions", "left"),
        example="undo file /tmp/dropper",
        notes="never overwrites something that appeared at the place since; a second undo has nothing to do "
        "and fails. A process cannot be restarted: undo file PATH restores its image",
    ),
    CommandSpec(
        "trace",
        "toggle debug output in the console (protocol timings, message ids)",
        Tier.CONSOLE,
        Runs.CONSOLE,
        result=ResultShape.NONE,
        example="trace",
    ),
)

_BY_NAME: dict[str, CommandSpec] = {}


def _index() -> None:
    for spec in COMMANDS:
        for key in (spec.name, *spec.aliases):
            if key in _BY_NAME:
                raise RuntimeError(f"duplicate command name {key!r} in the catalogue")
            _BY_NAME[key] = spec


_index()


def lookup(name: str) -> CommandSpec | None:
    """Find a command by name or alias, case-insensitively (SPEC §4)."""
    return _BY_NAME.get(name.lower())


def all_names() -> list[str]:
    """Every name and alias, for completion."""
    return sorted(_BY_NAME)


@dataclass(frozen=True)
class HelpGroup:
    tier: Tier
    commands: list[CommandSpec] = field(default_factory=list)


def grouped_by_tier() -> list[HelpGroup]:
    groups = [HelpGroup(t, [c for c in COMMANDS if c.tier is t]) for t in (Tier.BASIC, Tier.ADVANCED, Tier.CONSOLE)]
    return [g for g in groups if g.commands]
