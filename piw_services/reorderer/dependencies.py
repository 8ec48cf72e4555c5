"""nameko extension for the reorderer: an event dispatcher for outbox batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nameko.events import EventDispatcher


class OutboxDispatcher(EventDispatcher):
    """Publishes a message body that is JSON text already (``outbox.relay`` builds it from
    PostgreSQL's text), with the content type set so kombu sends it as it is; consumers
    decode it as any nameko event."""

    def get_dependency(self, worker_ctx: Any) -> Callable[[str, str], None]:
        extra_headers = self.get_message_headers(worker_ctx)

        def dispatch(event_type: str, body: str) -> None:
            self.publisher.publish(body, exchange=self.exchange, routing_key=event_type,
                                   extra_headers=extra_headers,
                                   content_type="application/json", content_encoding="utf-8")
        return dispatch
