"""RabbitMQ users with narrow permissions, made through the broker's management API.

Builders and operators each connect as their own user so a leaked password reaches only what
that role needs: a builder's permissions are ``builders.protocol.builder_permissions`` (the
builder imports nothing of the master's), an operator's are :func:`operator_permissions` here.
``piw-builder-user`` and ``piw-operator-user`` both use these helpers.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests

from builders import protocol

#: RabbitMQ's management API port (piw-builder-user's --api-port default; where the master
#: blocks a builder that sends too much garbage).
MANAGEMENT_PORT = 15672
#: nameko's default RPC exchange (a topic exchange; config key ``rpc_exchange``).
RPC_EXCHANGE = "nameko-rpc"
#: The reply queue of nameko's standalone proxies (``ClusterRpcProxy``, ``nameko shell``):
#: nameko.rpc.RPC_REPLY_QUEUE_TEMPLATE with the service name ``standalone_rpc_proxy`` and a
#: uuid4, bound to the RPC exchange with the uuid as routing key.
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
STANDALONE_REPLY_QUEUE = rf"rpc\.reply-standalone_rpc_proxy-{_UUID}"


def operator_permissions(exchange: str = RPC_EXCHANGE) -> dict[str, str]:
    """An operator's permissions (regexes on resource names): declare and use the RPC exchange
    and its own standalone reply queues; and, for piw-import, what a builder may do with the
    builders' exchange (publish chunks, commits and the result of the job the admin service
    gave it) and its own server-named reply queue. No service's queue, no job queue.

    The proxy declares the exchange on connecting, which needs *configure* on it (RabbitMQ has
    no finer grain: that would also let the holder delete the exchange, so operators only);
    *write* on its reply queue and *read* on the exchange are what binding them needs."""
    rpc = rf"{re.escape(exchange)}|{STANDALONE_REPLY_QUEUE}"
    own = r"amq\.gen-.*"
    return {"configure": rf"^({rpc}|{own})$",
            "write": rf"^({rpc}|{re.escape(protocol.EXCHANGE)})$",
            "read": rf"^({rpc}|{own})$"}


def operator_topic_permissions(exchange: str = RPC_EXCHANGE) -> dict[str, str]:
    """What an operator may publish on the RPC exchange: calls to the admin service only
    (routing key ``admin.<method>``); and bind reply queues by uuid only, so it cannot bind a
    queue to other services' calls or replies."""
    return {"exchange": exchange, "write": r"^admin\.", "read": rf"^{_UUID}$"}


def management_api(amqp_uri: str, port: int) -> tuple[str, tuple[str, str], str]:
    """(API base URL, credentials, vhost) for the broker of *amqp_uri*."""
    url = urlsplit(amqp_uri)
    vhost = unquote(url.path[1:]) if len(url.path) > 1 else "/"
    auth = (unquote(url.username or "guest"), unquote(url.password or "guest"))
    return f"http://{url.hostname or '127.0.0.1'}:{port}/api", auth, vhost


def user_uri(amqp_uri: str, name: str, password: str) -> str:
    """The master's AMQP_URI with another user's credentials instead."""
    url = urlsplit(amqp_uri)
    netloc = f"{quote(name, safe='')}:{quote(password, safe='')}@{url.hostname}"
    return url._replace(netloc=netloc + (f":{url.port}" if url.port else "")).geturl()


def add_user(api: str, auth: tuple[str, str], vhost: str, name: str, password: str,
             permissions: dict[str, str], topic: dict[str, Any] | None = None) -> None:
    """Create or update *name* with *password* and exactly *permissions* on *vhost* (and the
    *topic* permission of one exchange, if given; any other topic permission is removed)."""
    user = quote(name, safe="")
    where = f"{quote(vhost, safe='')}/{user}"
    requests.put(f"{api}/users/{user}", json={"password": password, "tags": ""}, auth=auth,
                 timeout=10).raise_for_status()
    requests.put(f"{api}/permissions/{where}", json=permissions, auth=auth,
                 timeout=10).raise_for_status()
    response = requests.delete(f"{api}/topic-permissions/{where}", auth=auth, timeout=10)
    if response.status_code != 404:
        response.raise_for_status()
    if topic:
        requests.put(f"{api}/topic-permissions/{where}", json=topic, auth=auth,
                     timeout=10).raise_for_status()


def remove_user(api: str, auth: tuple[str, str], name: str) -> bool:
    """Delete *name* (its permissions go with it); False when there is no such user."""
    response = requests.delete(f"{api}/users/{quote(name, safe='')}", auth=auth, timeout=10)
    if response.status_code == 404:
        return False
    response.raise_for_status()
    return True


def permissions(api: str, auth: tuple[str, str], vhost: str, name: str
                ) -> dict[str, str] | None:
    """*name*'s permissions on *vhost* (None: it has none)."""
    response = requests.get(f"{api}/permissions/{quote(vhost, safe='')}/{quote(name, safe='')}",
                            auth=auth, timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return {key: response.json()[key] for key in ("configure", "write", "read")}


def revoke(api: str, auth: tuple[str, str], vhost: str, name: str) -> None:
    """Take *name*'s permissions on *vhost* away (none left is no error)."""
    response = requests.delete(
        f"{api}/permissions/{quote(vhost, safe='')}/{quote(name, safe='')}", auth=auth,
        timeout=10)
    if response.status_code != 404:
        response.raise_for_status()


def grant(api: str, auth: tuple[str, str], vhost: str, name: str,
          permissions: dict[str, str]) -> None:
    """Give *name* exactly *permissions* on *vhost* (back)."""
    requests.put(f"{api}/permissions/{quote(vhost, safe='')}/{quote(name, safe='')}",
                 json=permissions, auth=auth, timeout=10).raise_for_status()


def close_connections(api: str, auth: tuple[str, str], vhost: str, name: str,
                      reason: str) -> int:
    """Close every connection *name* has to *vhost* (RabbitMQ tells the client *reason*);
    returns how many."""
    response = requests.get(f"{api}/connections", auth=auth, timeout=10,
                            params={"columns": "name,user,vhost"})
    response.raise_for_status()
    closed = 0
    for connection in response.json():
        if connection.get("user") != name or connection.get("vhost") != vhost:
            continue
        gone = requests.delete(f"{api}/connections/{quote(connection['name'], safe='')}",
                               auth=auth, timeout=10, headers={"X-Reason": reason[:200]})
        if gone.status_code != 404:
            gone.raise_for_status()
            closed += 1
    return closed
