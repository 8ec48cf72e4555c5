"""``piw-operator-user``: create (or remove) the RabbitMQ user an operator's tools connect as.

The user may call the ``admin`` service's RPC (``piw-remove``, ``piw-skip``, ``piw-rebuild``,
``piw-add``, ``piw-import``, ``nameko shell``) and publish to the builders' exchange as
piw-import does, and nothing else: no other service's methods, no job queue, no event
(piw_services.rabbit_users.operator_permissions, and a topic permission that lets it publish
on nameko's RPC exchange only with routing keys ``admin.*``). It talks to RabbitMQ's
management API on the broker of the master's AMQP_URI, as the master's user, and prints the
AMQP_URI to put in the operator's config.
"""

from __future__ import annotations

import logging
import secrets
import sys

import requests

from builders.commandline import command_parser, configure_logging
from piw_services.config import CONFIG_HELP, load_config
from piw_services.rabbit_users import (
    MANAGEMENT_PORT,
    RPC_EXCHANGE,
    add_user,
    management_api,
    operator_permissions,
    operator_topic_permissions,
    remove_user,
    user_uri,
)


def main(argv: list[str] | None = None) -> int:
    """Create or remove the user; 0 on success, 1 when RabbitMQ refuses or is unreachable."""
    parser = command_parser("piw-operator-user", __doc__.splitlines()[0], config=CONFIG_HELP)
    parser.add_argument("name", help="the operator's RabbitMQ user name")
    parser.add_argument("--password", help="default: a new random one, printed")
    parser.add_argument("--api-port", type=int, default=MANAGEMENT_PORT,
                        help=f"RabbitMQ management port (default {MANAGEMENT_PORT})")
    parser.add_argument("--remove", action="store_true", help="remove the user instead")
    args = parser.parse_args(argv)
    configure_logging(args, default=logging.WARNING)  # what it finds is printed
    config = load_config(args.config)
    api, auth, vhost = management_api(config["AMQP_URI"], args.api_port)
    exchange = config.get("rpc_exchange") or RPC_EXCHANGE
    try:
        if args.remove:
            if not remove_user(api, auth, args.name):
                print(f"piw-operator-user: no such user: {args.name}", file=sys.stderr)
                return 1
            print(f"removed RabbitMQ user {args.name}")
            return 0
        password = args.password or secrets.token_urlsafe(18)
        add_user(api, auth, vhost, args.name, password, operator_permissions(exchange),
                 operator_topic_permissions(exchange))
    except requests.RequestException as exc:
        print(f"piw-operator-user: RabbitMQ management API at {api}: {exc}", file=sys.stderr)
        return 1
    print(f"RabbitMQ user {args.name} may call the admin service on vhost {vhost}. "
          "In the operator's config (e.g. a copy of config/master.yaml):")
    print(f"AMQP_URI: {user_uri(config['AMQP_URI'], args.name, password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
