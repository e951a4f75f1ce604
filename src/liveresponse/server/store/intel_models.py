"""Tables of the tenant's threat intelligence for ``analyze`` (SPEC §5): hash indicators and YARA rule sets.
Migration 0006."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from liveresponse.server.store.models import Base


class Indicator(Base):
    """One file hash of the tenant's indicator list, with the verdict it gives (``lr admin ioc add``)."""

    __tablename__ = "indicators"
    __table_args__ = (UniqueConstraint("tenant_id", "sha256"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    sha256: Mapped[str] = mapped_column(String(64))  # lower-case hex
    verdict: Mapped[str] = mapped_column(String(20))  # malicious | suspicious | clean
    title: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class RuleSet(Base):
    """One YARA rule file of the tenant (``lr admin rules add``), kept as source; it compiled when it was added."""

    __tablename__ = "rule_sets"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))  # of the source's UTF-8 bytes
    size: Mapped[int] = mapped_column(BigInteger)
    rule_count: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
