"""liveresponse: remote live response for incident responders (see docs/architecture.md)."""

__version__ = "0.1.0"
