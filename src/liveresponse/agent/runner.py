"""Runs verified envelopes: one worker thread per command, rows streamed, cancel and timeout honoured.

Verification comes first (protocol/signing.py): a refused envelope is never
acted on; the agent answers ``failed`` with code ``command_rejected`` and the
reason, and logs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from liveresponse.agent.commands.context import Cancelled, CommandContext, CommandEnded
from liveresponse.agent.commands.dispatch import handlers
from liveresponse.agent.policy import PolicyFile
from liveresponse.protocol import messages as m
from liveresponse.protocol.catalogue import ResultShape, lookup
from liveresponse.protocol.errors import EnvelopeRejected, LiveResponseError
from liveresponse.protocol.signing import Envelope, ReplayGuard, verify

log = logging.getLogger("liveresponse.agent.runner")

Send = Callable[[m.Rows | m.Done], Awaitable[None]]
ROWS_BATCH_COUNT = 2000
ROWS_BATCH_S = 0.1


@dataclass
class _Active:
    envelope: Envelope
    cancel: threading.Event
    task: asyncio.Task[None]
    timed_out: bool = False


class Runner:
    def __init__(
        self,
        device_id: str,
        command_key: Ed25519PublicKey,
        guard: ReplayGuard,
        root: str = "/",
        clock: Callable[[], float] = time.time,
        on_accept: Callable[[str, float], None] | None = None,
        files: Any = None,
        state_dir: Path | None = None,
        policy: PolicyFile | None = None,
        uploader: Any = None,
    ) -> None:
        self.policy = policy or PolicyFile()
        self.device_id = device_id
        self.state_dir = state_dir
        self.files = files  # the working folder of putfile and run (agent/workfolder.py)
        self.uploader = uploader  # getfile's PUT to the server (agent/upload.py, DR-12)
        self.command_key = command_key
        self.guard = guard
        self.root = root
        self.clock = clock
        self.on_accept = on_accept
        self.active: dict[str, _Active] = {}

    async def handle(self, signed: m.Signed, send: Send, spawn: Callable[[Any], asyncio.Task[None]]) -> None:
        try:
            envelope = verify(signed, self.command_key, self.device_id, self.guard, self.clock)
        except EnvelopeRejected as exc:
            log.warning("refused command envelope: %s (%s)", exc.message, exc.reason)
            command_id = _unverified_command_id(signed.envelope)
            if command_id:
                await send(m.Done(command_id=command_id, status="failed", error=exc.to_wire()))
            return
        if self.on_accept is not None:
            self.on_accept(envelope.envelope_id, envelope.expires_at)
        if envelope.kind == "cancel":
            active = self.active.get(envelope.command_id)
            if active is not None and active.envelope.session_id == envelope.session_id:
                active.cancel.set()
            return
        # One line per command run: what the device was asked to do, for its own operators (and tests).
        log.info("running %s %s (session %s)", envelope.command_id, envelope.command, envelope.session_id)
        cancel = threading.Event()
        task = spawn(self._run(envelope, cancel, send))
        self.active[envelope.command_id] = _Active(envelope, cancel, task)

    def cancel_all(self) -> None:
        for active in self.active.values():
            active.cancel.set()

    async def _run(self, envelope: Envelope, cancel: threading.Event, send: Send) -> None:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(envelope.timeout_s, self._time_out, envelope.command_id)
        try:
            done = await asyncio.to_thread(self._execute, envelope, cancel, send, loop)
            active = self.active.get(envelope.command_id)
            if active is not None and active.timed_out and done.status == "cancelled":
                message = f"{envelope.command} timed out after {envelope.timeout_s:g} s on the device"
                done = m.Done(
                    command_id=envelope.command_id,
                    status="timed_out",
                    result=done.result,  # what the command had done so far (run: its output)
                    error={"code": "timed_out", "message": message},
                )
            try:
                await send(done)
            except Exception as exc:  # the connection went away; the server ends the command itself
                log.warning("could not report the end of %s: %s", envelope.command_id, exc)
        finally:
            timer.cancel()
            self.active.pop(envelope.command_id, None)

    def _time_out(self, command_id: str) -> None:
        active = self.active.get(command_id)
        if active is not None:
            active.timed_out = True
            active.cancel.set()

    def _execute(
        self, envelope: Envelope, cancel: threading.Event, send: Send, loop: asyncio.AbstractEventLoop
    ) -> m.Done:
        """In a worker thread: run the handler, stream rows, return the final message."""
        command_id = envelope.command_id
        try:  # the device's own policy first, whatever the server sent (agent/policy.py)
            policy = self.policy.check(envelope.command, envelope.args)
        except LiveResponseError as exc:
            log.warning("refused %s %s: %s", command_id, envelope.command, exc.message)
            return m.Done(command_id=command_id, status="failed", error=exc.to_wire())
        spec = lookup(envelope.command)
        handler = handlers().get(envelope.command)
        if spec is None or handler is None:
            error = {"code": "not_available", "message": f"this agent has no command {envelope.command!r}"}
            return m.Done(command_id=command_id, status="failed", error=error)
        limits = envelope.limits
        ctx = CommandContext(cwd=envelope.cwd, root=self.root, cancel_event=cancel, timeout_s=envelope.timeout_s)
        if "fileinfo_hash_max_bytes" in limits:
            ctx.fileinfo_hash_max_bytes = int(limits["fileinfo_hash_max_bytes"])
        if "getfile_max_bytes" in limits:
            ctx.getfile_max_bytes = int(limits["getfile_max_bytes"])
        args = dict(envelope.args)
        if policy.getfile_max_bytes is not None and policy.getfile_max_bytes < ctx.getfile_max_bytes:
            ctx.getfile_max_bytes = policy.getfile_max_bytes
            ctx.getfile_limit_name = f"the getfile_max_bytes of this device's policy ({policy.source})"

        def push(rows: list[dict[str, Any]]) -> None:
            asyncio.run_coroutine_threadsafe(send(m.Rows(command_id=command_id, rows=rows)), loop).result()

        ctx.report = lambda row: push([row])
        ctx.upload = self.uploader
        ctx.library = dict(envelope.library)
        ctx.files = self.files
        ctx.command_id = envelope.command_id
        ctx.session_id = envelope.session_id
        ctx.requested_by = str(args.pop("requested_by", "") or "")
        ctx.state_dir = self.state_dir

        try:
            result = handler(ctx, args)
            if spec.result_for(envelope.args) is ResultShape.ROWS:
                rows = result if isinstance(result, Iterable) and not isinstance(result, dict) else []
                tail = _stream_rows(rows, ctx, push)
                return m.Done(command_id=command_id, status="completed", rows=tail)
            return m.Done(
                command_id=command_id, status="completed", result=result if isinstance(result, dict) else None
            )
        except CommandEnded as ended:
            error = {"code": ended.code, "message": ended.message}
            return m.Done.model_validate(
                {"command_id": command_id, "status": ended.status, "result": ended.result, "error": error}
            )
        except Cancelled:
            return m.Done(
                command_id=command_id, status="cancelled", error={"code": "cancelled", "message": "cancelled"}
            )
        except LiveResponseError as exc:
            return m.Done(command_id=command_id, status="failed", error=exc.to_wire())
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            message = f"{exc.strerror or exc}{where}"
            return m.Done(command_id=command_id, status="failed", error={"code": "command_failed", "message": message})
        except Exception:
            log.exception("command %s (%s) failed unexpectedly", command_id, envelope.command)
            message = f"{envelope.command} failed with an internal error on the device; see the agent log"
            return m.Done(command_id=command_id, status="failed", error={"code": "internal", "message": message})


def _stream_rows(
    rows: Iterable[dict[str, Any]], ctx: CommandContext, push: Callable[[list[dict[str, Any]]], None]
) -> list[dict[str, Any]]:
    batch: list[dict[str, Any]] = []
    batch_bytes = 0
    last_flush = time.monotonic()
    for row in rows:
        ctx.check_cancelled()
        batch.append(row)
        batch_bytes += len(json.dumps(row, ensure_ascii=False, default=str))
        now = time.monotonic()
        if batch_bytes >= m.ROWS_BATCH_BYTES or len(batch) >= ROWS_BATCH_COUNT or now - last_flush > ROWS_BATCH_S:
            push(batch)
            batch, batch_bytes, last_flush = [], 0, now
    ctx.check_cancelled()
    return batch  # the last batch travels in Done


def _unverified_command_id(text: str) -> str | None:
    """The command id of a refused envelope, only to tell the server which command was refused."""
    try:
        value = json.loads(text).get("command_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and len(value) < 100 else None
