"""From a console line to a signed envelope on the agent, and the result back.

    submit(line) -> parse (CommandLineError: logged, never sent)
                 -> permission by tier (PermissionDenied: logged, audited, never sent)
                 -> device online? (DeviceOffline: logged)
                 -> command-log row 'running', session activity
                 -> sign Envelope(command, device, session, expiry) -> gateway
    agent Rows   -> fan out to subscribers, kept for the log
    agent Done   -> command-log row final, subscribers told, audit
    timeout      -> signed cancel to the agent, row 'timed_out'

Every path ends in exactly one final command-log row (SPEC §9).
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from liveresponse.protocol import messages as m
from liveresponse.protocol.catalogue import CommandSpec, ResultShape, Runs, lookup
from liveresponse.protocol.commandline import ParsedLine, parse_line
from liveresponse.protocol.errors import (
    CommandFailed,
    CommandLineError,
    DeviceOffline,
    LiveResponseError,
    NotFound,
    PermissionDenied,
    PrerequisiteMissing,
)
from liveresponse.protocol.names import resolve_lexically
from liveresponse.protocol.signing import ENVELOPE_TTL_S, Envelope, sign
from liveresponse.protocol.transfer import TRANSFER_INTERRUPTED
from liveresponse.server.blobs import BlobStore
from liveresponse.server.gateway import AgentLink, Gateway
from liveresponse.server.prerequisites import (
    Prerequisite,
    Refused,
    getfile_refusal,
    plan_prerequisite,
    remediation_audit,
    shows,
)
from liveresponse.server.rbac import command_permission
from liveresponse.server.store.models import Command, Device, Session, User
from liveresponse.server.store.store import AuditEvent, Store
from liveresponse.server.store.transfer_models import Transfer
from liveresponse.server.store.transfers import TransferRecords
from liveresponse.server.timestamps import iso_seconds
from liveresponse.server.transfers import PROGRESS_EVERY_BYTES, FileReceiver, Incoming
from liveresponse.server.uploads import AgentUploads

log = logging.getLogger("liveresponse.dispatcher")

EnvelopePreparer = Callable[[Session, User, Device, dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]
ServerCommand = Callable[[Session, User, dict[str, Any]], Awaitable[dict[str, Any] | list[dict[str, Any]]]]

INLINE_OUTPUT_BYTES = 256 * 1024  # larger outputs go to the blob store, with a preview here
PREVIEW_BYTES = 4096
CANCEL_GRACE_S = 10.0  # how long the agent has to confirm a cancel before the server ends the command


@dataclass
class Running:
    """A command in flight on an agent."""

    command_id: str
    session_id: str
    tenant_id: str
    device_id: str
    user_name: str
    spec: CommandSpec
    parsed: ParsedLine
    started_at: float
    rows_json: list[str] = field(default_factory=list)
    rows_count: int = 0
    subscribers: list[asyncio.Queue[dict[str, Any]]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    final: dict[str, Any] | None = None
    timeout_handle: asyncio.TimerHandle | None = None
    cancel_requested: bool = False
    deadline: float = 0.0  # epoch seconds when the command times out
    transfer_id: str | None = None  # getfile: the transfer this command drives
    interrupted: bool = False  # getfile: the device went away; resumes when it is back
    resumed_at: int = -1  # getfile: the offset of the last resume after an upload broke off (no progress: fail)
    logged: asyncio.Future[None] | None = None  # the 'running' row's write
    persisted: asyncio.Event = field(default_factory=asyncio.Event)  # the final row's write

    def publish(self, event: dict[str, Any]) -> None:
        for queue in self.subscribers:
            queue.put_nowait(event)


def _preview(text: str) -> str:
    data = text.encode()
    if len(data) <= PREVIEW_BYTES:
        return text
    head = data[:PREVIEW_BYTES].decode("utf-8", "ignore")
    return f"{head}\n… truncated: {PREVIEW_BYTES} of {len(data)} bytes"


class Dispatcher:
    def __init__(self, store: Store, gateway: Gateway, blobs: BlobStore, signing_key: Any) -> None:
        self.store = store
        self.transfers = TransferRecords(store)
        self.receiver = FileReceiver(self.transfers, blobs)
        self.uploads = AgentUploads(self.receiver, self._progress)  # getfile's bytes by HTTP PUT (DR-12)
        self.gateway = gateway
        self.blobs = blobs
        self.signing_key = signing_key
        self.running: dict[str, Running] = {}
        self._settling: dict[str, Running] = {}
        # The working directory of each session this node serves; the store has it too (for restarts).
        self.cwd: dict[str, str] = {}
        # Catalogue commands of Runs.SERVER: name -> async handler(session, user, args) -> object or rows.
        self.server_commands: dict[str, ServerCommand] = {}
        # Agent commands whose envelope needs the server's part first (putfile, run: the library file's
        # sha256, a fetch ticket, publisher keys): name -> async prepare(session, user, device, args, settings)
        # -> the envelope's ``library``. A LiveResponseError from it refuses the command before the device.
        self.envelope_preparers: dict[str, EnvelopePreparer] = {}
        # Console channels listening to a session, for notices (idle warning, session ended).
        self.listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        gateway.on_message = self.on_agent_message
        gateway.on_disconnect = self.on_agent_disconnect
        gateway.on_connect = self.on_agent_connect

    # -- submit -------------------------------------------------------------

    async def _log_refusal(
        self,
        session: Session,
        user: User,
        device: Device,
        line: str,
        error: LiveResponseError,
        outcome: str,
        command: str | None = None,
    ) -> str:
        now = time.time()
        row = Command(
            id=f"cmd_{uuid.uuid4().hex[:16]}",
            tenant_id=session.tenant_id,
            session_id=session.id,
            user_name=user.name,
            device_name=device.name,
            command_line=line,
            command=command,  # set when the command is known (a denial, a prerequisite) and was never sent
            args_json="{}",
            started_at=now,
            ended_at=now,
            status="failed",
            output=None,
            errors=error.message,
        )
        detail = {"command_id": row.id, "session": session.id, "device": device.id, "command_line": line}
        detail["error"] = error.code
        await self.store.add_command(row, AuditEvent(session.tenant_id, user.name, "command", outcome, detail))
        return row.id

    async def submit(
        self,
        session: Session,
        user: User,
        device: Device,
        permissions: frozenset[str],
        line: str,
        settings: dict[str, Any],
        subscriber: asyncio.Queue[dict[str, Any]] | None = None,
    ) -> Running:
        """Validate, log and dispatch one line. Refusals raise with ``command_id`` set in the error fields."""
        try:
            parsed = parse_line(line)
        except CommandLineError as exc:
            exc.fields["command_id"] = await self._log_refusal(session, user, device, line, exc, "failure")
            raise
        spec = lookup(parsed.command)
        assert spec is not None
        if spec.runs is Runs.CONSOLE:
            err = LiveResponseError(f"{spec.name} runs in the console, not on the device")
            err.fields["command_id"] = await self._log_refusal(session, user, device, line, err, "failure")
            raise err
        needed = command_permission(spec)
        if needed is not None and needed not in permissions:
            denied = PermissionDenied(
                f"{spec.name} needs the permission {needed} ({spec.tier} tier); your role {user.role} lacks it",
                permission=str(needed),
            )
            denied.fields["command_id"] = await self._log_refusal(
                session, user, device, line, denied, "denied", command=spec.name
            )
            raise denied
        if spec.runs is Runs.SERVER:
            return await self._run_on_server(session, user, device, line, parsed, spec, subscriber)
        link = self.gateway.link(device.id)
        if link is None:
            offline = DeviceOffline(f"device {device.name} went offline; last seen {iso_seconds(device.last_seen)}")
            offline.fields["command_id"] = await self._log_refusal(session, user, device, line, offline, "failure")
            raise offline
        entity: dict[str, Any] | None = None
        if spec.prerequisite is not None:
            try:
                if (plan := plan_prerequisite(self.cwd.get(session.id, session.cwd), parsed, spec)) is not None:
                    entity = await self._require_prerequisite(
                        session, user, device, permissions, line, parsed, plan, settings
                    )
            except Refused as refused:
                refused.error.fields["command_id"] = await self._log_refusal(
                    session, user, device, line, refused.error, "failure", command=spec.name
                )
                raise refused.error from None
        library: dict[str, Any] = {}
        if (prepare := self.envelope_preparers.get(spec.name)) is not None:
            try:
                library = await prepare(session, user, device, dict(parsed.args), settings)
            except LiveResponseError as exc:
                outcome = "denied" if exc.http_status == 403 else "failure"
                exc.fields["command_id"] = await self._log_refusal(
                    session, user, device, line, exc, outcome, command=spec.name
                )
                raise
        timeout_s = float(settings[spec.timeout.value])
        run = self._begin(session, user, device, line, parsed, spec, subscriber)
        now = run.started_at
        args: dict[str, Any] = dict(parsed.args)
        args["requested_by"] = user.name  # remediation records keep who asked (the envelope is signed)
        if entity is not None and spec.name == "remediate":
            args["entity"] = entity  # the agent acts only on what the analyst listed (and checks it still is)
        if spec.name == "getfile":
            args.update(await self._open_transfer(run, session, user, device, parsed))
        envelope = Envelope(
            kind="run",
            envelope_id=uuid.uuid4().hex,
            command_id=run.command_id,
            device_id=device.id,
            session_id=session.id,
            issued_at=now,
            expires_at=now + ENVELOPE_TTL_S,
            command=spec.name,
            args=args,
            cwd=self.cwd.get(session.id, session.cwd),
            timeout_s=timeout_s,
            limits={k: int(settings[k]) for k in ("fileinfo_hash_max_bytes", "getfile_max_bytes")},
            library=library,
        )
        try:
            await link.send(sign(envelope, self.signing_key))
        except Exception:  # the socket died between lookup and send
            await self._finish(run, "failed", None, {"code": "device_offline", "message": "device disconnected"})
            raise DeviceOffline(f"device {device.name} disconnected while the command was sent") from None
        run.deadline = now + timeout_s
        loop = asyncio.get_running_loop()
        run.timeout_handle = loop.call_later(timeout_s + 5.0, lambda: self._spawn(self._time_out(run, timeout_s)))
        return run

    def _begin(
        self,
        session: Session,
        user: User,
        device: Device,
        line: str,
        parsed: ParsedLine,
        spec: CommandSpec,
        subscriber: asyncio.Queue[dict[str, Any]] | None,
    ) -> Running:
        """A command under way: in memory at once; its 'running' log row and audit record are written
        while the device works (DR-9), and _finish waits for that write before its own."""
        now = time.time()
        run = Running(
            command_id=f"cmd_{uuid.uuid4().hex[:16]}",
            session_id=session.id,
            tenant_id=session.tenant_id,
            device_id=device.id,
            user_name=user.name,
            spec=spec,
            parsed=parsed,
            started_at=now,
        )
        if subscriber is not None:
            run.subscribers.append(subscriber)
        row = Command(
            id=run.command_id,
            tenant_id=session.tenant_id,
            session_id=session.id,
            user_name=user.name,
            device_name=device.name,
            command_line=line,
            command=spec.name,
            args_json=json.dumps(parsed.args, ensure_ascii=False),
            started_at=now,
            status="running",
        )
        detail = {"command_id": run.command_id, "session": session.id, "device": device.id, "command_line": line}
        audit = AuditEvent(session.tenant_id, user.name, "command", "success", detail)
        run.logged = asyncio.ensure_future(self.store.add_command(row, audit, active=True))
        self._settling[run.command_id] = run
        self.running[run.command_id] = run
        return run

    async def _run_on_server(
        self,
        session: Session,
        user: User,
        device: Device,
        line: str,
        parsed: ParsedLine,
        spec: CommandSpec,
        subscriber: asyncio.Queue[dict[str, Any]] | None,
    ) -> Running:
        """A catalogue command the server answers itself: logged and audited like the others."""
        handler = self.server_commands.get(spec.name)
        run = self._begin(session, user, device, line, parsed, spec, subscriber)

        async def answer() -> None:
            try:
                if handler is None:
                    raise LiveResponseError(f"{spec.name} is not served by this server")
                result = await handler(session, user, dict(parsed.args))
            except LiveResponseError as exc:
                await self._finish(run, "failed", None, exc.to_wire())
                return
            if isinstance(result, list):
                run.rows_json.extend(json.dumps(r, ensure_ascii=False) for r in result)
                run.rows_count += len(result)
                await self._finish(run, "completed", None, None, tail_rows=result)
            else:
                await self._finish(run, "completed", result, None)

        self._spawn(answer())
        return run

    # -- prerequisites and getfile (SPEC §4, §7) ---------------------------------

    async def _require_prerequisite(
        self,
        session: Session,
        user: User,
        device: Device,
        permissions: frozenset[str],
        line: str,
        parsed: ParsedLine,
        plan: Prerequisite,
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        """The prerequisite's result for the same entity in this session; with -auto it is run first.
        Refusals raise Refused (the caller logs them)."""
        found = await self._prerequisite_result(session, plan)
        if found is None and parsed.args.get("auto"):
            first = await self.submit(session, user, device, permissions, plan.auto_line, settings)
            await first.done.wait()
            assert first.final is not None
            if first.final["status"] != "completed":
                reason = (first.final.get("error") or {}).get("message", first.final["status"])
                raise Refused(CommandFailed(f"{plan.auto_line} (run by -auto) failed: {reason}"))
            found = await self._prerequisite_result(session, plan)
            if found is None:
                raise Refused(NotFound(f"{plan.auto_line} (run by -auto) did not list {plan.entity}"))
        if found is None:
            raise Refused(
                PrerequisiteMissing(
                    f"{parsed.command} needs {plan.command} of {plan.entity} first in this session: "
                    f"run '{plan.auto_line}', or add -auto",
                    prerequisite=plan.command,
                )
            )
        if parsed.command == "getfile":
            refusal = getfile_refusal(found, plan.entity, int(settings["getfile_max_bytes"]))
            if refusal is not None:
                raise Refused(refusal)
        return found

    async def _prerequisite_result(self, session: Session, plan: Prerequisite) -> dict[str, Any] | None:
        """The newest completed result of plan.command in this session that shows the entity."""
        await self.settled(session.id)
        for row in reversed(await self.store.commands(session.tenant_id, session_id=session.id)):
            if row.command != plan.command or row.status != "completed" or not row.output:
                continue
            text = row.output
            if row.output_blob is not None:  # a long listing: the log row holds a preview, the blob all of it
                text = (await asyncio.to_thread(self.blobs.read, row.output_blob)).decode()
            try:
                result = json.loads(text)
            except ValueError:
                continue
            candidates = result if isinstance(result, list) else [result]
            matches = [c for c in candidates if isinstance(c, dict) and shows(c, plan)]
            if plan.key == "name" and not matches and plan.command == "services":
                matches = [c for c in candidates if isinstance(c, dict) and c.get("name") == f"{plan.value}.service"]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                where = ", ".join(str(c.get("path")) for c in matches[:5])
                raise Refused(CommandFailed(f"{plan.entity} names {len(matches)} entries ({where}): give the path"))
        return None

    async def _open_transfer(
        self, run: Running, session: Session, user: User, device: Device, parsed: ParsedLine
    ) -> dict[str, Any]:
        target = resolve_lexically(self.cwd.get(session.id, session.cwd), str(parsed.args["path"]))
        transfer = Transfer(
            id=uuid.uuid4().hex,
            tenant_id=session.tenant_id,
            session_id=session.id,
            command_id=run.command_id,
            device_id=device.id,
            device_name=device.name,
            user_name=user.name,
            path=target,
            name=posixpath.basename(target) or "file",
            received_bytes=0,
            status="receiving",
            created_at=time.time(),
        )
        await self.transfers.add(transfer)
        await self.receiver.open(transfer)
        run.transfer_id = transfer.id
        return {"path": target, "transfer_id": transfer.id, "offset": 0, **self.uploads.grant(transfer.id, device.id)}

    def _progress(self, incoming: Incoming) -> None:
        if incoming.received - incoming.last_progress >= PROGRESS_EVERY_BYTES:
            incoming.last_progress = incoming.received
            run = self.running.get(incoming.transfer.command_id)
            if run is not None:
                total = incoming.transfer.size
                run.publish(
                    {"type": "progress", "command_id": run.command_id, "bytes": incoming.received, "total": total}
                )

    async def on_agent_connect(self, link: AgentLink) -> None:
        """Resume every interrupted transfer of this device from its durable offset."""
        for run in [r for r in self.running.values() if r.device_id == link.device_id and r.interrupted]:
            await self._resume(link, run)

    async def _resume(self, link: AgentLink, run: Running) -> None:
        """Sign a new getfile envelope for the same command: the durable offset, the file's identity, a new ticket."""
        assert run.transfer_id is not None
        transfer = await self.transfers.get(run.transfer_id)
        if transfer is None:
            return
        incoming = await self.receiver.open(transfer)
        run.interrupted = False
        now = time.time()
        expect = (
            None
            if transfer.size is None
            else {"size": transfer.size, "mtime_ns": transfer.mtime_ns, "inode": transfer.inode}
        )
        envelope = Envelope(
            kind="run",
            envelope_id=uuid.uuid4().hex,
            command_id=run.command_id,
            device_id=run.device_id,
            session_id=run.session_id,
            issued_at=now,
            expires_at=now + ENVELOPE_TTL_S,
            command="getfile",
            args={
                "path": transfer.path,
                "transfer_id": transfer.id,
                "offset": incoming.received,
                "expect": expect,
                **self.uploads.grant(transfer.id, run.device_id),
            },
            timeout_s=max(1.0, run.deadline - now),
            limits={"getfile_max_bytes": transfer.size or 0} if transfer.size is not None else {},
        )
        log.info("resuming transfer %s of %s at byte %d", transfer.id, transfer.path, incoming.received)
        run.publish(
            {
                "type": "progress",
                "command_id": run.command_id,
                "bytes": incoming.received,
                "total": transfer.size,
                "resumed": True,
            }
        )
        await link.send(sign(envelope, self.signing_key))

    async def _resume_in_place(self, link: AgentLink, run: Running) -> bool:
        """The upload's connection broke while the device stayed connected: resume now, unless the last
        resume made no progress (then the command fails with the device's message)."""
        assert run.transfer_id is not None
        await self.receiver.interrupt(run.transfer_id)
        transfer = await self.transfers.get(run.transfer_id)
        if transfer is None or transfer.received_bytes == run.resumed_at:
            return False
        run.resumed_at = transfer.received_bytes
        await self._resume(link, run)
        return True

    async def recover(self) -> None:
        """After a server restart: unfinished transfers wait for their device to come back."""
        for transfer in await self.transfers.unfinished():
            row = await self.store.command(transfer.command_id)
            spec = lookup("getfile")
            if row is None or spec is None or row.status != "running":
                await self.receiver.discard(transfer.id, "its command is gone")
                continue
            settings = await self.store.settings(transfer.tenant_id)
            parsed = ParsedLine(line=row.command_line, command="getfile", args=json.loads(row.args_json))
            run = Running(
                command_id=row.id,
                session_id=row.session_id,
                tenant_id=row.tenant_id,
                device_id=transfer.device_id,
                user_name=row.user_name,
                spec=spec,
                parsed=parsed,
                started_at=row.started_at,
                transfer_id=transfer.id,
                interrupted=True,
            )
            run.deadline = row.started_at + float(settings[spec.timeout.value])
            self.running[run.command_id] = run
            self._settling[run.command_id] = run
            log.info(
                "transfer %s of %s waits to resume at byte %d", transfer.id, transfer.path, transfer.received_bytes
            )

    async def _getfile_done(
        self, run: Running, message: m.Done
    ) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
        assert run.transfer_id is not None
        if message.status != "completed" or message.result is None:
            await self.receiver.discard(run.transfer_id, (message.error or {}).get("message", message.status))
            return message.status, None, message.error
        try:
            transfer = await self.receiver.complete(
                run.transfer_id, str(message.result.get("sha256")), int(message.result.get("size", -1))
            )
        except CommandFailed as exc:
            return "failed", None, exc.to_wire()
        result = {
            "path": transfer.path,
            "size": transfer.size,
            "sha256": transfer.sha256,
            "download_id": transfer.id,
            "name": transfer.name,
            "resumed_from": message.result.get("resumed_from", 0),
        }
        return "completed", result, None

    def notify(self, session_id: str, event: dict[str, Any]) -> None:
        """Tell every console on a session something that is not a command's output."""
        for queue in self.listeners.get(session_id, set()):
            queue.put_nowait(event)

    def busy_sessions(self) -> set[str]:
        """Sessions with a command or transfer under way: they are active, whatever the clock says (SPEC §6)."""
        return {r.session_id for r in self.running.values()}

    async def settled(self, session_id: str | None = None) -> None:
        """Wait until every finished command (of one session) is in the store: readers of the log call this."""
        for run in [r for r in list(self._settling.values()) if session_id in (None, r.session_id)]:
            if run.final is None:  # still running: its 'running' row is what there is to see
                if run.logged is not None:
                    await asyncio.shield(run.logged)
            else:
                await run.persisted.wait()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _time_out(self, run: Running, timeout_s: float) -> None:
        if run.final is not None:
            return
        await self._send_cancel(run)
        message = f"{run.spec.name} timed out after {timeout_s:g} s ({run.spec.timeout.value})"
        await self._finish(run, "timed_out", None, {"code": "timed_out", "message": message})

    # -- cancel -------------------------------------------------------------

    async def cancel(self, command_id: str, session_id: str | None = None) -> Running:
        run = self.running.get(command_id)
        if run is None or (session_id is not None and run.session_id != session_id):
            raise NotFound(f"command {command_id} is not running")
        run.cancel_requested = True
        await self._send_cancel(run)
        loop = asyncio.get_running_loop()
        loop.call_later(CANCEL_GRACE_S, lambda: self._spawn(self._cancel_unconfirmed(run)))
        return run

    async def _send_cancel(self, run: Running) -> None:
        link = self.gateway.link(run.device_id)
        if link is None:
            return
        now = time.time()
        envelope = Envelope(
            kind="cancel",
            envelope_id=uuid.uuid4().hex,
            command_id=run.command_id,
            device_id=run.device_id,
            session_id=run.session_id,
            issued_at=now,
            expires_at=now + ENVELOPE_TTL_S,
        )
        try:
            await link.send(sign(envelope, self.signing_key))
        except Exception:
            log.warning("could not send cancel for %s", run.command_id)

    async def _cancel_unconfirmed(self, run: Running) -> None:
        if run.final is None:
            error = {"code": "cancelled", "message": "cancelled; the device did not confirm within 10 s"}
            await self._finish(run, "cancelled", None, error)

    # -- results from the agent ---------------------------------------------

    async def on_agent_message(self, link: AgentLink, message: m.Rows | m.Done) -> None:
        run = self.running.get(message.command_id)
        if run is None or run.device_id != link.device_id:
            log.warning("device %s sent results for unknown command %s", link.device_id, message.command_id)
            return
        if run.transfer_id is not None:
            if isinstance(message, m.Rows):
                for row in message.rows:
                    if row.get("event") == "transfer_start":
                        await self.receiver.on_start(run.transfer_id, row)
                return
            broke_off = (message.error or {}).get("code") == TRANSFER_INTERRUPTED and not run.cancel_requested
            if broke_off and await self._resume_in_place(link, run):
                return
            status, result, error = await self._getfile_done(run, message)
            await self._finish(run, status, result, error)
            return
        run.rows_json.extend(json.dumps(r, ensure_ascii=False) for r in message.rows)
        run.rows_count += len(message.rows)
        if isinstance(message, m.Rows):
            run.publish({"type": "rows", "command_id": run.command_id, "rows": message.rows})
            return
        await self._finish(run, message.status, message.result, message.error, tail_rows=message.rows)

    async def on_agent_disconnect(self, link: AgentLink) -> None:
        for run in [r for r in self.running.values() if r.device_id == link.device_id and r.transfer_id]:
            if not run.cancel_requested:
                await self.receiver.interrupt(str(run.transfer_id))
                run.interrupted = True
                run.publish(
                    {"type": "notice", "message": "the device disconnected; the transfer resumes when it is back"}
                )
        for run in [r for r in self.running.values() if r.device_id == link.device_id and not r.transfer_id]:
            error = {"code": "device_offline", "message": "the device disconnected before the command finished"}
            await self._finish(run, "failed", None, error)

    async def _finish(
        self,
        run: Running,
        status: str,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        tail_rows: list[dict[str, Any]] | None = None,
    ) -> None:
        if run.final is not None:
            return
        if run.timeout_handle is not None:
            run.timeout_handle.cancel()
        ended = time.time()
        if run.spec.result_for(run.parsed.args) is ResultShape.ROWS:
            output_text: str | None = (
                "[" + ",".join(run.rows_json) + "]" if run.rows_count or status == "completed" else None
            )
        else:
            output_text = None if result is None else json.dumps(result, ensure_ascii=False)
        run.final = {
            "type": "done",
            "command_id": run.command_id,
            "status": status,
            "result": result,
            "error": error,
            "rows": run.rows_count,
            "tail_rows": tail_rows or [],  # the listing's last rows, not sent as a rows event
            "duration_s": round(ended - run.started_at, 6),
        }
        self.running.pop(run.command_id, None)
        values: dict[str, Any] = {
            "status": status,
            "ended_at": ended,
            "errors": None if error is None else error["message"],
        }
        if output_text is not None:
            size = len(output_text.encode())
            values["output_bytes"] = size
            if size > INLINE_OUTPUT_BYTES:
                values["output_blob"] = await asyncio.to_thread(self.blobs.put_bytes, output_text.encode())
                values["output"] = _preview(output_text)
            else:
                values["output"] = output_text
        run.rows_json = []
        if run.transfer_id is not None and status != "completed":
            await self.receiver.discard(run.transfer_id, (error or {}).get("message", status))
        session_values: dict[str, Any] = {"last_activity_at": ended}
        if run.spec.name == "cd" and status == "completed" and result is not None and "cwd" in result:
            session_values["cwd"] = self.cwd[run.session_id] = str(result["cwd"])
        # The analyst hears of the end at once; the log row follows (DR-9) and readers wait for it.
        run.publish(run.final)
        run.done.set()
        try:
            if run.logged is not None:
                await run.logged
            await self.store.finish_command(run.command_id, run.session_id, session_values, **values)
            if (audit := remediation_audit(run, status, result, error)) is not None:
                await self.store.audit(audit)
        finally:
            run.persisted.set()
            self._settling.pop(run.command_id, None)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for run in list(self.running.values()):
            await self._finish(run, "failed", None, {"code": "server_stopped", "message": "the server stopped"})
