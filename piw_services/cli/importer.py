"""``piw-import``: take wheels built elsewhere (a package with no sdist, a build fixed by hand)
as the build of a known version for one build target.

As piwheels' piw-import (its importer/__init__.py, and master/mr_chase.py for the master's
side): the package, version and target default from the first wheel's name and tags; the
admin service checks the request and shows the dry run (admin.import_wheels), then gives the
target a job held by the ``piw-import`` builder row; the wheels then go through file_manager's
chunked, hash-checked upload path and the result to build_dispatch, exactly as a builder's
(builders/uploader.py and builders/builder.py's BrokerLink, under the operator's RabbitMQ user),
so the files get their ``.metadata``, armv6l links, a build record and the pages.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from builders import protocol
from builders.builder import BrokerLink, ConnectionTrouble, pack_log
from builders.config import Settings
from builders.inspection import InspectionError, inspect_wheel
from builders.uploader import upload_file
from piw_services.cli import admin as cli

#: Seconds to wait for file_manager's and build_dispatch's answers.
REPLY_TIMEOUT = 60.0
#: Whole-file resends after a refusal that says retry (a corrupted chunk).
UPLOAD_RETRIES = 2
#: The most of --log FILE recorded as the build's output.
MAX_LOG = 4 * 1024 * 1024


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 10 ** 7:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {cli._shown(value)}")
    return seconds


def default_target(filenames: list[str]) -> str | None:
    """The build target the wheels' tags name: their one ABI on their one platform (None for
    pure or abi3 wheels, or a mix, which say no target: --target is needed)."""
    found = {(t.abi, t.platform) for name in filenames
             for t in parse_wheel_filename(name)[3]
             if t.abi not in ("none", "abi3") and t.platform != "any"}
    if len(found) != 1:
        return None
    abi, platform = found.pop()
    try:
        return protocol.target_key(abi, platform)
    except protocol.ProtocolError:
        return None


def _inspect(paths: list[str]) -> list[tuple[Path, dict[str, Any]]]:
    wheels = []
    for name in paths:
        path = Path(name)
        try:
            info = inspect_wheel(path).as_dict()
            protocol.check_file_info(info)
        except (InspectionError, protocol.ProtocolError) as exc:
            raise cli.Failure(f"{path}: {exc}", cli.EXIT_USAGE) from None
        wheels.append((path, info))
    names = [info["filename"] for _, info in wheels]
    if len(set(names)) != len(names):
        raise cli.Failure("the same wheel is named twice", cli.EXIT_USAGE)
    return wheels


def _build_log(args: argparse.Namespace, who: str) -> str:
    if args.log is None:
        return f"Imported manually via piw-import by {who}\n"
    try:
        with open(args.log, encoding="utf-8", errors="replace") as fh:
            return fh.read(MAX_LOG)
    except OSError as exc:
        raise cli.Failure(f"cannot read the build log {args.log}: {exc.strerror}",
                          cli.EXIT_USAGE) from None


def upload(log: logging.Logger, config: dict[str, Any], done: dict[str, Any],
           wheels: list[tuple[Path, dict[str, Any]]], duration: float, output: str) -> int:
    """Upload the wheels the admin service said to import under its job, then report the
    build to build_dispatch, as a builder does."""
    if not done.get("imported"):
        return cli.EXIT_DONE  # every wheel is served already: the summary said so
    job_id, builder_id = done["job_id"], done["builder_id"]
    settings = Settings(
        amqp_uri=config["AMQP_URI"], index_url="", label="piw-import", python="", abi=None,
        platform=None, build_timeout=0.0, work_dir=Path.cwd(), heartbeat_interval=3600.0,
        preinstalled=(), reply_timeout=REPLY_TIMEOUT, upload_retries=UPLOAD_RETRIES,
        log_level="INFO", ca_file=None)
    link = BrokerLink(settings, status=lambda: None, stopping=lambda: False)
    incomplete = ("; the import is incomplete: run piw-import again (the version's target "
                  "stays with the import until then)")
    try:
        link.open()
        for path, info in wheels:
            if info["filename"] not in done["imported"]:
                continue
            sent = upload_file(link, path, info, builder_id, job_id, UPLOAD_RETRIES)
            if not sent.committed:
                raise cli.Failure(f"file_manager refused {info['filename']}: {sent.refusal}"
                                  f"{incomplete}")
            log.info("uploaded %s (%d bytes)", info["filename"], info["size"])
        answer = link.request(
            protocol.result(builder_id, job_id, "success", duration, pack_log(output),
                            [info for _, info in wheels], []),
            protocol.REQUESTS, f"result of import job {job_id}")
    except ConnectionTrouble as exc:
        raise cli.Failure(f"{exc}{incomplete}") from None
    finally:
        link.close()
    if not answer["ok"]:
        raise cli.Failure(f"build_dispatch refused the import: {answer['error']}{incomplete}")
    log.info("imported %s %s for %s: build %s", done["package"], done["version"], done["abi"],
             answer.get("build_id"))
    return cli.EXIT_DONE


def main(argv: list[str] | None = None) -> int:
    parser = cli._parser("piw-import", "Import wheels built elsewhere as the build of a "
                         "known version for one build target; they are uploaded as a "
                         "builder's are.")
    parser.add_argument("--package", type=cli._package,
                        help="the package (default: from the first wheel's name)")
    parser.add_argument("--package-version", type=cli._version, metavar="VERSION",
                        help="the version (default: from the first wheel's name)")
    parser.add_argument("--target", type=cli.protocol_argument(protocol.check_target),
                        help="the build target, e.g. cp311-linux_armv7l (default: from the "
                             "wheels' tags; needed for pure and abi3 wheels)")
    parser.add_argument("--duration", type=_seconds, default=0.0, metavar="S",
                        help="seconds the build took (default 0)")
    parser.add_argument("--log", metavar="FILE",
                        help="the build's output, to record (default: a line saying who "
                             "imported it)")
    parser.add_argument("wheels", nargs="+", metavar="WHEEL", help="the wheel files")
    args = parser.parse_args(argv)
    try:
        wheels = _inspect(args.wheels)
        first = wheels[0][1]["filename"]
        name, version = parse_wheel_filename(first)[:2]
        target = args.target or default_target([info["filename"] for _, info in wheels])
        if target is None:
            raise cli.Failure(f"cannot tell the build target from {first}'s tags: give "
                              "--target (e.g. cp311-linux_armv7l)", cli.EXIT_USAGE)
        who = cli._who()
        output = _build_log(args, who)
    except cli.Failure as exc:
        print(f"piw-import: {exc}", file=sys.stderr)
        return exc.status
    kwargs = {"package": args.package or canonicalize_name(name),
              "version": args.package_version or str(version), "target": target,
              "files": [info for _, info in wheels], "who": who}
    return cli.run("piw-import", args, "import_wheels", kwargs,
                   lambda log, config, done: upload(log, config, done, wheels, args.duration,
                                                    output))
