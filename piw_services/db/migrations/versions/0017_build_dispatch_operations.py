"""build_dispatch operations: the changes other services may make to build_dispatch's data

build_dispatch owns build_versions, build_package_skips, build_targets, builds and builders.
The admin service changes them for operators (skips, revocations, imports) inside its own
transaction, which also writes the outbox event that tells file_manager and the index: so the
changes are SECURITY DEFINER functions owned by the schema's owner, which a service's role may
only EXECUTE (piwheels does the same in piwheels/master/sql/create_piwheels.sql). They are
wrapped by piw_services/build_dispatch/operations.py; a change of them is a new migration.

- ``build_priority(released, now)``: a job's priority (new releases first); the one home of
  the bands, which build_dispatch's own SQL calls too (build_dispatch.logic.priority_sql);
- ``build_target_is(target, wanted)``: the target key is *wanted*, a key or a bare ABI (each
  of its targets), or *wanted* is NULL;
- ``build_set_skip(package, version, reason)``: record or clear an operator's skip;
- ``build_add_targets(package, versions, now)``: queue the enabled targets the buildable,
  unskipped versions lack; returns the ``[version, target]`` pairs;
- ``build_revoke(package, versions, target, forget_builds, requeue, keep_built, now)``: take
  back the versions' targets (new job ids, or dropped), returns what it did as JSON;
- ``build_import_job(package, version, target, note)``: a job held by the target's
  ``piw-import`` builder row, for wheels built elsewhere; returns ``{builder_id, job_id}``;
- ``build_record_version(package, version, released)``: a version an operator added
  (piw-add): no source upstream, so nothing is built, but skips and imports need it;
- ``build_forget_versions(package, versions)``: drop what build_dispatch knows of them (an
  operator's entry removed).
- ``build_current_build(builder_id)``: the job the builder is building, its target locked
  (``{package, version, abi, job_id}``, or NULL);
- ``build_skip_build(job_id, note)``: an operator skipped a job being built;
- ``build_hold(builder_ids, paused)``: an operator's pause (or resume) of builders.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 12:00:00.000000
"""

from piw_services.db import definer
from piw_services.db.definer import DEFINER

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

#: SQL for a fresh job id, as build_dispatch.store.NEW_JOB_ID
NEW_JOB_ID = "replace(gen_random_uuid()::text, '-', '')"
#: each function's arguments (for REVOKE and DROP)
FUNCTIONS = {
    'build_priority': 'bigint, bigint',
    'build_target_is': 'text, text',
    'build_set_skip': 'text, text, text',
    'build_add_targets': 'text, text[], bigint',
    'build_revoke': 'text, text[], text, boolean, boolean, boolean, bigint',
    'build_import_job': 'text, text, text, text',
    'build_record_version': 'text, text, bigint',
    'build_forget_versions': 'text, text[]',
    'build_current_build': 'integer',
    'build_skip_build': 'text, text',
    'build_hold': 'integer[], boolean',
}


