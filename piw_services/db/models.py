"""The PostgreSQL schema. Migrations under ``migrations/`` must match these models.

Order keys (``*_k``) are (timestamp, serial) packed into one bigint: see reorderer/parse.py.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from piw_services.useragent import FIELDS


class Base(DeclarativeBase):
    pass


class UpstreamState(Base):
    """Where we are in upstream's changelog, and the newest upstream time seen (one row)."""

    __tablename__ = "upstream_state"
    __table_args__ = (CheckConstraint("id = 1", name="upstream_state_single_row"),)
    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=1)
    last_serial: Mapped[int] = mapped_column(BigInteger, default=0)
    max_ts: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class HeldRow(Base):
    """Valid changelog rows inside the hold window, keyed by serial; deleted once applied.

    Rows applied at once are not kept: applying a row again changes nothing (the catalog is
    last-writer-wins), so re-reading a range needs no record of it.
    """

    __tablename__ = "held_rows"
    serial: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    k: Mapped[int] = mapped_column(BigInteger, index=True)
    ts: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(Text)
    package: Mapped[str] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    filename: Mapped[str | None] = mapped_column(Text)
    pyver: Mapped[str | None] = mapped_column(Text)
    old_name: Mapped[str | None] = mapped_column(Text)


class MalformedRow(Base):
    """Rows we could not use: kept with the reason so operators can look at them."""

    __tablename__ = "malformed_rows"
    __table_args__ = (
        Index("malformed_rows_serial", "serial", unique=True,
              postgresql_where=text("serial IS NOT NULL")),
        Index("malformed_rows_raw", text("md5(raw)"), unique=True,
              postgresql_where=text("serial IS NULL")),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    serial: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)
    # reorderer/parse.py PARSER_VERSION of the parser that judged it: a newer one reads the
    # row again (reorderer.store.reparse_malformed)
    parser: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())


class Rename(Base):
    """A legacy ``rename from <old>`` row: rows of *old* older than *k* count for *new*."""

    __tablename__ = "renames"
    old: Mapped[str] = mapped_column(Text, primary_key=True)
    new: Mapped[str] = mapped_column(Text, primary_key=True)
    k: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class Package(Base):
    __tablename__ = "packages"
    name: Mapped[str] = mapped_column(Text, primary_key=True)  # PEP 503 canonical
    display_name: Mapped[str] = mapped_column(Text)
    display_k: Mapped[int] = mapped_column(BigInteger, default=0)
    created_k: Mapped[int] = mapped_column(BigInteger, default=0)
    deleted_k: Mapped[int] = mapped_column(BigInteger, default=0)
    quarantine_k: Mapped[int] = mapped_column(BigInteger, default=0)
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False)


class Version(Base):
    # No foreign keys on the catalog: rows are never deleted (deletions are tombstones) and
    # the reorderer writes parents first; FK checks cost a third of a replay's write time.
    __tablename__ = "versions"
    package: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[str] = mapped_column(Text, primary_key=True)
    created_k: Mapped[int] = mapped_column(BigInteger, default=0)
    deleted_k: Mapped[int] = mapped_column(BigInteger, default=0)
    release_k: Mapped[int] = mapped_column(BigInteger, default=0)
    yank_k: Mapped[int] = mapped_column(BigInteger, default=0)
    yanked: Mapped[bool] = mapped_column(Boolean, default=False)
    yanked_reason: Mapped[str | None] = mapped_column(Text)
    requires_python: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)  # from upstream's JSON API
    # The newest creation or yank whose details (Requires-Python, yank reason) we have read
    # from upstream's JSON API; a version needs a look when it has a newer one.
    info_k: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # failed look-ups in a row, and when the next may run (reorderer.store.set_version_info)
    info_failures: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    info_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # warehouse's release quarantine (LWW like the yank): withheld while set
    quarantine_k: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    quarantined: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # the versions whose details are due, by how recent (migration 0020)
    __table_args__ = (
        Index("versions_info_due", text("greatest(quarantine_k, created_k, yank_k)"),
              postgresql_where=text("greatest(quarantine_k, created_k, yank_k) > info_k")),
    )


class OperatorPackage(Base):
    """A package as an operator added or described it (piw-add; the admin service writes
    it): *added* makes it live whatever upstream says (migration 0015's views)."""

    __tablename__ = "operator_packages"
    name: Mapped[str] = mapped_column(Text, primary_key=True)  # PEP 503 canonical
    display_name: Mapped[str] = mapped_column(Text)
    added: Mapped[bool] = mapped_column(Boolean)
    description: Mapped[str | None] = mapped_column(Text)
    aliases: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    added_by: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                               server_default=func.now())


class OperatorVersion(Base):
    """A version an operator added (piw-add): live while its package is."""

    __tablename__ = "operator_versions"
    package: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[str] = mapped_column(Text, primary_key=True)
    released: Mapped[int] = mapped_column(BigInteger)  # epoch seconds
    yanked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    added_by: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                               server_default=func.now())


