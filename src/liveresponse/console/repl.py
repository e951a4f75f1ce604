"""The interactive console: prompt_toolkit with history and completion; Ctrl+C cancels, Ctrl+Z backgrounds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory

from liveresponse.console.shell import Shell
from liveresponse.protocol.catalogue import OUTPUT_PARAM, all_names, lookup


class CommandCompleter(Completer):
    """Command names first; then the command's parameter names; values of -output."""

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        words = text.split()
        current = "" if text.endswith(" ") or not words else words[-1]
        if len(words) == 0 or (len(words) == 1 and not text.endswith(" ")):
            for name in all_names():
                if name.startswith(current.lower()):
                    yield Completion(name, start_position=-len(current))
            return
        spec = lookup(words[0])
        if spec is None:
            return
        previous = words[-2] if current else words[-1]
        if previous.lower() == "-output":
            for choice in OUTPUT_PARAM.choices:
                if choice.startswith(current.lower()):
                    yield Completion(choice, start_position=-len(current))
            return
        if current.startswith("-") or current == "":
            for param in (*spec.all_params, OUTPUT_PARAM):
                option = f"-{param.name}"
                if option.startswith(current.lower()):
                    yield Completion(option, start_position=-len(current))


def history_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    path = Path(base) / "liveresponse" / "console_history"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


async def interact(shell: Shell) -> bool:
    """Read lines until exit/quit/Ctrl+D. Returns True when the last command succeeded."""
    shell.interactive = True
    prompt: PromptSession[str] = PromptSession(
        history=FileHistory(str(history_path())), completer=CommandCompleter(), complete_while_typing=False
    )
    loop = asyncio.get_running_loop()
    ok = True
    pending: set[asyncio.Task[None]] = set()

    def on_interrupt() -> None:
        task = asyncio.ensure_future(shell.cancel_foreground())
        pending.add(task)
        task.add_done_callback(pending.discard)

    while True:
        device = shell.session["device"] if shell.session else shell.device
        try:
            line = await prompt.prompt_async(f"{device} {shell.cwd}> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        if line.strip().lower() in ("exit", "quit"):
            break
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        with contextlib.suppress(NotImplementedError, AttributeError):
            loop.add_signal_handler(signal.SIGTSTP, shell.send_foreground_to_background)
        try:
            ok = await shell.execute(line)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            with contextlib.suppress(NotImplementedError, AttributeError):
                loop.remove_signal_handler(signal.SIGTSTP)
    running = [j for j in shell.jobs.values() if j.background and j.final is None]
    if running:
        answer = await prompt.prompt_async(f"{len(running)} background command(s) still running; wait for them? [Y/n] ")
        if answer.strip().lower() not in ("n", "no"):
            await shell.wait_background()
    return ok
