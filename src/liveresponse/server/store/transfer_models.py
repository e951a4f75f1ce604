"""Collected files (SPEC §7): one row per getfile transfer; a finished one is a download."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from liveresponse.server.store.models import Base


class Transfer(Base):
    __tablename__ = "transfers"
    __table_args__ = (Index("ix_transfers_tenant", "tenant_id", "created_at"), Index("ix_transfers_status", "status"))
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"))
    command_id: Mapped[str] = mapped_column(String(40))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    device_name: Mapped[str] = mapped_column(String(255))
    user_name: Mapped[str] = mapped_column(String(100))
    path: Mapped[str] = mapped_column(Text)  # as shown (escaped form, SPEC §5)
    name: Mapped[str] = mapped_column(Text)  # the file name part, for the analyst's side
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    inode: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Bytes known to be on disk (fsynced) in the part file: where a resume starts.
    received_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(20))  # receiving | interrupted | complete | failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
