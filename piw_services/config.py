"""Configuration: nameko-style YAML with ``${ENV:default}`` substitution.

Services get this dict from nameko itself; CLIs load it with :func:`load_config` so both read
the same files the same way.
"""

from __future__ import annotations

import os
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from builders import protocol

with warnings.catch_warnings():  # nameko's CLI module imports pkg_resources
    warnings.simplefilter("ignore")
    from nameko.cli.main import IMPLICIT_ENV_VAR_MATCHER, env_var_constructor


class ConfigLoader(yaml.SafeLoader):
    """yaml's safe loader with nameko's ``${ENV:default}`` tags, on copies of its tables:
    nameko's own ``setup_yaml_parser`` changes ``yaml.SafeLoader`` for the whole process,
    which would also rewrite the builder's YAML (builders/config.py) read in the same one."""

    yaml_constructors = dict(yaml.SafeLoader.yaml_constructors)
    yaml_implicit_resolvers = {k: list(v)
                               for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


ConfigLoader.add_constructor("!env_var", env_var_constructor)
ConfigLoader.add_constructor("!raw_env_var", partial(env_var_constructor, raw=True))
ConfigLoader.add_implicit_resolver("!env_var", IMPLICIT_ENV_VAR_MATCHER, None)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_CONFIG = CONFIG_DIR / "master.yaml"

#: Defaults for every setting a deployment may leave out of its YAML.
DEFAULTS: dict[str, Any] = {
    "AMQP_URI": "pyamqp://guest:guest@127.0.0.1:5672/",
    "DB_URL": "postgresql+psycopg2://postgres@127.0.0.1:5432/piw",
    "WWW": "./var/www",
    "UPSTREAM": "https://pypi.org",
    "HOLD_SECONDS": 300,
    "POLL_INTERVAL": 10,
    "UPSTREAM_TIMEOUT": 60,
    "BACKOFF_MAX": 300,
    "ENRICH_DAYS": 30,
    "BUILDER_SILENCE_LIMIT": protocol.DEFAULT_SILENCE_LIMIT,
    "QUEUE_WINDOW": 1000,
    "FILE_COMMIT_WAIT": 3.0,
    "UPLOAD_MAX_AGE": 4 * 3600,
    "INDEX_ROOT_INTERVAL": 5,
    # seconds after which a temp file of a page write belongs to no writer (swept once, this
    # long after the index starts)
    "INDEX_TEMP_MAX_AGE": 60,
    "BASE_URL": "",
    # web: nameko's own key for the @http bind address, and the key of the client hash in
    # download and search events (empty: a random one per process)
    "WEB_SERVER_ADDRESS": "127.0.0.1:8080",
    "STATS_SALT": "",
    # stats: seconds between samples of the master host, between writes of the stats and
    # status pages, between asking the index to refresh download counts; days readings are kept
    "STATS_SAMPLE_INTERVAL": 30,
    "STATS_PAGE_INTERVAL": 60,
    "STATS_INDEX_INTERVAL": 300,
    "STATS_READINGS_DAYS": 7,
    # seconds an admin call waits for file_manager and the index to apply it before answering
    "ADMIN_WAIT": 30,
}

def load_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read a config file (default ``config/master.yaml``), applying env substitution."""
    path = Path(path or os.environ.get("PIW_CONFIG") or DEFAULT_CONFIG)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SystemExit(f"cannot read config file {path}: {exc.strerror}") from exc
    data = yaml.load(text, Loader=ConfigLoader) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return with_defaults(data)


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Fill the settings a config leaves out; services call this on nameko's config too."""
    merged = dict(DEFAULTS)
    merged.update({k: v for k, v in config.items() if v is not None})
    return merged
