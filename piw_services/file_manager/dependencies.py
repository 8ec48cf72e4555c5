"""nameko dependency of the file_manager: the wheels on disk of the configured WWW tree."""

from __future__ import annotations

from typing import Any

from nameko.extensions import DependencyProvider

from piw_services.file_manager.disk import WheelDisk
from piw_services.settings import Settings


class Disk(DependencyProvider):
    """Injects the :class:`WheelDisk` on the configured WWW tree (one per service)."""

    def setup(self) -> None:
        self.disk = WheelDisk(Settings.from_config(self.container.config).www)

    def get_dependency(self, worker_ctx: Any) -> WheelDisk:
        return self.disk
