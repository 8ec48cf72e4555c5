"""Operators' commands: ``piw-remove``, ``piw-skip``, ``piw-rebuild``, ``piw-rebuild-wheels``,
``piw-add`` and ``piw-builder-control``.

Each is a thin client of the ``admin`` service's RPC (which does the work in one transaction
and tells file_manager and the index through the outbox): it asks for a dry run first, shows
what would happen, asks for confirmation (never silently: with no terminal and no ``-y`` it
refuses), then makes the call. Every wait is bounded, so a dead broker or a stopped master
gives a clear message and an exit status instead of a hang. They use nameko's standalone
``ClusterRpcProxy``, which needs no eventlet monkey patching.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import re
import sys
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from builders import protocol
from builders.commandline import command_parser, configure_logging
from piw_services.admin import PAGE_PART_ALIASES, PAGE_PARTS
from piw_services.config import CONFIG_HELP, load_config
from piw_services.names import MAX_NAME_LENGTH, is_valid_name
from piw_services.settings import Settings

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_NO_ANSWER = 4

#: Seconds to wait for the dry run: short, so that when nothing answers (the admin service is
#: down, and the call waits in its queue) the real call is never sent.
DRY_RUN_TIMEOUT = 15
#: Seconds to wait for RabbitMQ to accept a connection before giving up.
CONNECT_TIMEOUT = 5
#: Longest version string the catalog accepts (piw_services.reorderer.parse).
MAX_VERSION_LENGTH = 128
#: Files listed in a plan before the rest are only counted (``-v`` lists all).
FILES_SHOWN = 20
#: The admin service's errors whose message is meant for the operator.
ADMIN_ERRORS = ("UnknownPackage", "UnknownVersion", "BadRequest")

EPILOG = """\
exit status:
  0  done
  1  refused or failed: nothing was changed
  2  usage error
  3  recorded, but not yet complete: it finishes when the named services run
  4  no answer to the change itself: the admin service may still apply it when it runs
