"""The exit status, as a real Python process ends with it."""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from runnergw.exit_status import DRAIN_CUT

__all__ = ["ExitStatusTests"]

_PROGRAM = """
from runnergw.exit_status import exit_with_status

status = [0]
exit_with_status(lambda: status[0])
status[0] = {status}
print("last words")
"""


def _run(status: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _PROGRAM.format(status=status)],
                          capture_output=True, text=True, timeout=30, check=False)


class ExitStatusTests(SynchronousTestCase):
    """What the service manager sees when the process ends."""

    def test_clean_stop_exits_0(self) -> None:
        """A clean stop keeps Python's own status, 0."""
        self.assertEqual(_run(0).returncode, 0)

    def test_cut_drain_exits_non_zero_with_its_output_flushed(self) -> None:
        """Something had to be cut: DRAIN_CUT, and what was printed is not lost."""
        done = _run(DRAIN_CUT)
        self.assertEqual((done.returncode, done.stdout), (DRAIN_CUT, "last words\n"))
