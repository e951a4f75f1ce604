"""The console's channel: one WebSocket per session (DR-2).

client -> server  {"type": "run", "line": "...", "ref": N}
                  {"type": "cancel", "command_id": "..."}
server -> client  {"type": "notice", "message": "..."}          (e.g. the idle warning)
                  {"type": "session_ended", "reason": "..."}
                  {"type": "accepted", "ref": N, "command_id": "...", "command": "dir", "output": ..., ...}
                  {"type": "error", "ref": N, "error": {"code", "message", ...}}
                  {"type": "rows", "command_id": "...", "rows": [...]}
                  {"type": "done", "command_id": "...", "status": "...", "result": ..., "error": ...}
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from liveresponse.protocol.errors import LiveResponseError
from liveresponse.server.api.deps import websocket_caller
from liveresponse.server.api.sessions import command_context, own_open_session
from liveresponse.server.dispatcher import Running
from liveresponse.server.rbac import Permission
from liveresponse.server.state import AppState

router = APIRouter()
log = logging.getLogger("liveresponse.console_ws")


async def _forward(websocket: WebSocket, queue: asyncio.Queue[dict[str, Any]], lock: asyncio.Lock) -> None:
    while True:
        event = await queue.get()
        async with lock:
            await websocket.send_text(json.dumps(event, ensure_ascii=False))
        if event["type"] == "done":
            return


async def _forward_notices(websocket: WebSocket, queue: asyncio.Queue[dict[str, Any]], lock: asyncio.Lock) -> None:
    """Events about the session itself: {"type": "notice", "message"} and {"type": "session_ended", "reason"}."""
    while True:
        event = await queue.get()
        async with lock:
            await websocket.send_text(json.dumps(event, ensure_ascii=False))


@router.websocket("/api/v1/sessions/{session_id}/console")
async def console_channel(websocket: WebSocket, session_id: str) -> None:
    state: AppState = websocket.app.state.lr
    await websocket.accept()
    try:
        caller = await websocket_caller(websocket, Permission.LIVE_RESPONSE_BASIC)
        await own_open_session(state, caller, session_id)
    except LiveResponseError as exc:
        await websocket.send_text(json.dumps({"type": "error", "ref": None, "error": exc.to_wire()}))
        await websocket.close(code=4003)
        return
    send_lock = asyncio.Lock()
    forwarders: set[asyncio.Task[None]] = set()
    notices: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    state.dispatcher.listeners.setdefault(session_id, set()).add(notices)
    async with asyncio.TaskGroup() as tasks:
        forwarders.add(tasks.create_task(_forward_notices(websocket, notices, send_lock)))
        try:
            while True:
                try:
                    message = json.loads(await websocket.receive_text())
                    kind = message.get("type")
                except (ValueError, AttributeError):
                    kind, message = "bad", {}
                if kind == "run" and isinstance(message.get("line"), str):
                    ref = message.get("ref")
                    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
                    try:
                        session, device, settings = await command_context(state, caller, session_id)
                        run: Running = await state.dispatcher.submit(
                            session, caller.user, device, caller.on(device), message["line"], settings, queue
                        )
                    except LiveResponseError as exc:
                        async with send_lock:
                            await websocket.send_text(json.dumps({"type": "error", "ref": ref, "error": exc.to_wire()}))
                        continue
                    except Exception:  # a bug must cost one command, not the analyst's channel
                        log.exception("session %s: the server failed on %r", session_id, message["line"])
                        error = {"code": "internal", "message": "the server failed on this command; see its log"}
                        async with send_lock:
                            await websocket.send_text(json.dumps({"type": "error", "ref": ref, "error": error}))
                        continue
                    accepted = {
                        "type": "accepted",
                        "ref": ref,
                        "command_id": run.command_id,
                        "command": run.spec.name,
                        "args": run.parsed.args,
                        "output": run.parsed.output,
                        "background": run.parsed.background,
                    }
                    async with send_lock:
                        await websocket.send_text(json.dumps(accepted, ensure_ascii=False))
                    task = tasks.create_task(_forward(websocket, queue, send_lock))
                    forwarders.add(task)
                    task.add_done_callback(forwarders.discard)
                elif kind == "cancel" and isinstance(message.get("command_id"), str):
                    try:
                        await state.dispatcher.cancel(message["command_id"], session_id=session_id)
                    except LiveResponseError as exc:
                        async with send_lock:
                            await websocket.send_text(
                                json.dumps({"type": "error", "ref": None, "error": exc.to_wire()})
                            )
                else:
                    error = {"code": "bad_frame", "message": "expected {type: run, line} or {type: cancel, command_id}"}
                    async with send_lock:
                        await websocket.send_text(json.dumps({"type": "error", "ref": None, "error": error}))
        except WebSocketDisconnect:
            for task in list(forwarders):
                task.cancel()
        finally:
            state.dispatcher.listeners.get(session_id, set()).discard(notices)
