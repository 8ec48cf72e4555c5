"""nameko's ``@rpc`` entrypoint, made to outlive a broker that goes away mid-call.

nameko sends an RPC's reply from the worker's ``handle_result``, with a publish that retries for
a few seconds only. When RabbitMQ is down longer than that (a restart, a network cut) while a
call is being answered, the publish raises there, outside the method, and nameko treats that as
a fatal error of the container: the service stops (and with it every service of a piw-master
process), although everything else in nameko reconnects by itself. Found by tests/chaos.

Here a reply that cannot be sent is logged and dropped instead. The request was not acked (its
channel died with the connection), so RabbitMQ delivers it again once the service reconnects and
the caller, if it still waits, gets its answer then; otherwise the caller times out, as it would
for any lost reply. RPC methods are idempotent already (delivery is at-least-once).
"""

from __future__ import annotations

import logging
from typing import Any

from amqp.exceptions import RecoverableConnectionError
from kombu.exceptions import OperationalError
from nameko.rpc import Rpc as NamekoRpc

log = logging.getLogger(__name__)

#: What a publish raises when the broker is gone (kombu wraps socket errors in OperationalError).
BROKER_GONE = (OperationalError, RecoverableConnectionError, ConnectionError)


class Rpc(NamekoRpc):
    def handle_result(self, message: Any, worker_ctx: Any, result: Any,
                      exc_info: Any) -> tuple[Any, Any]:
        try:
            return super().handle_result(message, worker_ctx, result, exc_info)
        except BROKER_GONE as exc:
            log.warning("could not send the reply of %s.%s, the broker is gone (%s: %s): the "
                        "call is delivered again once it is back", self.container.service_name,
                        self.method_name, type(exc).__name__, exc)
            return result, exc_info


rpc = Rpc.decorator
