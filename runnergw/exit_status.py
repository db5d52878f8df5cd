"""The process's exit status after a drain: 0 when every exchange finished within the grace,
``DRAIN_CUT`` when some had to be ended.

twistd exits 0 once its reactor stopped, whatever happened before, and offers no way to say
otherwise. So an exit handler (``atexit``) registered when the service is made sets the status:
it runs after twistd stopped the reactor, removed its pid file and stopped logging, and,
after a drain that cut something, flushes what is buffered and ends the process with
``DRAIN_CUT`` (``os._exit``: Python's own exit would always be 0). The exit handlers registered
earlier than this one (while modules were imported) are skipped then: the one of ``logging``,
which matters, is run here first.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import Protocol

__all__ = ["DRAIN_CUT", "exit_with_drain_status"]

DRAIN_CUT = 1
"""Exit status when the drain had to end exchanges still under way after its grace."""


class _Outcome(Protocol):
    clean: bool | None


def exit_with_drain_status(drain: _Outcome) -> None:
    """Have the process exit with ``DRAIN_CUT`` if ``drain`` ends up not clean (a stop
    without a drain, or a clean drain, leaves the status alone)."""
    atexit.register(_exit_if_cut, drain)


def _exit_if_cut(drain: _Outcome) -> None:
    if drain.clean is not False:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(DRAIN_CUT)
