"""The ``limits`` and ``redis`` sections need a restart: a reload names their changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.load import load_settings
from runnergw.config.restart_only import RestartOnly, keep_running_values
from runnergw.config.settings import Settings

__all__ = ["LimitsRestartOnlyTests"]

_BASE: dict[str, Any] = {
    "runners": [{"host": "127.0.0.1:1", "path": "/"}],
    "roles": {"user": {"requestsPerMinute": 10}},
    "limits": {"backend": "redis", "nodes": 2},
    "redis": {"address": "127.0.0.1:6379"},
}


class LimitsRestartOnlyTests(SynchronousTestCase):
    """``keep_running_values`` with the limit state kept."""

    def load(self, document: dict[str, Any]) -> Settings:
        path = Path(self.mktemp())
        path.write_text(yaml.safe_dump(document))
        return load_settings(str(path), {}, dotenv_path=None)

    def test_redis_address_named(self) -> None:
        """A new Redis address is named with both values; the running one stays."""
        running = self.load(_BASE)
        new = self.load({**_BASE, "redis": {"address": "127.0.0.1:6380"}})
        kept, changes = keep_running_values(running, new, limits_kept=True)
        self.assertEqual(changes, [RestartOnly("redis.address", "127.0.0.1:6379",
                                               "127.0.0.1:6380")])
        self.assertEqual(str(kept.redis.address), "127.0.0.1:6379")

    def test_node_count_named(self) -> None:
        """A new node count is named; the running share stays until a restart."""
        running = self.load(_BASE)
        new = self.load({**_BASE, "limits": {"backend": "redis", "nodes": 3}})
        kept, changes = keep_running_values(running, new, limits_kept=True)
        self.assertEqual(changes, [RestartOnly("limits.nodes", "2", "3")])
        self.assertEqual(kept.limits.nodes, 2)
