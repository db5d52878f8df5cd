"""systemd's notify protocol: the datagrams a service manager reads on ``$NOTIFY_SOCKET``,
read here from real unix datagram sockets (a path and an abstract name)."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from runnergw.systemd.notify import (
    Notifier,
    monotonic_usec,
    notify_address,
    watchdog_interval,
)
from tests.helpers.notify_socket import ServiceManagerSocket

__all__ = ["AddressTests", "MessageTests", "MonotonicTests", "NoSocketTests",
           "SendFailureTests", "StatusRefreshTests", "WatchdogIntervalTests", "WatchdogTests"]


def _notifier(manager: ServiceManagerSocket, clock: Clock | None = None,
              **environ: str) -> Notifier:
    return Notifier.from_environment(clock or Clock(), {"NOTIFY_SOCKET": manager.name, **environ},
                                     pid=4242)


class AddressTests(SynchronousTestCase):
    """Which socket ``$NOTIFY_SOCKET`` names."""

    def test_path(self) -> None:
        """An absolute path is used as it is."""
        self.assertEqual(notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}),
                         "/run/systemd/notify")

    def test_abstract(self) -> None:
        """``@name`` is the abstract socket whose name starts with a NUL byte."""
        self.assertEqual(notify_address({"NOTIFY_SOCKET": "@sd/notify"}), "\0sd/notify")

    def test_unset_empty_or_unknown(self) -> None:
        """Unset, empty, a bare ``@``, a relative path or a ``vsock:`` address: no socket."""
        for environ in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "@"},
                        {"NOTIFY_SOCKET": "run/notify"}, {"NOTIFY_SOCKET": "vsock:2:1234"}):
            self.assertIsNone(notify_address(environ), environ)


class WatchdogIntervalTests(SynchronousTestCase):
    """How often ``WATCHDOG=1`` is due."""

    def test_half_of_the_timeout(self) -> None:
        """``WATCHDOG_USEC=30000000`` (``WatchdogSec=30``): a ping every 15 seconds."""
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "30000000"}, 7), 15.0)

    def test_our_pid(self) -> None:
        """``WATCHDOG_PID`` naming this process keeps the watchdog."""
        self.assertEqual(watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"}, 7),
                         1.0)

    def test_another_pid(self) -> None:
        """``WATCHDOG_PID`` naming another process (inherited variables): no watchdog."""
        self.assertIsNone(watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "8"},
                                            7))

    def test_absent_zero_or_garbage(self) -> None:
        """No ``WATCHDOG_USEC``, zero, negative or not a number: no watchdog."""
        for value in (None, "0", "-5", "soon", ""):
            environ = {} if value is None else {"WATCHDOG_USEC": value}
            self.assertIsNone(watchdog_interval(environ, 7), value)


class MonotonicTests(SynchronousTestCase):
    """``MONOTONIC_USEC`` is read against ``CLOCK_MONOTONIC``."""

    def test_microseconds_of_the_monotonic_clock(self) -> None:
        """The value lies between two readings of the clock, in microseconds."""
        import time
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        value = monotonic_usec()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.assertTrue(before <= value <= after, (before, value, after))


class MessageTests(SynchronousTestCase):
    """The messages a service manager receives, one datagram each."""

    def test_ready_with_status(self) -> None:
        """Ready: ``READY=1`` and the status line, in one datagram."""
        manager = ServiceManagerSocket(self)
        _notifier(manager).ready("serving on https://127.0.0.1:8443: 0 open connections")
        self.assertEqual(manager.messages(),
                         ["READY=1\nSTATUS=serving on https://127.0.0.1:8443: 0 open connections"])

    def test_abstract_socket(self) -> None:
        """An abstract ``@name`` socket receives the messages too."""
        manager = ServiceManagerSocket(self, abstract=True)
        _notifier(manager).ready("serving")
        self.assertEqual(manager.messages(), ["READY=1\nSTATUS=serving"])

    def test_reload_sequence(self) -> None:
        """A reload: ``RELOADING=1`` with ``MONOTONIC_USEC`` of when it began, then
        ``READY=1``."""
        manager = ServiceManagerSocket(self)
        notifier = Notifier(manager.name, Clock(), monotonic=lambda: 123456789)
        notifier.ready("serving")
        notifier.reloading()
        notifier.ready("serving again")
        self.assertEqual(manager.messages(), [
            "READY=1\nSTATUS=serving",
            "RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading",
            "READY=1\nSTATUS=serving again",
        ])

    def test_stopping(self) -> None:
        """A stop: ``STOPPING=1`` and what is being stopped."""
        manager = ServiceManagerSocket(self)
        _notifier(manager).stopping("stopping: 2 open connections")
        self.assertEqual(manager.messages(), ["STOPPING=1\nSTATUS=stopping: 2 open connections"])

    def test_status_is_one_line(self) -> None:
        """A status with line breaks is sent on one line: a newline would start a field."""
        manager = ServiceManagerSocket(self)
        _notifier(manager).status("first\nREADY=1")
        self.assertEqual(manager.messages(), ["STATUS=first READY=1"])


class NoSocketTests(SynchronousTestCase):
    """Not under systemd."""

    def test_nothing_sent_and_nothing_fails(self) -> None:
        """Without ``$NOTIFY_SOCKET`` every call is a no-op, and no watchdog is scheduled even
        with ``WATCHDOG_USEC`` set."""
        clock = Clock()
        notifier = Notifier.from_environment(clock, {"WATCHDOG_USEC": "1000000"}, pid=1)
        self.assertFalse(notifier.enabled)
        notifier.ready("serving")
        notifier.reloading()
        notifier.status("x")
        notifier.start(lambda: "x")
        notifier.stopping("stopping")
        notifier.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertFalse(notifier.send("READY=1"))


class SendFailureTests(SynchronousTestCase):
    """A service manager that went away."""

    def test_logged_once_and_ignored(self) -> None:
        """Sends to a socket nobody reads fail quietly after one warning naming it."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        directory = tempfile.mkdtemp(prefix="notify-")
        self.addCleanup(shutil.rmtree, directory)
        notifier = Notifier(os.path.join(directory, "gone"), Clock())
        self.assertFalse(notifier.send("READY=1"))
        self.assertFalse(notifier.send("WATCHDOG=1"))
        failures = [e for e in events if e.get("event") == "notify_failed"]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["address"], os.path.join(directory, "gone"))


