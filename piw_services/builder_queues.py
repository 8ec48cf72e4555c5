"""nameko extension for the queues builders publish to (see builders/protocol.py).

Builders are not nameko services and their RabbitMQ users may not touch nameko's RPC exchange,
so the master answers them on plain queues behind the ``piw.builders`` exchange. A method
decorated with ``@builder_queue(name)`` gets ``(body, headers)`` (``headers[protocol.SENDER]``:
the sender's RabbitMQ user when it set the ``user_id`` property, which RabbitMQ checks, else
None); what it returns is sent to the
message's ``reply_to`` (with its ``correlation_id``) when there is one. A
:class:`~builders.protocol.ProtocolError` becomes a refusal naming the problem; any other
exception a refusal that says to retry. The message is acked either way: a malformed message
redelivered forever would help nobody, and builders retry what deserves retrying.

Refusals are bounded (issue 18): the decorated method catches its ProtocolError itself, so
nameko never logs a traceback for one; the first refusal of a sender (the RabbitMQ user that
published it, which RabbitMQ vouches for in the ``user_id`` property piw-builder sets) in a
minute is logged, the rest are counted and summed up in one line a minute
(piw_services/refusals.py), and a sender refused BUILDER_REFUSAL_LIMIT times in a minute is
blocked by build_dispatch (its permissions revoked, its connections closed) until an operator
runs ``piw-unblock``. A message without ``user_id`` cannot be told apart from others; it is
counted under "unnamed senders", which are never blocked.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import eventlet
from kombu import Exchange, Queue
from nameko.amqp.publish import get_producer
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import Consumer
from nameko.standalone.rpc import ClusterRpcProxy

from builders import protocol
from piw_services.refusals import Refusals
from piw_services.settings import Settings

log = logging.getLogger(__name__)

#: Who a message without ``user_id`` counts as.
UNNAMED = "unnamed senders"
#: Seconds between looks for minutes of refusals that are over (to log their summaries).
FLUSH_INTERVAL = 10.0
#: Seconds the call that blocks a sender may take.
BLOCK_TIMEOUT = 60.0

EXCHANGE = Exchange(protocol.EXCHANGE, type="direct", durable=True)


def queue(name: str, routing_key: str | None = None) -> Queue:
    """A durable queue behind the builders' exchange, bound by its own name, or by
    *routing_key* when a second service wants its own copy of those messages."""
    return Queue(name, exchange=EXCHANGE, routing_key=routing_key or name, durable=True)


class Refused:
    """What a decorated method returns instead of raising a ProtocolError (nameko would log
    a traceback for an exception)."""

    def __init__(self, error: protocol.ProtocolError) -> None:
        self.error = error


class BuilderQueue(Consumer):
    """Entrypoint: consume one builder-facing queue, answer on ``reply_to``."""

    def __init__(self, name: str, routing_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(queue(name, routing_key), **kwargs)

    def setup(self) -> None:
        super().setup()
        limit = Settings.from_config(self.container.config).builder_refusal_limit
        self.refusals = Refusals(limit)

    def start(self) -> None:
        super().start()
        self.container.spawn_managed_thread(self._flush_summaries)

    def _flush_summaries(self) -> None:
        while True:
            eventlet.sleep(FLUSH_INTERVAL)
            for summary in self.refusals.flush(time.monotonic()):
                self._log_summary(summary.sender, summary.unlogged, summary.last)

    def _log_summary(self, sender: str, unlogged: int, last: str) -> None:
        log.warning("refused %d more messages from %s on %s in the last minute (last: %s)",
                    unlogged, sender, self.queue.name, last)

    def refused(self, sender: str | None, error: protocol.ProtocolError) -> None:
        """Log (the first of the minute), count, and block a sender over the limit."""
        who = sender or UNNAMED
        verdict, summary = self.refusals.refuse(who, str(error), time.monotonic())
        if summary is not None:
            self._log_summary(summary.sender, summary.unlogged, summary.last)
        if verdict.log:
            log.warning("refused a message from %s on %s: %s (more refusals of it are "
                        "counted, and logged once a minute)", who, self.queue.name, error)
        if verdict.block and sender:
            self.container.spawn_managed_thread(
                partial(self._block, sender, str(error), self.refusals.limit))
        elif verdict.block:
            log.error("%d messages without a user_id refused on %s in a minute: their "
                      "sender cannot be told apart, so it is not blocked",
                      self.refusals.limit, self.queue.name)

    def _block(self, sender: str, reason: str, refusals: int) -> None:
        config = {AMQP_URI_CONFIG_KEY: self.container.config[AMQP_URI_CONFIG_KEY]}
        try:
            with ClusterRpcProxy(config, timeout=BLOCK_TIMEOUT) as rpc:
                rpc.build_dispatch.block_builder(sender, f"{self.queue.name}: {reason}",
                                                 refusals)
        except Exception:  # the next minute over the limit tries again
            log.exception("could not block %s", sender)

    def handle_message(self, body: Any, message: Any) -> None:
        handle_result = partial(self.handle_result, message)
        # who sent it, as RabbitMQ checked it (a builder's own header of that name is dropped)
        headers = {**(message.headers or {}),
                   protocol.SENDER: message.properties.get("user_id")}
        try:
            self.container.spawn_worker(self, (body, headers), {},
                                        context_data={}, handle_result=handle_result)
        except ContainerBeingKilled:
            self.queue_consumer.requeue_message(message)

    def handle_result(self, message: Any, worker_ctx: Any, result: Any = None,
                      exc_info: Any = None) -> tuple[Any, Any]:
        if isinstance(result, Refused):
            self.refused(message.properties.get("user_id"), result.error)
            result = protocol.error(str(result.error))
        if exc_info is not None:  # not a ProtocolError: builder_queue's methods return those
            exc = exc_info[1]
            log.error("failed to handle a message on %s", self.queue.name, exc_info=exc_info)
            result = protocol.error(f"master failed: {type(exc).__name__}: {exc}", retry=True)
        reply_to = message.properties.get("reply_to")
        if reply_to and result is not None:
            try:
                with get_producer(self.container.config[AMQP_URI_CONFIG_KEY],
                                  confirms=False) as producer:
                    producer.publish(result, exchange="", routing_key=reply_to,
                                     correlation_id=message.properties.get("correlation_id"),
                                     serializer="json", retry=True)
            except Exception:  # the builder times out and asks again
                log.exception("could not answer %s", reply_to)
        self.queue_consumer.ack_message(message)
        # the exception was answered: nameko need not log it again
        return result, None


def builder_queue(name: str, routing_key: str | None = None, **kwargs: Any
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: the method answers the builders' queue *name*; a ProtocolError it raises
    is returned as a :class:`Refused` (see the module's docstring)."""
    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def refusing(self: Any, body: Any, headers: dict[str, Any]) -> Any:
            try:
                return method(self, body, headers)
            except protocol.ProtocolError as exc:
                return Refused(exc)
        return BuilderQueue.decorator(name, routing_key, **kwargs)(refusing)
    return decorate
