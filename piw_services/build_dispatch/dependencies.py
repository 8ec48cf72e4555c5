"""nameko dependency: publishes build jobs to the durable per-ABI queues ``piw.builds.<abi>``.

Jobs are published in AMQP transactions of a few hundred: one round trip per batch rather than
one confirm per job, and when ``tx_commit`` returns the broker has them. A crash between the
commit and our database marking them queued republishes them later under the same job ids;
the duplicate is dropped when a builder claims it (see logic.claim_decision).
"""

from __future__ import annotations

import logging
from typing import Any

from eventlet.semaphore import Semaphore
from kombu import Connection, Producer, Queue
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import DependencyProvider

from builders import protocol

log = logging.getLogger(__name__)


def job_queue(abi: str) -> Queue:
    """The declaration of an ABI's job queue; builders consume it without declaring it."""
    return Queue(protocol.job_queue(abi), durable=True,
                 queue_arguments={"x-max-priority": protocol.MAX_PRIORITY})


class JobQueues(DependencyProvider):
    """Injects :meth:`publish`: ``self.jobs.publish([{"abi", "priority", "body"}, ...])``."""

    def setup(self) -> None:
        self.uri = self.container.config[AMQP_URI_CONFIG_KEY]
        self.lock = Semaphore()
        self.connection: Connection | None = None
        self.declared: set[str] = set()
        #: set by the service once it has made the ABIs those of its config
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
            self.channel.tx_select()
        return self.channel

    def declare(self, abis: list[str]) -> None:
        """Declare the job queues of *abis* (so builders can consume before the first job)."""
        with self.lock:
            self._declare(self._channel(), abis)

    def _declare(self, channel: Any, abis: list[str]) -> None:
        for abi in abis:
            if abi not in self.declared:
                job_queue(abi)(channel).declare()
                self.declared.add(abi)

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
        self._declare(channel, sorted({j["abi"] for j in jobs}))
        producer = Producer(channel, auto_declare=False)
        for job in jobs:
            producer.publish(job["body"], routing_key=protocol.job_queue(job["abi"]),
                             priority=job["priority"], delivery_mode=2, serializer="json")
        channel.tx_commit()

    def get_dependency(self, worker_ctx: Any) -> JobQueues:
        return self
