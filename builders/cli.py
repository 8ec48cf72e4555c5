"""``piw-builder``: the console script a Raspberry Pi runs to build wheels for the index.

Settings are checked before anything touches the network, so a typo ends the process at
once with one line on stderr and exit status 2 instead of a builder that loops on errors.
"""

from __future__ import annotations

import logging
import sys

from builders.builder import Builder
from builders.commandline import command_parser, configure_logging
from builders.config import ConfigError, load_settings, probe_python

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the builder until SIGTERM/SIGINT; 0 then, 2 for bad settings."""
    parser = command_parser(
        "piw-builder",
        "Take build jobs for this Python's ABI and platform (its build target, "
        "e.g. cp311-linux_armv7l) from RabbitMQ, build the wheels "
        "with pip, upload them to the piw master and report each result.",
        config="YAML settings (default: $PIW_BUILDER_CONFIG, else ./config/builder.yaml, "
               "else the packaged builder.yaml)")
    parser.add_argument("--label", metavar="NAME",
                        help="this builder's name on the status page (default: the LABEL "
                             "setting, else the host name)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, label=args.label)
        interpreter = probe_python(settings.python, settings.abi, platform=settings.platform)
        try:
            settings.work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"WORK_DIR {settings.work_dir}: {exc.strerror or exc}") from None
    except ConfigError as exc:
        print(f"piw-builder: {exc}", file=sys.stderr)
        return 2
    level = configure_logging(args, default=settings.log_level,
                              console_format="%(asctime)s %(levelname)s %(name)s: %(message)s"
                              ).level
    for noisy in ("amqp", "kombu"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, level))
    return Builder(settings, interpreter).run()


if __name__ == "__main__":
    sys.exit(main())
