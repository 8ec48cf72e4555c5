"""build_dispatch's database work: targets from events, claims, results, the builder registry.

Every function runs inside the caller's transaction and is idempotent: RabbitMQ delivers at
least once, so a repeated claim, result, hello or heartbeat changes nothing more.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from builders import protocol
from piw_services.build_dispatch import logic


def new_job_id() -> str:
    return uuid.uuid4().hex


# -- ordered events ---------------------------------------------------------------------------
def apply_events(session: Session, events: Iterable[Mapping[str, Any]],
                 now: float | None = None) -> int:
    """Apply one batch of ordered events; returns how many targets it created."""
    plan = logic.fold_events(events)
    now = time.time() if now is None else now
    if plan.wiped:
        forget_versions(session, packages=sorted(plan.wiped))
    resets = [k for k, c in plan.versions.items() if c.reset]
    if resets:
        forget_versions(session, versions=resets)
    added = [(p, v, c.buildable, c.released) for (p, v), c in plan.versions.items()
             if c.alive]
    if added:
        session.execute(text(
            "INSERT INTO build_versions (package, version, buildable, released) "
            "SELECT * FROM unnest(CAST(:p AS text[]), CAST(:v AS text[]), "
            "CAST(:b AS boolean[]), CAST(:r AS bigint[])) "
            "ON CONFLICT (package, version) DO UPDATE SET buildable = excluded.buildable, "
            "released = excluded.released"),
            {"p": [a[0] for a in added], "v": [a[1] for a in added],
             "b": [a[2] for a in added], "r": [a[3] for a in added]})
    flips = [(p, v, c.buildable) for (p, v), c in plan.versions.items()
             if c.alive is None and c.buildable is not None]
    if flips:
        session.execute(text(
            "UPDATE build_versions bv SET buildable = f.b FROM unnest(CAST(:p AS text[]), "
            "CAST(:v AS text[]), CAST(:b AS boolean[])) AS f(p, v, b) "
            "WHERE bv.package = f.p AND bv.version = f.v"),
            {"p": [f[0] for f in flips], "v": [f[1] for f in flips],
             "b": [f[2] for f in flips]})
        # a version that lost its last source file keeps what was built, queues nothing more
        lost = [f for f in flips if not f[2]]
        if lost:
            session.execute(text(
                "DELETE FROM build_targets t USING unnest(CAST(:p AS text[]), "
                "CAST(:v AS text[])) AS f(p, v) WHERE t.package = f.p AND t.version = f.v "
                "AND t.state IN ('pending', 'queued')"),
                {"p": [f[0] for f in lost], "v": [f[1] for f in lost]})
    wanted = [(p, v) for (p, v), c in plan.versions.items() if c.buildable]
    return create_targets(session, wanted, now) if wanted else 0


def forget_versions(session: Session, versions: list[tuple[str, str]] | None = None,
                    packages: list[str] | None = None) -> None:
    """Drop what build_dispatch knows of these versions (or whole packages): their targets
    (so queued jobs are dropped when claimed), builds and view rows."""
    if packages is not None:
        where, params = "package = ANY(:p)", {"p": packages}
    else:
        assert versions is not None
        where = "(package, version) IN (SELECT * FROM unnest(CAST(:p AS text[]), " \
                "CAST(:v AS text[])))"
        params = {"p": [k[0] for k in versions], "v": [k[1] for k in versions]}
    for table in ("build_targets", "builds", "build_versions"):
        session.execute(text(f"DELETE FROM {table} WHERE {where}"), params)


def create_targets(session: Session, versions: list[tuple[str, str]], now: float,
                   abi: str | None = None) -> int:
    """Queue (as ``pending``) every missing (version, ABI) pair of buildable, unskipped
    *versions* for the enabled ABIs (or just *abi*)."""
    rows = session.execute(text(
        "SELECT bv.package, bv.version, bv.released, a.abi FROM build_versions bv "
        "JOIN unnest(CAST(:p AS text[]), CAST(:v AS text[])) AS w(p, v) "
        "ON bv.package = w.p AND bv.version = w.v "
        "CROSS JOIN build_abis a WHERE a.enabled AND (CAST(:abi AS text) IS NULL OR a.abi = :abi) "
        "AND bv.buildable AND bv.skip_reason IS NULL"),
        {"p": [k[0] for k in versions], "v": [k[1] for k in versions], "abi": abi}).all()
    return _insert_targets(session, rows, now)


def _insert_targets(session: Session, rows: list[Any], now: float) -> int:
    if not rows:
        return 0
    result = session.execute(text(
        "INSERT INTO build_targets (package, version, abi, state, job_id, priority) "
        "SELECT p, v, a, 'pending', j, pr FROM unnest(CAST(:p AS text[]), CAST(:v AS text[]), "
        "CAST(:a AS text[]), CAST(:j AS text[]), CAST(:pr AS smallint[])) AS t(p, v, a, j, pr) "
        "ON CONFLICT (package, version, abi) DO NOTHING"),
        {"p": [r[0] for r in rows], "v": [r[1] for r in rows], "a": [r[3] for r in rows],
         "j": [new_job_id() for _ in rows],
         "pr": [logic.priority(r[2], now) for r in rows]})
    return result.rowcount


# -- ABIs -------------------------------------------------------------------------------------
def parse_abis(setting: str | list[Any] | None) -> list[tuple[str, str]]:
    """``BUILD_ABIS`` as ``"cp311:bookworm,cp313:trixie"`` or a YAML list of such strings."""
    if not setting:
        return []
    items = setting.split(",") if isinstance(setting, str) else [str(s) for s in setting]
    abis = []
    for item in (i.strip() for i in items if i.strip()):
        abi, _, distro = item.partition(":")
        try:
            protocol.check_abi(abi)
        except ValueError as exc:
            raise ValueError(f"BUILD_ABIS: {exc}") from None
        abis.append((abi, distro or "unknown"))
    return abis


def sync_abis(session: Session, abis: list[tuple[str, str]], now: float | None = None
              ) -> list[str]:
    """Make the enabled ABIs exactly *abis*; queue every buildable version for ABIs that
    were not enabled before. Returns those newly enabled."""
    now = time.time() if now is None else now
    before = {r[0] for r in session.execute(text(
        "SELECT abi FROM build_abis WHERE enabled"))}
    for abi, distro in abis:
        session.execute(text(
            "INSERT INTO build_abis (abi, distro, enabled) VALUES (:a, :d, true) "
            "ON CONFLICT (abi) DO UPDATE SET distro = excluded.distro, enabled = true"),
            {"a": abi, "d": distro})
    session.execute(text("UPDATE build_abis SET enabled = false WHERE NOT abi = ANY(:a)"),
                    {"a": [a for a, _ in abis]})
    new = [abi for abi, _ in abis if abi not in before]
    for abi in new:
        rows = session.execute(text(
            "SELECT package, version, released, :abi FROM build_versions "
            "WHERE buildable AND skip_reason IS NULL"), {"abi": abi}).all()
        _insert_targets(session, rows, now)
    return new


def enabled_abis(session: Session) -> list[str]:
    return [r[0] for r in session.execute(text(
        "SELECT abi FROM build_abis WHERE enabled ORDER BY abi"))]


# -- publishing -------------------------------------------------------------------------------
def take_pending(session: Session, limit: int) -> list[dict[str, Any]]:
    """Lock up to *limit* pending targets (highest priority first) and build their jobs;
    the caller publishes them, then :func:`mark_queued` in the same transaction."""
    rows = session.execute(text(
        "SELECT package, version, abi, job_id, priority FROM build_targets "
        "WHERE state = 'pending' ORDER BY priority DESC, updated_at LIMIT :n "
        "FOR UPDATE SKIP LOCKED"), {"n": limit}).all()
    if not rows:
        return []
    wheels: dict[tuple[str, str], list[str]] = {}
    for p, v, fn in session.execute(text(
            "SELECT u.package, u.version, u.filename FROM upstream_files u JOIN (SELECT DISTINCT "
            "* FROM unnest(CAST(:p AS text[]), CAST(:v AS text[]))) AS w(p, v) "
            "ON u.package = w.p AND u.version = w.v "
            "WHERE u.added_k > u.removed_k AND u.filename LIKE '%.whl'"),
            {"p": [r[0] for r in rows], "v": [r[1] for r in rows]}):
        wheels.setdefault((p, v), []).append(fn)
    return [{"abi": r[2], "priority": r[4],
             "body": protocol.job(r[3], r[0], r[1], r[2], sorted(wheels.get((r[0], r[1]), [])))}
            for r in rows]


def mark_queued(session: Session, job_ids: list[str]) -> None:
    session.execute(text(
        "UPDATE build_targets SET state = 'queued', updated_at = now() "
        "WHERE job_id = ANY(:j) AND state = 'pending'"), {"j": job_ids})


# -- builders ---------------------------------------------------------------------------------
def hello(session: Session, msg: Mapping[str, Any]) -> int:
    """Register a builder (a builder that restarts under the same label and ABI keeps its
    id); returns the id."""
    info = {k: v for k, v in msg.items()
            if k not in ("type", "label", "abi", "preinstalled")}
    params = {"label": msg["label"], "abi": msg["abi"], "info": _json(info),
              "pre": _json(sorted(set(msg["preinstalled"])))}
    row = session.execute(text(
        "UPDATE builders SET info = CAST(:info AS json), preinstalled = CAST(:pre AS json), "
        "state = 'alive', last_seen = now(), job_id = NULL, job_started_at = NULL "
        "WHERE id = (SELECT id FROM builders WHERE label = :label AND abi = :abi "
        "ORDER BY id DESC LIMIT 1) RETURNING id"), params).first()
    if row is None:
        row = session.execute(text(
            "INSERT INTO builders (label, abi, info, preinstalled) "
            "VALUES (:label, :abi, CAST(:info AS json), CAST(:pre AS json)) RETURNING id"),
            params).first()
    return row[0]


def heartbeat(session: Session, msg: Mapping[str, Any]) -> bool:
    """Record a heartbeat; False when the builder is unknown (it will say hello again)."""
    row = session.execute(text(
        "UPDATE builders SET last_seen = now(), state = 'alive', "
        "readings = CAST(:r AS json) WHERE id = :id RETURNING id"),
        {"id": msg["builder_id"], "r": _json(msg["readings"])}).first()
    return row is not None


def mark_gone(session: Session, silence_limit: float) -> list[str]:
    """Builders silent longer than *silence_limit* seconds are gone; returns their labels."""
    return [r[0] for r in session.execute(text(
        "UPDATE builders SET state = 'gone' WHERE state = 'alive' "
        "AND last_seen < now() - make_interval(secs => :s) RETURNING label"),
        {"s": silence_limit})]


def _builder_abi(session: Session, builder_id: int) -> str | None:
    return session.execute(text("SELECT abi FROM builders WHERE id = :id"),
                           {"id": builder_id}).scalar()


# -- claims and results -----------------------------------------------------------------------
def claim(session: Session, msg: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Decide whether the builder builds this job; on yes, the job is the builder's."""
    builder_id = msg["builder_id"]
    builder_abi = _builder_abi(session, builder_id)
    if builder_abi is None:
        return False, f"unknown builder {builder_id}: say hello first"
    row = session.execute(text(
        "SELECT t.state, t.builder_id, t.note, bv.skip_reason, t.abi, t.package, t.version "
        "FROM build_targets t LEFT JOIN build_versions bv "
        "ON bv.package = t.package AND bv.version = t.version "
        "WHERE t.job_id = :j FOR UPDATE OF t"), {"j": msg["job_id"]}).first()
    if row is not None and row[4] != builder_abi:
        return False, f"job is for ABI {row[4]}, builder {builder_id} builds {builder_abi}"
    build, reason = logic.claim_decision(
        row[0] if row else None, row[1] if row else None, builder_id, msg["redelivered"],
        row[3] if row else None, row[2] if row else None)
    if build:
        session.execute(text(
            "UPDATE build_targets SET state = 'building', builder_id = :b, updated_at = now() "
            "WHERE job_id = :j"), {"b": builder_id, "j": msg["job_id"]})
        session.execute(text(
            "UPDATE builders SET job_id = :j, job_started_at = now(), last_seen = now() "
            "WHERE id = :b"), {"b": builder_id, "j": msg["job_id"]})
    return build, reason


