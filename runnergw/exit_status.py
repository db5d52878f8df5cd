"""The process's exit status: 0 for a clean stop, ``DRAIN_CUT`` when a drain had to end
exchanges still under way, ``FAILED_AT_START`` when the gateway stopped because a part it needs
could not start (the usage ledger).

twistd exits 0 once its reactor stopped, whatever happened before, and offers no way to say
otherwise. So an exit handler (``atexit``) registered when the service is made sets the status:
it runs after twistd stopped the reactor, removed its pid file and stopped logging, and, when
the status is not 0, flushes what is buffered and ends the process with it (``os._exit``:
Python's own exit would always be 0). The exit handlers registered
earlier than this one (while modules were imported) are skipped then: the one of ``logging``,
which matters, is run here first.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Callable

__all__ = ["DRAIN_CUT", "FAILED_AT_START", "exit_with_status"]

DRAIN_CUT = 1
"""Exit status when the drain had to end exchanges still under way after its grace."""

FAILED_AT_START = 78
"""Exit status when the gateway stopped because a part it needs could not start (the usage
ledger could not be opened): ``EX_CONFIG``, which systemd shows as ``status=78/CONFIG``."""


def exit_with_status(status: Callable[[], int]) -> None:
    """Have the process exit with what ``status()`` says when it ends (0 leaves Python's own
    status alone)."""
    atexit.register(_exit_with, status)


def _exit_with(status: Callable[[], int]) -> None:
    code = status()
    if code == 0:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
