"""nameko dependency: publishes build jobs to the durable per-target queues
``piw.builds.<target>`` (``piw.builds.cp311-linux_armv7l``).

Jobs are published with publisher confirms, streamed: a batch goes out without waiting, then we
wait for the broker's acks of all of it (twice the rate of AMQP transactions, and several times
that of waiting for each confirm). When :meth:`JobQueues.publish` returns the broker has them.
A crash before our database marks them queued republishes them later under the same job ids;
the duplicate is dropped when a builder claims it (see logic.claim_decision).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import amqp
from eventlet.semaphore import Semaphore
from kombu import Connection, Queue
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import DependencyProvider

from builders import protocol, sysinfo
from piw_services.build_dispatch import logic

log = logging.getLogger(__name__)

#: Seconds to wait for the broker to confirm a batch before the connection counts as broken.
CONFIRM_TIMEOUT = 30


def job_queue(target: str) -> Queue:
    """The declaration of a target's job queue; builders consume it without declaring it."""
    return Queue(protocol.job_queue(target), durable=True,
                 queue_arguments={"x-max-priority": protocol.MAX_PRIORITY})


class JobQueues(DependencyProvider):
    """Injects :meth:`publish`: ``self.jobs.publish([{"target", "priority", "body"}, ...])``."""

    def setup(self) -> None:
        #: BUILD_ABIS as ``[logic.Target, ...]``, read here so that a bad setting
        #: stops the service at start with the reason (a ValueError naming the entry)
        self.configured = logic.parse_targets(self.container.config.get("BUILD_ABIS"),
                                              sysinfo.platform_tag())
        self.uri = self.container.config[AMQP_URI_CONFIG_KEY]
        self.lock = Semaphore()
        self.connection: Connection | None = None
        self.declared: set[str] = set()
        #: set by the service once it has made the build targets those of its config
        self.abis_synced = False

    def stop(self) -> None:
        self._close()

    def kill(self) -> None:
        self._close()

    def _close(self) -> None:
        if self.connection is not None:
            self.connection.release()
            self.connection = None
        self.declared.clear()

    def _channel(self) -> Any:
        if self.connection is None:
            self.connection = Connection(self.uri)
            self.connection.ensure_connection(max_retries=3)
            self.channel = self.connection.channel()
            self.channel.confirm_select()
            self.published = self.acked = 0
            self.singles: set[int] = set()
            self.nacked = False
            self.channel.events["basic_ack"].add(self._on_ack)
            self.channel.events["basic_nack"].add(self._on_nack)
        return self.channel

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        """Track the highest tag below which every message is confirmed ("multiple" acks
        cover all tags up to theirs; single ones may come out of order)."""
        if multiple:
            self.acked = max(self.acked, delivery_tag)
            self.singles = {t for t in self.singles if t > self.acked}
        else:
            self.singles.add(delivery_tag)
        while self.acked + 1 in self.singles:
            self.acked += 1
            self.singles.discard(self.acked)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self.nacked = True

    def declare(self, targets: list[str]) -> None:
        """Declare the job queues of *targets* (so builders can consume before the first
        job)."""
        with self.lock:
            self._declare(self._channel(), targets)

    def _declare(self, channel: Any, targets: list[str]) -> None:
        for target in targets:
            if target not in self.declared:
                job_queue(target)(channel).declare()
                self.declared.add(target)

    def declare_orders(self, name: str) -> None:
        """Declare a builder's order queue (protocol.order_queue): durable, so an order waits
        for a builder that is offline (each order expires: protocol.ORDER_EXPIRY)."""
        with self.lock:
            if name not in self.declared:
                Queue(name, durable=True)(self._channel()).declare()
                self.declared.add(name)

    def depth(self, target: str) -> int:
        """Jobs ready (not yet delivered) on the target's queue."""
        with self.lock:
            try:
                channel = self._channel()
                self._declare(channel, [target])
                return channel.queue_declare(protocol.job_queue(target),
                                             passive=True).message_count
            except Exception:
                self._close()
                raise

    def publish(self, jobs: list[dict[str, Any]]) -> None:
        """Publish persistent job messages; returns once the broker holds all of them."""
        with self.lock:
            try:
                self._publish(jobs)
            except Exception:
                self._close()  # a broken channel is not reused; the caller retries later
                raise

    def _publish(self, jobs: list[dict[str, Any]]) -> None:
        channel = self._channel()
        self._declare(channel, sorted({j["target"] for j in jobs}))
        for job in jobs:
            channel.basic_publish(
                amqp.Message(json.dumps(job["body"]), content_type="application/json",
                             content_encoding="utf-8", priority=job["priority"],
                             delivery_mode=2),
                exchange="", routing_key=protocol.job_queue(job["target"]))
        self.published += len(jobs)
        while self.acked < self.published:
            if self.nacked:
                raise RuntimeError("the broker refused (nacked) job messages")
            self.connection.drain_events(timeout=CONFIRM_TIMEOUT)

    def get_dependency(self, worker_ctx: Any) -> JobQueues:
        return self
