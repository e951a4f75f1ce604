"""Tables of the tenant library and its script publishers (SPEC §5, §7). Migration 0005."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from liveresponse.server.store.models import Base


class LibraryFile(Base):
    """One library file; its bytes are the blob ``sha256`` in the content-addressed blob store."""

    __tablename__ = "library_files"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    parameters_description: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Detached Ed25519 signature (base64) over the sha256 statement (protocol/library.py); cleared on overwrite.
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    publisher: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class Publisher(Base):
    """A trusted script publisher of a tenant: an Ed25519 public key (base64 of the raw 32 bytes)."""

    __tablename__ = "publishers"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(100))
    public_key: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[float] = mapped_column(Float)
