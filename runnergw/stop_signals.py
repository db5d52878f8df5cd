"""The signals the gateway handles itself while it runs: SIGTERM and SIGINT (a drain, see
``runnergw.drain``) and SIGUSR1 (reopen the audit file, for logrotate)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SignalHandlers"]


class SignalHandlers:
    """Handlers installed together, each replacing (and, at ``uninstall``, giving back) the
    one in place; each runs its action in the reactor's thread, never inside the signal
    handler itself."""

    def __init__(self, reactor: Any, actions: Mapping[int, Callable[[int], object]]) -> None:
        self.reactor = reactor
        self.actions = dict(actions)
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take the signals over (from the reactor's own handlers, which would stop it at
        once). Outside the main thread (embedded use) nothing is installed."""
        for signum in self.actions:
            try:
                self._previous[signum] = signal.signal(signum, self._received)
            except ValueError:
                return

    def uninstall(self) -> None:
        """Give every signal back the handler it had before ``install``."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            # None: a handler not installed from Python; the default is the closest.
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _received(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.actions[signum], signum)
