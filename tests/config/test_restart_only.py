"""Settings a reload cannot change keep their running values, and each change is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.load import load_settings
from runnergw.config.restart_only import RestartOnly, keep_running_values
from runnergw.config.settings import Settings

__all__ = ["KeepRunningValuesTests"]

_BASE: dict[str, Any] = {
    "runners": [{"host": "127.0.0.1:1", "path": "/"}],
    "server": {"address": "127.0.0.1:8000"},
}


class KeepRunningValuesTests(SynchronousTestCase):
    """``keep_running_values``."""

    def load(self, document: dict[str, Any]) -> Settings:
        path = Path(self.mktemp())
        path.write_text(yaml.safe_dump(document))
        return load_settings(str(path), {}, dotenv_path=None)

    def test_nothing_changed(self) -> None:
        """The same settings: nothing to name, nothing replaced."""
        running, new = self.load(_BASE), self.load(_BASE)
        kept, changes = keep_running_values(running, new)
        self.assertEqual(changes, [])
        self.assertEqual(kept.server, new.server)

    def test_address_kept(self) -> None:
        """A new listen address is named with both values; the running one stays, and the
        rest of the new settings is taken."""
        running = self.load(_BASE)
        new = self.load({**_BASE, "server": {"address": "127.0.0.1:9000", "headerTimeout": "3s"}})
        kept, changes = keep_running_values(running, new)
        self.assertEqual(changes, [RestartOnly("server.address", "127.0.0.1:8000",
                                               "127.0.0.1:9000")])
        self.assertEqual((str(kept.server.address), kept.server.header_timeout),
                         ("127.0.0.1:8000", 3.0))

    def test_address_of_a_passed_socket_not_named(self) -> None:
        """With the socket from the service manager, ``server.address`` is not what the
        gateway listens on: its change is not named (and not applied)."""
        running = self.load(_BASE)
        new = self.load({**_BASE, "server": {"address": "127.0.0.1:9000"}})
        kept, changes = keep_running_values(running, new, socket_passed=True)
        self.assertEqual(changes, [])
        self.assertEqual(str(kept.server.address), "127.0.0.1:8000")

    def test_tls_turned_on_kept_off(self) -> None:
        """Certificate paths appearing would turn TLS on: named, and the listener stays
        plain."""
        running = self.load(_BASE)
        new = self.load({**_BASE, "server": {"address": "127.0.0.1:8000",
                                             "certificatePath": "c.pem", "keyPath": "k.pem"}})
        kept, changes = keep_running_values(running, new)
        self.assertEqual(changes, [RestartOnly("server.certificatePath", '""', "c.pem")])
        self.assertFalse(kept.server.tls_enabled)

    def test_pipelines_appearing_kept_absent(self) -> None:
        """A ``pipelines`` section that appears is named; the running (absent) one stays."""
        running = self.load(_BASE)
        new = self.load({**_BASE, "pipelines": {"serverId": "x"}})
        kept, changes = keep_running_values(running, new)
        self.assertEqual(changes, [RestartOnly("pipelines", "absent", "present")])
        self.assertFalse(kept.pipelines.enabled)

    def test_jobs_path_kept(self) -> None:
        """A new jobs directory is named; the locked one stays, other pipeline settings
        are taken."""
        running = self.load({**_BASE, "pipelines": {"serverId": "x", "jobsPath": "/j1"}})
        new = self.load({**_BASE, "pipelines": {"serverId": "x", "jobsPath": "/j2",
                                                "timeout": "5m"}})
        kept, changes = keep_running_values(running, new)
        self.assertEqual(changes, [RestartOnly("pipelines.jobsPath", "/j1", "/j2")])
        self.assertEqual((kept.pipelines.jobs_path, kept.pipelines.defaults.timeout),
                         ("/j1", 300.0))

    def test_ledger_path_kept_while_limits_run(self) -> None:
        """The usage ledger stays while the limits that opened it run; before any, a new
        path is simply taken."""
        running = self.load({**_BASE, "policy": {"ledgerPath": "a.sqlite"}})
        new = self.load({**_BASE, "policy": {"ledgerPath": "b.sqlite"}})
        kept, changes = keep_running_values(running, new, limits_kept=True)
        self.assertEqual(changes, [RestartOnly("policy.ledgerPath", "a.sqlite", "b.sqlite")])
        self.assertEqual(kept.policy.ledger_path, "a.sqlite")
        kept, changes = keep_running_values(running, new, limits_kept=False)
        self.assertEqual((changes, kept.policy.ledger_path), ([], "b.sqlite"))

    def test_metrics_listener_kept(self) -> None:
        """The metrics listener keeps its address, or stays off."""
        running = self.load({**_BASE, "metrics": {"address": "off"}})
        new = self.load({**_BASE, "metrics": {"address": "127.0.0.1:9100"}})
        kept, changes = keep_running_values(running, new)
        self.assertEqual(changes, [RestartOnly("metrics.address", "off", "127.0.0.1:9100")])
        self.assertFalse(kept.metrics.enabled)

