"""What the shipped unit and logrotate file do for a drain and for the audit file's rotation."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.shutdown import ShutdownSettings

__all__ = ["LogrotateTests", "StopTimeoutTests"]

_ROOT = Path(__file__).resolve().parents[1]
_UNIT = _ROOT / "contrib" / "systemd" / "runnergw.service"
_LOGROTATE = _ROOT / "contrib" / "logrotate" / "runnergw"


def _unit_value(key: str) -> str:
    [value] = re.findall(rf"^{key}=(.*)$", _UNIT.read_text(), re.MULTILINE)
    return value.strip()


class StopTimeoutTests(SynchronousTestCase):
    """systemd does not kill a drain that runs as configured by default."""

    def test_stop_timeout_covers_delay_and_grace(self) -> None:
        """TimeoutStopSec leaves room beyond the default readiness delay and grace."""
        seconds = int(_unit_value("TimeoutStopSec").removesuffix("s"))
        self.assertGreater(seconds, ShutdownSettings().longest + 5)

    def test_sigterm_reaches_the_gateway_alone(self) -> None:
        """Jobs are not sent SIGTERM with the gateway: they run on until the drain ends
        them."""
        self.assertEqual(_unit_value("KillMode"), "mixed")


class LogrotateTests(SynchronousTestCase):
    """The logrotate file makes the gateway reopen its audit file."""

    def test_rotates_the_units_audit_log_then_sends_usr1_to_the_main_process(self) -> None:
        """The rotated path is under the unit's logs directory and the signal is SIGUSR1 to
        the main process only (the job launcher would die of it)."""
        text = _LOGROTATE.read_text()
        logs = _unit_value("LogsDirectory")
        self.assertIn(f"/var/log/{logs}/audit.log {{", text)
        self.assertIn("systemctl kill --kill-whom=main --signal=USR1 runnergw.service", text)