class UpstreamFile(Base):
    __tablename__ = "upstream_files"
    package: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[str] = mapped_column(Text, primary_key=True)
    filename: Mapped[str] = mapped_column(Text, primary_key=True)
    pyver: Mapped[str | None] = mapped_column(Text)
    added_k: Mapped[int] = mapped_column(BigInteger, default=0)
    removed_k: Mapped[int] = mapped_column(BigInteger, default=0)


class Outbox(Base):
    """Ordered event batches, written in the same transaction as the change they describe."""

    __tablename__ = "outbox"
    __table_args__ = (Index("outbox_unsent", "seq", postgresql_where=text("sent_at IS NULL")),)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    events: Mapped[list] = mapped_column(JSON)  # stored and read whole: json, not jsonb
    count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ConsumerMark(Base):
    """Per consumer, the highest outbox seq it has applied (its high-water mark)."""

    __tablename__ = "consumer_marks"
    consumer: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now())


# -- builds (build_dispatch) -------------------------------------------------------------------
class BuildAbi(Base):
    """A build target: an ABI on a platform with its image's distro (cp311-linux_armv7l on
    bookworm, ...), each with its job queue piw.builds.<abi>-<platform>. Here and in every
    table below, the column ``abi`` holds the target key ``<abi>-<platform>`` (migration
    0008; the name predates platforms being told apart)."""

    __tablename__ = "build_abis"
    abi: Mapped[str] = mapped_column(Text, primary_key=True)
    distro: Mapped[str] = mapped_column(Text)
    #: the image is ARMv6-compatible: its armv7l wheels are also served as armv6l (0010)
    armv6: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class BuildVersion(Base):
    """build_dispatch's own view of each version, kept from ordered events, so it can queue
    the builds of a target added later without asking anyone."""

    __tablename__ = "build_versions"
    package: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[str] = mapped_column(Text, primary_key=True)
    buildable: Mapped[bool] = mapped_column(Boolean)
    released: Mapped[int] = mapped_column(BigInteger)  # upstream timestamp
    skip_reason: Mapped[str | None] = mapped_column(Text)  # an operator's skip


class BuildPackageSkip(Base):
    """An operator's skip of a whole package: none of its versions, present or future, is
    built (until unskipped, or the package is removed upstream: a new life starts clean)."""

    __tablename__ = "build_package_skips"
    package: Mapped[str] = mapped_column(Text, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class BuildTarget(Base):
    """One (version, build target) pair build_dispatch has decided about.

    state: ``pending`` (to publish), ``queued`` (on piw.builds.<target> as job_id), ``building``
    (claimed by builder_id), ``built`` (by build_id, or satisfied by a pure wheel),
    ``failed`` (not retried unless an operator asks).
    """

    __tablename__ = "build_targets"
    __table_args__ = (
        Index("build_targets_pending", "abi", text("priority DESC"), "updated_at",
              postgresql_where=text("state = 'pending'")),
        Index("build_targets_job", "job_id", unique=True),
    )
    package: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[str] = mapped_column(Text, primary_key=True)
    abi: Mapped[str] = mapped_column(Text, primary_key=True)
    state: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(SmallInteger)
    builder_id: Mapped[int | None] = mapped_column(Integer)
    build_id: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())


class Build(Base):
    """Every build attempt a builder reported, once per job (job_id is unique)."""

    __tablename__ = "builds"
    __table_args__ = (Index("builds_version", "package", "version"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[str] = mapped_column(Text, unique=True)
    package: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    abi: Mapped[str] = mapped_column(Text)
    builder_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    duration: Mapped[float] = mapped_column(Float)
    log_gz: Mapped[bytes] = mapped_column(LargeBinary)
    files: Mapped[list] = mapped_column(JSON)  # filenames uploaded
    not_uploaded: Mapped[list] = mapped_column(JSON)  # upstream serves these names
    finished_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())


class BlockedBuilder(Base):
    """A RabbitMQ user cut off for too many refused messages, with the permissions it had
    (build_dispatch's; migration 0016)."""

    __tablename__ = "blocked_builders"
    user_name: Mapped[str] = mapped_column(Text, primary_key=True)
    blocked_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())
    reason: Mapped[str] = mapped_column(Text)
    refusals: Mapped[int] = mapped_column(Integer)
    permissions: Mapped[dict | None] = mapped_column(JSON)


class RegisteredBuilder(Base):
    """The builder registry, kept from hellos and heartbeats."""

    __tablename__ = "builders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    abi: Mapped[str] = mapped_column(Text)
    info: Mapped[dict] = mapped_column(JSON)  # platform, distro, board, python, host, ...
    preinstalled: Mapped[list] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(Text, server_default=text("'alive'"))  # or 'gone'
    job_id: Mapped[str | None] = mapped_column(Text)
    job_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    readings: Mapped[dict | None] = mapped_column(JSON)  # last heartbeat's
    first_seen: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())
    last_seen: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())


