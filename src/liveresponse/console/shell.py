"""The console's engine, shared by the interactive REPL and the non-interactive runner.

One session, one console channel (DR-2). A reader task takes every event off
the channel and routes it: ``accepted``/``error`` to the line that asked
(by ``ref``), ``rows``/``done`` to the command's :class:`Job`. Foreground,
background (``&``, Ctrl+Z), ``jobs``, ``fg`` and ``status`` are views of the
same jobs (SPEC §4).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from liveresponse.client.api import ApiError, Client, ConnectError, ConsoleChannel
from liveresponse.client.files import safe_name
from liveresponse.console import script_output
from liveresponse.console.progress import save_to_downloads
from liveresponse.console.renderer import render_command_help, render_help, render_json, render_table
from liveresponse.protocol.catalogue import CommandSpec, ResultShape, Runs, lookup
from liveresponse.protocol.commandline import ParsedLine, parse_line
from liveresponse.protocol.errors import CommandLineError, LiveResponseError


@dataclass
class Job:
    command_id: str
    line: str
    spec: CommandSpec
    parsed: ParsedLine
    sent_at: float
    accepted_at: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    background: bool = False
    reported: bool = False
    live_rows: int = 0  # rows already written as they arrived (run's output, console/script_output.py)

    @property
    def status(self) -> str:
        return "running" if self.final is None else str(self.final["status"])


class Shell:
    def __init__(self, client: Client, device: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.client = client
        self.device = device
        self.out = out
        self.err = err
        self.default_output: str | None = None
        self.trace = False
        self.session: dict[str, Any] | None = None
        self.cwd = "/"
        self.jobs: dict[str, Job] = {}
        self.foreground: Job | None = None
        self._to_background = asyncio.Event()
        self._channel: ConsoleChannel | None = None
        self._stack: AsyncExitStack | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[Job]] = {}
        self._pending_lines: dict[int, tuple[str, ParsedLine | None]] = {}
        self.interactive = False
        self.downloads_dir = Path("downloads")

    # -- session ------------------------------------------------------------

    async def open(self) -> None:
        self.session = await self.client.open_session(self.device)
        self.cwd = str(self.session.get("cwd") or "/")
        self._stack = AsyncExitStack()
        try:
            self._channel = await self._stack.enter_async_context(self.client.console_channel(self.session["id"]))
        except BaseException:
            await self._stack.aclose()
            await self.client.end_session(self.session["id"])
            raise
        self._reader = asyncio.create_task(self._read_events())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        if self.session is not None:
            with contextlib.suppress(LiveResponseError):
                await self.client.end_session(self.session["id"])
            self.session = None

    async def _read_events(self) -> None:
        assert self._channel is not None
        try:
            while True:
                event = await self._channel.next_event()
                self._route(event)
        except ConnectError as exc:
            failure = {"type": "done", "status": "failed", "error": {"code": "connect", "message": str(exc)}}
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(exc)
            for job in self.jobs.values():
                if job.final is None:
                    job.final = {**failure, "command_id": job.command_id}
                    job.done.set()

    def _route(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "accepted":
            ref = int(event["ref"])
            line, parsed = self._pending_lines.pop(ref, ("", None))
            spec = lookup(str(event["command"]))
            assert spec is not None and parsed is not None
            job = Job(str(event["command_id"]), line, spec, parsed, sent_at=time.monotonic())
            job.accepted_at = time.monotonic()
            self.jobs[job.command_id] = job
            future = self._waiting.pop(ref, None)
            if future is not None and not future.done():
                future.set_result(job)
        elif kind == "error":
            ref = event.get("ref")
            error = event.get("error") or {}
            exc = ApiError(
                str(error.get("code")),
                str(error.get("message")),
                **{k: v for k, v in error.items() if k not in ("code", "message")},
            )
            future = self._waiting.pop(int(ref), None) if ref is not None else None
            self._pending_lines.pop(int(ref), None) if ref is not None else None
            if future is not None and not future.done():
                future.set_exception(exc)
            else:
                print(f"error: {exc.message}", file=self.err, flush=True)
        elif kind == "progress":
            job = self.jobs.get(str(event["command_id"]))
            if job is not None and job is self.foreground and self.err.isatty():
                total = event.get("total") or 0
                share = f" of {total}" if total else ""
                print(
                    f"\r{job.spec.name}: {event['bytes']}{share} bytes on the server", end="", file=self.err, flush=True
                )
        elif kind == "notice":
            print(f"\n[notice] {event.get('message')}", file=self.err, flush=True)
        elif kind == "session_ended":
            print(f"\n[session ended] {event.get('reason')}", file=self.err, flush=True)
        elif kind == "rows":
            job = self.jobs.get(str(event["command_id"]))
            if job is not None:
                job.rows.extend(event["rows"])
                if job.spec.name == "run" and self._run_live(job):
                    script_output.write_rows(job.rows[job.live_rows :], self.out, self.err)
                    job.live_rows = len(job.rows)
        elif kind == "done":
            job = self.jobs.get(str(event["command_id"]))
            if job is not None:
                job.rows.extend(event.get("tail_rows") or [])
                job.final = event
                job.done.set()
                if job.background and self.interactive and not job.reported:
                    print(f"\n[{job.command_id}] {job.status}: {job.line}", file=self.err, flush=True)

    async def _submit(self, line: str, parsed: ParsedLine | None) -> Job:
        assert self._channel is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Job] = loop.create_future()
        started = time.monotonic()
        ref = await self._channel.send_line_reserved(self._reserve(line, parsed, future))
        job = await future
        job.sent_at = started
        if self.trace:
            ms = (job.accepted_at - started) * 1000
            print(f"[trace] ref {ref} -> {job.command_id} accepted in {ms:.1f} ms", file=self.err)
        return job

    def _reserve(self, line: str, parsed: ParsedLine | None, future: asyncio.Future[Job]) -> tuple[int, str]:
        assert self._channel is not None
        ref = self._channel.next_ref()
        self._waiting[ref] = future
        self._pending_lines[ref] = (line, parsed)
        return ref, line

    # -- one line -----------------------------------------------------------

    async def execute(self, line: str) -> bool:
        """Run one console line; True when it succeeded."""
        if not line.strip():
            return True
        try:
            parsed = parse_line(line)
        except CommandLineError as exc:
            # The server logs every line, parse errors included; it refuses this one before the device.
            with contextlib.suppress(LiveResponseError):
                await self._submit(line, None)
            pointer = " " * min(exc.position, len(line)) + "^"
            print(f"parse error: {exc.message}\n  {line}\n  {pointer}", file=self.err, flush=True)
            return False
        spec = lookup(parsed.command)
        assert spec is not None
        if spec.runs is Runs.CONSOLE:
            return await self._console_command(spec, parsed)
        try:
            job = await self._submit(line, parsed)
        except LiveResponseError as exc:
            print(f"{spec.name}: {exc.message}", file=self.err, flush=True)
            return False
        if parsed.background:
            job.background = True
            print(f"[{job.command_id}] running in the background", file=self.out, flush=True)
            return True
        return await self.wait_foreground(job)

    async def wait_foreground(self, job: Job) -> bool:
        self.foreground = job
        self._to_background.clear()
        try:
            done = asyncio.ensure_future(job.done.wait())
            moved = asyncio.ensure_future(self._to_background.wait())
            await asyncio.wait({done, moved}, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            moved.cancel()
        finally:
            self.foreground = None
        if job.final is None:
            job.background = True
            print(f"\n[{job.command_id}] moved to the background: {job.line}", file=self.out, flush=True)
            return True
        return await self.complete(job)

    async def complete(self, job: Job) -> bool:
        """Report a finished job; a collected file is then saved on this side (SPEC §7)."""
        ok = self.report(job)
        if not ok or job.spec.name != "getfile" or job.final is None:
            return ok
        result = job.final.get("result") or {}
        device = str((self.session or {}).get("device") or self.device)
        try:
            download = await self.client.download(str(result["download_id"]))
            saved = await save_to_downloads(self.client, download, self.downloads_dir / safe_name(device), self.err)
        except LiveResponseError as exc:
            print(
                f"getfile: the file is on the server (download {result.get('download_id')}) but saving it "
                f"here failed: {exc.message}; retry with 'lr downloads get {result.get('download_id')}'",
                file=self.err,
                flush=True,
            )
            return False
        print(f"saved {saved} ({download['size']} bytes, sha256 {download['sha256']})", file=self.err, flush=True)
        return True

    def send_foreground_to_background(self) -> None:
        if self.foreground is not None:
            self._to_background.set()

    async def cancel_foreground(self) -> None:
        job = self.foreground
        if job is None or self._channel is None:
            return
        if job.spec.cancellable:
            print(f"\ncancelling {job.command_id} on the device...", file=self.err, flush=True)
        elif job.spec.name in ("remediate", "undo"):
            print(
                f"\n{job.spec.name} cannot be cancelled: once begun it completes atomically on the device; "
                "waiting for it to finish (undo reverses a remediation)",
                file=self.err,
                flush=True,
            )
            return
        else:
            print(f"\n{job.spec.name} cannot be cancelled; waiting for it to finish", file=self.err, flush=True)
            return
        await self._channel.cancel(job.command_id)

    def report(self, job: Job) -> bool:
        """Print a finished job's output (or error); True when it completed."""
        job.reported = True
        final = job.final or {}
        status = str(final.get("status"))
        if self.trace:
            total = (time.monotonic() - job.sent_at) * 1000
            print(f"[trace] {job.command_id} {status} rows={len(job.rows)} total {total:.1f} ms", file=self.err)
        if job.spec.name == "run":
            return self._report_run(job, status)
        if status != "completed":
            error = final.get("error") or {}
            print(f"{job.spec.name}: {status}: {error.get('message', status)}", file=self.err, flush=True)
            return False
        value: Any = job.rows if job.spec.result_for(job.parsed.args) is ResultShape.ROWS else final.get("result")
        if job.spec.name == "cd" and isinstance(value, dict) and "cwd" in value:
            self.cwd = str(value["cwd"])
        self.emit(job.spec, job.parsed, value)
        return True

    def _run_live(self, job: Job) -> bool:
        fmt = job.parsed.output or self.default_output or "table"
        return script_output.shows_live(fmt, job.parsed.redirect, job.background)

    def _report_run(self, job: Job, status: str) -> bool:
        """run shows the script's own output, live where it can; a failed run still shows it (SPEC §5)."""
        final = job.final or {}
        result = final.get("result")
        fmt = job.parsed.output or self.default_output or "table"
        if fmt == "json":
            if result is not None:
                self.emit(job.spec, job.parsed, result)
        else:
            printed = job.live_rows if self._run_live(job) else 0
            written = script_output.finish(job.rows, printed, result, fmt, job.parsed.redirect, self.out, self.err)
            if written is not None:
                print(f"output written to {written}", file=self.err, flush=True)
        if status != "completed":
            error = final.get("error") or {}
            print(f"run: {status}: {error.get('message', status)}", file=self.err, flush=True)
            return False
        return True

    def emit(self, spec: CommandSpec, parsed: ParsedLine, value: Any) -> None:
        fmt = parsed.output or self.default_output or "table"
        text = render_json(value) if fmt == "json" else render_table(spec, dict(parsed.args), value)
        if parsed.redirect is None:
            if text:
                print(text, file=self.out, flush=True)
            return
        mode = "a" if parsed.redirect.mode == "append" else "w"
        target = Path(parsed.redirect.path).expanduser()
        with open(target, mode, encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(text + "\n")
        print(f"output written to {target}", file=self.err, flush=True)

    # -- console commands -----------------------------------------------------

    async def _console_command(self, spec: CommandSpec, parsed: ParsedLine) -> bool:
        name = spec.name
        args = parsed.args
        if name == "help":
            topic = args.get("command")
            if topic is None:
                print(render_help(), file=self.out)
                return True
            target = lookup(str(topic))
            if target is None:
                print(f"help: no command {topic!r}; 'help' lists them", file=self.err)
                return False
            print(render_command_help(target), file=self.out)
            return True
        if name == "cls":
            print("\033[2J\033[H", end="", file=self.out, flush=True)
            return True
        if name == "trace":
            self.trace = not self.trace
            print(f"trace {'on' if self.trace else 'off'}", file=self.out)
            return True
        if name == "connect":
            await self.close()
            try:
                await self.open()
            except LiveResponseError as exc:
                print(f"connect: {exc.message}", file=self.err)
                return False
            assert self.session is not None
            self.emit(spec, parsed, {"session_id": self.session["id"], "device": self.session["device"]})
            return True
        if name == "jobs":
            rows = [
                {"id": j.command_id, "command_line": j.line, "status": j.status}
                for j in self.jobs.values()
                if j.background
            ]
            self.emit(spec, parsed, rows)
            return True
        if name in ("fg", "status"):
            job = self.jobs.get(str(args["id"]))
            if name == "fg":
                if job is None:
                    print(f"fg: no job {args['id']}; 'jobs' lists them", file=self.err)
                    return False
                job.background = False
                return await self.wait_foreground(job) if job.final is None else await self.complete(job)
            return await self._status(str(args["id"]), job, parsed)
        print(f"{name}: not handled by this console", file=self.err)
        return False

    async def _status(self, command_id: str, job: Job | None, parsed: ParsedLine) -> bool:
        try:
            record = await self.client.command(command_id)
        except LiveResponseError as exc:
            print(f"status: {exc.message}", file=self.err)
            return False
        if job is not None and job.final is None:
            record["rows_so_far"] = len(job.rows)
        spec = lookup("status")
        assert spec is not None
        fmt = parsed.output or self.default_output or "table"
        if fmt == "json":
            print(render_json(record), file=self.out)
        else:
            for key in ("id", "command_line", "status", "started", "ended", "duration", "errors"):
                print(f"{key:13} {record.get(key)}", file=self.out)
            if record.get("output") is not None:
                print(render_json(record["output"]), file=self.out)
        return True

    async def wait_background(self) -> bool:
        """Wait for every background job, report those not reported; True when all completed."""
        ok = True
        for job in list(self.jobs.values()):
            if not job.background:
                continue
            await job.done.wait()
            if not job.reported:
                print(f"[{job.command_id}] {job.status}: {job.line}", file=self.err, flush=True)
                ok = await self.complete(job) and ok
            else:
                ok = ok and job.status == "completed"
        return ok
