"""Permissions and roles (SPEC §8): the one policy table.

Every catalogue command maps to a permission through its tier; every API
route declares the permission it needs (api/deps.py). tests/test_rbac.py
proves none is forgotten.
"""

from __future__ import annotations

from enum import StrEnum

from liveresponse.protocol.catalogue import CommandSpec, Tier


class Permission(StrEnum):
    DEVICES_READ = "devices.read"
    LIVE_RESPONSE_BASIC = "live_response.basic"
    LIVE_RESPONSE_ADVANCED = "live_response.advanced"
    LIBRARY_MANAGE = "library.manage"
    SETTINGS_MANAGE = "settings.manage"
    USERS_MANAGE = "users.manage"
    AUDIT_READ = "audit.read"


ALL = frozenset(Permission)

BUILTIN_ROLES: dict[str, frozenset[Permission]] = {
    "viewer": frozenset({Permission.DEVICES_READ}),
    "responder": frozenset({Permission.DEVICES_READ, Permission.LIVE_RESPONSE_BASIC}),
    "advanced-responder": frozenset(
        {Permission.DEVICES_READ, Permission.LIVE_RESPONSE_BASIC, Permission.LIVE_RESPONSE_ADVANCED}
    ),
    "security-admin": ALL - {Permission.USERS_MANAGE},
    "admin": ALL,
}

TIER_PERMISSION: dict[Tier, Permission | None] = {
    Tier.BASIC: Permission.LIVE_RESPONSE_BASIC,
    Tier.ADVANCED: Permission.LIVE_RESPONSE_ADVANCED,
    Tier.CONSOLE: None,
}


def permissions_of(role: str) -> frozenset[Permission]:
    return BUILTIN_ROLES.get(role, frozenset())


def command_permission(spec: CommandSpec) -> Permission | None:
    return TIER_PERMISSION[spec.tier]
