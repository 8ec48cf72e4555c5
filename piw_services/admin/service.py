"""nameko service ``admin``: the operators' door, over RPC (``nameko shell``, piw-remove & co).

Each call runs its action (piw_services/admin/actions.py) and writes the action's event to the
outbox in one transaction, then waits up to ADMIN_WAIT seconds until build_dispatch,
file_manager and the index have applied it, so ``piw-remove`` returns once the files and pages
are gone. A call that gives up waiting still completes: the event is in the outbox, and each
consumer applies it when it runs (``complete`` says which case it was). ``dry_run=True`` does
the same work and rolls it back: what the answer says is what the real call would do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import eventlet
from kombu import Queue
from nameko.amqp.publish import get_producer
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy

from builders import protocol
from piw_services import outbox
from piw_services.admin import actions
from piw_services.build_dispatch import queries as build_queries
from piw_services.db.dependency import Database
from piw_services.index import queries as index_queries
from piw_services.rpc import rpc
from piw_services.settings import SettingsProvider

log = logging.getLogger(__name__)

#: The services that act on an operator's change, and so are waited for.
CONSUMERS = ("build_dispatch", "file_manager", "index")
POLL = 0.2
#: Seconds an RPC to build_dispatch may take beyond ADMIN_WAIT.
RPC_MARGIN = 30


class AdminService:
    name = "admin"

    db = Database()
    settings = SettingsProvider()
    config = Config()
    build_dispatch = RpcProxy("build_dispatch")

    @rpc(expected_exceptions=actions.AdminError)
    def remove(self, package: str, version: str, skip: bool | str = False,
               dry_run: bool = False) -> dict[str, Any]:
        """Forget the version's builds and delete its files; build it again later, or with
        ``skip`` (True, or a reason) never again."""
        return self._run(actions.remove, dry_run, package, version, skip)

    @rpc(expected_exceptions=actions.AdminError)
    def remove_package(self, package: str, skip: bool | str = False,
                       dry_run: bool = False) -> dict[str, Any]:
        return self._run(actions.remove_package, dry_run, package, skip)

    @rpc(expected_exceptions=actions.AdminError)
    def skip(self, package: str, version: str | None = None, reason: str | None = None,
             dry_run: bool = False) -> dict[str, Any]:
        return self._run(actions.skip, dry_run, package, version, reason)

    @rpc(expected_exceptions=actions.AdminError)
    def unskip(self, package: str, version: str | None = None,
               dry_run: bool = False) -> dict[str, Any]:
        return self._run(actions.unskip, dry_run, package, version)

    @rpc(expected_exceptions=actions.AdminError)
    def rebuild(self, package: str, version: str | None = None, abi: str | None = None,
                dry_run: bool = False) -> dict[str, Any]:
        return self._run(actions.rebuild, dry_run, package, version, abi)

    @rpc(expected_exceptions=actions.AdminError)
    def add(self, package: str, version: str | None = None, description: str | None = None,
            aliases: list[str] | None = None, released: str | float | None = None,
            yank: bool = False, unyank: bool = False, skip: str | None = None,
            unskip: bool = False, who: str | None = None,
            dry_run: bool = False) -> dict[str, Any]:
        """piw-add: a package or version upstream does not show becomes the operator's
        entry; a known one gets notes, unskip or unyank; the builds it lacks are queued."""
        return self._run(partial(actions.add, description=description, aliases=aliases,
                                 released=released, yank=yank, unyank=unyank, skip=skip,
                                 unskip=unskip, who=who), dry_run, package, version)

    @rpc(expected_exceptions=actions.AdminError)
    def import_wheels(self, package: str, version: str, target: str,
                      files: list[dict[str, Any]], who: str | None = None,
                      dry_run: bool = False) -> dict[str, Any]:
        """piw-import's first step: a job for the wheels (inspection records in *files*) of
        the version for the target, which piw-import then uploads and reports."""
        return self._run(actions.import_wheels, dry_run, package, version, target, files, who)

    @rpc(expected_exceptions=actions.AdminError)
    def rebuild_pages(self, part: str, package: str | None = None,
                      dry_run: bool = False) -> dict[str, Any]:
        """piwheels' ``piw-rebuild`` verbs: home, search, project or both (one package's
        pages, or every package's when None)."""
        return self._run(actions.rebuild_pages, dry_run, part, package)

    @rpc(expected_exceptions=actions.AdminError)
    def builder_control(self, order: str, builder: int | str | None = None,
                        reason: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """piwheels' monitor keys: ``pause``/``resume`` a builder (every builder when
        *builder* is None), ``kill`` its build (built again elsewhere) or ``skip`` it (with
        *reason*); ``undelivered`` names the builders whose order could not be queued."""
        return self._run(actions.builder_control, dry_run, order, builder, reason)

    @rpc(expected_exceptions=actions.AdminError)
    def unblock_builder(self, user: str, dry_run: bool = False) -> dict[str, Any]:
        """Let a builder user that was blocked for sending too many refused messages back
        in (``piw-unblock``): build_dispatch, which keeps the blocks, gives it its RabbitMQ
        permissions again."""
        if not isinstance(user, str) or not user:
            raise actions.BadRequest(f"not a RabbitMQ user name: {user!r:.80}")
        with eventlet.Timeout(self.settings.admin_wait + RPC_MARGIN, TimeoutError):
            blocked = self.build_dispatch.blocked_builders()
        if user not in blocked:
            raise actions.BadRequest(f"{user} is not blocked (blocked: "
                                     f"{', '.join(blocked) or 'none'})")
        result = {"dry_run": bool(dry_run), "complete": True, "waiting_for": []}
        if dry_run:
            return {**result, "summary": f"would unblock {user}: its RabbitMQ permissions "
                                         "are given back"}
        with eventlet.Timeout(self.settings.admin_wait + RPC_MARGIN, TimeoutError):
            answer = self.build_dispatch.unblock_builder(user)
        if not answer.get("unblocked"):
            raise actions.BadRequest(answer.get("error") or f"{user} was not unblocked")
        log.info("unblocked builder user %s", user)
        return {**result, "summary": f"unblocked {user}: it may connect again"}

    @rpc
    def status(self) -> dict[str, Any]:
        """How far each consumer is behind the outbox, and the skips in force."""
        with self.db() as s:
            return {"outbox_seq": outbox.last_seq(s), "consumers": outbox.consumer_marks(s),
                    **build_queries.skips(s)}

    def _run(self, action: Callable[..., actions.Outcome], dry_run: bool,
             *args: Any) -> dict[str, Any]:
        seq = None
        with self.db() as s:
            outcome = action(s, *args)  # an AdminError leaves with nothing committed
            event = outcome.event()
            if dry_run:
                s.rollback()
            else:
                if event is not None:
                    seq = outbox.write(s, [event])[-1]
                s.commit()
        result = outcome.as_dict(dry_run=bool(dry_run))
        result["dry_run"] = bool(dry_run)
        if not dry_run and outcome.orders:
            result["undelivered"] = self._send_orders(outcome.orders)
        if dry_run or seq is None:
            result.update(complete=True, waiting_for=[])
            if not dry_run:
                log.info("%s", outcome.summary)
            return result
        log.info("%s (outbox batch %d)", outcome.summary, seq)
        waiting = self._wait(seq, outcome.package or None)
        result.update(seq=seq, complete=not waiting, waiting_for=waiting)
        return result

    def _send_orders(self, orders: list[dict[str, Any]]) -> dict[str, str]:
        """Put each order on its builder's queue (declared, durable, the order persistent and
        expiring after protocol.ORDER_EXPIRY: an offline builder gets it when it comes back
        within that); the builders it could not be given to, with why."""
        failed: dict[str, str] = {}
        try:
            with get_producer(self.config[AMQP_URI_CONFIG_KEY]) as producer:
                for o in orders:
                    try:
                        producer.publish(o["order"], exchange="", routing_key=o["queue"],
                                         serializer="json", delivery_mode=2,
                                         expiration=protocol.ORDER_EXPIRY,
                                         declare=[Queue(o["queue"], durable=True)], retry=True,
                                         retry_policy={"max_retries": 3})
                    except Exception as exc:  # a broker error: say which builder missed it
                        failed[str(o["builder_id"])] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            failed.update({str(o["builder_id"]): f"{type(exc).__name__}: {exc}"
                           for o in orders})
        for builder_id, problem in failed.items():
            log.error("order not delivered to builder %s: %s", builder_id, problem)
        return failed

    def _wait(self, seq: int, package: str | None) -> list[str]:
        """The consumers still to apply batch *seq* (and the index to rewrite *package*'s
        pages, or every page marked when None) after waiting up to ADMIN_WAIT seconds."""
        deadline = time.monotonic() + self.settings.admin_wait
        while True:
            with self.db() as s:
                marks = outbox.consumer_marks(s)
                behind = [c for c in CONSUMERS if marks.get(c, 0) < seq]
                if "index" not in behind and index_queries.pages_pending(s, package):
                    behind.append("index")
            if not behind or time.monotonic() >= deadline:
                return behind
            eventlet.sleep(POLL)
