"""``nameko run <module>`` (docs/deployment.md) must find exactly the one service of each master
module: a mixin with entrypoints imported by name into the module would be taken for a second
service, without a name, and the command would refuse to start."""

import importlib

import pytest
from nameko.cli.run import import_service

from piw_services.cli.services import MASTER_SERVICES


@pytest.mark.parametrize("path", sorted(MASTER_SERVICES.values()))
def test_nameko_run_finds_the_one_service_of_each_module(path):
    module, _, cls = path.partition(":")
    assert import_service(module) == [getattr(importlib.import_module(module), cls)]
