"""nameko extension for the upstream service: one poller (client and back-off state) per
container, which outlives the per-call service instances."""

from __future__ import annotations

from typing import Any

from nameko.extensions import DependencyProvider

from piw_services.config import with_defaults
from piw_services.upstream.poller import Poller
from piw_services.upstream_client import UpstreamClient


class UpstreamPoller(DependencyProvider):
    def setup(self) -> None:
        config = with_defaults(self.container.config)
        client = UpstreamClient(config["UPSTREAM"], timeout=float(config["UPSTREAM_TIMEOUT"]),
                                contact=str(config["UPSTREAM_CONTACT"] or ""))
        self.poller = Poller(client, interval=float(config["POLL_INTERVAL"]),
                             backoff_max=float(config["BACKOFF_MAX"]),
                             refused_retry=float(config["REFUSED_RETRY"]),
                             enrich_days=float(config["ENRICH_DAYS"]))

    def get_dependency(self, worker_ctx: Any) -> Poller:
        return self.poller
