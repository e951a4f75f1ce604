"""The agent's upload route for getfile's bytes: one-time tickets bound to transfer and device, offsets
checked, bytes through FileReceiver (SPEC §7, §11; DR-12). Tier 2."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field

from liveresponse.protocol import messages as m
from liveresponse.protocol.catalogue import lookup
from liveresponse.protocol.commandline import ParsedLine
from liveresponse.protocol.transfer import TRANSFER_INTERRUPTED, upload_path
from liveresponse.server.dispatcher import Running
from liveresponse.server.store.transfer_models import Transfer
from tests.server.conftest import World
from tests.server.test_idle import open_session


async def open_transfer(world: World, device_id: str, session_id: str) -> Transfer:
    transfer = Transfer(
        id=uuid.uuid4().hex,
        tenant_id=world.tenant_id,
        session_id=session_id,
        command_id="cmd_test",
        device_id=device_id,
        device_name="host",
        user_name="alice",
        path="/evidence.bin",
        name="evidence.bin",
        received_bytes=0,
        status="receiving",
        created_at=time.time(),
    )
    await world.state.dispatcher.transfers.add(transfer)
    await world.state.dispatcher.receiver.open(transfer)
    return transfer


async def test_a_ticket_uploads_once_and_only_its_own_transfer(world: World) -> None:
    headers = await world.user("alice", "responder")
    device = await world.device("host-1")
    other_device = await world.device("host-2")
    session = await open_session(world, headers, device.id)
    other_session = await open_session(world, await world.user("bob", "responder"), other_device.id)
    uploads = world.state.dispatcher.uploads
    mine = await open_transfer(world, device.id, session["id"])
    theirs = await open_transfer(world, other_device.id, other_session["id"])
    path = upload_path(mine.id)

    unknown = await world.http.put(path, params={"offset": 0, "ticket": "made-up"}, content=b"x")
    assert unknown.status_code == 404 and "ticket is unknown, used or expired" in unknown.text

    for_theirs = uploads.grant(theirs.id, other_device.id)["ticket"]  # a valid ticket, for another transfer
    wrong = await world.http.put(path, params={"offset": 0, "ticket": for_theirs}, content=b"x")
    assert wrong.status_code == 404
    bound_elsewhere = uploads.grant(mine.id, other_device.id)["ticket"]  # bound to another device
    elsewhere = await world.http.put(path, params={"offset": 0, "ticket": bound_elsewhere}, content=b"x")
    assert elsewhere.status_code == 404 and "not open for this device" in elsewhere.text

    grant = uploads.grant(mine.id, device.id)
    assert grant["upload_path"] == path
    bad_offset = await world.http.put(path, params={"offset": 5, "ticket": grant["ticket"]}, content=b"x")
    assert bad_offset.status_code == 409
    assert "at offset 5, but the server holds 0 bytes" in bad_offset.json()["error"]["message"]

    data = b"evidence " * 100_000
    ticket = uploads.grant(mine.id, device.id)["ticket"]
    ok = await world.http.put(path, params={"offset": 0, "ticket": ticket}, content=data)
    assert ok.status_code == 200, ok.text
    assert ok.json()["received_bytes"] == len(data)
    again = await world.http.put(path, params={"offset": len(data), "ticket": ticket}, content=b"more")
    assert again.status_code == 404  # one use
    incoming = world.state.dispatcher.receiver.incoming[mine.id]
    assert incoming.received == len(data) and incoming.hasher.hexdigest() == hashlib.sha256(data).hexdigest()

    # A resume continues at the server's offset with a new ticket; past the file's size is refused.
    incoming.transfer.size = len(data) + 4
    resume = uploads.grant(mine.id, device.id)["ticket"]
    rest = await world.http.put(path, params={"offset": len(data), "ticket": resume}, content=b"tail!")
    assert rest.status_code == 413 and "went past it" in rest.text
    assert incoming.received == len(data)
    world.state.dispatcher.receiver.close_all()


@dataclass
class RecordingLink:
    device_id: str
    sent: list[m.Signed] = field(default_factory=list)

    async def send(self, message: m.Signed) -> None:
        self.sent.append(message)


async def test_an_upload_that_broke_off_resumes_once_per_offset(world: World) -> None:
    headers = await world.user("alice", "responder")
    device = await world.device("host-1")
    session = await open_session(world, headers, device.id)
    transfer = await open_transfer(world, device.id, session["id"])
    dispatcher = world.state.dispatcher
    spec = lookup("getfile")
    assert spec is not None
    run = Running(
        command_id=transfer.command_id,
        session_id=session["id"],
        tenant_id=world.tenant_id,
        device_id=device.id,
        user_name="alice",
        spec=spec,
        parsed=ParsedLine(line="getfile /evidence.bin", command="getfile", args={"path": "/evidence.bin"}),
        started_at=time.time(),
        transfer_id=transfer.id,
    )
    run.deadline = time.time() + 600
    dispatcher.running[run.command_id] = run
    link = RecordingLink(device.id)
    broke = m.Done(
        command_id=run.command_id, status="failed", error={"code": TRANSFER_INTERRUPTED, "message": "broke off"}
    )
    await dispatcher.on_agent_message(link, broke)  # type: ignore[arg-type]
    assert run.final is None and len(link.sent) == 1
    args = json.loads(link.sent[0].envelope)["args"]
    assert args["offset"] == 0 and args["transfer_id"] == transfer.id and args["ticket"]
    assert args["upload_path"] == upload_path(transfer.id)
    await dispatcher.on_agent_message(link, broke)  # type: ignore[arg-type]  # no progress since: it fails
    assert run.final is not None and run.final["status"] == "failed" and len(link.sent) == 1
    assert (await dispatcher.transfers.get(transfer.id)).status == "failed"  # type: ignore[union-attr]
