"""nameko extension for the upstream service: one poller (client and back-off state) per
container, which outlives the per-call service instances."""

from __future__ import annotations

from typing import Any

from nameko.extensions import DependencyProvider

from piw_services.settings import Settings
from piw_services.upstream.poller import Poller
from piw_services.upstream_client import UpstreamClient


class UpstreamPoller(DependencyProvider):
    def setup(self) -> None:
        settings = Settings.from_config(self.container.config)
        client = UpstreamClient(settings.upstream, timeout=settings.upstream_timeout,
                                contact=settings.upstream_contact)
        self.poller = Poller(client, interval=settings.poll_interval,
                             min_interval=min(settings.poll_min_interval,
                                              settings.poll_interval),
                             backoff_max=settings.backoff_max,
                             refused_retry=settings.refused_retry,
                             enrich_days=settings.enrich_days)

    def get_dependency(self, worker_ctx: Any) -> Poller:
        return self.poller
