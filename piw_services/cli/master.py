"""``piw-master``: every master service in one process, for operators and tests.

For scaling out, run services separately instead: ``piw-master --only reorderer`` (any
number of instances of any service, on any host).
"""

from __future__ import annotations

import sys
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import eventlet

eventlet.monkey_patch()

import logging.config  # noqa: E402

from builders.commandline import command_parser, configure_logging  # noqa: E402
from piw_services.cli.services import MASTER_SERVICES  # noqa: E402
from piw_services.config import CONFIG_HELP, load_config  # noqa: E402


def service_classes(names: list[str]) -> list[type]:
    import importlib

    classes = []
    for name in names:
        module, _, attr = MASTER_SERVICES[name].partition(":")
        classes.append(getattr(importlib.import_module(module), attr))
    return classes


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("piw-master", __doc__.splitlines()[0], config=CONFIG_HELP)
    parser.add_argument("--only", action="append", choices=sorted(MASTER_SERVICES),
                        help="run only this service (repeatable)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if "LOGGING" in config:
        logging.config.dictConfig(config["LOGGING"])
    configure_logging(args, default=logging.getLogger().level if "LOGGING" in config
                      else logging.INFO, console_format="%(asctime)s %(levelname)s %(message)s")
    names = args.only or list(MASTER_SERVICES)

    from nameko.cli.run import run

    from piw_services.db import schema_problem
    from piw_services.db.roles import SERVICES as DATABASE_USERS
    from piw_services.settings import SettingError, Settings

    try:
        settings = Settings.from_config(config)
    except SettingError as exc:
        print(f"piw-master: {exc}", file=sys.stderr)
        return 2
    # as each service connects: its own role's URL (DB_SERVICE_URL), or DB_URL; upstream and
    # web have no database role (they do not use it)
    urls = {settings.db_url_for(name) for name in names
            if not settings.db_service_url or name in DATABASE_USERS}
    for url in sorted(urls):
        problem = schema_problem(url)
        if problem:
            print(f"piw-master: {problem}", file=sys.stderr)
            return 2
    logging.getLogger("piw.master").info("starting services: %s", ", ".join(names))
    run(service_classes(names), config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
