"""``piw-builder-user``: create (or remove) the RabbitMQ user one builder connects as.

The user may publish to the builders' exchange, consume its build target's job queue
(``piw.builds.cp311-linux_armv7l``), its own order queues (``piw.orders.<id>.<name>``) and
its own reply queue, and nothing else
(builders.protocol.builder_permissions). It talks to RabbitMQ's
management API on the broker of the master's AMQP_URI, as the master's user, and prints the
AMQP_URI to put in the builder's config: on BUILDER_BROKER (amqps://, with CA_FILE) when set.
"""

from __future__ import annotations

import logging
import secrets
import sys
from urllib.parse import urlsplit

import requests

from builders import protocol
from builders.commandline import command_parser, configure_logging
from piw_services.config import CONFIG_HELP, load_config
from piw_services.rabbit_users import (
    MANAGEMENT_PORT,
    add_user,
    management_api,
    remove_user,
    user_uri,
)
from piw_services.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("piw-builder-user", __doc__.splitlines()[0], config=CONFIG_HELP)
    parser.add_argument("name", help="the builder's RabbitMQ user name (e.g. its host name)")
    parser.add_argument("--target", help="allow only this build target's job queue, "
                        "<abi>-<platform> (e.g. cp311-linux_armv7l); default: any target")
    parser.add_argument("--password", help="default: a new random one, printed")
    parser.add_argument("--api-port", type=int, default=MANAGEMENT_PORT,
                        help=f"RabbitMQ management port (default {MANAGEMENT_PORT})")
    parser.add_argument("--remove", action="store_true", help="remove the user instead")
    args = parser.parse_args(argv)
    configure_logging(args, default=logging.WARNING)  # what it finds is printed
    if args.target:
        try:
            protocol.check_target(args.target)
        except protocol.ProtocolError as exc:
            parser.error(str(exc))
    config = load_config(args.config)
    api, auth, vhost = management_api(config["AMQP_URI"], args.api_port)
    try:
        if args.remove:
            if not remove_user(api, auth, args.name):
                print(f"piw-builder-user: no such user: {args.name}", file=sys.stderr)
                return 1
            print(f"removed RabbitMQ user {args.name}")
            return 0
        password = args.password or secrets.token_urlsafe(18)
        add_user(api, auth, vhost, args.name, password,
                 protocol.builder_permissions(args.target, args.name))
    except requests.RequestException as exc:
        print(f"piw-builder-user: RabbitMQ management API at {api}: {exc}", file=sys.stderr)
        return 1
    print(f"RabbitMQ user {args.name} may build for "
          f"{args.target or 'any target'} on vhost {vhost}. In the builder's config:")
    broker = Settings.from_config(config).builder_broker or config["AMQP_URI"]
    print(f"AMQP_URI: {user_uri(broker, args.name, password)}")
    if urlsplit(broker).scheme == "amqps":
        print("CA_FILE: <a copy of the broker's ca.crt (piw-broker-cert) on the builder>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
