"""nameko service ``build_dispatch``: keeps which builds are needed, queues jobs per build
target (an ABI on a platform, ``cp311-linux_armv7l``), answers builders (hello, claim,
result), records builds and the builder registry."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from nameko.events import EventDispatcher
from nameko.timer import timer

from builders import protocol
from piw_services import events as ev
from piw_services import ordered_events, rabbit_users
from piw_services.build_dispatch import queries, store
from piw_services.build_dispatch.dependencies import JobQueues
from piw_services.builder_queues import builder_queue
from piw_services.db.dependency import Database
from piw_services.rabbit_users import MANAGEMENT_PORT, management_api
from piw_services.rpc import rpc
from piw_services.settings import SettingsProvider

log = logging.getLogger(__name__)

#: Jobs per AMQP transaction (and per database transaction marking them queued).
PUBLISH_BATCH = 1000


class BuildDispatchService(ordered_events.OrderedEventsConsumer):
    consumer_name = "build_dispatch"
    name = "build_dispatch"

    db = Database()
    jobs = JobQueues()
    settings = SettingsProvider()
    dispatch = EventDispatcher()

    # -- ordered events -----------------------------------------------------------------------
    def apply_events(self, session: Any, seq: int, events: list[dict[str, Any]]) -> None:
        created = store.apply_events(session, events)
        if created:
            log.info("batch %d: %d builds to queue", seq, created)

    def after_ordered_events(self) -> None:
        self._publish_pending()

    # -- builders -----------------------------------------------------------------------------
    @builder_queue(protocol.REQUESTS)
    def builder_request(self, body: Any, headers: dict[str, Any]) -> dict[str, Any]:
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == "hello":
            msg = protocol.check_hello(body)
            user = headers.get(protocol.SENDER)
            with self.db() as s, s.begin():
                builder_id = store.hello(s, msg, user)
                paused = store.held(s, builder_id)
            target = protocol.hello_target(msg)
            self.jobs.declare([target])
            orders = protocol.order_queue(builder_id, user) if user else None
            if orders:
                self.jobs.declare_orders(orders)
            log.info("builder %s (%s) said hello: id %d", msg["label"], target, builder_id)
            return protocol.ok(builder_id=builder_id, silence_limit=self._silence_limit(),
                               orders=orders, paused=paused)
        if kind == "claim":
            msg = protocol.check_claim(body)
            with self.db() as s, s.begin():
                build, reason = store.claim(s, msg)
            if not build:
                log.info("builder %d drops job %s: %s", msg["builder_id"], msg["job_id"],
                         reason)
            return protocol.ok(build=build, reason=reason)
        if kind == "result":
            msg = protocol.check_result(body)
            try:
                with self.db() as s, s.begin():
                    outcome = store.record_result(s, msg)
            except store.NotYourJob as exc:
                log.warning("builder %d: %s", msg["builder_id"], exc)
                return protocol.job_lost(str(exc))
            log.info("builder %d: job %s %s: %s", msg["builder_id"], msg["job_id"],
                     msg["status"], outcome)
            if outcome.get("package"):
                self.dispatch(ev.BUILDS_CHANGED, {"package": outcome["package"],
                                                 "version": outcome["version"]})
            return protocol.ok(**outcome)
        raise protocol.ProtocolError(f"unknown request type {kind!r:.40}")

    @builder_queue(protocol.STATUS)
    def builder_status(self, body: Any, headers: dict[str, Any]) -> None:
        msg = protocol.check_heartbeat(body)
        with self.db() as s, s.begin():
            if not store.heartbeat(s, msg):
                log.warning("heartbeat from unknown builder %s", msg["builder_id"])

    # -- timers -------------------------------------------------------------------------------
    @timer(interval=1)
    def tick(self) -> None:
        """Publish pending jobs (a publish that failed is retried here) and mark silent
        builders gone; on the first tick, make the build targets those of the config."""
        if not self.jobs.abis_synced:
            self._sync_abis()
        with self.db() as s, s.begin():
            gone = store.mark_gone(s, self._silence_limit())
        if gone:
            log.warning("builders gone silent: %s", ", ".join(gone))
        self._publish_pending()

    def _sync_abis(self) -> None:
        abis = self.jobs.configured
        if abis:
            with self.db() as s, s.begin():
                new = store.sync_abis(s, abis)
            if new:
                log.info("now building for %s", ", ".join(new))
        with self.db() as s:
            enabled = queries.enabled_abis(s)
        # not inside the session: a transaction held across a broker call that hangs (the
        # broker gone) would block every writer of build_abis
        self.jobs.declare(enabled)
        self.jobs.abis_synced = True

    def _silence_limit(self) -> float:
        return self.settings.builder_silence_limit

    def _publish_pending(self) -> int:
        """Top up each target's job queue to QUEUE_WINDOW ready jobs, best first.

        The database is the queue of record; RabbitMQ holds only the next jobs. So priorities
        are decided when a job is sent (popularity known by then counts), and a removed or
        skipped version rarely has a message to drop.
        """
        window = self.settings.queue_window
        wait_for_info = self.settings.enrich_days > 0
        with self.db() as s:
            abis = queries.enabled_abis(s)
        published = 0
        for abi in abis:
            while (room := min(window - self.jobs.depth(abi), PUBLISH_BATCH)) > 0:
                with self.db() as s, s.begin():
                    jobs = store.take_pending(s, abi, room, wait_for_info)
                    if jobs:
                        self.jobs.publish(jobs)
                published += len(jobs)
                if len(jobs) < room:
                    break
        if published:
            log.info("queued %d jobs", published)
        return published

    # -- builders sending too much garbage (piw_services/builder_queues.py) --------------------
    @rpc
    def block_builder(self, user: str, reason: str, refusals: int) -> dict[str, Any]:
        """Cut RabbitMQ user *user* off: record it with the permissions it has, take them
        away (it cannot connect again) and close its connections. Idempotent. The master's
        own user is never blocked (that would stop the master)."""
        if not user or user == self._master_user():
            log.error("not blocking %r: it is the master's own user", user)
            return {"blocked": False, "error": "the master's own user"}
        api, auth, vhost = management_api(self.settings.amqp_uri, MANAGEMENT_PORT)
        with self.db() as s:
            known, had = store.blocked_permissions(s, user)
        if not known:
            had = rabbit_users.permissions(api, auth, vhost, user)
        with self.db() as s, s.begin():  # recorded before revoked: nothing is ever forgotten
            store.block(s, user, reason, refusals, had)
        rabbit_users.revoke(api, auth, vhost, user)
        closed = rabbit_users.close_connections(api, auth, vhost, user, f"piw: blocked: {reason}")
        log.warning("blocked builder user %s after %d refused messages in a minute (%s): "
                    "permissions revoked, %d connections closed; piw-unblock %s lets it back",
                    user, refusals, reason, closed, user)
        return {"blocked": True, "connections_closed": closed}

    @rpc
    def unblock_builder(self, user: str) -> dict[str, Any]:
        """Give a blocked user its permissions back and forget the block (an operator's
        ``piw-unblock``)."""
        with self.db() as s:
            known, had = store.blocked_permissions(s, user)
        if not known:
            return {"unblocked": False, "error": f"{user} is not blocked"}
        if had:
            api, auth, vhost = management_api(self.settings.amqp_uri, MANAGEMENT_PORT)
            rabbit_users.grant(api, auth, vhost, user, had)
        with self.db() as s, s.begin():
            store.unblock(s, user)
        log.info("unblocked builder user %s", user)
        return {"unblocked": True, "permissions": had}

    @rpc
    def blocked_builders(self) -> list[str]:
        """The RabbitMQ users blocked now."""
        with self.db() as s:
            return [b.user for b in queries.blocked_builders(s)]

    def _master_user(self) -> str:
        return unquote(urlsplit(self.settings.amqp_uri).username or "guest")

    # -- questions ----------------------------------------------------------------------------
    @rpc
    def status(self) -> dict[str, Any]:
        """Enabled build targets, counts per target and state, the builder registry."""
        with self.db() as s:
            return store.status(s)

    @rpc
    def version_status(self, package: str, version: str | None = None) -> list[dict[str, Any]]:
        """Build state per (version, build target) of one package (canonical name)."""
        with self.db() as s:
            return store.version_status(s, package, version)
