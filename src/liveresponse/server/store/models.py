"""Tables of the store (SPEC §12). Times are UTC epoch seconds (floats).

The schema is created and evolved only by the Alembic migrations in
``migrations/versions``; tests check the two agree.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    # The role assignment's scope (DR-11): a JSON list of device group ids, or NULL for every group.
    group_ids: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Sign-in rate limiting (DR-11): failures in the current window, and the lock they led to.
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_failed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    locked_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class Role(Base):
    """A custom role of one tenant (SPEC §8); the built-in roles live in rbac.py."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(100))
    permissions: Mapped[str] = mapped_column(Text)  # comma-separated permission names, sorted
    created_at: Mapped[float] = mapped_column(Float)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class DeviceGroup(Base):
    __tablename__ = "device_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(100))
    remediation_level: Mapped[str] = mapped_column(String(10))
    # When set, every device of the group counts as this type (workstation/server) for the gates of SPEC §6.
    device_type: Mapped[str | None] = mapped_column(String(20), nullable=True)


class EnrollToken(Base):
    __tablename__ = "enroll_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    group_id: Mapped[str | None] = mapped_column(ForeignKey("device_groups.id"), nullable=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    uses_left: Mapped[int] = mapped_column(Integer)
    # When set, devices enrolled with this token get this type whatever the agent reports.
    device_type: Mapped[str | None] = mapped_column(String(20), nullable=True)


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    group_id: Mapped[str | None] = mapped_column(ForeignKey("device_groups.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(255))
    os: Mapped[str] = mapped_column(String(50))
    device_type: Mapped[str] = mapped_column(String(20))
    public_key: Mapped[str] = mapped_column(Text)
    agent_version: Mapped[str] = mapped_column(String(40))
    enrolled_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float | None] = mapped_column(Float, nullable=True)


class Session(Base):
    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_open", "tenant_id", "ended_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    last_activity_at: Mapped[float] = mapped_column(Float)
    cwd: Mapped[str] = mapped_column(Text)


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_session", "session_id", "started_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"))
    user_name: Mapped[str] = mapped_column(String(100))
    device_name: Mapped[str] = mapped_column(String(255))
    command_line: Mapped[str] = mapped_column(Text)
    command: Mapped[str | None] = mapped_column(String(50), nullable=True)
    args_json: Mapped[str] = mapped_column(Text, default="{}")
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    # Output: the whole JSON document when small, else a preview here and the whole in the blob store.
    output: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_bytes: Mapped[int] = mapped_column(Integer, default=0)
    output_blob: Mapped[str | None] = mapped_column(String(64), nullable=True)
    errors: Mapped[str | None] = mapped_column(Text, nullable=True)


class Setting(Base):
    __tablename__ = "settings"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AuditRecord(Base):
    __tablename__ = "audit"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(60))
    outcome: Mapped[str] = mapped_column(String(20))
    detail_json: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class LockRow(Base):
    """Rows locked with SELECT ... FOR UPDATE to serialise a critical section (store.py)."""

    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    bumped: Mapped[bool] = mapped_column(Boolean, default=False)
    # For the "audit" row: "SEQ:HASH" of the newest record, so deleting the newest records is detected too.
    head: Mapped[str | None] = mapped_column(Text, nullable=True)
