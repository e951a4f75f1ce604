"""The app factory: ``make_app(config, store)`` wires gateway, dispatcher and routes (STYLE.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from liveresponse import __version__
from liveresponse.protocol.errors import LiveResponseError
from liveresponse.server.api import (
    audit,
    auth,
    commands,
    console_ws,
    devices,
    downloads,
    enroll,
    library,
    sessions,
    transfers,
)
from liveresponse.server.api.deps import caller_of
from liveresponse.server.blobs import BlobStore
from liveresponse.server.config import ServerConfig
from liveresponse.server.dispatcher import Dispatcher
from liveresponse.server.gateway import Gateway
from liveresponse.server.idle import SWEEP_EVERY_S, IdleReaper
from liveresponse.server.intel import IntelService
from liveresponse.server.library import LibraryService
from liveresponse.server.pki import Pki
from liveresponse.server.state import AppState
from liveresponse.server.store.models import User
from liveresponse.server.store.store import Store

log = logging.getLogger("liveresponse.server")


async def _permissions(state: AppState, user: User) -> frozenset[str]:
    return (await caller_of(state, user)).permissions


def make_app(
    config: ServerConfig,
    store: Store,
    pki: Pki,
    clock: Callable[[], float] = time.time,
    idle_sweep_s: float = SWEEP_EVERY_S,
) -> FastAPI:
    gateway = Gateway(store)
    blobs = BlobStore(config.data_dir / "blobs")
    dispatcher = Dispatcher(store, gateway, blobs, pki.command_key())
    state = AppState(config=config, store=store, pki=pki, gateway=gateway, dispatcher=dispatcher, blobs=blobs)
    idle = IdleReaper(store, dispatcher, clock, idle_sweep_s)  # the lifespan owns its loop (SPEC §6)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await dispatcher.recover()
        idle_loop = asyncio.create_task(idle.run(), name="idle-sessions")
        yield
        idle_loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await idle_loop
        await dispatcher.close()
        dispatcher.receiver.close_all()

    app = FastAPI(
        title="liveresponse",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.lr = state
    app.state.idle = idle  # tests sweep it by hand with an injected clock
    app.state.library = LibraryService(store, blobs, lambda user: _permissions(state, user))
    app.state.library.install(dispatcher.server_commands, dispatcher.envelope_preparers)
    IntelService(store, blobs, app.state.library).install(dispatcher.envelope_preparers)

    @app.exception_handler(LiveResponseError)
    async def _lr_error(_request: Request, exc: LiveResponseError) -> JSONResponse:
        return JSONResponse({"error": exc.to_wire()}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"bad request: {where}: {first.get('msg', 'invalid')}"
        return JSONResponse({"error": {"code": "bad_request", "message": message}}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # No traceback or internal detail crosses to a peer (STYLE.md); the log keeps it.
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse({"error": {"code": "internal", "message": "internal error; see the server log"}}, 500)

    @app.get("/api/v1/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "node": config.node_id}

    @app.websocket("/agent/v1/connect")
    async def agent_connect(websocket: WebSocket) -> None:
        await gateway.serve(websocket)

    for module in (auth, devices, enroll, sessions, commands, console_ws, downloads, audit, library, transfers):
        app.include_router(module.router)
    return app
