"""Fixtures for the fake PyPI's own tests."""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Callable, Iterator

import pytest

from piw_services.fake_pypi import FakePyPI


@pytest.fixture
def make_server() -> Iterator[Callable[..., FakePyPI]]:
    """Start FakePyPI instances on free ports; all are stopped at teardown."""
    servers: list[FakePyPI] = []

    def factory(events=(), **kwargs) -> FakePyPI:
        server = FakePyPI(events, **kwargs).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def proxy() -> Callable[..., xmlrpc.client.ServerProxy]:
    """Build an XML-RPC client for a server, the way PyPI's users do."""

    def make(server: FakePyPI, path: str = "/pypi") -> xmlrpc.client.ServerProxy:
        return xmlrpc.client.ServerProxy(server.url + path)

    return make