class WatchdogTests(SynchronousTestCase):
    """``WATCHDOG=1`` while the gateway runs."""

    def test_pings_every_half_timeout(self) -> None:
        """With ``WatchdogSec=4`` a ping goes at start, then every 2 seconds, not sooner."""
        manager = ServiceManagerSocket(self)
        clock = Clock()
        notifier = _notifier(manager, clock, WATCHDOG_USEC="4000000")
        notifier.start(lambda: "serving")
        self.assertEqual(manager.messages(), ["WATCHDOG=1"])
        clock.advance(1.9)
        self.assertEqual(manager.messages(), [])
        clock.advance(0.1)
        self.assertEqual(manager.messages(), ["WATCHDOG=1"])
        clock.advance(2)
        self.assertEqual(manager.messages(), ["WATCHDOG=1"])

    def test_no_ping_without_watchdog(self) -> None:
        """Without ``WATCHDOG_USEC`` nothing is pinged."""
        manager = ServiceManagerSocket(self)
        clock = Clock()
        notifier = _notifier(manager, clock)
        notifier.ready("serving")
        notifier.start(lambda: "serving")
        clock.advance(60)
        self.assertEqual(manager.messages(), ["READY=1\nSTATUS=serving"])

    def test_no_ping_for_another_process(self) -> None:
        """``WATCHDOG_PID`` of another process: nothing is pinged."""
        manager = ServiceManagerSocket(self)
        clock = Clock()
        notifier = _notifier(manager, clock, WATCHDOG_USEC="4000000", WATCHDOG_PID="1")
        notifier.ready("serving")
        notifier.start(lambda: "serving")
        clock.advance(60)
        self.assertEqual(manager.messages(), ["READY=1\nSTATUS=serving"])

    def test_pings_go_on_while_stopping(self) -> None:
        """A stop under way is still watched (a stop that hangs is caught); ``stop`` ends the
        pings."""
        manager = ServiceManagerSocket(self)
        clock = Clock()
        notifier = _notifier(manager, clock, WATCHDOG_USEC="4000000")
        notifier.start(lambda: "serving")
        notifier.stopping("stopping")
        self.assertEqual(manager.messages(), ["WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"])
        clock.advance(2)
        self.assertEqual(manager.messages(), ["WATCHDOG=1"])
        notifier.stop()
        clock.advance(60)
        self.assertEqual(manager.messages(), [])
        self.assertEqual(clock.getDelayedCalls(), [])


class StatusRefreshTests(SynchronousTestCase):
    """The status line follows the gateway."""

    def test_changed_status_sent(self) -> None:
        """Every 5 seconds the status is looked at again and sent when it changed only."""
        manager = ServiceManagerSocket(self)
        clock = Clock()
        notifier = _notifier(manager, clock)
        connections = [0]
        describe = lambda: f"{connections[0]} open connections"  # noqa: E731
        notifier.ready(describe())
        notifier.start(describe)
        clock.advance(5)
        connections[0] = 3
        clock.advance(4.9)
        self.assertEqual(manager.messages(), ["READY=1\nSTATUS=0 open connections"])
        clock.advance(0.1)
        self.assertEqual(manager.messages(), ["STATUS=3 open connections"])

    def test_refresh_ends_when_stopping(self) -> None:
        """Once stopping, the stopping status stays."""
        manager = ServiceManagerSocket(self)
        clock = Clock()
        notifier = _notifier(manager, clock)
        notifier.start(lambda: "serving")
        notifier.stopping("stopping")
        clock.advance(60)
        self.assertEqual(manager.messages(), ["STOPPING=1\nSTATUS=stopping"])
        self.assertEqual(clock.getDelayedCalls(), [])
