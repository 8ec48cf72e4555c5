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
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from kombu import Exchange, Queue
from nameko.amqp.publish import get_producer
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import Consumer

from builders import protocol

log = logging.getLogger(__name__)

EXCHANGE = Exchange(protocol.EXCHANGE, type="direct", durable=True)


def queue(name: str, routing_key: str | None = None) -> Queue:
    """A durable queue behind the builders' exchange, bound by its own name, or by
    *routing_key* when a second service wants its own copy of those messages."""
    return Queue(name, exchange=EXCHANGE, routing_key=routing_key or name, durable=True)


class BuilderQueue(Consumer):
    """Entrypoint: consume one builder-facing queue, answer on ``reply_to``."""

    def __init__(self, name: str, routing_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(queue(name, routing_key), **kwargs)

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
        if exc_info is not None:
            exc = exc_info[1]
            if isinstance(exc, protocol.ProtocolError):
                log.warning("refused a message on %s: %s", self.queue.name, exc)
                result = protocol.error(str(exc))
            else:
                log.error("failed to handle a message on %s", self.queue.name,
                          exc_info=exc_info)
                result = protocol.error(f"master failed: {type(exc).__name__}: {exc}",
                                        retry=True)
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


builder_queue = BuilderQueue.decorator
