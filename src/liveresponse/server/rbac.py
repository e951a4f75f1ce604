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


def permissions_of(role: str, custom: frozenset[Permission] | None = None) -> frozenset[Permission]:
    """A role's permissions: a built-in role's, else the tenant's custom role's (looked up by the caller)."""
    if role in BUILTIN_ROLES:
        return BUILTIN_ROLES[role]
    return custom or frozenset()


def parse_permissions(text: str) -> frozenset[Permission]:
    """``p1,p2`` as given to ``lr admin role add``; an unknown name is an error naming the known ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"name at least one permission; known: {', '.join(Permission)}")
    unknown = [n for n in names if n not in {str(p) for p in Permission}]
    if unknown:
        raise ValueError(f"unknown permission {unknown[0]!r}; known: {', '.join(Permission)}")
    return frozenset(Permission(n) for n in names)


def permissions_on_device(
    permissions: frozenset[str], group_ids: frozenset[str] | None, device_group_id: str | None
) -> frozenset[str]:
    """What a caller may do on one device: all of its role when the assignment covers the device's group."""
    if group_ids is None or (device_group_id is not None and device_group_id in group_ids):
        return permissions
    return frozenset()


def command_permission(spec: CommandSpec) -> Permission | None:
    return TIER_PERMISSION[spec.tier]
