"""Pure protocol layer: messages, codec, command catalogue, command line, signing.

Nothing here imports asyncio, touches the OS or a database; server, agent and
console all build on it (docs/architecture.md).
"""

PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOL_VERSIONS = (1,)
