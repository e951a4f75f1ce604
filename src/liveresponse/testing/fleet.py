"""Many real agents in one process: ``python -m liveresponse.testing.fleet``.

The race tests of SPEC §6 need twenty online devices; twenty ``lr agent run``
processes would cost a second and tens of MB each. This runs the same
:class:`~liveresponse.agent.transport.Agent` (real enrollment, device keys,
pinned TLS, signed commands) N times on one event loop. It writes the device
ids to ``STATE/devices.json`` once every agent is enrolled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from liveresponse.agent.enroll import enroll
from liveresponse.agent.transport import Agent


async def run_fleet(states: list[Path]) -> None:
    agents = [Agent(state) for state in states]
    async with asyncio.TaskGroup() as tasks:
        for agent in agents:
            tasks.create_task(agent.run_forever())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liveresponse.testing.fleet")
    parser.add_argument("--server", required=True)
    parser.add_argument("--token", required=True, help="an enrollment token with at least --count uses")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--state", required=True, help="folder for the agents' state folders")
    parser.add_argument("--device-type", choices=("workstation", "server"), default="workstation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = Path(args.state)
    states = [base / f"agent-{i}" for i in range(args.count)]
    with ThreadPoolExecutor(8) as pool:  # enrollments are independent: key, TLS, one request each
        ids = list(pool.map(lambda state: enroll(args.server, args.token, state, args.device_type).device_id, states))
    (base / "devices.json").write_text(json.dumps(ids))
    asyncio.run(run_fleet(states))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
