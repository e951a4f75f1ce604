"""The one error tree of liveresponse.

Every error a peer can see is a :class:`LiveResponseError` with a stable wire
``code`` and a message written for the analyst. No traceback or internal detail
crosses to a peer: servers and agents turn unexpected exceptions into
``InternalError`` with a neutral message and log the detail locally.

    LiveResponseError                 code
    ├── CommandLineError              parse_error      (position in the line; SPEC §4)
    ├── FrameError                    bad_frame        (malformed or oversized message; SPEC §11)
    ├── EnvelopeRejected              command_rejected (signature, target, freshness, replay; SPEC §11)
    ├── ProtocolVersionError          protocol_version (names both versions)
    ├── AuthError                     unauthenticated
    ├── PermissionDenied              permission_denied (names the missing permission; SPEC §8)
    ├── NotFound                      not_found
    ├── Conflict                      conflict
    ├── SessionRefused                session_refused  (names the reason and the holder; SPEC §6)
    ├── DeviceOffline                 device_offline   (with last-seen time)
    ├── PrerequisiteMissing           prerequisite     (names the prerequisite command)
    ├── LimitExceeded                 limit_exceeded   (names the limit)
    ├── CommandFailed                 command_failed   (a command failed on the device; carries a reason)
    ├── NotAvailable                  not_available    (not on this platform / in this build)
    └── InternalError                 internal
"""

from __future__ import annotations

from typing import Any, ClassVar


class LiveResponseError(Exception):
    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.fields}


class CommandLineError(LiveResponseError):
    code = "parse_error"

    def __init__(self, message: str, position: int, usage: str | None = None) -> None:
        full = message if usage is None else f"{message}\nusage: {usage}"
        super().__init__(full, position=position)
        self.position = position
        self.usage = usage


class FrameError(LiveResponseError):
    code = "bad_frame"


class EnvelopeRejected(LiveResponseError):
    """The agent refused a command envelope. ``reason`` is one of
    ``bad_signature``, ``wrong_device``, ``expired``, ``not_yet_valid``,
    ``replay``, ``malformed``."""

    code = "command_rejected"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)
        self.reason = reason


class ProtocolVersionError(LiveResponseError):
    code = "protocol_version"
    http_status = 400


class AuthError(LiveResponseError):
    code = "unauthenticated"
    http_status = 401


class PermissionDenied(LiveResponseError):
    code = "permission_denied"
    http_status = 403


class NotFound(LiveResponseError):
    code = "not_found"
    http_status = 404


class Conflict(LiveResponseError):
    code = "conflict"
    http_status = 409


class SessionRefused(LiveResponseError):
    code = "session_refused"
    http_status = 409


class DeviceOffline(LiveResponseError):
    code = "device_offline"
    http_status = 409


class PrerequisiteMissing(LiveResponseError):
    code = "prerequisite"
    http_status = 409


class LimitExceeded(LiveResponseError):
    code = "limit_exceeded"
    http_status = 413


class CommandFailed(LiveResponseError):
    code = "command_failed"


class NotAvailable(LiveResponseError):
    code = "not_available"


class InternalError(LiveResponseError):
    code = "internal"
    http_status = 500


ERRORS_BY_CODE: dict[str, type[LiveResponseError]] = {
    cls.code: cls
    for cls in (
        CommandLineError,
        FrameError,
        EnvelopeRejected,
        ProtocolVersionError,
        AuthError,
        PermissionDenied,
        NotFound,
        Conflict,
        SessionRefused,
        DeviceOffline,
        PrerequisiteMissing,
        LimitExceeded,
        CommandFailed,
        NotAvailable,
        InternalError,
    )
}
