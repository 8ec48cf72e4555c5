"""build_dispatch's database work: targets from events, claims, results, the builder registry.

Every function runs inside the caller's transaction and is idempotent: RabbitMQ delivers at
least once, so a repeated claim, result, hello or heartbeat changes nothing more.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from builders import protocol
from piw_services.build_dispatch import logic
from piw_services.build_dispatch.queries import enabled_abis
from piw_services.db.bulk import copy_rows

#: SQL for a fresh job id (a target's queued message is named by it).
NEW_JOB_ID = "replace(gen_random_uuid()::text, '-', '')"
#: SQL for "an operator skipped the package of the row aliased {}" (format it with the alias).
PACKAGE_SKIP = "SELECT 1 FROM build_package_skips s WHERE s.package = {}.package"
#: SQL for "upstream quarantined the version of the row aliased {}, or its package" (the
#: catalog's view, as it is now): such a job waits, pending, until it is cleared. An IN, not a
#: correlated EXISTS: the withheld versions (few) are read once and hashed, where an EXISTS
#: against the view's UNION could be planned as a scan of every version for each job
#: (without statistics, e.g. 100,000 targets just made: 35 s instead of 3 s to queue them).
QUARANTINED = ("({0}.package, {0}.version) IN (SELECT l.package, l.version "
               "FROM live_versions l WHERE l.withheld)")
#: What a claim of a quarantined version's job answers.
QUARANTINED_NOTE = "quarantined upstream: waits until upstream clears it"


# -- ordered events ---------------------------------------------------------------------------
#: The batch's net changes, one row per version, loaded with one COPY so every statement below
#: is a join against it (big array parameters cost PostgreSQL more to parse than the work).
BATCH_TABLE = "_dispatch_batch"
BATCH_COLUMNS = ("package", "version", "reset", "alive", "buildable", "released")


def apply_events(session: Session, events: Iterable[Mapping[str, Any]],
                 now: float | None = None) -> int:
    """Apply one batch of ordered events; returns how many targets it created."""
    plan = logic.fold_events(events)
    now = time.time() if now is None else now
    if plan.wiped:
        forget_packages(session, sorted(plan.wiped))
    if not plan.versions:
        return 0
    cur = session.connection().connection.dbapi_connection.cursor()
    # Targets are made per enabled ABI: an ABI being enabled meanwhile (sync_abis) must see
    # our versions or we its ABI, never neither. SHARE waits for its commit and lets other
    # batches run side by side.
    cur.execute("LOCK TABLE build_abis IN SHARE MODE")
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {BATCH_TABLE} (package text, version text, "
                "reset bool, alive bool, buildable bool, released bigint) "
                f"ON COMMIT DELETE ROWS; DELETE FROM {BATCH_TABLE}")
    copy_rows(cur, BATCH_TABLE, BATCH_COLUMNS, [
        (p, v, c.reset, c.alive, c.buildable, c.released) for (p, v), c in plan.versions.items()])
    match = "t.package = b.package AND t.version = b.version"
    # one round trip: none of these statements takes a parameter; rowcount is the last one's
    cur.execute(";".join([
        # temporary tables get no statistics of their own: without them a one-version batch
        # would be planned as a big one (scans instead of index lookups)
        f"ANALYZE {BATCH_TABLE}",
        *(f"DELETE FROM {table} t USING {BATCH_TABLE} b WHERE b.reset AND {match}"
          for table in ("build_targets", "builds", "build_versions")),
        "INSERT INTO build_versions (package, version, buildable, released) "
        f"SELECT package, version, buildable, released FROM {BATCH_TABLE} WHERE alive "
        "ON CONFLICT (package, version) DO UPDATE SET buildable = excluded.buildable, "
        "released = excluded.released",
        # versions that only changed buildability; one that lost its last source file keeps
        # what was built and queues nothing more
        f"UPDATE build_versions t SET buildable = b.buildable FROM {BATCH_TABLE} b "
        f"WHERE b.alive IS NULL AND b.buildable IS NOT NULL AND {match}",
        f"DELETE FROM build_targets t USING {BATCH_TABLE} b WHERE b.alive IS NULL "
        f"AND NOT b.buildable AND {match} AND t.state IN ('pending', 'queued')",
        "INSERT INTO build_targets (package, version, abi, state, job_id, priority) "
        f"SELECT t.package, t.version, a.abi, 'pending', {NEW_JOB_ID}, "
        f"{logic.priority_sql('t.released', now)} "
        f"FROM {BATCH_TABLE} b JOIN build_versions t ON {match} "
        "CROSS JOIN build_abis a WHERE b.buildable AND t.buildable AND t.skip_reason IS NULL "
        f"AND a.enabled AND NOT EXISTS ({PACKAGE_SKIP.format('t')}) "
        "ON CONFLICT (package, version, abi) DO NOTHING",
    ]))
    return cur.rowcount


def forget_packages(session: Session, packages: list[str]) -> None:
    """Drop what build_dispatch knows of these packages: their targets (so queued jobs are
    dropped when claimed), builds, versions and operators' skips (a re-created package is a
    new life)."""
    for table in ("build_targets", "builds", "build_versions", "build_package_skips"):
        session.execute(text(f"DELETE FROM {table} WHERE package = ANY(:p)"), {"p": packages})


def _insert_targets(session: Session, rows: list[Any], now: float) -> int:
    if not rows:
        return 0
    result = session.execute(text(
        "INSERT INTO build_targets (package, version, abi, state, job_id, priority) "
        f"SELECT p, v, a, 'pending', {NEW_JOB_ID}, pr FROM unnest(CAST(:p AS text[]), "
        "CAST(:v AS text[]), CAST(:a AS text[]), CAST(:pr AS smallint[])) AS t(p, v, a, pr) "
        "ON CONFLICT (package, version, abi) DO NOTHING"),
        {"p": [r[0] for r in rows], "v": [r[1] for r in rows], "a": [r[3] for r in rows],
         "pr": [logic.priority(r[2], now) for r in rows]})
    return result.rowcount


# -- build targets (the rows of build_abis: key <abi>-<platform>, distro, armv6) ----------
def sync_abis(session: Session, abis: Iterable[tuple], now: float | None = None
              ) -> list[str]:
    """Make the enabled build targets exactly *abis* (logic.Target, or plain ``(key,
    distro[, armv6])`` tuples; the key's column is still called abi); queue every buildable
    version for targets that were not enabled before. Returns those newly enabled."""
    abis = [logic.Target(*target) for target in abis]
    now = time.time() if now is None else now
    # waits for batches being applied, so the versions they add are queued below
    session.execute(text("LOCK TABLE build_abis IN SHARE ROW EXCLUSIVE MODE"))
    before = {r[0] for r in session.execute(text(
        "SELECT abi FROM build_abis WHERE enabled"))}
    for target in abis:
        session.execute(text(
            "INSERT INTO build_abis (abi, distro, armv6, enabled) VALUES (:a, :d, :v6, true) "
            "ON CONFLICT (abi) DO UPDATE SET distro = excluded.distro, armv6 = excluded.armv6, "
            "enabled = true"),
            {"a": target.key, "d": target.distro, "v6": target.armv6})
    session.execute(text("UPDATE build_abis SET enabled = false WHERE NOT abi = ANY(:a)"),
                    {"a": [t.key for t in abis]})
    new = [t.key for t in abis if t.key not in before]
    for abi in new:
        rows = session.execute(text(
            "SELECT package, version, released, :abi FROM build_versions bv WHERE buildable "
            f"AND skip_reason IS NULL AND NOT EXISTS ({PACKAGE_SKIP.format('bv')})"),
            {"abi": abi}).all()
        _insert_targets(session, rows, now)
    return new


# -- publishing -------------------------------------------------------------------------------
#: SQL: upstream's details of the version of the row aliased {} have been read since its
#: newest creation, so its Requires-Python is known (the catalog's view, migration 0019).
INFO_KNOWN = ("EXISTS (SELECT 1 FROM version_details v WHERE v.package = {0}.package "
              "AND v.version = {0}.version AND v.info_known)")


def take_pending(session: Session, abi: str, limit: int, wait_for_info: bool = False
                 ) -> list[dict[str, Any]]:
    """Mark up to *limit* pending targets of *abi* queued (highest priority first) and return
    their jobs; the caller publishes them before committing, so a failed publish leaves them
    pending. With *wait_for_info* (enrichment on), a version is sent only once its
    Requires-Python has been read from upstream (the upstream service looks those up first),
    so no builder builds what its Python is excluded from."""
    info = f"AND {INFO_KNOWN.format('x')} " if wait_for_info else ""
    rows = session.execute(text(
        "UPDATE build_targets t SET state = 'queued', updated_at = now() FROM ("
        "SELECT package, version, abi FROM build_targets x WHERE state = 'pending' "
        f"AND abi = :a AND NOT {QUARANTINED.format('x')} {info}"
        "ORDER BY priority DESC, updated_at LIMIT :n FOR UPDATE SKIP LOCKED) p "
        "WHERE (t.package, t.version, t.abi) = (p.package, p.version, p.abi) "
        "RETURNING t.package, t.version, t.job_id, t.priority"), {"a": abi, "n": limit}).all()
    if not rows:
        return []
    wheels: dict[tuple[str, str], list[str]] = {}
    for p, v, fn in session.execute(text(
            "SELECT u.package, u.version, u.filename FROM upstream_wheels u "
            "JOIN unnest(CAST(:p AS text[]), CAST(:v AS text[])) AS w(p, v) "
            "ON u.package = w.p AND u.version = w.v"),
            {"p": [r[0] for r in rows], "v": [r[1] for r in rows]}):
        wheels.setdefault((p, v), []).append(fn)
    rows.sort(key=lambda r: -r[3])
    return [{"target": abi, "priority": r[3],
             "body": protocol.job(r[2], r[0], r[1], abi, sorted(wheels.get((r[0], r[1]), [])))}
            for r in rows]


# -- builders ---------------------------------------------------------------------------------
def hello(session: Session, msg: Mapping[str, Any], user: str | None = None) -> int:
    """Register a builder under its build target (``builders.abi`` holds the target key; a
    builder that restarts under the same label and target keeps its id); returns the id.
    *user*: its RabbitMQ user as RabbitMQ checked it (``info.user``, whose order queue the
    admin service fills), None when it did not say. An operator's pause (``info.held``)
    outlives the hello: see :func:`held`."""
    info = {k: v for k, v in msg.items()
            if k not in ("type", "label", "preinstalled", "user")}
    if user:
        info["user"] = user
    params = {"label": msg["label"], "abi": protocol.hello_target(msg), "info": _json(info),
              "pre": _json(sorted(set(msg["preinstalled"])))}
    row = session.execute(text(
        "UPDATE builders SET info = CAST(CAST(:info AS jsonb) || jsonb_build_object('held', "
        "coalesce(CAST(info AS jsonb)->'held', 'false')) AS json), "
        "preinstalled = CAST(:pre AS json), "
        "state = 'alive', last_seen = now(), job_id = NULL, job_started_at = NULL "
        "WHERE id = (SELECT id FROM builders WHERE label = :label AND abi = :abi "
        "ORDER BY id DESC LIMIT 1) RETURNING id"), params).first()
    if row is None:
        row = session.execute(text(
            "INSERT INTO builders (label, abi, info, preinstalled) "
            "VALUES (:label, :abi, CAST(:info AS json), CAST(:pre AS json)) RETURNING id"),
            params).first()
    return row[0]


def held(session: Session, builder_id: int) -> bool:
    """Whether an operator paused the builder and has not resumed it: told at each hello,
    so the pause outlives the builder's restarts (orders on its queue expire)."""
    return session.execute(text(
        "SELECT CAST(info AS jsonb)->>'held' = 'true' FROM builders WHERE id = :b"),
        {"b": builder_id}).scalar() is True


def heartbeat(session: Session, msg: Mapping[str, Any]) -> bool:
    """Record a heartbeat (and whether an operator's order paused the builder, in
    ``info.paused``); False when the builder is unknown (it will say hello again)."""
    row = session.execute(text(
        "UPDATE builders SET last_seen = now(), state = 'alive', "
        "readings = CAST(:r AS json), info = CAST(CAST(info AS jsonb) || "
        "jsonb_build_object('paused', :p) AS json) WHERE id = :id RETURNING id"),
        {"id": msg["builder_id"], "r": _json(msg["readings"]),
         "p": bool(msg.get("paused"))}).first()
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
        "SELECT t.state, t.builder_id, t.note, coalesce(ps.reason, bv.skip_reason), t.abi, "
        f"t.package, t.version, v.requires_python, {QUARANTINED.format('t')} "
        "FROM build_targets t "
        "LEFT JOIN build_versions bv ON bv.package = t.package AND bv.version = t.version "
        "LEFT JOIN version_details v ON v.package = t.package AND v.version = t.version "
        "LEFT JOIN build_package_skips ps ON ps.package = t.package "
        "WHERE t.job_id = :j FOR UPDATE OF t"), {"j": msg["job_id"]}).first()
    if row is not None and row[4] != builder_abi:
        return False, f"job is for {row[4]}, builder {builder_id} builds {builder_abi}"
    if row is not None and row[8] and (row[0] in ("pending", "queued") or row[0] == "building"
                                       and (row[1] == builder_id or msg["redelivered"])):
        # upstream took it down since it was queued: back to pending, published once cleared
        session.execute(text(
            "UPDATE build_targets SET state = 'pending', builder_id = NULL, updated_at = now() "
            "WHERE job_id = :j"), {"j": msg["job_id"]})
        return False, QUARANTINED_NOTE
    excluded = row is not None and row[0] in ("pending", "queued", "building") and \
        logic.python_excluded(row[7], row[4])
    if excluded:  # known since the job was queued (upstream's JSON API): nothing to build
        session.execute(text(
            "UPDATE build_targets SET state = 'skipped', note = :n, builder_id = NULL, "
            "updated_at = now() WHERE job_id = :j"), {"n": excluded, "j": msg["job_id"]})
        return False, excluded
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
    success marks the job's target built, and every target a pure wheel satisfies (each
    platform of its Python tag; a platform wheel settles only its own target); any other
    outcome is a failure, not retried unless an operator asks. A wheel for another platform
    than the target's is a failure too, noted with the reason (file_manager refused it)."""
    existing = session.execute(text(
        "SELECT id, status, package, version FROM builds WHERE job_id = :j"),
        {"j": msg["job_id"]}).first()
    if existing:
        return {"build_id": existing[0], "status": existing[1], "repeat": True,
                "package": existing[2], "version": existing[3]}
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
    not_uploaded = list(msg["not_uploaded"])
    status = msg["status"]
    wrong = [p for fn in filenames + not_uploaded
             if (p := protocol.wheel_target_problem(fn, abi))]
    if wrong:  # file_manager refused to publish such wheels: the build failed, saying why
        filenames, not_uploaded, status = [], [], "failed"
    build_id = session.execute(text(
        "INSERT INTO builds (job_id, package, version, abi, builder_id, status, duration, "
        "log_gz, files, not_uploaded) VALUES (:j, :p, :v, :a, :b, :s, :d, :log, "
        "CAST(:f AS json), CAST(:n AS json)) RETURNING id"),
        {"j": msg["job_id"], "p": package, "v": version, "a": abi, "b": msg["builder_id"],
         "s": status, "d": msg["duration"], "log": base64.b64decode(msg["log_gz_b64"]),
         "f": _json(filenames), "n": _json(not_uploaded)}).scalar_one()
    ok = status == "success" and bool(filenames or not_uploaded)
    note = None if ok else status if status != "success" else "the build produced no wheel"
    if wrong:
        note = "; ".join(wrong)
    if ok and not filenames:
        note = "upstream serves " + ", ".join(not_uploaded)
    session.execute(text(
        "UPDATE build_targets SET state = :s, build_id = :id, note = :n, updated_at = now() "
        "WHERE job_id = :j"),
        {"s": "built" if ok else "failed", "id": build_id, "n": note, "j": msg["job_id"]})
    satisfied: list[str] = []
    if ok:
        others = [a for a in enabled_abis(session) if a != abi]
        for fn in filenames + not_uploaded:
            satisfied += [a for a in logic.pure_wheel_targets(fn, others) if a not in satisfied]
        if satisfied:
            session.execute(text(
                "INSERT INTO build_targets (package, version, abi, state, job_id, priority, "
                f"build_id, note) SELECT :p, :v, a, 'built', {NEW_JOB_ID}, 0, :id, :n "
                "FROM unnest(CAST(:abis AS text[])) AS a "
                "ON CONFLICT (package, version, abi) DO UPDATE SET state = 'built', "
                "build_id = excluded.build_id, note = excluded.note, updated_at = now() "
                "WHERE build_targets.state <> 'built'"),
                {"p": package, "v": version, "id": build_id, "abis": satisfied,
                 "n": f"pure wheel built for {abi}"})
    session.execute(text(
        "UPDATE builders SET job_id = NULL, job_started_at = NULL, last_seen = now() "
        "WHERE id = :b"), {"b": msg["builder_id"]})
    return {"build_id": build_id, "status": status, "satisfied": satisfied,
            "package": package, "version": version}


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
    # an operator's skip drops a version's targets: count what it keeps unbuilt per target
    operator_skips = dict(session.execute(text(
        "SELECT a.abi, count(*) FROM build_versions bv CROSS JOIN build_abis a "
        "WHERE a.enabled AND bv.buildable AND (bv.skip_reason IS NOT NULL OR "
        f"EXISTS ({PACKAGE_SKIP.format('bv')})) AND NOT EXISTS (SELECT 1 FROM build_targets t "
        "WHERE t.package = bv.package AND t.version = bv.version AND t.abi = a.abi) "
        "GROUP BY a.abi")).all())
    return {"abis": enabled_abis(session), "targets": targets, "builders": builders,
            "operator_skips": operator_skips,
            "builds": session.execute(text("SELECT count(*) FROM builds")).scalar_one()}


