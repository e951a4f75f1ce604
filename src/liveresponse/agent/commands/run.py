"""run: run a library script on the device (SPEC §5; decisions in agent/script_process.py, DR-13).

1. Fetch the script into a private folder of this run (agent/workfolder.py), sha256 verified.
2. Check its signature here, against the tenant's publisher keys from the signed
   envelope; an unsigned script runs only when the envelope says unsigned is allowed.
3. Split ``-parameters`` with the console's rules (protocol.commandline.split_parameters)
   and run it through its interpreter with that argv: no shell.
4. Stream its output; end with exit_code, stdout, stderr and duration. A non-zero exit
   fails the command; the result is kept either way.
"""

from __future__ import annotations

import shutil
from typing import Any

from liveresponse.agent.commands.context import CommandContext, CommandEnded, Row
from liveresponse.agent.script_process import interpreter_for, minimal_env, run_process
from liveresponse.protocol.commandline import split_parameters
from liveresponse.protocol.errors import CommandFailed, NotAvailable
from liveresponse.protocol.library import check_name, check_script_trust
from liveresponse.protocol.names import escape_bytes

COMMAND = "run"


def run(ctx: CommandContext, args: dict[str, Any]) -> Row:
    name = check_name(str(args["script"]))
    library = ctx.library
    if ctx.files is None:
        raise NotAvailable("this agent has no working folder configured")
    if not library or library.get("name") != name:
        raise CommandFailed(f"the command for {name} came without its library file; is the server up to date?")
    params = split_parameters(str(args.get("parameters") or ""))
    timeout = args.get("timeout")
    if timeout is not None and int(timeout) <= 0:
        raise CommandFailed(f"-timeout takes a number of seconds above 0, not {timeout}")
    cwd = ctx.resolve_path(None)
    scratch = ctx.files.scratch()
    try:
        fetched = ctx.files.fetch(library, scratch, ctx.check_cancelled)
        publisher = check_script_trust(
            name,
            fetched.sha256,
            library.get("signature"),
            list(library.get("publishers") or []),
            bool(library.get("unsigned_allowed")),
            "on the device",
        )
        script = scratch / name
        fetched.path.rename(script)
        argv = [*interpreter_for(script, name), str(script), *params]
        outcome = run_process(
            argv,
            cwd,
            minimal_env(escape_bytes(cwd)),
            None if timeout is None else float(timeout),
            ctx.cancel_event,
            ctx.report,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result: Row = {
        "script": name,
        "sha256": fetched.sha256,
        "publisher": publisher,
        "interpreter": argv[0],
        "argv": params,
        "exit_code": outcome.exit_code,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
        "duration": outcome.duration,
        "stdout_bytes": outcome.stdout_bytes,
        "stderr_bytes": outcome.stderr_bytes,
        "truncated": outcome.truncated,
        "pid": outcome.pid,
    }
    if outcome.ended == "timed_out":
        message = f"{name} timed out after {timeout} s (-timeout); its process group was killed"
        raise CommandEnded("timed_out", "timed_out", message, result)
    if outcome.ended == "cancelled":
        raise CommandEnded("cancelled", "cancelled", f"cancelled; the process group of {name} was killed", result)
    if outcome.exit_code != 0:
        code = outcome.exit_code
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        raise CommandEnded("failed", "script_failed", f"{name} {how}", result)
    return result