"""

_BAD_VERSION = re.compile(r"[\s\x00-\x1f\x7f]")


class Failure(Exception):
    """Something that stops the command, with the message and exit status to give."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def _shown(value: str) -> str:
    """*value* quoted for a message, its control characters escaped, at most 80 characters."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _package(value: str) -> str:
    if not is_valid_name(value):
        raise argparse.ArgumentTypeError(
            f"not a package name: {_shown(value)} (letters, digits and . _ - only, starting "
            f"and ending with a letter or digit, at most {MAX_NAME_LENGTH} characters)")
    return value


def _version(value: str) -> str:
    if not value or len(value) > MAX_VERSION_LENGTH or _BAD_VERSION.search(value):
        raise argparse.ArgumentTypeError(
            f"not a version: {_shown(value)} (no spaces or control characters, at most "
            f"{MAX_VERSION_LENGTH} characters)")
    return value


def protocol_argument(check: Callable[[str], str]) -> Callable[[str], str]:
    """An argparse type from one of builders.protocol's checks: its refusal is the usage error."""
    def convert(value: str) -> str:
        try:
            return check(value)
        except protocol.ProtocolError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def _reason(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("the reason must say something")
    return value


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the common options (piwheels' piw-remove's), -y/--yes included."""
    return command_parser(prog, description, epilog=EPILOG, confirm=True,
                          config=CONFIG_HELP + "; AMQP_URI is read from it",
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _logger(prog: str, args: argparse.Namespace) -> logging.Logger:
    log = logging.getLogger(f"piw.cli.{prog}")
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    return configure_logging(args, log, file_level=logging.DEBUG)  # the record says who


def broker_address(amqp_uri: str) -> str:
    """host:port of *amqp_uri*, without its credentials (for messages)."""
    url = urlsplit(amqp_uri)
    try:
        port = url.port or 5672
    except ValueError:
        port = "?"
    return f"{url.hostname or '127.0.0.1'}:{port}"


def check_broker(amqp_uri: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail within about *timeout* seconds when RabbitMQ cannot be reached or refuses us, so
    no later step waits on a broker that is not there."""
    from kombu import Connection

    try:
        with Connection(amqp_uri, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)
    except Exception as exc:  # socket, kombu and amqp errors alike: say which, stop
        raise Failure(f"cannot reach RabbitMQ at {broker_address(amqp_uri)}: "
                      f"{str(exc) or type(exc).__name__}") from None


def call_admin(config: dict[str, Any], method: str, kwargs: dict[str, Any],
               timeout: float) -> dict[str, Any]:
    """``admin.<method>(**kwargs)`` through a standalone proxy, waiting at most *timeout*
    seconds; the admin service's refusals become :class:`Failure` with its message."""
    with warnings.catch_warnings():  # nameko imports eventlet, which warns of itself
        warnings.simplefilter("ignore")
        from amqp.exceptions import AccessRefused
        from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
        from nameko.standalone.rpc import ClusterRpcProxy

    try:
        with ClusterRpcProxy(config, timeout=timeout) as rpc:
            return getattr(rpc.admin, method)(**kwargs)
    except RemoteError as exc:
        if exc.exc_type in ADMIN_ERRORS:
            raise Failure(str(exc.value)) from None
        raise Failure(f"the admin service failed: {exc.exc_type}: {exc.value}") from None
    except RpcTimeout:
        raise Failure(f"no answer from the admin service within {timeout:g} s: is piw-master "
                      "running?", EXIT_NO_ANSWER) from None
    except UnknownService:
        raise Failure("the admin service is not running (nothing takes its calls): start "
                      "piw-master") from None
    except AccessRefused as exc:
        raise Failure(f"RabbitMQ refused the call: {exc}. Operators connect as a user made "
                      "by piw-operator-user.") from None


def _show_plan(log: logging.Logger, plan: dict[str, Any], level: int, every: bool) -> None:
    """Log what the dry run says would happen: the summary, files (the first FILES_SHOWN
    unless *every*), builds to queue."""
    log.log(level, "dry run: %s", plan.get("summary") or plan)
    files = plan.get("files") or []
    if files:
        log.log(level, "files to delete (%d):", len(files))
        for name in files if every else files[:FILES_SHOWN]:
            log.log(level, "  %s", name)
        if len(files) > FILES_SHOWN and not every:
            log.log(level, "  ... and %d more (-v lists them)", len(files) - FILES_SHOWN)
    for version, abi in plan.get("queued") or []:
        log.log(level, "to build: %s for %s", version, abi)
    for name in plan.get("imported") or []:
        log.log(level, "to import: %s", name)
    for name in plan.get("already") or []:
        log.log(level, "already served with that hash: %s", name)


def _confirm(log: logging.Logger, plan: dict[str, Any], args: argparse.Namespace) -> bool:
    # the operator must see what they agree to, even with -q
    _show_plan(log, plan, logging.WARNING if args.quiet else logging.INFO, args.verbose)
    try:
        answer = input("Proceed? [y/N] ")
    except (EOFError, KeyboardInterrupt):
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


#: What a command does once the admin service has made the change (piw-import's upload):
#: given the log, the config and the answer, it returns the exit status or raises Failure.
Then = Callable[[logging.Logger, dict[str, Any], dict[str, Any]], int]


def run(prog: str, args: argparse.Namespace, method: str, kwargs: dict[str, Any],
        then: Then | None = None) -> int:
    """Dry run, confirmation, then the change (and *then*, once it is complete); returns the
    exit status (see EPILOG)."""
    log = _logger(prog, args)
    try:
        return _run(log, args, method, kwargs, then)
    except Failure as exc:
        log.error("%s: %s", prog, exc)
        return exc.status
    except KeyboardInterrupt:
        log.error("%s: interrupted (a change already sent may still be applied)", prog)
        return EXIT_FAILED


def _who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return "an unknown user"


def _run(log: logging.Logger, args: argparse.Namespace, method: str,
         kwargs: dict[str, Any], then: Then | None = None) -> int:
    if not args.yes and not sys.stdin.isatty():
        raise Failure("refusing to go on without confirmation: there is no terminal on stdin "
                      "to ask on. Run it on a terminal, or add -y to go ahead without asking.")
    config = load_config(args.config)
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    log.debug("%s(%s) by %s via %s", method, shown, _who(), broker_address(config["AMQP_URI"]))
    check_broker(config["AMQP_URI"])
    try:
        plan = call_admin(config, method, {**kwargs, "dry_run": True}, DRY_RUN_TIMEOUT)
    except Failure as exc:
        if exc.status == EXIT_NO_ANSWER:  # only the dry run can be left in the queue
            raise Failure(f"{exc} Nothing was changed.") from None
        raise
    if plan.get("dry_run") is not True:  # an admin service that ignored dry_run
        raise Failure(f"the admin service did not do a dry run: {plan!r}")
    if args.yes:
        _show_plan(log, plan, logging.DEBUG, True)
    elif not _confirm(log, plan, args):
        log.warning("cancelled: nothing was changed")
        return EXIT_FAILED
    timeout = Settings.from_config(config).admin_wait + 30
    try:
        done = call_admin(config, method, kwargs, timeout)
    except Failure as exc:
        if exc.status == EXIT_NO_ANSWER:
            raise Failure(f"{exc} The change may still be applied when the admin service "
                          "takes it from its queue.", EXIT_NO_ANSWER) from None
        raise
    log.info("%s", done.get("summary") or done)
    if done.get("complete") is False:
        log.warning("The change is recorded and will finish when these services run: %s.",
                    ", ".join(done.get("waiting_for") or []) or "(not named)")
        if then:
            log.warning("%s did not go on: run it again once they run.", log.name.rsplit(".")[-1])
        return EXIT_PENDING
    return then(log, config, done) if then else EXIT_DONE


# -- the commands --------------------------------------------------------------------------------
def _main(prog: str, description: str, arguments: Callable[[argparse.ArgumentParser], None],
          request: Callable[[argparse.Namespace, argparse.ArgumentParser],
                            tuple[str, dict[str, Any]]],
          argv: list[str] | None, then: Then | None = None) -> int:
    parser = _parser(prog, description)
    arguments(parser)
    args = parser.parse_args(argv)
    method, kwargs = request(args, parser)
    return run(prog, args, method, kwargs, then)


def remove_main(argv: list[str] | None = None) -> int:
    """``piw-remove``: remove a version's builds and files (and with -s never build it)."""
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-s", "--skip", action="store_true",
                            help="never build this version again")
        parser.add_argument("package", type=_package, help="the package's name")
        parser.add_argument("version", type=_version, help="the version to remove")

    def request(args: argparse.Namespace,
                parser: argparse.ArgumentParser) -> tuple[str, dict[str, Any]]:
        return "remove", {"package": args.package, "version": args.version,
                          "skip": args.skip}

    return _main("piw-remove", "Remove a version's builds and files from the index.",
                 arguments, request, argv)