def _finite(value: Any) -> Any:
    """*value* with NaN and infinities (which JSON has no room for) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json(value: Any) -> str:
    # PostgreSQL's json refuses NaN and Infinity, which Python writes: a builder whose sensor
    # read NaN had every heartbeat fail, and was marked gone while it built
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False)


# -- blocked builders (piw_services/builder_queues.py blocks, operators unblock) -------------
def block(session: Session, user: str, reason: str, refusals: int,
          permissions: Mapping[str, str] | None) -> None:
    """Record *user* as blocked with the RabbitMQ *permissions* it had. Blocked again (by
    another service, or a redelivered call), the first record's permissions stay: by then
    the user has none left to remember."""
    session.execute(text(
        "INSERT INTO blocked_builders (user_name, reason, refusals, permissions) "
        "VALUES (:u, :r, :n, CAST(:p AS json)) ON CONFLICT (user_name) DO UPDATE SET "
        "refusals = blocked_builders.refusals + EXCLUDED.refusals, reason = EXCLUDED.reason, "
        "permissions = COALESCE(blocked_builders.permissions, EXCLUDED.permissions)"),
        {"u": user, "r": reason, "n": refusals,
         "p": None if permissions is None else _json(dict(permissions))})


def blocked_permissions(session: Session, user: str) -> tuple[bool, dict[str, str] | None]:
    """(whether *user* is blocked, the permissions it had)."""
    row = session.execute(text("SELECT permissions FROM blocked_builders WHERE user_name = :u"),
                          {"u": user}).first()
    return (False, None) if row is None else (True, row[0])


def unblock(session: Session, user: str) -> None:
    session.execute(text("DELETE FROM blocked_builders WHERE user_name = :u"), {"u": user})
