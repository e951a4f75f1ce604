"""The agent's dispatch table: catalogue name -> handler.

Each module in this package that handles a command defines ``COMMAND`` (its
catalogue name) and ``run(ctx, args)``. Discovery keeps the table in one place
without every new command editing a shared list.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from liveresponse.agent import commands as _package
from liveresponse.agent.commands.context import Handler

_NOT_HANDLERS = {"context", "dispatch"}


@cache
def handlers() -> dict[str, Handler]:
    table: dict[str, Handler] = {}
    for info in pkgutil.iter_modules(_package.__path__):
        if info.name in _NOT_HANDLERS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_package.__name__}.{info.name}")
        name = getattr(module, "COMMAND", None)
        if name is None:
            continue
        if name in table:
            raise RuntimeError(f"two handlers for command {name!r}")
        table[name] = module.run
    return table
