"""The exit status after a drain, as a real Python process ends with it."""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from runnergw.exit_status import DRAIN_CUT

__all__ = ["ExitStatusTests"]

_PROGRAM = """
import sys
from runnergw.exit_status import exit_with_drain_status

class Drain:
    clean = None

drain = Drain()
exit_with_drain_status(drain)
drain.clean = {clean}
print("last words")
"""


def _run(clean: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _PROGRAM.format(clean=clean)],
                          capture_output=True, text=True, timeout=30, check=False)


class ExitStatusTests(SynchronousTestCase):
    """What the service manager sees when the process ends."""

    def test_clean_drain_exits_0(self) -> None:
        """Every exchange finished within the grace: status 0."""
        self.assertEqual(_run(True).returncode, 0)

    def test_cut_drain_exits_non_zero_with_its_output_flushed(self) -> None:
        """Something had to be cut: DRAIN_CUT, and what was printed is not lost."""
        done = _run(False)
        self.assertEqual((done.returncode, done.stdout), (DRAIN_CUT, "last words\n"))

    def test_stop_without_a_drain_leaves_the_status_alone(self) -> None:
        """A stop that did not drain (no SIGTERM) keeps Python's own status."""
        self.assertEqual(_run(None).returncode, 0)
