"""``lr console DEVICE``: interactive on a TTY; otherwise runs -c lines or stdin (SPEC §3 exit codes)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable

from liveresponse.client.api import Client
from liveresponse.client.config import ClientConfig
from liveresponse.console.shell import Shell
from liveresponse.protocol.errors import LiveResponseError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NO_SESSION = 2


async def run_console(config: ClientConfig, device: str, lines: Iterable[str] | None, output: str | None) -> int:
    client = Client(config)
    shell = Shell(client, device)
    shell.default_output = output
    try:
        try:
            await shell.open()
        except LiveResponseError as exc:
            print(f"lr console: cannot open a session on {device}: {exc.message}", file=sys.stderr)
            return EXIT_NO_SESSION
        if lines is None:
            from liveresponse.console.repl import interact

            session = shell.session or {}
            print(f"session {session.get('id')} on {session.get('device')}; 'help' lists commands, Ctrl+D leaves")
            await interact(shell)
            return EXIT_OK
        all_ok = True
        for line in lines:
            if line.strip().lower() in ("exit", "quit"):  # as at the prompt: the rest is not run
                break
            ok = await shell.execute(line.rstrip("\n"))
            all_ok = all_ok and ok
        all_ok = await shell.wait_background() and all_ok
        return EXIT_OK if all_ok else EXIT_FAILED
    finally:
        await shell.close()
        await client.aclose()


def console_main(config: ClientConfig, device: str, commands: list[str] | None, output: str | None) -> int:
    lines: Iterable[str] | None
    if commands:
        lines = commands
    elif not sys.stdin.isatty():
        lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
    else:
        lines = None
    try:
        return asyncio.run(run_console(config, device, lines, output))
    except KeyboardInterrupt:
        return EXIT_FAILED
