"""``python -m runnergw.worker``: one gateway process of several (``server.workers``),
started by the supervisor (``runnergw.workers.supervisor``), never by hand.

It serves as a lone gateway does, on the listening socket it inherits; its log events go to
standard error as JSON lines, which the supervisor publishes in its own log with the
worker's index; its notify messages go to the supervisor's socket for it.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from typing import Any

from twisted.logger import globalLogBeginner, jsonFileLogObserver

from runnergw.config.errors import ConfigErrors
from runnergw.config.load import load_settings
from runnergw.workers.role import WorkerRole

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Serve until stopped; the exit status as a lone gateway's (``runnergw.exit_status``)."""
    # Until the gateway handles them: a reload or reopen asked for while it starts would
    # otherwise end it (their default action). It reads the settings as they are anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    config, role = WorkerRole.parse(argv)
    supervisor = os.getppid()
    _end_with(supervisor)
    globalLogBeginner.beginLoggingTo([jsonFileLogObserver(sys.stderr, recordSeparator="")],
                                     redirectStandardIO=False)
    from twisted.internet import reactor

    from runnergw.exit_status import FAILED_AT_START
    from runnergw.logs import level_gate
    from runnergw.service import GatewayService
    from runnergw.startup import prepare
    from runnergw.workers.reload_report import ReportingNotifier

    try:
        settings = load_settings(config)
        level_gate.set_level(settings.logging.level)
        parts = prepare(settings)
        notifier = ReportingNotifier(role.notify_path, reactor)
        service: Any = GatewayService(settings, parts, reactor, notifier=notifier,
                                      worker=role)
        notifier.reload_results = service.reload_results
        service.privilegedStartService()
    except ConfigErrors as e:
        print(f"runnergw: {e}", file=sys.stderr, flush=True)
        return FAILED_AT_START
    except SystemExit as e:
        print(e.code, file=sys.stderr, flush=True)
        return FAILED_AT_START
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    gc.collect()
    gc.freeze()
    reactor.run()
    return int(service.exit_status())


def _end_with(supervisor: int) -> None:
    """Leave the terminal's process group (a Ctrl-C reaches the supervisor alone, which
    passes it on once), and drain when the supervisor dies (SIGTERM, Linux); a supervisor
    gone already ends the worker at once."""
    os.setpgid(0, 0)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:
        raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
