"""What the app factory wires together, reachable from every route as request.app.state.lr."""

from __future__ import annotations

from dataclasses import dataclass

from liveresponse.server.blobs import BlobStore
from liveresponse.server.config import ServerConfig
from liveresponse.server.dispatcher import Dispatcher
from liveresponse.server.gateway import Gateway
from liveresponse.server.pki import Pki
from liveresponse.server.store.store import Store


@dataclass
class AppState:
    config: ServerConfig
    store: Store
    pki: Pki
    gateway: Gateway
    dispatcher: Dispatcher
    blobs: BlobStore
