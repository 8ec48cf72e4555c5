"""Configuration: nameko-style YAML with ``${ENV:default}`` substitution.

Services get this dict from nameko itself; CLIs load it with :func:`load_config` so both read
the same files the same way.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

import yaml

from builders.commandline import ConfigSource, find_config

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
ConfigLoader.add_constructor("!raw_env_var", functools.partial(env_var_constructor, raw=True))
ConfigLoader.add_implicit_resolver("!env_var", IMPLICIT_ENV_VAR_MATCHER, None)

#: The default configuration, packaged with piw (a link to config/master.yaml in the checkout):
#: also the one list of defaults for any setting a deployment's own file leaves out.
PACKAGE, FILENAME, CONFIG_ENV = "piw_services", "master.yaml", "PIW_CONFIG"


def _parse(source: ConfigSource) -> dict[str, Any]:
    try:
        text = source.read_text()
    except OSError as exc:
        raise SystemExit(f"cannot read config file {source.name}: "
                         f"{exc.strerror or exc}") from exc
    try:
        data = yaml.load(text, Loader=ConfigLoader) or {}
    except yaml.YAMLError as exc:
        raise SystemExit(f"config file {source.name}: not valid YAML: "
                         f"{' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise SystemExit(f"config file {source.name} must hold a mapping, "
                         f"not {type(data).__name__}")
    return data


@functools.cache
def defaults() -> dict[str, Any]:
    """The packaged config, its ${PIW_*} variables substituted (once per process)."""
    return _parse(ConfigSource(f"{PACKAGE}:{FILENAME}", packaged=True))


def load_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read the config (``-c`` *path*, else $PIW_CONFIG, else ./config/master.yaml, else the
    packaged one; see builders.commandline.find_config), applying env substitution and the
    packaged defaults for what it leaves out."""
    return with_defaults(_parse(find_config(path, CONFIG_ENV, FILENAME, PACKAGE)))


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Fill the settings a config leaves out; services call this on nameko's config too.
    LOGGING is not a setting: a file without it logs plainly (and tests keep their capture)."""
    merged = {k: v for k, v in defaults().items() if k != "LOGGING"}
    merged.update({k: v for k, v in config.items() if v is not None})
    return merged


#: The ``-c`` help of every master command (what it reads from the file is said after).
CONFIG_HELP = ("config file (default: $PIW_CONFIG, else ./config/master.yaml, else the "
               "packaged master.yaml)")
