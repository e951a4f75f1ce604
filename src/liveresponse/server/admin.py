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
from liveresponse.server.rbac import BUILTIN_ROLES
from liveresponse.server.settings_keys import SETTING_KEYS
from liveresponse.server.store.store import DEFAULT_TENANT, Store

ACTOR = "admin-cli"


class AdminError(LiveResponseError):
    code = "admin"


async def _tenant_id(store: Store, name: str | None) -> str:
    return (await store.tenant_by_name(name or DEFAULT_TENANT)).id


async def run_admin(config: ServerConfig, args: Any) -> int:
    store, pki = await prepare(config)
    try:
        return await _dispatch(config, store, pki, args)
    finally:
        await store.close()


async def _dispatch(config: ServerConfig, store: Store, pki: Any, args: Any) -> int:
    what = args.admin_command
    if what == "init":
        print(f"initialised {config.data_dir}: tenant {DEFAULT_TENANT}, CA {pki.ca_pem}")
        return 0
    if what == "user":
        if args.role not in BUILTIN_ROLES:
            raise AdminError(f"unknown role {args.role!r}; built-in roles: {', '.join(BUILTIN_ROLES)}")
        password_hash = None
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
            if not password:
                raise AdminError("--password-stdin read an empty password")
            password_hash = hash_password(password)
        user = await store.add_user(await _tenant_id(store, args.tenant), args.name, args.role, password_hash, ACTOR)
        print(f"user {user.name} ({user.role}) added")
        return 0
    if what == "token":
        tenant_id = await _tenant_id(store, args.tenant)
        user = await store.user_by_name(tenant_id, args.user)
        if user is None:
            raise NotFound(f"no user {args.user!r}; add one with 'lr admin user add'")
        token = new_api_token()
        expires = None if args.expires_days is None else time.time() + args.expires_days * 86400
        await store.add_token(user.id, args.name, token_hash(token), expires)
        print(token)
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
            tenant_id, group_id, token_hash(secret), time.time() + args.expires_hours * 3600, args.uses, ACTOR
        )
        print(token)
        return 0
    if what == "group":
        group = await store.add_group(await _tenant_id(store, args.tenant), args.name, args.remediation_level, ACTOR)
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
