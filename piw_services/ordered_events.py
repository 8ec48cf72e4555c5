"""nameko extension for consumers of the reorderer's ordered events.

A consumer service mixes in ``ordered_events.OrderedEventsConsumer`` (by the module: a class
with entrypoints imported into a service's module is taken for a service by ``nameko run``),
sets ``consumer_name``, declares ``db = Database()`` and implements
``apply_events(session, seq, events)`` (and may override ``after_ordered_events()``). Batches
then arrive in seq order, each applied exactly once in effect: inside the consumer's own
transaction, together with its high-water mark (piw_services.outbox.consume). Messages are only
a nudge: a timer catches up from the outbox table on batches RabbitMQ never delivered (sent
before the consumer's queue existed, or while it was down), so no consumer depends on delivery
for correctness. The events and their shapes: piw_services.events.
"""

from __future__ import annotations

from typing import Any

from nameko.events import SERVICE_POOL, event_handler
from nameko.timer import timer

from piw_services import outbox

SOURCE_SERVICE = "reorderer"
#: Seconds between catch-up reads of the outbox when no message arrives.
CATCH_UP_INTERVAL = 2


class OrderedEventsConsumer:
    """A mixin that feeds ``self.apply_events`` for the consumer named ``consumer_name``."""

    #: the consumer's name in the outbox's high-water marks (usually the service's name)
    consumer_name: str
    db: Any  # the service's Database dependency

    @event_handler(SOURCE_SERVICE, outbox.EVENT_TYPE, handler_type=SERVICE_POOL)
    def on_ordered_events(self, batch: dict[str, Any]) -> None:
        self._consume_ordered_events(batch)

    @timer(interval=CATCH_UP_INTERVAL)
    def catch_up_ordered_events(self) -> None:
        self._consume_ordered_events(None)

    def _consume_ordered_events(self, batch: dict[str, Any] | None) -> None:
        with self.db() as session, session.begin():
            outbox.consume(session, self.consumer_name, batch, self.apply_events)
        self.after_ordered_events()

    def apply_events(self, session: Any, seq: int, events: list[dict[str, Any]]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define apply_events")

    def after_ordered_events(self) -> None:
        """Called after each commit of applied batches (or an empty catch-up): the place
        for effects outside the database, such as publishing."""