class NotYourJob(ValueError):
    """A result for a job the sender is not building (lost it to another builder, or never
    had it)."""


def record_result(session: Session, msg: Mapping[str, Any]) -> dict[str, Any]:
    """Record a build once (a resent result returns the first record) and settle targets:
    success marks the job's ABI built, and every ABI a pure wheel satisfies; any other
    outcome is a failure, not retried unless an operator asks."""
    existing = session.execute(text("SELECT id, status FROM builds WHERE job_id = :j"),
                               {"j": msg["job_id"]}).first()
    if existing:
        return {"build_id": existing[0], "status": existing[1], "repeat": True}
    target = session.execute(text(
        "SELECT package, version, abi, state, builder_id FROM build_targets "
        "WHERE job_id = :j FOR UPDATE"), {"j": msg["job_id"]}).first()
    if target is None:
        return {"build_id": None, "discarded": "job no longer wanted (version removed)"}
    package, version, abi, state, holder = target
    if state != "building" or holder != msg["builder_id"]:
        raise NotYourJob(f"job {msg['job_id']} is not being built by builder "
                         f"{msg['builder_id']}")
    filenames = [f["filename"] for f in msg["files"]]
    status = msg["status"]
    build_id = session.execute(text(
        "INSERT INTO builds (job_id, package, version, abi, builder_id, status, duration, "
        "log_gz, files, not_uploaded) VALUES (:j, :p, :v, :a, :b, :s, :d, :log, "
        "CAST(:f AS json), CAST(:n AS json)) RETURNING id"),
        {"j": msg["job_id"], "p": package, "v": version, "a": abi, "b": msg["builder_id"],
         "s": status, "d": msg["duration"], "log": base64.b64decode(msg["log_gz_b64"]),
         "f": _json(filenames), "n": _json(msg["not_uploaded"])}).scalar_one()
    ok = status == "success" and bool(filenames or msg["not_uploaded"])
    note = None if ok else status if status != "success" else "the build produced no wheel"
    if ok and not filenames:
        note = "upstream serves " + ", ".join(msg["not_uploaded"])
    session.execute(text(
        "UPDATE build_targets SET state = :s, build_id = :id, note = :n, updated_at = now() "
        "WHERE job_id = :j"),
        {"s": "built" if ok else "failed", "id": build_id, "n": note, "j": msg["job_id"]})
    satisfied: list[str] = []
    if ok:
        others = [a for a in enabled_abis(session) if a != abi]
        for fn in filenames + list(msg["not_uploaded"]):
            satisfied += [a for a in logic.pure_wheel_abis(fn, others) if a not in satisfied]
        if satisfied:
            session.execute(text(
                "INSERT INTO build_targets (package, version, abi, state, job_id, priority, "
                "build_id, note) SELECT :p, :v, a, 'built', md5(random()::text), 0, :id, :n "
                "FROM unnest(CAST(:abis AS text[])) AS a "
                "ON CONFLICT (package, version, abi) DO UPDATE SET state = 'built', "
                "build_id = excluded.build_id, note = excluded.note, updated_at = now() "
                "WHERE build_targets.state <> 'built'"),
                {"p": package, "v": version, "id": build_id, "abis": satisfied,
                 "n": f"pure wheel built for {abi}"})
    session.execute(text(
        "UPDATE builders SET job_id = NULL, job_started_at = NULL, last_seen = now() "
        "WHERE id = :b"), {"b": msg["builder_id"]})
    return {"build_id": build_id, "status": status, "satisfied": satisfied}


