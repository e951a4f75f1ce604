"""``lr admin``: works on the store directly, no running server needed (SPEC §3).

Changes take effect at once on a running server too, because the server reads
settings, roles and users on every request.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from liveresponse.protocol.enrollment import make_enroll_token
from liveresponse.protocol.errors import LiveResponseError, NotFound
from liveresponse.server.config import ServerConfig, read_server_url
from liveresponse.server.credentials import hash_password, new_api_token, token_hash
from liveresponse.server.main import prepare
from liveresponse.server.rbac import BUILTIN_ROLES, parse_permissions
from liveresponse.server.settings_keys import SETTING_KEYS
from liveresponse.server.store.store import DEFAULT_TENANT, AuditEvent, Store

ACTOR = "admin-cli"


class AdminError(LiveResponseError):
    code = "admin"


async def _tenant_id(store: Store, name: str | None) -> str:
    return (await store.tenant_by_name(name or DEFAULT_TENANT)).id


async def _check_role(store: Store, tenant_id: str, role: str) -> None:
    if role in BUILTIN_ROLES or await store.role(tenant_id, role) is not None:
        return
    raise AdminError(
        f"unknown role {role!r}; built-in roles: {', '.join(BUILTIN_ROLES)}; "
        "custom roles are added with 'lr admin role add NAME --permissions p1,p2'"
    )


async def _groups(store: Store, tenant_id: str, names: str | None) -> list[str] | None:
    """``--groups g1,g2``: limit a role assignment to those device groups (DR-11); absent means every group."""
    if names is None:
        return None
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise AdminError("--groups takes one or more device group names, separated by commas")
    return await store.group_ids_by_name(tenant_id, wanted)


async def _governance(store: Store, args: Any) -> int | None:
    """Tenants, roles, assignments and token revocation (SPEC §3, §8); None when ``args`` is none of them."""
    what = args.admin_command
    if what == "tenant":
        tenant = await store.add_tenant(args.name, ACTOR)
        print(f"tenant {tenant.name} added ({tenant.id})")
        return 0
    if what == "role" and args.role_command == "add":
        if args.name in BUILTIN_ROLES:
            raise AdminError(f"{args.name!r} is a built-in role; choose another name")
        try:
            permissions = parse_permissions(args.permissions)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        role = await store.add_role(await _tenant_id(store, args.tenant), args.name, frozenset(permissions), ACTOR)
        print(f"role {role.name} added: {role.permissions}")
        return 0
    if what == "role" and args.role_command == "assign":
        tenant_id = await _tenant_id(store, args.tenant)
        await _check_role(store, tenant_id, args.role)
        group_ids = await _groups(store, tenant_id, args.groups)
        user = await store.assign_role(tenant_id, args.user, args.role, group_ids, ACTOR)
        scope = "every device group" if args.groups is None else f"device groups {args.groups}"
        print(f"user {user.name} now has role {user.role} on {scope}")
        return 0
    if what == "token" and args.token_command == "revoke":
        tenant_id = await _tenant_id(store, args.tenant)
        ref = args.token
        is_id = ref.startswith("tok_")
        token = await store.revoke_token(tenant_id, ref if is_id else None, None if is_id else token_hash(ref), ACTOR)
        print(f"token {token.id} ({token.name}) revoked")
        return 0
    return None


async def run_admin(config: ServerConfig, args: Any) -> int:
    store, pki = await prepare(config)
    try:
        return await _dispatch(config, store, pki, args)
    finally:
        await store.close()


async def _dispatch(config: ServerConfig, store: Store, pki: Any, args: Any) -> int:
    what = args.admin_command
    done = await _governance(store, args)
    if done is not None:
        return done
    if what == "init":
        print(f"initialised {config.data_dir}: tenant {DEFAULT_TENANT}, CA {pki.ca_pem}")
        return 0
    if what == "user":
        tenant_id = await _tenant_id(store, args.tenant)
        await _check_role(store, tenant_id, args.role)
        group_ids = await _groups(store, tenant_id, args.groups)
        password_hash = None
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
            if not password:
                raise AdminError("--password-stdin read an empty password")
            password_hash = hash_password(password)
        user = await store.add_user(tenant_id, args.name, args.role, password_hash, ACTOR, group_ids)
        scope = "" if args.groups is None else f" on device groups {args.groups}"
        print(f"user {user.name} ({user.role}{scope}) added")
        return 0
    if what == "token":
        tenant_id = await _tenant_id(store, args.tenant)
        user = await store.user_by_name(tenant_id, args.user)
        if user is None:
            raise NotFound(f"no user {args.user!r}; add one with 'lr admin user add'")
        token = new_api_token()
        expires = None if args.expires_days is None else time.time() + args.expires_days * 86400
        created = await store.add_token(user.id, args.name, token_hash(token), expires)
        detail = {"token": created.id, "user": user.name, "name": args.name, "expires_at": expires}
        await store.audit(AuditEvent(tenant_id, ACTOR, "token.create", "success", detail))
        print(token)  # shown this once; the store keeps its sha256 only (SPEC §8)
        print(f"token id {created.id} (revoke with 'lr admin token revoke {created.id}')", file=sys.stderr)
        return 0
    if what == "enroll-token":
        tenant_id = await _tenant_id(store, args.tenant)
        group_id = None
        if args.group:
            group = await store.group_by_name(tenant_id, args.group)
            if group is None:
                raise NotFound(f"no device group {args.group!r}; add one with 'lr admin group add'")
            group_id = group.id
        url = args.server_url or read_server_url(config.data_dir)
        if url is None:
            raise AdminError("the server URL is unknown: start 'lr server' once, or pass --server-url")
        token, secret = make_enroll_token(url, pki.fingerprint())
        await store.add_enroll_token(
            tenant_id,
            group_id,
            token_hash(secret),
            time.time() + args.expires_hours * 3600,
            args.uses,
            ACTOR,
            device_type=args.device_type,
        )
        print(token)
        return 0
    if what == "group" and args.group_command == "set":
        if args.remediation_level is None and args.device_type is None:
            raise AdminError("lr admin group set NAME needs --remediation-level or --device-type")
        tenant_id = await _tenant_id(store, args.tenant)
        group = await store.set_group(tenant_id, args.name, args.remediation_level, args.device_type, ACTOR)
        print(f"group {group.name}: remediation level {group.remediation_level}, device type {group.device_type}")
        return 0
    if what == "group":
        tenant_id = await _tenant_id(store, args.tenant)
        group = await store.add_group(tenant_id, args.name, args.remediation_level, ACTOR)
        if args.device_type is not None:
            group = await store.set_group(tenant_id, args.name, None, args.device_type, ACTOR)
        print(f"group {group.name} (remediation level {group.remediation_level}) added")
        return 0
    if what == "settings":
        tenant_id = await _tenant_id(store, args.tenant)
        if args.settings_command == "set":
            value = await store.set_setting(tenant_id, args.key, args.value, ACTOR)
            print(f"{args.key} = {json.dumps(value)}")
            return 0
        values = await store.settings(tenant_id)
        if args.output == "json":
            print(json.dumps(values, indent=2))
        else:
            for key, value in values.items():
                print(f"{key:32} {json.dumps(value):14} {SETTING_KEYS[key].help}")
        return 0
    if what == "publisher":
        from liveresponse.server.library_admin import add_publisher

        return await add_publisher(store, await _tenant_id(store, args.tenant), args.name, args.pubkey, ACTOR)
    if what in ("ioc", "rules"):
        from liveresponse.server.intel import admin_ioc, admin_rules

        intel_command = admin_ioc if what == "ioc" else admin_rules
        return await intel_command(store, await _tenant_id(store, args.tenant), args, ACTOR)
    if what == "audit":
        problems = await store.verify_audit()
        if problems:
            for problem in problems:
                print(f"TAMPERED: {problem}")
            return 1
        count = len(await store.audit_records(limit=10**9))
        print(f"audit chain intact: {count} records")
        return 0
    raise AdminError(f"unknown admin command {what!r}")
