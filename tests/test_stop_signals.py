"""Signals taken over from the reactor while the gateway runs, and given back."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.stop_signals import SignalHandlers

__all__ = ["SignalHandlersTests"]


class _Reactor:
    """Records what is called from the signal handler."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def callFromThread(self, function: Callable[..., Any], *args: Any) -> None:
        self.calls.append((function, args))


class SignalHandlersTests(SynchronousTestCase):
    """A real signal sent to this process."""

    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGUSR2)
        self.addCleanup(signal.signal, signal.SIGUSR2, previous)
        self.earlier: list[int] = []
        signal.signal(signal.SIGUSR2, lambda signum, frame: self.earlier.append(signum))

    def test_action_runs_in_the_reactor_with_the_signal_number(self) -> None:
        """The handler only hands the action to the reactor, which runs it later."""
        reactor, seen = _Reactor(), []
        handlers = SignalHandlers(reactor, {signal.SIGUSR2: seen.append})
        handlers.install()
        self.addCleanup(handlers.uninstall)
        os.kill(os.getpid(), signal.SIGUSR2)
        self.assertEqual(seen, [])
        [(function, args)] = reactor.calls
        function(*args)
        self.assertEqual((seen, self.earlier), ([signal.SIGUSR2], []))

    def test_uninstall_gives_the_earlier_handler_back(self) -> None:
        """After the stop, the signal reaches the handler that was there before."""
        reactor = _Reactor()
        handlers = SignalHandlers(reactor, {signal.SIGUSR2: lambda _: None})
        handlers.install()
        handlers.uninstall()
        os.kill(os.getpid(), signal.SIGUSR2)
        self.assertEqual((reactor.calls, self.earlier), ([], [signal.SIGUSR2]))