# -- questions ---------------------------------------------------------------------------------
def version_status(session: Session, package: str, version: str | None = None
                   ) -> list[dict[str, Any]]:
    """Per (version, ABI): state, note, builder and build (with its status and files)."""
    rows = session.execute(text(
        "SELECT t.version, t.abi, t.state, t.note, t.builder_id, t.build_id, t.job_id, "
        "b.status, b.duration, b.files FROM build_targets t "
        "LEFT JOIN builds b ON b.id = t.build_id "
        "WHERE t.package = :p AND (CAST(:v AS text) IS NULL OR t.version = :v) "
        "ORDER BY t.version, t.abi"), {"p": package, "v": version}).all()
    keys = ("version", "abi", "state", "note", "builder_id", "build_id", "job_id",
            "build_status", "duration", "files")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def status(session: Session) -> dict[str, Any]:
    targets: dict[str, dict[str, int]] = {}
    for abi, state, n in session.execute(text(
            "SELECT abi, state, count(*) FROM build_targets GROUP BY abi, state")):
        targets.setdefault(abi, {})[state] = n
    builders = [dict(r._mapping) for r in session.execute(text(
        "SELECT id, label, abi, state, job_id, job_started_at, last_seen FROM builders "
        "ORDER BY id"))]
    for b in builders:
        for key in ("job_started_at", "last_seen"):
            b[key] = b[key].isoformat() if b[key] else None
    return {"abis": enabled_abis(session), "targets": targets, "builders": builders,
            "builds": session.execute(text("SELECT count(*) FROM builds")).scalar_one()}


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