# -- the file store (file_manager) -------------------------------------------------------------
class File(Base):
    """A wheel in the file store at <WWW>/simple/<package>/<filename>.

    ``link_of`` names the file this one is a link to (armv7l wheels served as armv6l).
    """

    __tablename__ = "files"
    __table_args__ = (Index("files_version", "package", "version"),)
    filename: Mapped[str] = mapped_column(Text, primary_key=True)
    package: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(Text)
    abi: Mapped[str] = mapped_column(Text)  # the build target (job queue) that made it
    job_id: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(Text)
    metadata_sha256: Mapped[str | None] = mapped_column(Text)
    requires_python: Mapped[str | None] = mapped_column(Text)
    requires_dist: Mapped[list] = mapped_column(JSON)
    apt_depends: Mapped[list] = mapped_column(JSON)
    unresolved: Mapped[list] = mapped_column(JSON)
    link_of: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())


# -- target images -----------------------------------------------------------------------------
class ImagePackage(Base):
    """An apt package preinstalled on a distro's target image (Raspberry Pi OS Lite): the index
    leaves it out of the apt dependencies it shows, so users are not told to install it."""

    __tablename__ = "image_packages"
    distro: Mapped[str] = mapped_column(Text, primary_key=True)
    package: Mapped[str] = mapped_column(Text, primary_key=True)


class ImageLoad(Base):
    """The last load of a distro's image list (piw-image-packages): where it came from, when."""

    __tablename__ = "image_loads"
    distro: Mapped[str] = mapped_column(Text, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())
    count: Mapped[int] = mapped_column(Integer)


# -- the index ---------------------------------------------------------------------------------
class IndexDirty(Base):
    """Packages whose pages must be rewritten (``:root`` for the root pages): events only add
    rows here, in their consumer's transaction, so a burst for one package is one rewrite."""

    __tablename__ = "index_dirty"
    package: Mapped[str] = mapped_column(Text, primary_key=True)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# -- stats -------------------------------------------------------------------------------------
# No foreign keys and nothing removed with a package: history outlives what it counted. Only an
# operator's removal of a version deletes that version's downloads (migration 0018).
def _agent_columns() -> dict[str, Mapped[str | None]]:
    """useragent.FIELDS as nullable text columns (the raw rows keep what the agent said)."""
    return {name: mapped_column(Text) for name in FIELDS}


class Download(Base):
    """One wheel served (raw, kept); ``key`` is a hash of the event, so a redelivered batch
    inserts nothing twice."""

    __tablename__ = "downloads"
    __table_args__ = (Index("downloads_version", "package", "version"),)
    key: Mapped[str] = mapped_column(UUID(as_uuid=False), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    package: Mapped[str] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(SmallInteger)
    client: Mapped[str | None] = mapped_column(Text)
    locals().update(_agent_columns())


class Search(Base):
    """One look at /simple/<package>/ (raw, kept), keyed like downloads."""

    __tablename__ = "searches"
    key: Mapped[str] = mapped_column(UUID(as_uuid=False), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    package: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(SmallInteger)
    client: Mapped[str | None] = mapped_column(Text)
    locals().update(_agent_columns())


class DownloadsDaily(Base):
    __tablename__ = "downloads_daily"
    __table_args__ = (Index("downloads_daily_package", "package", "day"),)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    package: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class DownloadsMonthly(Base):
    __tablename__ = "downloads_monthly"
    month: Mapped[date] = mapped_column(Date, primary_key=True)  # its first day
    package: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class DownloadDimsDaily(Base):
    """Downloads per day per value of a dimension (python, distro, arch, installer)."""

    __tablename__ = "download_dims_daily"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    dimension: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class DownloadDimsMonthly(Base):
    __tablename__ = "download_dims_monthly"
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    dimension: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class SearchesDaily(Base):
    """Searches per package per day; ``unserved``: those when we had no file for it."""

    __tablename__ = "searches_daily"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    package: Mapped[str] = mapped_column(Text, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    unserved: Mapped[int] = mapped_column(BigInteger)


class BuilderReading(Base):
    """A builder's heartbeat numbers (pruned after STATS_READINGS_DAYS)."""

    __tablename__ = "builder_readings"
    __table_args__ = (Index("builder_readings_at", "builder_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    builder_id: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    temperature: Mapped[float | None] = mapped_column(Float)
    load1: Mapped[float | None] = mapped_column(Float)
    memory_used: Mapped[float | None] = mapped_column(Float)
    swap_used: Mapped[float | None] = mapped_column(Float)
    disk_used: Mapped[float | None] = mapped_column(Float)
    job: Mapped[str | None] = mapped_column(Text)


class MasterReading(Base):
    """The master host sampled by the stats service (pruned like builder_readings)."""

    __tablename__ = "master_readings"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                         index=True)
    temperature: Mapped[float | None] = mapped_column(Float)
    load1: Mapped[float | None] = mapped_column(Float)
    memory_used: Mapped[float | None] = mapped_column(Float)
    swap_used: Mapped[float | None] = mapped_column(Float)
    disk_used: Mapped[float | None] = mapped_column(Float)
    queues: Mapped[dict] = mapped_column(JSON)  # {target: jobs waiting}
    behind_upstream: Mapped[int | None] = mapped_column(BigInteger)
    # the upstream service's last refusal ("upstream refuses changelog_since_serial: ...")
    upstream_problem: Mapped[str | None] = mapped_column(Text)