def skip_main(argv: list[str] | None = None) -> int:
    """``piw-skip``: stop (or with -u allow again) building a package or one version."""
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-u", "--unskip", action="store_true",
                            help="allow building it again instead")
        parser.add_argument("-r", "--reason", type=_reason,
                            help="why it must not be built (required unless --unskip)")
        parser.add_argument("package", type=_package, help="the package's name")
        parser.add_argument("version", type=_version, nargs="?",
                            help="only this version (default: the whole package)")

    def request(args: argparse.Namespace,
                parser: argparse.ArgumentParser) -> tuple[str, dict[str, Any]]:
        if args.unskip:
            if args.reason is not None:
                parser.error("--reason goes with a skip, not with --unskip")
            return "unskip", {"package": args.package, "version": args.version}
        if args.reason is None:
            parser.error("-r/--reason is required: say why it must not be built")
        return "skip", {"package": args.package, "version": args.version,
                        "reason": args.reason}

    return _main("piw-skip", "Stop building a package or one of its versions (or with -u "
                 "allow it again).", arguments, request, argv)


def rebuild_main(argv: list[str] | None = None) -> int:
    """``piw-rebuild``: rewrite pages, with piwheels' verbs (its rebuild/__init__.py)."""
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("part", choices=(*PAGE_PARTS, *PAGE_PART_ALIASES),
                            help="home or search: the root pages (home page, packages.json, "
                                 "simple root); project: a package's pages; both (or index): "
                                 "its simple and project pages")
        parser.add_argument("package", type=_package, nargs="?",
                            help="with project or both: only this package (default: every "
                                 "package)")

    def request(args: argparse.Namespace,
                parser: argparse.ArgumentParser) -> tuple[str, dict[str, Any]]:
        if args.package is not None and args.part in ("home", "search"):
            parser.error(f"{args.part} takes no package")
        return "rebuild_pages", {"part": args.part, "package": args.package}

    return _main("piw-rebuild", "Rewrite pages of the site, as piwheels' piw-rebuild does "
                 "(to build wheels again: piw-rebuild-wheels).", arguments, request, argv)


def rebuild_wheels_main(argv: list[str] | None = None) -> int:
    """``piw-rebuild-wheels``: build again (also how a failed build is retried)."""
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--abi", type=protocol_argument(protocol.check_target_or_abi),
                            help="only this build target (e.g. cp311-linux_armv7l), or each "
                                 "target of an ABI (e.g. cp311)")
        parser.add_argument("package", type=_package, help="the package's name")
        parser.add_argument("version", type=_version, nargs="?",
                            help="only this version (default: every version)")

    def request(args: argparse.Namespace,
                parser: argparse.ArgumentParser) -> tuple[str, dict[str, Any]]:
        return "rebuild", {"package": args.package, "version": args.version,
                           "abi": args.abi}

    return _main("piw-rebuild-wheels", "Build a package (or one version, or for one ABI) "
                 "again: the files of its builds are deleted and new jobs queued (this is also "
                 "how a failed build is retried).", arguments, request, argv)