SQL = [
    # 2 days: 9, 30 days: 5, older: 1 (a Pi user is waiting for a new release)
    """CREATE FUNCTION build_priority(released bigint, now bigint) RETURNS smallint
    LANGUAGE sql IMMUTABLE AS $$
    SELECT (CASE WHEN now - released < 172800 THEN 9 WHEN now - released < 2592000 THEN 5
            ELSE 1 END)::smallint $$""",

    """CREATE FUNCTION build_target_is(target text, wanted text) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS $$
    SELECT wanted IS NULL OR target = wanted OR split_part(target, '-', 1) = wanted $$""",

    f"""CREATE FUNCTION build_set_skip(p_package text, p_version text, p_reason text)
    RETURNS void LANGUAGE plpgsql {DEFINER} AS $$
    BEGIN
      IF p_version IS NOT NULL THEN
        UPDATE build_versions SET skip_reason = p_reason
        WHERE package = p_package AND version = p_version;
      ELSIF p_reason IS NULL THEN  -- clearing a package's skip clears its versions' too
        DELETE FROM build_package_skips WHERE package = p_package;
        UPDATE build_versions SET skip_reason = NULL WHERE package = p_package;
      ELSE
        INSERT INTO build_package_skips (package, reason) VALUES (p_package, p_reason)
        ON CONFLICT (package) DO UPDATE SET reason = excluded.reason;
      END IF;
    END $$""",

    f"""CREATE FUNCTION build_add_targets(p_package text, p_versions text[], p_now bigint)
    RETURNS json LANGUAGE plpgsql {DEFINER} AS $$
    DECLARE
      queued json;
    BEGIN
      LOCK TABLE build_abis IN SHARE MODE;  -- see build_dispatch.store.apply_events
      WITH wanted AS (
        SELECT bv.package, bv.version, bv.released, a.abi FROM build_versions bv
        CROSS JOIN build_abis a WHERE a.enabled AND bv.package = p_package
        AND bv.version = ANY(p_versions) AND bv.buildable AND bv.skip_reason IS NULL
        AND NOT EXISTS (SELECT 1 FROM build_package_skips s WHERE s.package = bv.package)
        AND NOT EXISTS (SELECT 1 FROM build_targets t WHERE t.package = bv.package
                        AND t.version = bv.version AND t.abi = a.abi)),
      made AS (
        INSERT INTO build_targets (package, version, abi, state, job_id, priority)
        SELECT package, version, abi, 'pending', {NEW_JOB_ID}, build_priority(released, p_now)
        FROM wanted ON CONFLICT (package, version, abi) DO NOTHING)
      SELECT coalesce(json_agg(json_build_array(version, abi) ORDER BY version, abi), '[]')
      INTO queued FROM wanted;
      RETURN queued;
    END $$""",

    f"""CREATE FUNCTION build_revoke(p_package text, p_versions text[], p_target text,
        p_forget_builds boolean, p_requeue boolean, p_keep_built boolean, p_now bigint)
    RETURNS json LANGUAGE plpgsql {DEFINER} AS $$
    DECLARE
      r record;
      pairs json[] := '{{}}';
      target_jobs text[] := '{{}}';
      revoked text[];
      forgotten integer := 0;
      queued json := '[]';
      dropped json := '[]';
    BEGIN
      -- a pure wheel built for one target may settle the others: they go with the build
      FOR r IN SELECT t.version, t.abi, t.job_id FROM build_targets t
          WHERE t.package = p_package AND t.version = ANY(p_versions)
          AND (build_target_is(t.abi, p_target) OR t.build_id IN (
               SELECT x.build_id FROM build_targets x WHERE x.package = p_package
               AND x.version = t.version AND build_target_is(x.abi, p_target)))
          AND NOT (p_keep_built AND t.state = 'built')
          ORDER BY t.version, t.abi FOR UPDATE OF t
      LOOP
        pairs := pairs || json_build_array(r.version, r.abi);
        target_jobs := target_jobs || r.job_id;
      END LOOP;
      revoked := target_jobs;
      IF NOT p_keep_built THEN  -- files of older jobs of these versions too
        revoked := revoked || ARRAY(SELECT f.job_id FROM files f WHERE f.package = p_package
                                    AND f.version = ANY(p_versions)
                                    AND build_target_is(f.abi, p_target));
      END IF;
      revoked := ARRAY(SELECT j FROM (SELECT DISTINCT j FROM unnest(revoked) j) u
                       WHERE j IS NOT NULL ORDER BY j COLLATE "C");
      IF p_requeue THEN
        UPDATE build_targets t SET state = 'pending', job_id = {NEW_JOB_ID},
          builder_id = NULL, build_id = NULL, note = NULL, updated_at = now(),
          priority = build_priority(bv.released, p_now) FROM build_versions bv
        WHERE bv.package = t.package AND bv.version = t.version AND t.job_id = ANY(target_jobs);
      ELSE
        DELETE FROM build_targets WHERE job_id = ANY(target_jobs);
        dropped := array_to_json(pairs);
      END IF;
      IF p_forget_builds THEN
        DELETE FROM builds WHERE package = p_package AND version = ANY(p_versions)
        AND build_target_is(abi, p_target);
        GET DIAGNOSTICS forgotten = ROW_COUNT;
      END IF;
      UPDATE builders SET job_id = NULL, job_started_at = NULL WHERE job_id = ANY(revoked);
      IF p_requeue THEN
        queued := array_to_json(pairs || ARRAY(SELECT json_array_elements(
          build_add_targets(p_package, p_versions, p_now))));
      END IF;
      RETURN json_build_object('revoked_jobs', to_json(revoked), 'builds_forgotten', forgotten,
                               'queued', queued, 'dropped', dropped);
    END $$""",

    f"""CREATE FUNCTION build_import_job(p_package text, p_version text, p_target text,
        p_note text) RETURNS json LANGUAGE plpgsql {DEFINER} AS $$
    DECLARE
      holder integer;
      job text;
    BEGIN
      -- the target's piw-import row of the builder registry (made the first time): it sends
      -- no heartbeats, so it shows as gone
      SELECT id INTO holder FROM builders WHERE label = 'piw-import' AND abi = p_target
      ORDER BY id LIMIT 1;
      IF holder IS NULL THEN
        INSERT INTO builders (label, abi, info, preinstalled, state) VALUES ('piw-import',
          p_target, '{{"note": "wheels imported by operators with piw-import"}}', '[]', 'gone')
        RETURNING id INTO holder;
      END IF;
      INSERT INTO build_targets (package, version, abi, state, job_id, priority, builder_id,
                                 note)
      VALUES (p_package, p_version, p_target, 'building', {NEW_JOB_ID}, 0, holder, p_note)
      RETURNING job_id INTO job;
      RETURN json_build_object('builder_id', holder, 'job_id', job);
    END $$""",

    f"""CREATE FUNCTION build_record_version(p_package text, p_version text, p_released bigint)
    RETURNS void LANGUAGE sql {DEFINER} AS $$
    INSERT INTO build_versions (package, version, buildable, released)
    VALUES (p_package, p_version, false, p_released) ON CONFLICT (package, version) DO NOTHING
    $$""",

    f"""CREATE FUNCTION build_forget_versions(p_package text, p_versions text[])
    RETURNS void LANGUAGE sql {DEFINER} AS $$
    DELETE FROM build_targets WHERE package = p_package AND version = ANY(p_versions);
    DELETE FROM builds WHERE package = p_package AND version = ANY(p_versions);
    DELETE FROM build_versions WHERE package = p_package AND version = ANY(p_versions);
    $$""",

    f"""CREATE FUNCTION build_current_build(p_builder integer) RETURNS json
    LANGUAGE sql {DEFINER} AS $$
    SELECT json_build_object('package', t.package, 'version', t.version, 'abi', t.abi,
                             'job_id', t.job_id)
    FROM builders b JOIN build_targets t ON t.job_id = b.job_id AND t.builder_id = b.id
    AND t.state = 'building' WHERE b.id = p_builder FOR UPDATE OF t
    $$""",

    # a new job id, so its builder can publish nothing more of it, and the builder is free
    f"""CREATE FUNCTION build_skip_build(p_job text, p_note text) RETURNS void
    LANGUAGE sql {DEFINER} AS $$
    UPDATE builders SET job_id = NULL, job_started_at = NULL WHERE job_id = p_job;
    UPDATE build_targets SET state = 'skipped', job_id = {NEW_JOB_ID}, builder_id = NULL,
    note = p_note, updated_at = now() WHERE job_id = p_job;
    $$""",

    f"""CREATE FUNCTION build_hold(p_builders integer[], p_paused boolean) RETURNS void
    LANGUAGE sql {DEFINER} AS $$
    UPDATE builders SET info = CAST(CAST(info AS jsonb) || jsonb_build_object('held', p_paused)
                                    AS json)
    WHERE id = ANY(p_builders);
    $$""",
]


def upgrade() -> None:
    definer.create(SQL, FUNCTIONS)


def downgrade() -> None:
    definer.drop(FUNCTIONS)