def add_main(argv: list[str] | None = None) -> int:
    """``piw-add``, as piwheels' (its add/__init__.py): add a package or version upstream
    does not show, or update a known one, and queue the builds it lacks."""
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-s", "--skip", type=_reason, metavar="REASON",
                            help="a new package or version: never build it, for REASON")
        parser.add_argument("--unskip", action="store_true",
                            help="allow building a skipped package or version again")
        parser.add_argument("-d", "--description", metavar="TEXT",
                            help="the package's description (its summary on our pages)")
        parser.add_argument("-a", "--alias", dest="aliases", metavar="NAME", action="append",
                            type=_package, default=[],
                            help="another spelling of the package's name; may be repeated")
        parser.add_argument("-r", "--released", metavar="TIMESTAMP",
                            help="a new version's release date, e.g. '2024-05-01 12:00:00' "
                                 "(UTC); default: now")
        parser.add_argument("--yank", action="store_true", help="a new version: yanked")
        parser.add_argument("--unyank", action="store_true",
                            help="an operator's version: not yanked any more")
        parser.add_argument("package", type=_package, help="the package's name")
        parser.add_argument("version", type=_version, nargs="?",
                            help="the version (default: the package, every version of it)")

    def request(args: argparse.Namespace,
                parser: argparse.ArgumentParser) -> tuple[str, dict[str, Any]]:
        if args.version is None and (args.released or args.yank or args.unyank):
            parser.error("--released, --yank and --unyank go with a version")
        if args.skip is not None and args.unskip:
            parser.error("--skip and --unskip contradict each other")
        if args.yank and args.unyank:
            parser.error("--yank and --unyank contradict each other")
        return "add", {"package": args.package, "version": args.version,
                       "description": args.description, "aliases": args.aliases,
                       "released": args.released, "yank": args.yank,
                       "unyank": args.unyank, "skip": args.skip, "unskip": args.unskip,
                       "who": _who()}

    return _main("piw-add", "Add a package or version upstream does not show (an operator's "
                 "entry: a name to import wheels under, a release PyPI deleted), or update a "
                 "known one; then queue the builds it lacks (an ABI enabled since, or a build "
                 "never made).", arguments, request, argv)


def builder_control_main(argv: list[str] | None = None) -> int:
    """``piw-builder-control``: piw-monitor's builder keys as a command, for scripts."""
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("order", choices=("pause", "resume", "kill", "skip"),
                            help="pause: finish the build, take no new job; resume; kill its "
                                 "build (built again by another builder); skip its build "
                                 "(recorded skipped with -r REASON)")
        parser.add_argument("builder", nargs="?",
                            help="the builder's id or label (pause and resume: every builder "
                                 "when omitted)")
        parser.add_argument("-r", "--reason", type=_reason, help="why (skip only)")

    def request(args: argparse.Namespace,
                parser: argparse.ArgumentParser) -> tuple[str, dict[str, Any]]:
        if args.order in ("kill", "skip") and args.builder is None:
            parser.error(f"{args.order} needs a builder")
        if (args.order == "skip") != (args.reason is not None):
            parser.error("-r/--reason goes with skip, and skip needs it")
        builder = int(args.builder) if args.builder and args.builder.isdigit() \
            else args.builder
        return "builder_control", {"order": args.order, "builder": builder,
                                   "reason": args.reason}

    def then(log: logging.Logger, config: dict[str, Any], done: dict[str, Any]) -> int:
        missed = done.get("undelivered") or {}
        for builder, problem in missed.items():
            log.error("the order did not reach builder %s: %s", builder, problem)
        return EXIT_FAILED if missed else EXIT_DONE

    return _main("piw-builder-control", "Pause or resume a builder (or every builder), or "
                 "kill or skip its build, as piw-monitor's keys do.", arguments, request, argv,
                 then)


def unblock_main(argv: list[str] | None = None) -> int:
    """``piw-unblock``: let a builder blocked for too many refused messages connect again."""
    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("user", help="the builder's RabbitMQ user (as /status/ lists it)")

    def request(args: argparse.Namespace,
                parser: argparse.ArgumentParser) -> tuple[str, dict[str, Any]]:
        return "unblock_builder", {"user": args.user}

    return _main("piw-unblock", "Give a builder's RabbitMQ user, blocked for sending too many "
                 "messages the master refused, its permissions back (docs/security.md).",
                 arguments, request, argv)
